"""Argument checks shared by the ops' public functions.

Each check names the argument, says what was expected and what came, so that a user
sees ``ValueError: stride must be positive, got (0, 1)`` at the boundary rather than a
broadcast error from deep inside NumPy.
"""
from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def pair(name: str, value, *, minimum: int) -> tuple[int, int]:
    """Normalise an int or a pair of ints to ``(h, w)``, each at least ``minimum``."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(is_int(v) for v in values):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    values = tuple(int(v) for v in values)
    if min(values) < minimum:
        what = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return values


def positive_int(name: str, value) -> int:
    """Check a count such as a number of channels."""
    return int_at_least(name, value, 1, bound="positive")


def int_at_least(name: str, value, minimum: int, bound: str = "") -> int:
    """Check a single int such as a size or a padding: at least ``minimum`` (the message
    says ``bound``, "at least <minimum>" by default)."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {bound or f'at least {minimum}'}, got {value!r}")
    return int(value)


def is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def float_array(name: str, a, ndim: int | None = None, what: str = "") -> None:
    """Check that ``a`` is a float32/float64 array (NumPy or CuPy) with ``ndim`` dimensions."""
    if not (hasattr(a, "dtype") and hasattr(a, "shape")):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(a).__name__}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D{what}, got shape {tuple(a.shape)}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}"
                        + (" (convert it with .astype(numpy.float32))"
                           if a.dtype.kind in "fiub" else ""))


def image_batch(name: str, x, what: str = " (N, C, H, W)") -> None:
    """A float (N, C, H, W) batch with at least one channel, row and column; N may be 0
    (an empty batch gives an empty result, as in PyTorch)."""
    float_array(name, x, ndim=4, what=what)
    if min(x.shape[1:]) < 1:
        raise ValueError(f"{name} must have at least one channel and a positive height and "
                         f"width{what}, got shape {tuple(x.shape)}")


def cache_of(cache, expected: type, forward: str) -> None:
    """A backward's ``cache`` must be what its forward returned, not something else."""
    if not isinstance(cache, expected):
        raise TypeError(f"cache must be the {expected.__name__} that {forward} returned, "
                        f"got {type(cache).__name__}")


def float_dtype(name: str, dtype) -> None:
    """Check a dtype argument (``numpy.float32`` or ``numpy.float64``)."""
    if np.dtype(dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {np.dtype(dtype)}")


def same_dtype(reference_name: str, reference, **others) -> None:
    """Ops compute in their inputs' dtype and never cast silently: all must agree."""
    for name, a in others.items():
        if a is not None and a.dtype != reference.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but {reference_name} has "
                            f"{reference.dtype}; cast one of them so that they match")


def grad_shape(dy, expected_shape, expected_dtype) -> None:
    """Check an upstream gradient against the forward output it belongs to."""
    float_array("dy", dy)
    if tuple(dy.shape) != tuple(expected_shape):
        raise ValueError(f"dy must have the forward output's shape {tuple(expected_shape)}, "
                         f"got {tuple(dy.shape)}")
    if dy.dtype != expected_dtype:
        raise TypeError(f"dy has dtype {dy.dtype} but the forward ran in {expected_dtype}")


def boolean(name: str, value) -> bool:
    """Check a flag such as ``align_corners``: True or False (NumPy's bools too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
