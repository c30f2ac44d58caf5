"""Time minifcn's FCN layers other than conv2d beside torch.nn.functional, at FCN-8s sizes.

    python benchmarks/bench_layers.py                     # every layer, CPU, float32 (~1 min here)
    python benchmarks/bench_layers.py --layers pool1 upscore8 --repeat 20
    python benchmarks/bench_layers.py --device cuda       # CuPy, beside torch CUDA if it has one

Shapes are FCN-8s's on one 500x500 image (batch 1): conv1_1 pads it by 100, so relu1_1 and
pool1 see a 698x698 map, and upscore8 turns the 70x70 fused scores into 568x568, which crop
cuts to 500x500. The cases and their timing are ``minifcn.bench.cases`` and
``minifcn.bench.measure``, which ``minifcn bench ops`` runs too. Each layer is timed three
ways, each the median of ``--repeat`` calls after ``--warmup`` untimed ones, minifcn and torch
in the same process on the same inputs:

* forward: minifcn's ``name_forward`` (which always returns its cache), torch's functional on
  inputs that require grad (so that it, too, records what its backward needs);
* backward alone: minifcn's ``name_backward(dy, cache)`` on one forward's cache, torch's
  ``torch.autograd.grad(y, inputs, dy, retain_graph=True)`` on one forward's graph;
* forward+backward: a fresh forward, then its backward.

Ratios are minifcn / torch (above 1: minifcn is slower).
"""
from __future__ import annotations

import argparse
import sys

from _common import add_options, begin, parse  # (script directory)
from minifcn.bench import format_sig, table_row, time_call
from minifcn.bench.cases import fcn_cases
from minifcn.bench.measure import PHASES, measure_case
from minifcn.bench.report import check_line

LAYERS = ("relu1_1", "pool1", "drop6", "upscore2", "crop", "upscore8", "bilinear", "loss")
MIN_TIME = 0.05   # seconds: a call of 0.02 ms (crop) is timed 1000 times, not 10
CASES = fcn_cases((500, 500), names=LAYERS)

COLUMNS = (("layer", 8), ("shape", 21), ("mf fwd", 7), ("torch", 7), ("ratio", 5),
           ("mf bwd", 7), ("torch", 7), ("ratio", 5), ("mf f+b", 7), ("torch", 7),
           ("ratio", 5), ("mf rate", 10), ("IQR", 4))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Median time of minifcn's FCN layers (max pooling, transposed "
                    "convolutions, bilinear upsampling, softmax cross-entropy, relu, dropout, "
                    "crop) forward, backward and forward+backward at FCN-8s sizes (batch 1, "
                    "500x500 image), beside torch.nn.functional in the same run.")
    add_options(parser, CASES)
    return parse(parser, argv)


def rate(row) -> str:
    """minifcn's forward rate: GF/s where FLOPs are defined, else GB/s of the bytes moved."""
    gflops = row.gflops("forward")
    return f"{gflops:.1f} GF/s" if gflops is not None else f"{row.gbps('forward'):.1f} GB/s"


def format_row(row) -> str:
    cells = [row.name, row.shape]
    for phase in PHASES:
        ratio = row.ratio(phase)
        cells += [format_sig(1e3 * row.seconds(phase)),
                  format_sig(None if row.torch is None else 1e3 * row.seconds(phase, "torch")),
                  "-" if ratio is None else f"{ratio:.2f}"]
    return table_row(cells + [rate(row), f"{100 * row.spread:.0f}%"], COLUMNS)


def copy_rates(xp, args) -> str:
    """A yardstick for the GB/s column: copying relu1_1's input into memory already mapped,
    and into a fresh array (as every op's output is)."""
    src = xp.ones((1, 64, 698, 698), args.dtype)
    dst = xp.empty_like(src)
    rates = [2 * src.nbytes / time_call(fn, repeat=args.repeat, warmup=args.warmup, xp=xp,
                                        pause=0.1).median / 1e9
             for fn in (lambda: xp.copyto(dst, src), src.copy)]
    return (f"yardstick: copying {src.nbytes / 1e6:.0f} MB moves {rates[0]:.1f} GB/s into an "
            f"array already mapped, {rates[1]:.1f} GB/s into a fresh one (x.copy())")


def main(argv=None) -> int:
    args = parse_args(argv)
    run = begin(args, "bench_layers.py", COLUMNS, MIN_TIME)
    if run is None:
        return 2
    rows = {}
    for name in args.layers:
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        rows[name] = measure_case(CASES[name], run.timer, phases=PHASES, device=args.device,
                                  dtype=args.dtype, torch=run.torch)
        print(format_row(rows[name]), flush=True)
    print("times in ms; ratio = minifcn / torch (above 1: minifcn is slower); bwd = backward "
          "alone, on one forward's cache / graph")
    print("mf rate = minifcn's forward: GB/s of the bytes it must at least read and write "
          "(inputs and output; crop: the kept block twice), or GF/s for transposed "
          "convolutions (2*C_in*H*W*C_out*KH*KW)")
    print("IQR = the widest interquartile range of the row's six timings, in % of its median")
    print(copy_rates(run.xp, args))
    print(run.other_load())
    if run.torch is not None and rows:
        print(check_line(list(rows.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
