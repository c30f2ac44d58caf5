r"""Numerical gradients by central differences.

For a function ``y = f(x)`` and an upstream gradient ``dy``, the scalar
``L(x) = <f(x), dy>`` has gradient ``dL/dx = J^T dy``: exactly what a hand-written
backward returns. One element at a time,

.. math::

    \frac{\partial L}{\partial x_k} \approx
    \frac{\langle f(x + \epsilon e_k) - f(x - \epsilon e_k),\ dy \rangle}{2\epsilon},

with error O(eps^2) from truncation plus roundoff of about ``1e-16 |y| / eps`` in float64.
The two outputs are subtracted elementwise before the dot product, which keeps the
roundoff far smaller than subtracting two large sums. Works on NumPy and CuPy arrays.

Given the unperturbed output ``y0 = f(x)``, the same two calls also give the one-sided
slopes ``<f(x + eps e_k) - y0, dy> / eps`` and ``<y0 - f(x - eps e_k), dy> / eps``
(:func:`differences_at`, :func:`directional_differences`). Where f is smooth they differ by
``eps d^2L/dx_k^2``; at a kink (ReLU at 0, a max-pool tie) by the jump in slope, however
small eps is. The checker uses this to say which failures sit at kinks.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..backend import get_array_module


def _copy(y):
    # The forward may return a buffer it reuses on the next call: keep our own copy.
    return get_array_module(y).array(y, copy=True)


def _check_dy(y, dy) -> None:
    if tuple(getattr(dy, "shape", ())) != tuple(y.shape):
        raise ValueError(f"dy must have the shape of f(x), {tuple(y.shape)}, got "
                         f"{tuple(getattr(dy, 'shape', ()))}")


class Differences(NamedTuple):
    """Finite differences of ``L = <f(x), dy>`` at a few points (1-D float64 NumPy arrays).

    ``central`` is the checker's estimate of the derivative; ``right`` and ``left`` are the
    one-sided slopes ``<f(x + eps e) - y0, dy> / eps`` and ``<y0 - f(x - eps e), dy> / eps``
    from the same two forward calls and the unperturbed ``y0``; ``noise`` bounds the
    rounding in ``right - left`` (see :class:`_OneSided`).
    """
    central: object
    right: object
    left: object
    noise: object


def directional_derivative(f, x, direction, dy, eps: float) -> float:
    """``<J^T dy, direction>`` by central differences along ``direction`` (same shape as x).

    ``f`` is called with ``x`` perturbed in place; x is restored exactly afterwards.
    """
    return float(directional_differences(f, x, direction, dy, eps).central[0])


def directional_differences(f, x, direction, dy, eps: float, y0=None) -> Differences:
    """Central and one-sided derivatives along ``direction``; one-sided ones need ``y0 = f(x)``
    (NaN without it). ``f`` is called with ``x`` perturbed in place and restored exactly."""
    if tuple(direction.shape) != tuple(x.shape):
        raise ValueError(f"direction must have x's shape {tuple(x.shape)}, got "
                         f"{tuple(direction.shape)}")
    original = _copy(x)
    x += eps * direction
    y_plus = _copy(f(x))
    x[...] = original
    _check_dy(y_plus, dy)
    x -= eps * direction
    y_minus = f(x)
    x[...] = original
    return _stack([_differences(y_plus, y_minus, dy, eps, _OneSided.of(y0, dy, eps))])


def numerical_gradient_at(f, x, dy, eps: float, flat_indices):
    """``dL/dx`` at the given flat indices of x, as a 1-D float64 NumPy array.

    ``x`` must be contiguous; it is perturbed in place one element at a time and each
    element is restored to its exact original value.
    """
    return differences_at(f, x, dy, eps, flat_indices).central


def differences_at(f, x, dy, eps: float, flat_indices, y0=None) -> Differences:
    """:class:`Differences` at the given flat indices of x; the one-sided slopes need
    ``y0 = f(x)`` (NaN without it). x is perturbed and restored as in
    :func:`numerical_gradient_at`."""
    if not x.flags.c_contiguous:   # reshape would copy, and perturbations would not reach x
        raise ValueError("numerical gradient needs a C-contiguous array")
    flat = x.reshape(-1)                # a view: writing flat[k] writes x
    one_sided = _OneSided.of(y0, dy, eps)
    rows = []
    for index in flat_indices:
        index = int(index)
        original = flat[index].copy()
        flat[index] = original + eps
        y_plus = _copy(f(x))
        flat[index] = original - eps
        y_minus = f(x)
        flat[index] = original
        _check_dy(y_plus, dy)
        rows.append(_differences(y_plus, y_minus, dy, eps, one_sided))
    return _stack(rows)


def _differences(y_plus, y_minus, dy, eps, one_sided):
    """(central, right, left, noise) from one pair of perturbed outputs."""
    xp = get_array_module(y_plus)
    central = float(xp.vdot(y_plus - y_minus, dy)) / (2 * eps)   # as before: one subtraction
    if one_sided is None:
        return central, math.nan, math.nan, math.nan
    return (central,) + one_sided(y_plus, y_minus)


class _OneSided:
    r"""``(right, left, noise)`` of perturbed outputs, given the unperturbed ``y0``.

    ``noise`` bounds the rounding in ``right - left = <y_+ - 2 y_0 + y_-, dy> / eps``. Each
    output element is rounded to within ``u |y|`` (u: half the dtype's machine epsilon), so
    the second difference of an element that changed errs by up to
    ``u (|y_+| + 2|y_0| + |y_-|)``; an element that changed in neither call differs by exactly
    0. The sum over the changed elements, weighted by ``|dy|``, uses the full machine epsilon
    (2u): a factor 2 for the forward's own rounding before its last. It grows with ``|y0|``
    (``f(x) = x + 1e4`` in float32 moves by a few ulps per step) and as ``1 / eps``.
    """

    @classmethod
    def of(cls, y0, dy, eps):
        return None if y0 is None else cls(y0, dy, eps)

    def __init__(self, y0, dy, eps):
        xp = get_array_module(y0)
        self.y0, self.dy, self.eps = y0, dy, eps
        self.abs_y0, self.abs_dy = xp.abs(y0).reshape(-1), xp.abs(dy).reshape(-1)
        self.unit = float(np.finfo(y0.dtype).eps) / eps

    def __call__(self, y_plus, y_minus):
        xp = get_array_module(y_plus)
        up, down = y_plus - self.y0, self.y0 - y_minus
        changed = xp.flatnonzero((up != 0) | (down != 0))    # few, unless every output moved
        size = (xp.abs(y_plus.reshape(-1)[changed]) + 2 * self.abs_y0[changed]
                + xp.abs(y_minus.reshape(-1)[changed]))
        weight = float(xp.sum(self.abs_dy[changed] * size, dtype=xp.float64))
        return (float(xp.vdot(up, self.dy)) / self.eps, float(xp.vdot(down, self.dy)) / self.eps,
                self.unit * weight)


def _stack(rows) -> Differences:
    columns = np.array(rows, dtype=np.float64).reshape(-1, 4).T
    return Differences(*columns)


def numerical_gradient(f, x, dy, eps: float = 1e-6):
    """The full numerical gradient ``d<f(x), dy>/dx``, shaped like x (NumPy, float64).

    Parameters
    ----------
    f : callable taking x and returning an array y
    x : float array (NumPy or CuPy), perturbed in place and restored
    dy : array shaped like ``f(x)``
    eps : step of the central difference

    Examples
    --------
    >>> import numpy as np
    >>> g = numerical_gradient(lambda x: x ** 2, np.array([1.0, -2.0]), np.ones(2))
    >>> np.allclose(g, [2.0, -4.0])
    True
    """
    if not (hasattr(x, "dtype") and x.dtype.kind == "f"):
        raise TypeError("numerical_gradient needs a float array x (an integer x cannot be "
                        f"perturbed by eps), got {getattr(x, 'dtype', type(x).__name__)}")
    xp = get_array_module(x)
    x_work = xp.array(x, copy=True, order="C")
    values = numerical_gradient_at(f, x_work, dy, eps, range(x_work.size))
    return values.reshape(x_work.shape)
