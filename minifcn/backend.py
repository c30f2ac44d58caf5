"""The one module that knows about CuPy.

Every op picks its array library in one line, ``xp = get_array_module(x, weight)``, and
then writes its math once against ``xp``: ``numpy`` on the CPU, ``cupy`` on a GPU.
CuPy is optional and imported lazily, the first time a GPU is asked for, so the
CPU path never pays for it and works where CuPy is not installed.

Devices are strings: ``"cpu"``, ``"cuda"`` (the current GPU) or ``"cuda:N"``.
"""
from __future__ import annotations

import functools
import re
import sys

import numpy

INSTALL_HINT = 'pip install "minifcn[gpu]"  (CuPy for CUDA 12; use cupy-cuda13x on CUDA 13)'

_DEVICE_PATTERN = re.compile(r"(cpu|cuda)(?::(\d+))?")   # fullmatch: "$" would let "cpu\n" in


def _is_cupy_array(a) -> bool:
    # If cupy was never imported, no cupy array can exist: no import needed to decide.
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(a, cupy.ndarray)


def device_of(a) -> str:
    """The device string of an array: ``"cpu"`` for NumPy, ``"cuda:N"`` for CuPy."""
    if _is_cupy_array(a):
        return f"cuda:{a.device.id}"
    return "cpu"


def get_array_module(*arrays):
    """Return ``numpy`` or ``cupy``, whichever holds the given arrays.

    ``None`` entries and Python scalars are ignored. Like ``cupy.get_array_module``, but
    mixing NumPy and CuPy arrays (or arrays on two GPUs) raises ``ValueError`` naming the
    devices instead of failing later inside an operation.
    """
    named = {f"argument {i}": a for i, a in enumerate(arrays)}
    return array_module_of(**named)


def array_module_of(**named_arrays):
    """``get_array_module`` for named arrays, so that a mismatch names the arguments.

    >>> array_module_of(x=numpy.zeros(2), weight=numpy.ones(2)) is numpy
    True
    """
    devices = {name: device_of(a) for name, a in named_arrays.items()
               if a is not None and hasattr(a, "shape")}
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{name} is on {dev}" for name, dev in devices.items())
        raise ValueError(f"arrays must be on one device, but {where}; "
                         "move them with minifcn.backend.to_device(a, device)")
    if any(dev != "cpu" for dev in devices.values()):
        return sys.modules["cupy"]
    return numpy


def asnumpy(a):
    """Return ``a`` as a NumPy array (copying from the GPU if it is a CuPy array)."""
    if _is_cupy_array(a):
        return a.get()
    return numpy.asarray(a)


def parse_device(device: str) -> tuple[str, int | None]:
    """Split ``"cuda:1"`` into ``("cuda", 1)``; ``"cpu"`` gives ``("cpu", None)``."""
    match = _DEVICE_PATTERN.fullmatch(device) if isinstance(device, str) else None
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    kind, index = match.group(1), match.group(2)
    return kind, (int(index) if index is not None else None)


def import_cupy():
    """Import CuPy, or raise ``RuntimeError`` saying what is missing and how to install it."""
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError(f"a GPU was asked for but CuPy is not installed ({err}); "
                           f"install it with: {INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDARuntimeError: no driver, no device
        raise RuntimeError(f"CuPy is installed but no CUDA GPU can be used: {err}") from None
    if count == 0:
        raise RuntimeError("CuPy is installed but no CUDA GPU is visible")
    return cupy


@functools.lru_cache(maxsize=1)
def cupy_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        import_cupy()
    except RuntimeError:
        return False
    return True


def to_device(a, device: str):
    """Return ``a`` on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``); no copy if already there."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return asnumpy(a)
    cupy = import_cupy()
    if index is None:
        index = cupy.cuda.runtime.getDevice()
    if index >= cupy.cuda.runtime.getDeviceCount():
        raise RuntimeError(f"device {device!r} does not exist: "
                           f"{cupy.cuda.runtime.getDeviceCount()} GPU(s) are visible")
    with cupy.cuda.Device(index):
        return cupy.asarray(a)


def synchronize(xp) -> None:
    """Wait for queued GPU work (a no-op for NumPy); used when timing."""
    if xp is not numpy:
        xp.cuda.get_current_stream().synchronize()
