"""A test-only CuPy: CuPy's API on NumPy arrays, so that minifcn's CuPy path runs without a
GPU (issue 17).

What it catches, where no GPU is lent:

* a name NumPy has and CuPy lacks (module functions, ``cupy.ndarray`` attributes,
  ``cupy.random.Generator`` methods): the emulation exposes only the names read from a real
  CuPy into ``cupy_names.json`` (``make_names.py`` writes it);
* a keyword CuPy does not take (``where=`` of a ufunc, ``initial=`` of ``ndarray.max``):
  each call is checked against CuPy's recorded signature;
* a host array leaking into a device operation: NumPy arrays among the operands of an
  emulated operator, ufunc, function or kernel raise ``TypeError`` as CuPy does;
* a device array leaking to the host without ``asnumpy``/``.get()``: an emulated array is
  no NumPy array; ``numpy.asarray``, Pillow and ``numpy.save`` refuse it as they refuse a
  CuPy array;
* a scalar where CuPy gives a 0-d array (``a.sum()``, ``a[i]``), used where only a Python
  number will do (``range``, a dict key);
* the ``ElementwiseKernel`` bodies of ``minifcn/ops/fast/cuda.py``, compiled with the host
  C++ compiler and run for every ``i``, with CuPy's type binding and argument checks.

What it cannot catch: CuPy's own numerics (cuBLAS/cuDNN summation order, TF32, its random
streams), anything asynchronous (every emulated call has finished when it returns, so a
missing synchronisation passes), CUDA-only compile errors (``tests/test_cuda_nvcc.py``
compiles the bodies with nvcc for that), memory limits and speed. Timings under the emulation
are host timings and mean nothing about a GPU.

Use: ``with installed() as cupy: ...`` puts the emulation into ``sys.modules`` as ``cupy``
and ``cupyx`` for the block; ``PYTHONPATH=tests/cupy_emulation/shim`` makes ``import cupy``
load it in any process (``benchmarks/gpu_check.sh --emulate`` runs that way).
"""
from __future__ import annotations

import contextlib
import sys

from .kernels import compiler
from .module import modules

__all__ = ["compiler", "install", "installed", "modules"]


def install() -> None:
    """Put the emulated ``cupy`` and ``cupyx`` modules into ``sys.modules`` for good."""
    sys.modules.update(modules())


@contextlib.contextmanager
def installed():
    """The emulated ``cupy`` in ``sys.modules`` for the block (whatever was there before,
    a real CuPy included, comes back after it)."""
    saved = {name: sys.modules.get(name) for name in modules()}
    install()
    try:
        yield modules()["cupy"]
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
