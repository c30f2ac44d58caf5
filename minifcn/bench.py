r"""Timing helpers for benchmarks: medians of repeated calls, FLOP counts, the machine they ran
on (CPU, BLAS, threads, other load), torch to compare with, and plain-text table rows.

Nothing here prints; ``benchmarks/`` scripts and the ``minifcn bench`` command print the
strings these functions return. On the CPU a call is timed with the host clock
(``time.perf_counter``). On a GPU the host clock measures only the kernel launches, so CuPy
work is timed with CUDA events through ``cupyx.profiler.benchmark``, imported lazily so that
the CPU path never needs CuPy.
"""
from __future__ import annotations

import ctypes
import datetime
import math
import os
import platform
import time
from typing import Callable, NamedTuple

import numpy

from . import __version__
from .backend import asnumpy

# Seconds to pause before timing a callable (``time_call(..., pause=SETTLE)``). A thread pool
# spins for a while after its last call (OpenBLAS's workers for about 0.1 s), and on 2 cores
# the other library's spinning pool slows the next one's parallel regions: torch's conv5_1
# forward took 9 ms right after minifcn's and 5 ms after this pause (benchmarks/README.md).
SETTLE = 0.3

MAX_CALLS = 1000   # the most calls time_call's min_time may add up to


class Timing(NamedTuple):
    """Summary of timed calls, in seconds. ``times`` holds every measured call."""
    median: float
    q1: float
    q3: float
    min: float
    max: float
    times: tuple

    @property
    def iqr(self) -> float:
        """Interquartile range ``q3 - q1``: the spread of the middle half of the calls."""
        return self.q3 - self.q1

    @classmethod
    def from_times(cls, times) -> "Timing":
        t = numpy.asarray(times, dtype=numpy.float64)
        q1, median, q3 = numpy.percentile(t, [25, 50, 75])
        return cls(float(median), float(q1), float(q3), float(t.min()), float(t.max()),
                   tuple(float(s) for s in t))


def time_call(fn: Callable[[], object], *, repeat: int, warmup: int = 1,
              xp=numpy, pause: float = 0.0, min_time: float = 0.0) -> Timing:
    """Sleep ``pause`` seconds, call ``fn()`` ``warmup`` times untimed, then ``repeat`` times
    timed, or more while they take less than ``min_time`` in all.

    Parameters
    ----------
    fn : callable taking no arguments (bind them with a lambda or ``functools.partial``)
    repeat : int >= 1, the number of timed calls
    warmup : int >= 0, untimed calls first (memory pools, lazily compiled kernels, caches)
    xp : ``numpy`` (host clock) or ``cupy`` (CUDA events on the current device and stream)
    pause : seconds >= 0 to sleep first, so that the thread pools of whatever ran before stop
        spinning (see ``SETTLE``)
    min_time : seconds >= 0; where ``repeat`` calls take less in all, more are timed until
        they take that long (at most ``MAX_CALLS``), so that the median of a call of a few
        microseconds rests on enough calls to rise above the scheduler's noise

    Returns
    -------
    Timing : median, quartiles, min and max of the per-call times, in seconds.
    """
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    for name, seconds in (("pause", pause), ("min_time", min_time)):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"{name} must be a number of seconds >= 0, got {seconds!r}")
    time.sleep(pause)
    if xp is numpy:
        return _time_host(fn, repeat, warmup, min_time)
    return _time_gpu(fn, repeat, warmup, min_time)


def _time_host(fn, repeat, warmup, min_time) -> Timing:
    for _ in range(warmup):
        fn()
    times, total = [], 0.0
    while len(times) < repeat or (total < min_time and len(times) < MAX_CALLS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        total += times[-1]
    return Timing.from_times(times)


def _time_gpu(fn, repeat, warmup, min_time) -> Timing:
    from cupyx.profiler import benchmark  # CuPy >= 10; minifcn[gpu] asks for >= 13
    name = getattr(fn, "__name__", "fn")
    # gpu_times: (len(devices), n_repeat), from events recorded on the current stream
    # before and after each call; devices defaults to the current one only.
    times = benchmark(fn, n_repeat=repeat, n_warmup=warmup, name=name).gpu_times[0]
    if times.sum() < min_time:   # time again, as many calls as fill min_time at this pace
        calls = math.ceil(min_time / max(float(numpy.median(times)), 1e-9))
        calls = min(MAX_CALLS, max(repeat, calls))
        times = benchmark(fn, n_repeat=calls, n_warmup=0, name=name).gpu_times[0]
    return Timing.from_times(times)


def conv_flops(x_shape, w_shape, out_hw) -> int:
    """Floating-point operations of a convolution's forward, counting a multiply-add as two:
    ``2 * N * F * OH * OW * C * KH * KW`` (bias and padding not counted).

    Parameters
    ----------
    x_shape : (N, C, H, W)
    w_shape : (F, C, KH, KW)
    out_hw : (OH, OW)
    """
    N, C = int(x_shape[0]), int(x_shape[1])
    F, CW, KH, KW = (int(s) for s in w_shape)
    if CW != C:
        raise ValueError(f"w_shape {tuple(w_shape)} expects {CW} input channels but x_shape "
                         f"{tuple(x_shape)} has {C}")
    OH, OW = (int(s) for s in out_hw)
    return 2 * N * F * OH * OW * C * KH * KW


def relative_difference(got, want) -> float:
    """``max|got - want| / max|want|`` in float64, for NumPy or CuPy arrays (or numbers):
    how far a result is from a reference, measured against the reference's scale."""
    got = numpy.asarray(asnumpy(got), numpy.float64)
    want = numpy.asarray(asnumpy(want), numpy.float64)
    scale = numpy.abs(want).max(initial=0.0)
    return float(numpy.abs(got - want).max(initial=0.0) / (scale if scale > 0 else 1.0))


def import_torch(device: str = "cpu", skip: bool = False):
    """``(torch, None)`` to compare with on ``device`` (``"cpu"`` or ``"cuda"``), or
    ``(None, why)`` when it is left out, missing, or has no CUDA. For ``"cuda"`` TF32 is
    switched off, so that float32 is compared with float32: cuDNN convolutions default to
    TF32 on Ampere and later, CuPy's GEMMs do not (unless ``CUPY_TF32=1``)."""
    if skip:
        return None, "left out (--no-torch)"
    try:
        import torch
    except ImportError:
        return None, "not installed (pip install torch==2.13.0); torch columns skipped"
    if device == "cuda" and not torch.cuda.is_available():
        return None, f"{torch.__version__} has no usable CUDA; torch columns skipped"
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch, None


# --- Where a benchmark ran ---------------------------------------------------------------------

def blas_info() -> dict:
    """The BLAS NumPy calls for ``@``: name, version and build configuration, and where they
    can be read, the threads it runs and the CPU kernels it picked at run time (``core``).
    Values are strings; unknown ones are ``"?"``."""
    info = {"name": "?", "version": "?", "config": "?", "threads": "?", "core": "?"}
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(name=str(blas.get("name", "?")), version=str(blas.get("version", "?")),
                    config=str(blas.get("openblas configuration", "?")))
    except Exception:  # numpy < 1.26 has no mode="dicts"; the description is optional
        pass
    info.update(_blas_runtime())
    return info


def _blas_runtime() -> dict:
    """Threads and core of the BLAS loaded in this process: from threadpoolctl where it is
    installed (it is not a dependency), else asked of the loaded OpenBLAS directly (Linux),
    else the environment variable that would set the threads."""
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return {"threads": str(pools[0]["num_threads"]),
                    "core": str(pools[0].get("architecture", "?"))}
    except ImportError:
        pass
    for path in _loaded_libraries("openblas"):
        lib = ctypes.CDLL(path)  # already loaded: dlopen returns the same handle
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            get_threads = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            get_core = getattr(lib, f"{prefix}_get_corename{suffix}", None)
            if get_threads is None or get_core is None:
                continue
            get_core.restype = ctypes.c_char_p
            return {"threads": str(get_threads()), "core": get_core().decode()}
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(variable):
            return {"threads": f"{os.environ[variable]} (from {variable})"}
    return {}


def _loaded_libraries(fragment: str) -> list:
    """Paths of shared libraries mapped into this process whose file name contains
    ``fragment``; empty where /proc/self/maps does not exist."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if ".so" in line}
    except OSError:
        return []
    return sorted(p for p in paths if fragment in os.path.basename(p))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header_lines(*, repeat: int, warmup: int, inputs: str, torch=None, torch_note: str = "",
                 xp=numpy, min_time: float = 0.0) -> list:
    """The ``# ``-prefixed lines a benchmark's output starts with: date, machine, Python,
    NumPy and minifcn versions, NumPy's BLAS and threads, torch (or ``torch_note``, why it
    is missing), the GPU for CuPy ``xp``, and how calls are timed (``repeat``, ``warmup`` and
    ``min_time`` as given to :func:`time_call`); ``inputs`` ends the last line (e.g.
    ``"batch 1, float32, device cpu"``)."""
    blas = blas_info()
    lines = [
        f"date      {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine   {cpu_model()}, {os.cpu_count()} logical CPUs; {platform.platform()}",
        f"python    {platform.python_version()}; numpy {numpy.__version__}; "
        f"minifcn {__version__}",
        f"numpy BLAS {blas['name']} {blas['version']}, threads {blas['threads']}, "
        f"core {blas['core']}",
        f"torch     {torch_note}" if torch is None else
        f"torch     {torch.__version__}, get_num_threads() = {torch.get_num_threads()}",
    ]
    if xp is not numpy:
        props = xp.cuda.runtime.getDeviceProperties(xp.cuda.runtime.getDevice())
        lines.append(f"GPU       {props['name'].decode()}; cupy {xp.__version__}, "
                     f"CUPY_TF32={os.environ.get('CUPY_TF32', '0')}"
                     + ("; torch TF32 off" if torch is not None else ""))
    clock = "host clock" if xp is numpy else "CUDA events (cupyx.profiler.benchmark)"
    calls = f"{repeat} calls" if not min_time else \
        f"{repeat}+ calls (as many as fill {1e3 * min_time:g} ms)"
    lines.append(f"timing    median of {calls} after {warmup} warm-up, {clock}; {inputs}")
    return ["# " + line for line in lines]


def cpu_seconds():
    """(busy CPU seconds of the whole machine, CPU seconds of this process) since boot and
    start; None where /proc/stat is missing. Their difference over a run is other work."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]   # all but idle and iowait (steal counts as busy)
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_load(start, seconds: float) -> str:
    """A line saying how much CPU time other processes used since ``start = cpu_seconds()``,
    ``seconds`` of wall-clock time ago: a benchmark's noise footer."""
    end = cpu_seconds()
    if start is None or end is None:
        return "other work on the machine: unknown (no /proc/stat)"
    other = max(0.0, (end[0] - start[0]) - (end[1] - start[1]))
    return (f"other work on the machine during the run: {other:.1f} CPU-s in {seconds:.0f} s "
            f"({100 * other / (seconds * os.cpu_count()):.0f}% of {os.cpu_count()} CPUs)")


# --- Plain-text tables -------------------------------------------------------------------------

def format_cell(value, spec: str = ".1f") -> str:
    """``value`` formatted with ``spec``, or ``"-"`` for None (a figure not measured)."""
    return "-" if value is None else format(value, spec)


def format_ratio(numerator, denominator, spec: str = ".2f") -> str:
    """``numerator / denominator`` formatted, or ``"-"`` when either is None."""
    if numerator is None or denominator is None:
        return "-"
    return format(numerator / denominator, spec)


def table_row(cells, columns, left: int = 2) -> str:
    """One line of a table: ``cells`` (strings) under ``columns`` (``(title, width)`` pairs),
    two spaces apart, the first ``left`` aligned left (names), the others right (figures)."""
    return "  ".join(f"{cell:<{width}}" if i < left else f"{cell:>{width}}"
                     for i, (cell, (_, width)) in enumerate(zip(cells, columns)))


def table_head(columns, left: int = 2) -> list:
    """The titles line of ``columns`` and a rule of dashes as long."""
    titles = table_row([title for title, _ in columns], columns, left)
    return [titles, "-" * len(titles)]
