"""conv2d's backward with and without its two CPU choices, at FCN-8s's 3x3 shapes (500x500).

    python benchmarks/compare_conv_backward.py              # 7 rounds, every layer
    python benchmarks/compare_conv_backward.py --rounds 3 --layers conv1_2 conv5_1

Two choices of the fast paths (``minifcn/ops/fast/``):

* dx for stride 1 as a correlation of dy with the flipped kernel (``fast/correlation.py``:
  a convolution of dy, by Winograd from 128 filters up) against ``W^T dY`` and col2im
  (``fast/gemm.py``: nine shifted adds onto a zeroed dx);
* dW as ``(im2col(x) @ dY^T)^T`` against ``dY @ im2col(x)^T`` (``gemm.TRANSPOSED_DW_FILTERS``;
  the GEMM path itself, also where Winograd would take the layer).

Each variant runs through minifcn's own fast path with the switch set one way or the other,
under the default workspace limit. The variants take turns, round after round, so that
load from elsewhere falls on both alike; the first round is a warm-up. Prints the minimum
and the median of each and the ratio of the minima (below 1: the choice pays).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from minifcn.bench import cpu_seconds, header_lines, other_load
from minifcn.ops.fast import correlation, gemm

LAYERS = {  # C, F, input size of FCN-8s at 500x500 (padding 100 on conv1_1)
    "conv1_2": (64, 64, 698), "conv2_2": (128, 128, 349), "conv3_2": (256, 256, 175),
    "conv4_2": (512, 512, 88), "conv5_1": (512, 512, 44)}
GEOMETRY = ((1, 1), (1, 1), (1, 1))                                  # stride, padding, dilation


def variants(x, w, dy):
    """(stage, variant, switch setter, call) for the two choices, each both ways."""
    def set_transposed(on):
        gemm.TRANSPOSED_DW_FILTERS = 256 if on else 0

    def nothing():
        pass

    by_col2im = lambda: gemm.input_grad(dy, w, x.shape, *GEOMETRY)              # noqa: E731
    by_correlation = lambda: correlation.input_grad(dy, w, x.shape, *GEOMETRY)  # noqa: E731
    dw = lambda: gemm.weight_grad(dy, x, w.shape, *GEOMETRY)                   # noqa: E731
    return [("dx", "col2im", nothing, by_col2im),
            ("dx", "correlation", nothing, by_correlation),
            ("dW", "dY @ col^T", lambda: set_transposed(False), dw),
            ("dW", "(col @ dY^T)^T", lambda: set_transposed(True), dw)]


def compare(name, rounds):
    C, F, H = LAYERS[name]
    rng = np.random.default_rng(20261121)
    x = rng.standard_normal((1, C, H, H), dtype=np.float32)         # (1, C, H, W)
    w = rng.standard_normal((F, C, 3, 3), dtype=np.float32) * 0.05  # (F, C, 3, 3)
    dy = rng.standard_normal((1, F, H, H), dtype=np.float32)        # (1, F, OH, OW), P = 1
    runs = variants(x, w, dy)
    times = {(stage, variant): [] for stage, variant, _, _ in runs}
    for r in range(rounds + 1):
        for stage, variant, switch, call in runs:
            switch()
            start = time.perf_counter()
            call()
            if r:                                                    # round 0 warms up
                times[stage, variant].append(time.perf_counter() - start)
    for stage, variant, switch, _ in runs[1::2]:                     # leave the choices on
        switch()
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--layers", nargs="+", choices=list(LAYERS), default=list(LAYERS))
    args = parser.parse_args(argv)
    print("\n".join(header_lines(repeat=args.rounds, warmup=1, torch_note="not used here",
                                 inputs="batch 1, float32, device cpu")))
    print(f"{'layer':9}{'stage':6}{'variant':>16}{'min ms':>9}{'med ms':>9}{'ratio':>7}")
    start, began = cpu_seconds(), time.perf_counter()
    for name in args.layers:
        times = compare(name, args.rounds)
        for (stage, variant), ts in times.items():
            base = min(times[next(k for k in times if k[0] == stage)])
            print(f"{name:9}{stage:6}{variant:>16}{min(ts) * 1e3:9.0f}"
                  f"{np.median(ts) * 1e3:9.0f}{min(ts) / base:7.2f}", flush=True)
    print(other_load(start, time.perf_counter() - began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
