r"""Spatial crop: how FCN aligns a skip connection's larger map with the upsampled one.

The forward cuts an ``(h, w)`` window out of x at ``(top, left)``; the backward puts dy back
there, with zeros where the cropped-away pixels were (they did not reach the output).
"""
from ...backend import get_array_module


def crop_forward(x, offset, size):
    r"""x (N, C, H, W) -> y (N, C, h, w), a new C-contiguous array.

    .. math:: y[n, c, i, j] = x[n, c, top + i, left + j]
    """
    (top, left), (h, w) = offset, size
    return x[:, :, top:top + h, left:left + w].copy()     # (N, C, h, w)


def crop_backward(dy, x_shape, offset, size):
    r"""dy (N, C, h, w) -> dx of x_shape (N, C, H, W): dy inside the crop, 0 outside.

    .. math:: dx[n, c, top + i, left + j] = dy[n, c, i, j]
    """
    xp = get_array_module(dy)
    (top, left), (h, w) = offset, size
    dx = xp.zeros(x_shape, dtype=dy.dtype)                 # (N, C, H, W)
    dx[:, :, top:top + h, left:left + w] = dy
    return dx
