"""CuPy's functions and ufuncs, emulated by their NumPy (or SciPy) namesakes.

A function checks its keywords against CuPy's signature, refuses NumPy arrays among its
arguments (except the functions that copy host data to the device: ``cupy.array``,
``cupy.asarray`` and the ``*_like`` constructors), runs NumPy on the arrays' data and
returns emulated arrays. A ufunc takes only emulated arrays and scalars, and only the
keywords CuPy's ufuncs take (``out``, ``dtype``, ``casting``: no ``where=``).
"""
from __future__ import annotations

import numpy

from . import names
from .convert import flat_inputs, operand, to_device, to_numpy

HOST_INPUT = {"array", "asarray", "asanyarray", "empty_like", "zeros_like", "ones_like",
              "full_like"}
NONE_VALUE = object()                      # from_numpy's answer for a value that is None
CUPY_ONLY_KEYWORDS = {"blocking"}     # cupy.array/asarray(..., blocking=): no NumPy meaning


def function(owner: str, name: str, params, numpy_function):
    host_ok = owner == "cupy" and name in HOST_INPUT

    def call(*args, **kwargs):
        names.check_call(owner, name, params, args, kwargs)
        where = f"{owner}.{name}"
        kwargs = {k: v for k, v in kwargs.items() if k not in CUPY_ONLY_KEYWORDS}
        result = numpy_function(*to_numpy(args, where, host_ok),
                                **to_numpy(kwargs, where, host_ok))
        return to_device(result, flat_inputs(args, kwargs), where)
    call.__name__ = call.__qualname__ = name
    call.__module__ = owner
    return call


class ufunc:  # noqa: N801 -- CuPy's name
    """An emulated ``cupy.ufunc`` over the NumPy ufunc of the same name."""

    def __init__(self, owner: str, numpy_ufunc):
        self._u, self._owner = numpy_ufunc, owner
        self.name = self.__name__ = numpy_ufunc.__name__
        self.nin, self.nout, self.nargs = numpy_ufunc.nin, numpy_ufunc.nout, numpy_ufunc.nargs
        self.types = numpy_ufunc.types

    def __call__(self, *args, **kwargs):
        names.check_call(self._owner, self.name, ["*args", "out", "dtype", "casting"], args,
                         kwargs)
        where = f"{self._owner}.{self.name}"
        inputs = [operand(a, where) for a in args]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = operand(out, where)
        result = self._u(*inputs, **kwargs)
        return to_device(result, [a for a in list(args) + [out] if a is not None], where)

    def __getattr__(self, method):
        if method not in ("reduce", "accumulate", "outer", "at", "reduceat"):
            raise AttributeError(f"'cupy.ufunc' object has no attribute {method!r}")
        numpy_method = getattr(self._u, method)

        def call(*args, **kwargs):
            where = f"{self._owner}.{self.name}.{method}"
            result = numpy_method(*to_numpy(args, where), **to_numpy(kwargs, where))
            return to_device(result, flat_inputs(args, kwargs), where)
        return call

    def __repr__(self):
        return f"<ufunc '{self.name}'>"


def from_numpy(owner: str, name: str, spec: dict, counterpart):
    """The emulated ``owner.name`` built from ``counterpart``'s namesake, or None where
    the counterpart has none."""
    missing = object()
    target = getattr(counterpart, name, missing) if counterpart is not None else missing
    if target is missing:
        return None
    if target is None:
        return NONE_VALUE                          # newaxis
    if spec["kind"] == "ufunc" and isinstance(target, numpy.ufunc):
        return ufunc(owner, target)
    if spec["kind"] == "function" and callable(target):
        return function(owner, name, spec.get("params"), target)
    if spec["kind"] in ("value", "class") and not callable(target) or \
            isinstance(target, type) and issubclass(target, (numpy.generic, numpy.dtype)):
        return target                         # float32, pi, newaxis, dtype, ...
    if spec["kind"] == "class" and name in ("finfo", "iinfo", "errstate"):
        return target
    return None
