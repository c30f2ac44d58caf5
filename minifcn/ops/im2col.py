r"""im2col and col2im: turning a convolution into one matrix product.

A convolution with an ``(F, C, KH, KW)`` weight slides a ``C x KH x KW`` window over the
padded input. ``im2col`` copies every window into one column of a matrix

.. math::

    \mathrm{col}[(c, i, j), (n, p, q)] = x_{pad}[n, c, pS_H + iD_H, qS_W + jD_W],

of shape ``(C*KH*KW, N*OH*OW)``, so that the convolution is a single GEMM,
``W.reshape(F, C*KH*KW) @ col``, with the whole batch folded into the columns.

``col2im`` is im2col's exact adjoint (its transpose as a linear map): each column entry is
added back onto the input pixel it was copied from, so overlapping windows sum. It is the
input gradient of a convolution and the forward pass of a transposed convolution.

Layout of ``col``: rows ordered ``(c, i, j)`` to match ``weight.reshape(F, -1)``,
columns ordered ``(n, p, q)``. ``reference/im2col.py`` is the readable code (a padded copy
and one strided slice per kernel offset); ``fast/windows.py`` copies without padding into
recycled memory, and on CuPy runs one CUDA thread per output element (col2im gathers
instead of scattering, so it needs no atomics and is deterministic).
"""
from __future__ import annotations

from .. import _validate as _checks
from . import dispatch
from .arguments import (conv_geometry, conv_output_size,  # noqa: F401 (public here too)
                        conv_transpose_output_size, image_shape)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """Unfold the sliding windows of ``x`` into columns.

    Parameters
    ----------
    x : array of shape (N, C, H, W)
    kernel_size, stride, padding, dilation : int or (int, int)

    Returns
    -------
    col : array of shape (C*KH*KW, N*OH*OW), in x's dtype and on x's device.
    """
    _checks.float_array("x", x, ndim=4, what=" (N, C, H, W)")
    kernel, stride, padding, dilation, out = conv_geometry(x.shape, kernel_size, stride,
                                                           padding, dilation)
    call = dispatch.Call(dispatch.device_kind(x), x.dtype, tuple(x.shape), (), kernel, stride,
                         padding, dilation, out)
    return dispatch.run("im2col", call, x, kernel, stride, padding, dilation)


def col2im(col, x_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Fold columns back onto an image, summing where windows overlap: the adjoint of im2col.

    Parameters
    ----------
    col : array of shape (C*KH*KW, N*OH*OW)
    x_shape : (N, C, H, W), the shape of the image im2col was applied to.

    Returns
    -------
    x : array of shape (N, C, H, W) with ``<im2col(z), col> == <z, col2im(col)>`` for every z.
    """
    _checks.float_array("col", col, ndim=2)
    x_shape = image_shape(x_shape)
    kernel, stride, padding, dilation, out = conv_geometry(x_shape, kernel_size, stride,
                                                           padding, dilation)
    N, C = x_shape[:2]
    expected = (C * kernel[0] * kernel[1], N * out[0] * out[1])
    if tuple(col.shape) != expected:
        raise ValueError(f"col must have shape {expected} for x_shape {x_shape}, "
                         f"got {tuple(col.shape)}")
    call = dispatch.Call(dispatch.device_kind(col), col.dtype, x_shape, (), kernel, stride,
                         padding, dilation, out)
    return dispatch.run("col2im", call, col, x_shape, kernel, stride, padding, dilation)
