"""``cupyx.profiler.benchmark`` emulated with the host clock: the emulation has no GPU
clock, so ``gpu_times`` are the host times of calls that finish when they return."""
from __future__ import annotations

import math
import time

import numpy


class PerfCaseResult:
    def __init__(self, name, times, devices):
        self.name = name
        self.cpu_times = numpy.asarray(times)
        self.gpu_times = numpy.asarray([times] * len(devices))
        self.devices = devices

    def __str__(self):
        return f"{self.name}: CPU {1e6 * numpy.mean(self.cpu_times):.1f} us (cupy emulation)"


def benchmark(func, args=(), kwargs={}, n_repeat=10000, *, name=None, n_warmup=10,  # noqa: B006
              max_duration=math.inf, devices=None):
    for _ in range(n_warmup):
        func(*args, **kwargs)
    times, start = [], time.perf_counter()
    while len(times) < n_repeat and time.perf_counter() - start < max_duration:
        t = time.perf_counter()
        func(*args, **kwargs)
        times.append(time.perf_counter() - t)
    return PerfCaseResult(name or getattr(func, "__name__", "func"), times,
                          tuple(devices or (0,)))
