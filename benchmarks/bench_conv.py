"""Time minifcn's conv2d beside torch.nn.functional.conv2d on VGG16 / FCN layer shapes.

    python benchmarks/bench_conv.py                       # all layers, CPU, float32
    python benchmarks/bench_conv.py --layers conv1_2 fc6 --repeat 20
    python benchmarks/bench_conv.py --device cuda         # CuPy, beside torch CUDA if it has one

Every figure is the median of ``--repeat`` calls after ``--warmup`` untimed ones, minifcn and
torch measured in the same process on the same inputs. Ratios are minifcn / torch (above 1:
minifcn is slower). CPU calls are timed with the host clock, GPU calls with CUDA events.
"""
from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

import numpy as np

from _common import Timer, add_options, begin, parse, torch_wait  # (script directory)
from minifcn.backend import to_device
from minifcn.bench import conv_flops, format_cell, format_ratio, relative_difference, table_row
from minifcn.ops import conv2d_backward, conv2d_forward, conv_output_size


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
    def shapes(self) -> str:
        return (f"{self.C}->{self.F} k{self.kernel} p{self.padding} "
                f"{self.size}->{self.out}")


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
    x = rng.standard_normal((1, layer.C, layer.size, layer.size)).astype(dtype)
    fan_in = layer.C * layer.kernel ** 2
    w = (rng.standard_normal((layer.F, layer.C, layer.kernel, layer.kernel))
         * np.sqrt(2.0 / fan_in)).astype(dtype)
    b = rng.standard_normal(layer.F).astype(dtype)
    dy = rng.standard_normal((1, layer.F, layer.out, layer.out)).astype(dtype)
    return x, w, b, dy


def minifcn_calls(layer: Layer, arrays, device: str):
    x, w, b, dy = (to_device(a, device) for a in arrays)

    def forward():
        return conv2d_forward(x, w, b, padding=layer.padding)[0]

    def forward_backward():
        _, cache = conv2d_forward(x, w, b, padding=layer.padding)
        return conv2d_backward(dy, cache)

    return forward, forward_backward


def torch_calls(torch, layer: Layer, arrays, device: str):
    x, w, b, dy = (torch.from_numpy(a).to(device) for a in arrays)
    leaves = tuple(t.clone().requires_grad_() for t in (x, w, b))
    conv = torch.nn.functional.conv2d
    wait = torch_wait(torch, device)

    def forward():
        y = conv(x, w, b, padding=layer.padding)
        wait()
        return y

    def forward_backward():
        y = conv(*leaves, padding=layer.padding)
        grads = torch.autograd.grad(y, leaves, dy)   # dx, dw, db; no .grad accumulation
        wait()
        return grads

    return forward, forward_backward


def measure(layer: Layer, args, torch, xp, rng) -> dict:
    arrays = make_inputs(layer, np.dtype(args.dtype), rng)
    timer = Timer(args, xp)
    mf_fwd, mf_fb = minifcn_calls(layer, arrays, args.device)
    row = {"fwd": timer.ms(mf_fwd), "fb": timer.ms(mf_fb)}
    flops = conv_flops(arrays[0].shape, arrays[1].shape, (layer.out, layer.out))
    row["gflops"] = flops / (row["fwd"] * 1e-3) / 1e9
    if torch is not None:
        t_fwd, t_fb = torch_calls(torch, layer, arrays, args.device)
        row["t_fwd"], row["t_fb"] = timer.ms(t_fwd), timer.ms(t_fb)
        row["err"] = relative_difference(mf_fwd(), t_fwd().cpu().numpy())
    row["iqr"] = timer.iqr
    return row


def format_row(layer: Layer, row: dict) -> str:
    cells = (layer.name, layer.shapes, format_cell(row["fwd"]), format_cell(row.get("t_fwd")),
             format_ratio(row["fwd"], row.get("t_fwd")), format_cell(row["fb"]),
             format_cell(row.get("t_fb")), format_ratio(row["fb"], row.get("t_fb")),
             format_cell(row["gflops"], ".0f"), f"{row['iqr']:.0f}%")
    return table_row(cells, COLUMNS)


def main(argv=None) -> int:
    args = parse_args(argv)
    run = begin(args, "bench_conv.py", COLUMNS)
    if run is None:
        return 2
    rng = np.random.default_rng(20261121)
    worst = 0.0
    for name in args.layers:
        layer = LAYERS[name]
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        row = measure(layer, args, run.torch, run.xp, rng)
        worst = max(worst, row.get("err", 0.0))
        print(format_row(layer, row), flush=True)
    print("ratio = minifcn / torch (above 1: minifcn is slower); "
          "mf GF/s = 2*N*F*OH*OW*C*KH*KW / minifcn fwd median")
    print("IQR = the widest interquartile range of the row's four timings, in % of its median")
    print(run.other_load())
    if run.torch is not None:
        print(f"check: forward outputs agree with torch to max|diff|/max|y| = {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
