r"""Timing: the median and spread of repeated calls, after warm-up.

On the CPU a call is timed with the host clock (``time.perf_counter``). On a GPU the host
clock measures only the kernel launches, so CuPy work is timed with CUDA events through
``cupyx.profiler.benchmark``, imported lazily so that the CPU path never needs CuPy.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import numpy

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

    @property
    def spread(self) -> float:
        """``iqr / median``: how unsteady the calls were, as a fraction of their median."""
        return self.iqr / self.median if self.median > 0 else 0.0

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

