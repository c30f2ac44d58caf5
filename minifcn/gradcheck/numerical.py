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
"""
from __future__ import annotations

from ..backend import get_array_module


def _copy(y):
    # The forward may return a buffer it reuses on the next call: keep our own copy.
    return get_array_module(y).array(y, copy=True)


def _check_dy(y, dy) -> None:
    if tuple(getattr(dy, "shape", ())) != tuple(y.shape):
        raise ValueError(f"dy must have the shape of f(x), {tuple(y.shape)}, got "
                         f"{tuple(getattr(dy, 'shape', ()))}")


def directional_derivative(f, x, direction, dy, eps: float) -> float:
    """``<J^T dy, direction>`` by central differences along ``direction`` (same shape as x).

    ``f`` is called with ``x`` perturbed in place; x is restored exactly afterwards.
    """
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
    xp = get_array_module(x)
    return float(xp.vdot(y_plus - y_minus, dy)) / (2 * eps)


def numerical_gradient_at(f, x, dy, eps: float, flat_indices):
    """``dL/dx`` at the given flat indices of x, as a 1-D float64 NumPy array.

    ``x`` must be contiguous; it is perturbed in place one element at a time and each
    element is restored to its exact original value.
    """
    import numpy as np

    if not x.flags.c_contiguous:   # reshape would copy, and perturbations would not reach x
        raise ValueError("numerical gradient needs a C-contiguous array")
    xp = get_array_module(x)
    flat = x.reshape(-1)                # a view: writing flat[k] writes x
    out = np.empty(len(flat_indices))
    for k, index in enumerate(flat_indices):
        index = int(index)
        original = flat[index].copy()
        flat[index] = original + eps
        y_plus = _copy(f(x))
        flat[index] = original - eps
        y_minus = f(x)
        flat[index] = original
        _check_dy(y_plus, dy)
        out[k] = float(xp.vdot(y_plus - y_minus, dy)) / (2 * eps)
    return out


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
