"""Where a benchmark ran: the CPU, its BLAS and threads, library versions, the GPU, and the
load other processes put on the machine meanwhile -- as header lines and as a JSON record."""
from __future__ import annotations

import ctypes
import datetime
import os
import platform

import numpy

from .._version import __version__

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
        lines.append(f"GPU       {gpu_name(xp)}; cupy {xp.__version__}, "
                     f"CUPY_TF32={os.environ.get('CUPY_TF32', '0')}"
                     + ("; torch TF32 off" if torch is not None else ""))
    clock = clock_name(xp)
    calls = f"{repeat} calls" if not min_time else \
        f"{repeat}+ calls (as many as fill {1e3 * min_time:g} ms)"
    lines.append(f"timing    median of {calls} after {warmup} warm-up, {clock}; {inputs}")
    return ["# " + line for line in lines]


def clock_name(xp=numpy) -> str:
    """How :func:`~minifcn.bench.timing.time_call` times calls of the array module ``xp``."""
    return "host clock" if xp is numpy else "CUDA events (cupyx.profiler.benchmark)"


def gpu_name(xp) -> str:
    """The name of CuPy's current GPU (``xp`` is the ``cupy`` module)."""
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.runtime.getDevice())
    return props["name"].decode()


def machine_record(*, torch=None, xp=numpy) -> dict:
    """The machine a benchmark ran on, for a JSON file: CPU model and logical CPUs, OS,
    Python, NumPy, minifcn, NumPy's BLAS (:func:`blas_info`), torch's version and threads
    (None without ``torch``), and for CuPy ``xp`` the GPU's name and CuPy's version."""
    return {
        "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "numpy": numpy.__version__,
        "minifcn": __version__, "blas": blas_info(),
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "cupy": None if xp is numpy else xp.__version__,
        "gpu": None if xp is numpy else gpu_name(xp),
        "cupy_tf32": None if xp is numpy else os.environ.get("CUPY_TF32", "0"),
    }


def cpu_seconds():
    """(busy CPU seconds of the whole machine, CPU seconds of this process and of the child
    processes it has waited for) since boot and start; None where /proc/stat is missing.
    Their difference over a run is other work."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]   # all but idle and iowait (steal counts as busy)
    own = os.times()
    mine = own.user + own.system + own.children_user + own.children_system
    return busy / os.sysconf("SC_CLK_TCK"), mine


def other_load(start, seconds: float) -> str:
    """A line saying how much CPU time other processes used since ``start = cpu_seconds()``,
    ``seconds`` of wall-clock time ago: a benchmark's noise footer."""
    end = cpu_seconds()
    if start is None or end is None:
        return "other work on the machine: unknown (no /proc/stat)"
    other = max(0.0, (end[0] - start[0]) - (end[1] - start[1]))
    return (f"other work on the machine during the run: {other:.1f} CPU-s in {seconds:.0f} s "
            f"({100 * other / (seconds * os.cpu_count()):.0f}% of {os.cpu_count()} CPUs)")

