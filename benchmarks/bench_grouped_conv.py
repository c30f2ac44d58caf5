"""Time grouped and depthwise conv2d: the reference, the grouped fast path, and torch.

    python benchmarks/bench_grouped_conv.py                # every shape (~10 s)
    python benchmarks/bench_grouped_conv.py --layers dw3x3 g32 --repeat 20
    python benchmarks/bench_grouped_conv.py --device cuda  # CuPy (the reference), beside torch

The shapes are DeepLab-sized: a depthwise 3x3 convolution of 256 channels at 65x65 (the
output-stride-8 map of a 520x520 image), the same with dilation 4, a depthwise 3x3 of two
64-channel 64x64 images, and a grouped 3x3 convolution with 32 groups of 8 channels (a
ResNeXt-style block) at 65x65; stride 1, padding keeping the size, no bias. Each is timed
forward and backward alone (dx and dweight, on one forward's cache), each the median of
``--repeat`` calls after ``--warmup``. ``ref`` is ``reference/conv.py``
(``set_algorithm("reference")``), ``fast`` the path ``auto`` runs (``fast/grouped.py`` on
the CPU), torch ``torch.nn.functional.conv2d`` and ``torch.autograd.grad`` in the same
process.
"""
from __future__ import annotations

import argparse
import sys

from _common import (RATIO_LEGEND, REF_FAST_TORCH, add_options,  # (script directory)
                     begin, minifcn_pair, parse, ref_fast_torch_cells, torch_pair)
from minifcn.bench import table_row
from minifcn.ops import conv2d_backward, conv2d_forward

SHAPES = {  # name: ((N, C, H, W), groups, padding, dilation); F = C, 3x3, stride 1
    "dw3x3": ((1, 256, 65, 65), 256, 1, 1),
    "dw3x3-N2": ((2, 64, 64, 64), 64, 1, 1),
    "g32": ((1, 256, 65, 65), 32, 1, 1),
    "dw3x3-d4": ((1, 256, 65, 65), 256, 4, 4),
}
COLUMNS = (("conv", 9), ("G", 4), ("shape", 14), *REF_FAST_TORCH)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser, SHAPES)
    return parse(parser, argv)


def minifcn_timings(timer, x, w, dy, options, algorithm):
    """(forward, backward) Timings of minifcn's conv2d under ``algorithm``."""
    return minifcn_pair(timer, lambda: conv2d_forward(x, w, **options),
                        lambda cache: conv2d_backward(dy, cache), algorithm)


def torch_timings(torch, timer, x, w, dy, options):
    """(forward, backward) Timings of torch's conv2d and its autograd backward."""
    tx, tw = (torch.as_tensor(a).requires_grad_() for a in (x, w))
    return torch_pair(torch, timer, lambda: torch.nn.functional.conv2d(tx, tw, **options),
                      (tx, tw), dy)


def main(argv=None) -> int:
    args = parse_args(argv)
    run = begin(args, "bench_grouped_conv.py", COLUMNS)
    if run is None:
        return 2
    xp, rng = run.xp, __import__("numpy").random.default_rng(0)
    for name in args.layers:
        (N, C, H, W), groups, padding, dilation = SHAPES[name]
        options = {"padding": padding, "dilation": dilation, "groups": groups}
        x = xp.asarray(rng.standard_normal((N, C, H, W)).astype(args.dtype))
        w = xp.asarray(rng.standard_normal((C, C // groups, 3, 3)).astype(args.dtype))
        dy = xp.asarray(rng.standard_normal((N, C, H, W)).astype(args.dtype))
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        ref = minifcn_timings(run.timer, x, w, dy, options, "reference")
        fast = minifcn_timings(run.timer, x, w, dy, options, "auto")
        theirs = (torch_timings(run.torch, run.timer, x, w, dy, options)
                  if run.torch is not None else None)
        cells = [name, str(groups), f"{N}x{C}x{H}x{W}", *ref_fast_torch_cells(ref, fast, theirs)]
        print(table_row(cells, COLUMNS, left=3), flush=True)
    print("times in ms; shape N x C x H x W (F = C, 3x3, stride 1, no bias); bwd = dx and "
          "dweight alone, on one forward's cache / graph")
    print(RATIO_LEGEND)
    print(run.other_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
