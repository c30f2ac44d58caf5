"""What the benchmark scripts share beyond ``minifcn.bench``: their command-line options, the
start of a run (array module and torch for ``--device``, header, table titles, the timer),
and the profile scripts' stage lines.

The scripts import it as ``_common`` (Python puts the script's own folder on ``sys.path``).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import NamedTuple

import numpy as np

from minifcn.bench import (cpu_seconds, header_lines, import_torch, other_load, table_head,
                           time_call)
from minifcn.bench.measure import make_timer


def add_options(parser, layers) -> None:
    """The options every benchmark takes: --repeat, --warmup, --layers (a subset of
    ``layers``), --device, --dtype, --no-torch."""
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per figure "
                        "(default 10); the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--layers", nargs="+", choices=list(layers), default=list(layers),
                        metavar="LAYER", help=f"a subset of: {' '.join(layers)} (default all)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: NumPy beside torch CPU; cuda: CuPy beside torch CUDA")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--no-torch", action="store_true", help="leave out the torch columns")


def parse(parser, argv=None, warmup: bool = True):
    """Parse ``argv`` and check the counts (``--warmup`` too where the parser has it)."""
    args = parser.parse_args(argv)
    if args.repeat < 1 or (warmup and args.warmup < 0):
        parser.error("--repeat must be >= 1" + (" and --warmup >= 0" if warmup else ""))
    return args


class Run(NamedTuple):
    """A started run: the array module for ``--device`` (NumPy or CuPy), torch or None, the
    machine's and this process's CPU time and the clock at the start, and ``timer(fn) ->
    Timing`` with the run's --repeat, --warmup and min_time."""
    xp: object
    torch: object
    cpu_start: object
    started: float
    timer: object

    def other_load(self) -> str:
        """The noise footer: CPU time other processes used since the start."""
        return other_load(self.cpu_start, time.perf_counter() - self.started)


def begin(args, script: str, columns, min_time: float = 0.0):
    """Find the array module and torch for ``args``, print the header and the table's titles,
    and return the :class:`Run`; None, after saying why on stderr, when ``--device cuda``
    cannot run."""
    xp = np
    if args.device == "cuda":
        from minifcn.backend import import_cupy
        try:
            xp = import_cupy()
        except RuntimeError as err:
            print(f"{script}: --device cuda: {err}", file=sys.stderr)
            return None
    torch, torch_note = import_torch(args.device, args.no_torch)
    run = Run(xp, torch, cpu_seconds(), time.perf_counter(),
              make_timer(repeat=args.repeat, warmup=args.warmup, xp=xp, min_time=min_time))
    print("\n".join(header_lines(repeat=args.repeat, warmup=args.warmup, torch=torch,
                                 torch_note=torch_note, xp=xp, min_time=min_time,
                                 inputs=f"batch 1, {args.dtype}, device {args.device}")))
    print("\n".join(table_head(columns)), flush=True)
    return run


# --- Reference, fast path and torch, side by side ---------------------------------------------

REF_FAST_TORCH = (("ref fwd", 8), ("fast", 7), ("torch", 7), ("r/f", 5), ("f/t", 5),
                  ("ref bwd", 8), ("fast", 7), ("torch", 7), ("r/f", 5), ("f/t", 5))
RATIO_LEGEND = ("r/f = ref / fast (above 1: the fast path is faster); f/t = fast / torch "
                "(above 1: minifcn is slower)")


def minifcn_pair(timer, forward, backward, algorithm):
    """(forward, backward) Timings of a minifcn op under ``algorithm``: ``forward()`` returns
    ``(y, cache)``, ``backward(cache)`` is timed on one forward's cache."""
    from minifcn.ops import using

    with using(algorithm):
        _, cache = forward()
        return timer(forward), timer(lambda: backward(cache))


def torch_pair(torch, timer, forward, inputs, dy):
    """(forward, backward) Timings of a torch op ``forward()`` and of its autograd backward
    to ``inputs`` on one forward's graph."""
    y = forward()
    return timer(forward), timer(lambda: torch.autograd.grad(y, inputs, torch.as_tensor(dy),
                                                             retain_graph=True))


def ref_fast_torch_cells(ref, fast, theirs) -> list:
    """The cells under :data:`REF_FAST_TORCH` of three (forward, backward) Timings pairs
    (``theirs`` None without torch): ms, ref/fast and fast/torch per phase."""
    from minifcn.bench import format_sig

    cells = []
    for phase in (0, 1):
        ms = [None if t is None else t[phase].median * 1e3 for t in (ref, fast, theirs)]
        cells += [format_sig(m) for m in ms]
        cells += [f"{ms[0] / ms[1]:.2f}", "-" if ms[2] is None else f"{ms[1] / ms[2]:.2f}"]
    return cells


# --- The profile scripts: one layer's stages, one line each -----------------------------------

STAGE_TITLES = f"{'stage':<36}{'ms':>8}{'GFLOP/s':>9}"


def parse_profile(description: str, layers, default: str, argv=None, what_if_note: str = ""):
    """The profile scripts' options: --layer, --repeat, --dtype, --what-if."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--layer", choices=list(layers), default=default)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--what-if", action="store_true", help="also time alternatives a "
                        "tuning pass could take" + what_if_note)
    return parse(parser, argv, warmup=False)


def print_stages(rows, repeat: int) -> None:
    """Time each ``(name, callable, flops)`` row (median of ``repeat`` calls after one
    warm-up, or of as many as fill 50 ms) and print its line under ``STAGE_TITLES`` as soon as it is measured: the name,
    the milliseconds, and GFLOP/s where ``flops`` is not 0; then the noise footer."""
    print(STAGE_TITLES)
    start, started = cpu_seconds(), time.perf_counter()
    for name, fn, flops in rows:
        seconds = time_call(fn, repeat=repeat, warmup=1, min_time=0.05).median
        rate = f"{flops / seconds / 1e9:9.0f}" if flops else ""
        print(f"{name:<36}{seconds * 1e3:8.{1 if seconds >= 1e-3 else 3}f}{rate}", flush=True)
    print(other_load(start, time.perf_counter() - started))
