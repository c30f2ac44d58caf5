r"""Element-wise layers: ReLU and (inverted) dropout.

Both are diagonal maps, so each backward is dy times what the forward kept: a boolean mask.
"""
from ...backend import get_array_module


def relu_forward(x):
    r"""y = max(x, 0), and the mask x > 0 for the backward. NaN stays NaN, as in PyTorch.

    .. math:: y_i = \max(x_i, 0)
    """
    xp = get_array_module(x)
    mask = x > 0                        # bool, x's shape
    y = xp.maximum(x, x.dtype.type(0))  # a new array, x's dtype
    return y, mask


def relu_backward(dy, mask):
    r"""dx = dy where x was positive, 0 elsewhere (also at x = 0, as PyTorch).

    .. math:: dx_i = dy_i\, [x_i > 0]
    """
    return dy * mask                    # float * bool keeps dy's dtype


def dropout_forward(x, keep, scale):
    r"""Inverted dropout with a given mask: kept elements are scaled by ``1/(1-p)``.

    .. math:: y_i = \frac{m_i\, x_i}{1 - p}, \qquad \mathbb{E}[y_i] = x_i

    ``keep`` is the bool mask m (drawn by the caller), ``scale = 1/(1-p)`` a Python float,
    applied in x's dtype as PyTorch applies it.
    """
    y = x * keep
    y *= x.dtype.type(scale)
    return y


def dropout_backward(dy, keep, scale):
    r"""The same mask and scale, applied to dy.

    .. math:: dx_i = \frac{m_i\, dy_i}{1 - p}
    """
    dx = dy * keep
    dx *= dy.dtype.type(scale)
    return dx
