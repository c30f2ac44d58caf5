"""The emulated ``cupy`` and ``cupyx`` module trees, built once from ``cupy_names.json``.

Each module holds exactly the names the real one has. A name is emulated by its NumPy or
SciPy namesake (``functions.py``) or by this package's own ``ndarray``, ``ElementwiseKernel``,
``cuda`` and ``random``; a real CuPy name the emulation does not model raises
``AttributeError`` saying so, and a name CuPy lacks raises the ordinary one.
"""
from __future__ import annotations

import functools
import importlib
import types

import numpy

from . import device_array, device_random, kernels, names, profiler, runtime
from .functions import NONE_VALUE, from_numpy

COUNTERPARTS = {"cupy": "numpy", "cupy.random": "numpy.random", "cupy.linalg": "numpy.linalg",
                "cupy.fft": "numpy.fft", "cupyx.scipy.special": "scipy.special",
                "cupyx.scipy.ndimage": "scipy.ndimage"}


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, device_array.ndarray):
        return a.get(stream, order, out, blocking)
    return numpy.asarray(a, order=order)


def get_array_module(*args):
    return modules()["cupy"] if any(isinstance(a, device_array.ndarray) for a in args) else numpy


OWN = {
    "cupy": {"ndarray": device_array.ndarray, "ElementwiseKernel": kernels.ElementwiseKernel,
             "asnumpy": asnumpy, "get_array_module": get_array_module,
             "get_default_memory_pool": lambda: runtime.POOL,
             "get_default_pinned_memory_pool": lambda: runtime.PINNED_POOL,
             "is_available": lambda: True, "__version__": names.table()["cupy_version"]},
    "cupy.random": {"default_rng": device_random.default_rng, "Generator": device_random.Generator},
    "cupy.cuda": {n: getattr(runtime, n) for n in (
        "Device", "Stream", "Event", "MemoryPool", "get_current_stream", "get_elapsed_time")}
    | {"is_available": lambda: True, "get_device_id": runtime.getDevice},
    "cupy.cuda.runtime": {n: getattr(runtime, n) for n in (
        "CUDARuntimeError", "getDeviceCount", "getDevice", "setDevice", "getDeviceProperties",
        "memGetInfo", "deviceSynchronize", "runtimeGetVersion", "driverGetVersion")},
    "cupyx.profiler": {"benchmark": profiler.benchmark},
}


def _counterpart(name: str):
    try:
        return importlib.import_module(COUNTERPARTS[name]) if name in COUNTERPARTS else None
    except ImportError:
        return None


def _not_modelled(module_name: str, table: dict):
    def __getattr__(attr):  # noqa: N807 -- a module's __getattr__ (PEP 562)
        if attr in table:
            raise device_array.NotModelled(f"{module_name}.{attr} is CuPy's but the cupy emulation "
                                    "does not model it")
        raise AttributeError(f"module {module_name!r} has no attribute {attr!r} (CuPy has no "
                             "such name; cupy emulation)")
    return __getattr__


@functools.lru_cache(maxsize=1)
def modules() -> dict[str, types.ModuleType]:
    """``{"cupy": ..., "cupy.cuda": ..., "cupyx.profiler": ...}``, ready for sys.modules."""
    built = {}
    for name in names.table()["modules"]:
        table, counterpart = names.module(name), _counterpart(name)
        module = types.ModuleType(name, f"{name}, emulated on NumPy (tests/cupy_emulation)")
        own = OWN.get(name, {})
        for attr, spec in table.items():
            value = own[attr] if attr in own else from_numpy(name, attr, spec, counterpart)
            if value is not None:
                setattr(module, attr, None if value is NONE_VALUE else value)
        module.__getattr__ = _not_modelled(name, table)
        built[name] = module
    for name, module in built.items():          # submodules as attributes of their parents
        parent, _, child = name.rpartition(".")
        if parent in built:
            setattr(built[parent], child, module)
    return built


def cupy_function(name: str, numpy_module: str):
    """The emulated CuPy function that stands for NumPy's ``numpy_module.name`` (as CuPy's
    ``__array_function__`` and ``__array_ufunc__`` find it), or None."""
    path = "cupy" + numpy_module[len("numpy"):] if numpy_module.startswith("numpy") else None
    module = modules().get(path) if path else None
    value = module.__dict__.get(name) if module is not None else None
    if value is None:
        special = modules()["cupyx.scipy.special"].__dict__.get(name)
        return special if path == "cupy" else None
    return value
