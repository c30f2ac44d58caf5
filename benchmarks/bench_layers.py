"""Time minifcn's FCN layers other than conv2d beside torch.nn.functional, at FCN-8s sizes.

    python benchmarks/bench_layers.py                     # every layer, CPU, float32 (~1 min here)
    python benchmarks/bench_layers.py --layers pool1 upscore8 --repeat 20
    python benchmarks/bench_layers.py --device cuda       # CuPy, beside torch CUDA if it has one

Shapes are FCN-8s's on one 500x500 image (batch 1): conv1_1 pads it by 100, so relu1_1 and
pool1 see a 698x698 map. Each layer is timed three ways, each the median of ``--repeat`` calls
after ``--warmup`` untimed ones, minifcn and torch in the same process on the same inputs:

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
from typing import Callable, NamedTuple

import numpy as np

from _common import Timer, add_options, begin, parse, torch_wait  # (script directory)
from minifcn.backend import asnumpy, to_device
from minifcn.bench import (conv_flops, format_cell, format_ratio, relative_difference,
                           table_row, time_call)
from minifcn.ops import (conv_transpose2d_backward, conv_transpose2d_forward, crop_backward,
                         crop_forward, dropout_backward, dropout_forward, max_pool2d_backward,
                         max_pool2d_forward, relu_backward, relu_forward,
                         softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                         upsample_bilinear2d_backward, upsample_bilinear2d_forward)

SEED = 20261121
MIN_TIME = 0.05   # seconds: a call of 0.02 ms (crop) is timed 1000 times, not 10


def normal(**shapes):
    """``inputs(rng, dtype)`` drawing a standard normal array for each named shape."""
    return lambda rng, dtype: {name: rng.standard_normal(shape, np.float32).astype(dtype)
                               for name, shape in shapes.items()}


def loss_inputs(rng, dtype):
    """Logits (1, 21, 500, 500) and int64 labels, about 10% of them void (255)."""
    logits = rng.standard_normal((1, 21, 500, 500), np.float32).astype(dtype)
    target = rng.integers(0, 21, (1, 500, 500), dtype=np.int64)       # (N, H, W)
    target[rng.random(target.shape) < 0.1] = 255
    return {"logits": logits, "target": target}


def moved(arrays, y):
    """Bytes the forward must at least read and write: every input and the output."""
    return sum(a.nbytes for a in arrays.values()) + y.nbytes, "GB/s"


def cropped(arrays, y):
    """A crop reads only the block it keeps and writes it once."""
    return 2 * y.nbytes, "GB/s"


def transposed_flops(arrays, y):
    """A transposed convolution is the adjoint of the convolution from y's shape to x's:
    ``2 * N * C_in * H * W * C_out * KH * KW``."""
    return conv_flops(y.shape, arrays["weight"].shape, arrays["x"].shape[2:]), "GF/s"


class Case(NamedTuple):
    """One layer: its inputs, minifcn's pair, torch's forward, and what counts as its work."""
    name: str
    shape: str                 # the table's description of the input and options
    inputs: Callable           # (rng, dtype) -> {name: NumPy array}, the forwards' arguments
    wrt: tuple                 # the inputs the backward differentiates, in its order
    forward: Callable          # minifcn: (mask_rng, **inputs) -> (y, cache)
    backward: Callable         # minifcn: (dy, cache) -> a grad, or a tuple (None: no grad)
    torch_forward: Callable    # (F, **tensors) -> y, F = torch.nn.functional
    work: Callable = moved     # (inputs, y) -> (bytes or FLOPs of the forward, unit)
    random: bool = False       # a random mask: compare with torch where both kept a value


CASES = {case.name: case for case in (
    Case("relu1_1", "64x698x698", normal(x=(1, 64, 698, 698)), ("x",),
         lambda rng, x: relu_forward(x), relu_backward,
         lambda F, x: F.relu(x)),
    Case("pool1", "64x698x698 k2 s2 ceil", normal(x=(1, 64, 698, 698)), ("x",),
         lambda rng, x: max_pool2d_forward(x, 2, 2, ceil_mode=True), max_pool2d_backward,
         lambda F, x: F.max_pool2d(x, 2, 2, ceil_mode=True)),
    Case("drop6", "4096x16x16 p0.5", normal(x=(1, 4096, 16, 16)), ("x",),
         lambda rng, x: dropout_forward(x, 0.5, True, rng=rng), dropout_backward,
         lambda F, x: F.dropout(x, 0.5, training=True), random=True),
    Case("upscore2", "21x16x16 k4 s2 ->34", normal(x=(1, 21, 16, 16), weight=(21, 21, 4, 4)),
         ("x", "weight"),
         lambda rng, x, weight: conv_transpose2d_forward(x, weight, stride=2),
         conv_transpose2d_backward,
         lambda F, x, weight: F.conv_transpose2d(x, weight, stride=2), transposed_flops),
    Case("crop", "21x70x70 @5 ->60", normal(x=(1, 21, 70, 70)), ("x",),
         lambda rng, x: crop_forward(x, 5, 60), crop_backward,
         lambda F, x: x[:, :, 5:65, 5:65].contiguous(), cropped),
    Case("upscore8", "21x64x64 k16 s8 ->520",
         normal(x=(1, 21, 64, 64), weight=(21, 21, 16, 16)), ("x", "weight"),
         lambda rng, x, weight: conv_transpose2d_forward(x, weight, stride=8),
         conv_transpose2d_backward,
         lambda F, x, weight: F.conv_transpose2d(x, weight, stride=8), transposed_flops),
    Case("bilinear", "21x63x63 ->500", normal(x=(1, 21, 63, 63)), ("x",),
         lambda rng, x: upsample_bilinear2d_forward(x, size=500), upsample_bilinear2d_backward,
         lambda F, x: F.interpolate(x, size=500, mode="bilinear", align_corners=False)),
    Case("loss", "21x500x500 10% void", loss_inputs, ("logits",),
         lambda rng, logits, target: softmax_cross_entropy_forward(logits, target,
                                                                   ignore_index=255),
         softmax_cross_entropy_backward,
         lambda F, logits, target: F.cross_entropy(logits, target, ignore_index=255)),
)}

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


def minifcn_calls(case: Case, arrays, dy, cache, mask_rng):
    """forward, backward (on ``cache``) and forward+backward, as callables."""
    def forward():
        return case.forward(mask_rng, **arrays)

    def backward():
        return case.backward(dy, cache)

    def forward_backward():
        return case.backward(dy, forward()[1])

    return forward, backward, forward_backward


def torch_calls(torch, case: Case, arrays, dy, device: str):
    """forward, backward (on one forward's graph) and forward+backward as callables, and
    that forward's output."""
    t = {name: torch.from_numpy(a).to(device) for name, a in arrays.items()}
    t.update({name: t[name].clone().requires_grad_() for name in case.wrt})
    wrt = [t[name] for name in case.wrt]
    dy = torch.from_numpy(dy).to(device)
    F, wait = torch.nn.functional, torch_wait(torch, device)
    graph = case.torch_forward(F, **t)                 # kept: backward() runs on it

    def forward():
        y = case.torch_forward(F, **t)
        wait()
        return y

    def backward():   # no .grad accumulation; the graph is kept for the next call
        grads = torch.autograd.grad(graph, wrt, dy, retain_graph=True)
        wait()
        return grads

    def forward_backward():
        grads = torch.autograd.grad(case.torch_forward(F, **t), wrt, dy)
        wait()
        return grads

    return (forward, backward, forward_backward), graph.detach()


def grads_of(result) -> tuple:
    """A backward's gradients as a tuple, without the Nones of inputs that get none."""
    result = result if isinstance(result, tuple) else (result,)
    return tuple(g for g in result if g is not None)


def difference(got, want, random: bool) -> float:
    """max|got - want| / max|want|; for a random mask only where both kept a value."""
    got = np.asarray(asnumpy(got), np.float64)
    want = np.asarray(want.cpu().numpy() if hasattr(want, "cpu") else want, np.float64)
    if random:
        both = (got != 0) & (want != 0)
        got, want = got[both], want[both]
    return relative_difference(got, want)


def measure(case: Case, args, torch, xp, rng) -> dict:
    dtype = np.dtype(args.dtype)
    arrays = case.inputs(rng, dtype)                   # NumPy, shared with torch
    on_device = {name: to_device(a, args.device) for name, a in arrays.items()}
    mask_rng = xp.random.default_rng(SEED)             # dropout draws on the array's device
    y, cache = case.forward(mask_rng, **on_device)
    dy = (np.ones((), dtype) if y.ndim == 0                       # a loss: dL/dL = 1
          else rng.standard_normal(y.shape, np.float32).astype(dtype))
    timer = Timer(args, xp, MIN_TIME)
    calls = minifcn_calls(case, on_device, to_device(dy, args.device), cache, mask_rng)
    row = dict(zip(("fwd", "bwd", "fb"), map(timer.ms, calls)))
    amount, unit = case.work(on_device, y)
    row["rate"] = f"{amount / (row['fwd'] * 1e-3) / 1e9:.1f} {unit}"
    if torch is not None:
        torch_timed, torch_y = torch_calls(torch, case, arrays, dy, args.device)
        row.update(zip(("t_fwd", "t_bwd", "t_fb"), map(timer.ms, torch_timed)))
        row["err_y"] = difference(y, torch_y, case.random)
        row["err_grad"] = max(difference(g, want, case.random) for g, want in
                              zip(grads_of(calls[1]()), torch_timed[1]()))
    row["iqr"] = timer.iqr
    return row


def ms(value) -> str:
    """A time in ms with about three significant digits."""
    spec = ".1f" if value is None or value >= 10 else ".2f" if value >= 1 else ".3f"
    return format_cell(value, spec)


def format_row(case: Case, row: dict) -> str:
    cells = [case.name, case.shape]
    for mine, theirs in (("fwd", "t_fwd"), ("bwd", "t_bwd"), ("fb", "t_fb")):
        cells += [ms(row[mine]), ms(row.get(theirs)), format_ratio(row[mine], row.get(theirs))]
    return table_row(cells + [row["rate"], f"{row['iqr']:.0f}%"], COLUMNS)


def copy_rates(xp, args) -> str:
    """A yardstick for the GB/s column: copying relu1_1's input into memory already mapped,
    and into a fresh array (as every op's output is)."""
    src = xp.ones((1, 64, 698, 698), np.dtype(args.dtype))
    dst = xp.empty_like(src)
    rates = [2 * src.nbytes / time_call(fn, repeat=args.repeat, warmup=args.warmup, xp=xp,
                                        pause=0.1).median / 1e9
             for fn in (lambda: xp.copyto(dst, src), src.copy)]
    return (f"yardstick: copying {src.nbytes / 1e6:.0f} MB moves {rates[0]:.1f} GB/s into an "
            f"array already mapped, {rates[1]:.1f} GB/s into a fresh one (x.copy())")


def check_line(rows: dict) -> str:
    """The worst forward and gradient differences against torch, and where they were."""
    worst_y = max(rows, key=lambda name: rows[name]["err_y"])
    worst_g = max(rows, key=lambda name: rows[name]["err_grad"])
    return (f"check: forward outputs agree with torch to max|diff|/max|y| <= "
            f"{rows[worst_y]['err_y']:.1e} ({worst_y}), gradients to <= "
            f"{rows[worst_g]['err_grad']:.1e} ({worst_g}); dropout where both kept a value")


def main(argv=None) -> int:
    args = parse_args(argv)
    run = begin(args, "bench_layers.py", COLUMNS, MIN_TIME)
    if run is None:
        return 2
    rng = np.random.default_rng(SEED)
    rows = {}
    for name in args.layers:
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        rows[name] = measure(CASES[name], args, run.torch, run.xp, rng)
        print(format_row(CASES[name], rows[name]), flush=True)
    print("times in ms; ratio = minifcn / torch (above 1: minifcn is slower); bwd = backward "
          "alone, on one forward's cache / graph")
    print("mf rate = minifcn's forward: GB/s of the bytes it must at least read and write "
          "(inputs and output; crop: the kept block twice), or GF/s for transposed "
          "convolutions (2*C_in*H*W*C_out*KH*KW)")
    print("IQR = the widest interquartile range of the row's six timings, in % of its median")
    print(copy_rates(run.xp, args))
    print(run.other_load())
    if run.torch is not None and rows:
        print(check_line(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
