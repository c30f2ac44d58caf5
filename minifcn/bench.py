r"""Timing helpers for benchmarks: medians of repeated calls, FLOP counts, the BLAS in use.

Nothing here prints; ``benchmarks/`` scripts and the ``minifcn bench`` command format the
results. On the CPU a call is timed with the host clock (``time.perf_counter``). On a GPU the
host clock measures only the kernel launches, so CuPy work is timed with CUDA events through
``cupyx.profiler.benchmark``, imported lazily so that the CPU path never needs CuPy.
"""
from __future__ import annotations

import ctypes
import os
import time
from typing import Callable, NamedTuple

import numpy


class Timing(NamedTuple):
    """Summary of ``repeat`` timed calls, in seconds. ``times`` holds every measured call."""
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
              xp=numpy) -> Timing:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeat`` times timed.

    Parameters
    ----------
    fn : callable taking no arguments (bind them with a lambda or ``functools.partial``)
    repeat : int >= 1, the number of timed calls
    warmup : int >= 0, untimed calls first (memory pools, lazily compiled kernels, caches)
    xp : ``numpy`` (host clock) or ``cupy`` (CUDA events on the current device and stream)

    Returns
    -------
    Timing : median, quartiles, min and max of the ``repeat`` per-call times, in seconds.
    """
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if xp is numpy:
        return _time_host(fn, repeat, warmup)
    from cupyx.profiler import benchmark  # CuPy >= 10; minifcn[gpu] asks for >= 13
    result = benchmark(fn, n_repeat=repeat, n_warmup=warmup,
                       name=getattr(fn, "__name__", "fn"))
    # gpu_times: (len(devices), n_repeat), from events recorded on the current stream
    # before and after each call; devices defaults to the current one only.
    return Timing.from_times(result.gpu_times[0])


def _time_host(fn, repeat, warmup) -> Timing:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
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
