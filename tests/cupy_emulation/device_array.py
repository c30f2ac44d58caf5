"""``cupy.ndarray`` emulated: a NumPy array behind the interface of a CuPy array.

It is not a NumPy array (no subclass), so nothing reaches its data without saying so:
``numpy.asarray``, Pillow, ``numpy.save`` and the buffer protocol fail as they fail on a CuPy
array (``TypeError: Implicit conversion to a NumPy array is not allowed``); ``.get()`` and
``cupy.asnumpy`` copy. It has only the attributes CuPy's ndarray has, checks keywords
against CuPy's signatures, refuses NumPy operands, returns 0-d arrays where NumPy returns
scalars, and, like CuPy, formats and prints through a copy to the host.
"""
from __future__ import annotations

import copy as _copy

import numpy

from . import names, runtime
from .convert import flat_inputs, operand, to_device, to_numpy

SPEC = names.cls("cupy.ndarray")
_OPERATORS = {"add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift", "divmod"}
_COMPARISONS = {"eq", "ne", "lt", "le", "gt", "ge"}
_UNARY = {"neg", "pos", "abs", "invert"}


class NotModelled(AttributeError):
    """A name real CuPy has that the emulation does not model."""


def _is_operator(name: str) -> bool:
    core = name[2:-2]
    for prefix in ("", "r", "i"):
        if core.startswith(prefix) and core[len(prefix):] in _OPERATORS:
            return True
    return core in _COMPARISONS or core in _UNARY


class ndarray:  # noqa: N801 -- CuPy's name
    """An emulated ``cupy.ndarray`` on emulated GPU 0."""
    __slots__ = ("_a", "__weakref__")
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotModelled("cupy.ndarray(memptr=, strides=) is not modelled (cupy emulation)")
        self._a = numpy.empty(shape, dtype, order=order)
        runtime.track(self)

    @classmethod
    def _of(cls, a: numpy.ndarray) -> "ndarray":
        obj = object.__new__(cls)
        obj._a = a
        runtime.track(obj)
        return obj

    # --- attributes -------------------------------------------------------------------
    shape = property(lambda self: self._a.shape,
                     lambda self, value: setattr(self._a, "shape", value))
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    T = property(lambda self: ndarray._of(self._a.T))
    mT = property(lambda self: ndarray._of(numpy.swapaxes(self._a, -1, -2)))
    real = property(lambda self: ndarray._of(self._a.real))
    imag = property(lambda self: ndarray._of(self._a.imag))
    base = property(lambda self: None if self._a.base is None else ndarray._of(self._a.base))
    device = property(lambda self: runtime.Device(0))
    flags = property(lambda self: runtime.Flags(self._a.flags))
    data = property(lambda self: runtime.MemoryPointer(self._a.ctypes.data))

    def __getattr__(self, name):
        spec = SPEC.get(name)
        if spec is None:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} (CuPy's "
                                 "ndarray has no such name; cupy emulation)")
        if spec["kind"] == "method" and hasattr(numpy.ndarray, name):
            return _method(self, name, spec["params"])
        raise NotModelled(f"cupy.ndarray.{name} is not modelled by the cupy emulation")

    # --- host and device --------------------------------------------------------------
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is None:
            return numpy.array(self._a, order=order, copy=True)
        if not isinstance(out, numpy.ndarray) or out.dtype != self.dtype or \
                out.shape != self.shape:
            raise TypeError("out must be a numpy.ndarray of the same dtype and shape")
        out[...] = self._a
        return out

    def set(self, arr, stream=None):
        if not isinstance(arr, numpy.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype or arr.shape != self.shape:
            raise ValueError(f"set: {arr.dtype}{arr.shape} into {self.dtype}{self.shape}")
        self._a[...] = arr

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly. (cupy emulation)")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from .module import cupy_function
        func = cupy_function(ufunc.__name__, "numpy")
        if func is None:
            return NotImplemented
        if method != "__call__":
            func = getattr(func, method)
        if "out" in kwargs:
            (kwargs["out"],) = kwargs["out"]
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from .module import cupy_function
        if any(not issubclass(t, (ndarray, numpy.ndarray)) for t in types):
            return NotImplemented
        cupy_func = cupy_function(func.__name__, func.__module__)
        return NotImplemented if cupy_func is None else cupy_func(*args, **kwargs)

    # --- containers and conversions ---------------------------------------------------
    def __getitem__(self, key):
        return to_device(self._a[to_numpy(key, "cupy.ndarray.__getitem__", host_ok=True)])

    def __setitem__(self, key, value):
        where = "cupy.ndarray.__setitem__"
        self._a[to_numpy(key, where, host_ok=True)] = operand(value, where)

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec)

    def __copy__(self):
        return ndarray._of(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray._of(_copy.deepcopy(self._a, memo))

    def __reduce__(self):
        return (_from_host, (numpy.array(self._a),))


def _from_host(a):
    return ndarray._of(a)


def _method(self: ndarray, name: str, params):
    def call(*args, **kwargs):
        names.check_call("cupy.ndarray", name, params, args, kwargs)
        where = f"cupy.ndarray.{name}"
        result = getattr(self._a, name)(*to_numpy(args, where), **to_numpy(kwargs, where))
        return to_device(result, (self, *flat_inputs(args, kwargs)), where)
    call.__name__ = name
    return call


def _operator(name: str):
    def op(self, *args):
        where = f"cupy.ndarray.{name}"
        result = getattr(self._a, name)(*(operand(a, where) for a in args))
        return NotImplemented if result is NotImplemented else to_device(result, (self,), where)
    op.__name__ = name
    return op


for _name in SPEC:
    if _name.startswith("__") and _is_operator(_name) and hasattr(numpy.ndarray, _name):
        setattr(ndarray, _name, _operator(_name))
