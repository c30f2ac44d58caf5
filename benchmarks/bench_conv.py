"""Time minifcn's conv2d beside torch.nn.functional.conv2d on VGG16 / FCN layer shapes.

    python benchmarks/bench_conv.py                       # all layers, CPU, float32
    python benchmarks/bench_conv.py --layers conv1_2 fc6 --repeat 20
    python benchmarks/bench_conv.py --device cuda         # CuPy, beside torch CUDA if it has one

Every figure is the median of ``--repeat`` calls after ``--warmup`` untimed ones, minifcn and
torch measured in the same process on the same inputs, by ``minifcn.bench.measure`` (which
``minifcn bench ops`` uses for FCN-8s's convolutions at its own sizes). Ratios are minifcn /
torch (above 1: minifcn is slower). CPU calls are timed with the host clock, GPU calls with
CUDA events.
"""
from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

import numpy as np

from _common import add_options, begin, parse  # (script directory)
from minifcn.bench import format_cell, format_ratio, table_row
from minifcn.bench.cases import conv_case
from minifcn.bench.measure import measure_case
from minifcn.ops import conv_output_size

PHASES = ("forward", "forward_backward")


class Layer(NamedTuple):
    name: str
    C: int          # input channels
    F: int          # output channels
    size: int       # input height = width
    kernel: int
    padding: int

    @property
    def out(self) -> int:
        return conv_output_size(self.size, self.kernel, 1, self.padding)

    @property
    def case(self):
        """The layer as a ``minifcn.bench.cases.Case``: conv2d with bias, batch 1."""
        return conv_case(self.name, (1, self.C, self.size, self.size),
                         (self.F, self.C, self.kernel, self.kernel), padding=self.padding)

    @property
    def shapes(self) -> str:
        return self.case.shape


LAYERS = {layer.name: layer for layer in (
    Layer("conv1_1", 3, 64, 500, 3, 100),    # FCN's first layer: padding 100 on a 500x500 image
    Layer("conv1_2", 64, 64, 224, 3, 1),     # VGG16 at 224x224
    Layer("conv3_1", 128, 256, 56, 3, 1),
    Layer("conv5_1", 512, 512, 14, 3, 1),
    Layer("fc6", 512, 4096, 22, 7, 0),       # FCN's fc6 as a 7x7 conv on pool5 of a 500x500
)}

COLUMNS = (("layer", 8), ("shapes", 24), ("mf fwd ms", 10), ("torch fwd", 10), ("ratio", 6),
           ("mf f+b ms", 10), ("torch f+b", 10), ("ratio", 6), ("mf GF/s", 8), ("IQR", 5))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Median time of minifcn's conv2d forward and forward+backward on VGG16 "
                    "layer shapes (batch 1), beside torch.nn.functional.conv2d in the same run.")
    add_options(parser, LAYERS)
    return parse(parser, argv)


def make_inputs(layer: Layer, dtype, rng):
    """x, weight (He-scaled), bias and an upstream gradient dy for ``layer``."""
    arrays = layer.case.inputs(rng, np.dtype(dtype))
    dy = rng.standard_normal((1, layer.F, layer.out, layer.out)).astype(dtype)
    return arrays["x"], arrays["weight"], arrays["bias"], dy


def format_row(row) -> str:
    ms = {(phase, side): None if getattr(row, side) is None else 1e3 * row.seconds(phase, side)
          for phase in PHASES for side in ("minifcn", "torch")}
    cells = [row.name, row.shape]
    for phase in PHASES:
        mine, theirs = ms[(phase, "minifcn")], ms[(phase, "torch")]
        cells += [format_cell(mine), format_cell(theirs), format_ratio(mine, theirs)]
    cells += [format_cell(row.gflops("forward"), ".0f"), f"{100 * row.spread:.0f}%"]
    return table_row(cells, COLUMNS)


def main(argv=None) -> int:
    args = parse_args(argv)
    run = begin(args, "bench_conv.py", COLUMNS)
    if run is None:
        return 2
    worst = 0.0
    for name in args.layers:
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        row = measure_case(LAYERS[name].case, run.timer, phases=PHASES, device=args.device,
                           dtype=args.dtype, torch=run.torch)
        worst = max(worst, (row.error or {}).get("forward", 0.0))
        print(format_row(row), flush=True)
    print("ratio = minifcn / torch (above 1: minifcn is slower); "
          "mf GF/s = 2*N*F*OH*OW*C*KH*KW / minifcn fwd median")
    print("IQR = the widest interquartile range of the row's four timings, in % of its median")
    print(run.other_load())
    if run.torch is not None:
        print(f"check: forward outputs agree with torch to max|diff|/max|y| = {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
