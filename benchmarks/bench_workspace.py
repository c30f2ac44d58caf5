"""What the workspace pool saves and what a workspace limit costs, on conv2d's CPU path.

    python benchmarks/bench_workspace.py                     # conv1_2 and conv3_1, 4 chunks
    python benchmarks/bench_workspace.py --chunks 8 --repeat 9 --layers conv1_2

Three settings are timed on the same inputs, interleaved call by call so that a change in
the machine's load hits all three alike: ``no pool`` (every scratch buffer fresh, as before
the pool: ``minifcn.memory.pooling(scratch=False)``), ``pool`` (the default), and ``pool+limit``
(a workspace limit of a quarter of the layer's im2col buffer, so the GEMMs run in
``--chunks`` chunks of output rows). Figures are medians in ms of forward, backward (from
one cached forward) and forward+backward; ratios are against ``pool``. The pool may keep
1 GiB here (instead of 3x the limit), so that alternating the settings does not empty it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from typing import NamedTuple

import numpy as np

from minifcn import memory
from minifcn.ops import conv2d_backward, conv2d_forward

SETTINGS = ("no pool", "pool", "pool+limit")


class Layer(NamedTuple):
    C: int          # input channels
    F: int          # output channels
    size: int       # input height = width; 3x3 kernel, padding 1, so the output's too
    kernel: int = 3
    padding: int = 1

    @property
    def out(self) -> int:
        return self.size


LAYERS = {"conv1_2": Layer(64, 64, 224), "conv2_2": Layer(128, 128, 112),
          "conv3_1": Layer(128, 256, 56), "conv4_1": Layer(256, 512, 28),
          "conv1_2@500": Layer(64, 64, 500)}


def make_inputs(layer: Layer, dtype, rng):
    x = rng.standard_normal((1, layer.C, layer.size, layer.size)).astype(dtype)
    w = (rng.standard_normal((layer.F, layer.C, 3, 3)) * np.sqrt(2 / (9 * layer.C))).astype(dtype)
    b = rng.standard_normal(layer.F).astype(dtype)
    dy = rng.standard_normal((1, layer.F, layer.out, layer.out)).astype(dtype)
    return x, w, b, dy


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", nargs="+", choices=list(LAYERS),
                        default=["conv1_2", "conv3_1"])
    parser.add_argument("--chunks", type=int, default=4, help="chunks forced by the limit")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per figure")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    return parser.parse_args(argv)


def setting(name: str, limit: int):
    """A context manager for one of SETTINGS."""
    if name == "no pool":
        return memory.pooling(scratch=False)
    return memory.limited(limit if name == "pool+limit" else None)


def time_layer(layer, args) -> dict:
    x, w, b, dy = make_inputs(layer, np.dtype(args.dtype), np.random.default_rng(0))
    col_bytes = layer.C * layer.kernel ** 2 * layer.out ** 2 * x.itemsize
    limit = -(-col_bytes // args.chunks)
    calls = {
        "fwd": lambda: conv2d_forward(x, w, b, padding=layer.padding),
        "bwd": lambda cache: conv2d_backward(dy, cache),
    }
    times = {(s, part): [] for s in SETTINGS for part in ("fwd", "bwd", "f+b")}
    for repeat in range(args.repeat + 1):                 # the first round warms up
        for name in SETTINGS:
            with setting(name, limit):
                t0 = time.perf_counter()
                _, cache = calls["fwd"]()
                t1 = time.perf_counter()
                calls["bwd"](cache)
                t2 = time.perf_counter()
            if repeat:
                times[name, "fwd"].append(t1 - t0)
                times[name, "bwd"].append(t2 - t1)
                times[name, "f+b"].append(t2 - t0)
    return times, col_bytes, limit


def main(argv=None) -> int:
    args = parse_args(argv)
    # Switching the limit on and off would trim the pool (it keeps 3x the limit) and make
    # "pool" miss after every "pool+limit" call: a fixed pool limit keeps each steady state.
    memory.set_scratch_pool_limit("1GiB")
    print(f"# conv2d CPU, batch 1, {args.dtype}, {args.repeat} interleaved calls per figure "
          f"(median, and min in brackets), ms; limit = im2col bytes / {args.chunks}")
    print(f"{'layer':11} {'part':4} " + " ".join(f"{s:>16}" for s in SETTINGS)
          + "  pool/no-pool  limit/pool (medians)")
    for name in args.layers:
        times, col_bytes, limit = time_layer(LAYERS[name], args)
        print(f"# {name}: im2col {col_bytes / 2**20:.1f} MiB, limit {limit / 2**20:.1f} MiB")
        for part in ("fwd", "bwd", "f+b"):
            med = [1e3 * statistics.median(times[s, part]) for s in SETTINGS]
            low = [1e3 * min(times[s, part]) for s in SETTINGS]
            cells = " ".join(f"{m:8.2f} ({v:5.1f})" for m, v in zip(med, low))
            print(f"{name:11} {part:4} {cells}  {med[1] / med[0]:12.2f}  {med[2] / med[1]:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
