"""Between the emulated device and the NumPy arrays that hold its data.

``to_numpy`` takes the arguments of a CuPy call apart: emulated arrays give their NumPy
data; a NumPy array is refused as CuPy refuses it (``TypeError: Unsupported type``), since
on a GPU it would be host memory reaching a device operation. ``to_device`` puts results
back together: NumPy arrays and NumPy scalars become emulated arrays (CuPy returns 0-d
arrays where NumPy returns scalars), and an array that is the data of an argument (an
``out=`` or an in-place result) comes back as that very argument.
"""
from __future__ import annotations

import numpy

# dtypes CuPy has no arrays of
_NO_DEVICE_KINDS = {"O": "object", "U": "str", "S": "bytes", "V": "void", "M": "datetime64",
                    "m": "timedelta64"}


class HostArrayError(TypeError):
    """A NumPy array reached a CuPy operation (CuPy raises TypeError here too)."""


def host_array_error(what: str, where: str) -> HostArrayError:
    return HostArrayError(f"Unsupported type {what} in {where}: a NumPy (host) array reached "
                          "a CuPy operation; move it with minifcn.backend.to_device(a, "
                          "'cuda') or cupy.asarray (cupy emulation)")


def is_device(x) -> bool:
    from .device_array import ndarray
    return isinstance(x, ndarray)


def to_numpy(x, where: str, host_ok: bool = False):
    """The NumPy data behind ``x`` (recursing into lists, tuples and dicts)."""
    if is_device(x):
        return x._a
    if isinstance(x, numpy.ndarray):
        if host_ok:
            return numpy.array(x, copy=True)      # a copy to the device, never an alias
        raise host_array_error(f"<class 'numpy.ndarray'> (shape {x.shape})", where)
    if isinstance(x, list):
        return [to_numpy(v, where, host_ok) for v in x]
    if isinstance(x, tuple):
        return tuple(to_numpy(v, where, host_ok) for v in x)
    if isinstance(x, dict):
        return {k: to_numpy(v, where, host_ok) for k, v in x.items()}
    return x


def operand(x, where: str):
    """An operand of a CuPy operator or ufunc: an emulated array or a scalar, as CuPy takes
    (a NumPy array, a list or another object is refused)."""
    if is_device(x):
        return x._a
    if isinstance(x, (int, float, complex, bool, numpy.generic)) or x is None:
        return x
    if isinstance(x, numpy.ndarray):
        raise host_array_error(f"<class 'numpy.ndarray'> (shape {x.shape})", where)
    raise TypeError(f"Unsupported type {type(x)} in {where} (cupy emulation)")


def check_dtype(dtype, where: str) -> None:
    kind = numpy.dtype(dtype).kind
    if kind in _NO_DEVICE_KINDS:
        raise TypeError(f"CuPy has no {_NO_DEVICE_KINDS[kind]} arrays ({where}; cupy emulation)")


def to_device(result, inputs=(), where: str = "cupy"):
    """Emulated arrays for the NumPy arrays and scalars in ``result``; an array that is the
    data of one of ``inputs`` comes back as that input."""
    from .device_array import ndarray
    if isinstance(result, numpy.ndarray):
        for x in inputs:
            if is_device(x) and x._a is result:
                return x
        check_dtype(result.dtype, where)
        return ndarray._of(result)
    if isinstance(result, numpy.generic) and not isinstance(result, (numpy.str_, numpy.bytes_)):
        return ndarray._of(numpy.asarray(result))
    if isinstance(result, tuple) and not hasattr(result, "_fields"):
        return tuple(to_device(r, inputs, where) for r in result)
    if isinstance(result, list):
        return [to_device(r, inputs, where) for r in result]
    return result


def flat_inputs(args, kwargs) -> list:
    """The emulated arrays among the arguments (one level into lists and tuples)."""
    out = []
    for value in list(args) + list(kwargs.values()):
        items = value if isinstance(value, (list, tuple)) else [value]
        out.extend(v for v in items if is_device(v))
    return out
