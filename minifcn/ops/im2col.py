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
columns ordered ``(n, p, q)``. Both functions run on NumPy (a loop over the KH*KW kernel
offsets only, each one a strided slice) and on CuPy (one CUDA thread per output element;
col2im gathers instead of scattering, so it needs no atomics and is deterministic).
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from . import _checks


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output length of a convolution along one axis (the formula of ``torch.nn.Conv2d``):
    ``floor((size + 2P - D(K-1) - 1) / S) + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution along one axis (``torch.nn.ConvTranspose2d``):
    ``(size - 1)S - 2P + D(K-1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _geometry(x_shape, kernel_size, stride, padding, dilation):
    """Validate window arguments; return ``(kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow)``."""
    kernel = _checks.pair("kernel_size", kernel_size, minimum=1)
    stride = _checks.pair("stride", stride, minimum=1)
    padding = _checks.pair("padding", padding, minimum=0)
    dilation = _checks.pair("dilation", dilation, minimum=1)
    out = tuple(conv_output_size(x_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a])
                for a in range(2))
    if min(out) < 1:
        span = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in range(2))
        padded = tuple(x_shape[2 + a] + 2 * padding[a] for a in range(2))
        raise ValueError(f"kernel (extent {span[0]}x{span[1]} with dilation) is larger than the "
                         f"padded input ({padded[0]}x{padded[1]} from input "
                         f"{x_shape[2]}x{x_shape[3]} and padding {padding})")
    return kernel, stride, padding, dilation, out


def _is_pointwise(kernel, stride, padding) -> bool:
    """A 1x1 convolution with stride 1 and no padding needs no im2col: col is a reshape of x."""
    return kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)


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
    kernel, stride, padding, dilation, out = _geometry(x.shape, kernel_size, stride,
                                                       padding, dilation)
    N, C, H, W = x.shape
    if _is_pointwise(kernel, stride, padding):
        return x.transpose(1, 0, 2, 3).reshape(C, N * H * W)   # (C, N*H*W); a view when N == 1
    if get_array_module(x) is np:
        col = _im2col_cpu(x, kernel, stride, padding, dilation, out)
    else:
        from ._cuda import im2col_gpu
        col = im2col_gpu(x, kernel, stride, padding, dilation, out)
    return col.reshape(C * kernel[0] * kernel[1], N * out[0] * out[1])


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
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must be (N, C, H, W), got {x_shape}")
    kernel, stride, padding, dilation, out = _geometry(x_shape, kernel_size, stride,
                                                       padding, dilation)
    N, C, H, W = x_shape
    expected = (C * kernel[0] * kernel[1], N * out[0] * out[1])
    if tuple(col.shape) != expected:
        raise ValueError(f"col must have shape {expected} for x_shape {x_shape}, "
                         f"got {tuple(col.shape)}")
    if _is_pointwise(kernel, stride, padding):
        x = col.reshape(C, N, H, W).transpose(1, 0, 2, 3)     # (N, C, H, W)
        return get_array_module(col).ascontiguousarray(x)
    if get_array_module(col) is np:
        return _col2im_cpu(col, x_shape, kernel, stride, padding, dilation, out)
    from ._cuda import col2im_gpu
    return col2im_gpu(col, x_shape, kernel, stride, padding, dilation, out)


def _window(i, j, stride, dilation, out):
    """The strided slice of the padded image that kernel offset (i, j) reads, one per output."""
    h0, w0 = i * dilation[0], j * dilation[1]
    return (slice(None), slice(None),
            slice(h0, h0 + stride[0] * (out[0] - 1) + 1, stride[0]),
            slice(w0, w0 + stride[1] * (out[1] - 1) + 1, stride[1]))


def _im2col_cpu(x, kernel, stride, padding, dilation, out):
    N, C, H, W = x.shape
    ph, pw = padding
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    col = np.empty((C, kernel[0], kernel[1], N, out[0], out[1]), dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            window = x_pad[_window(i, j, stride, dilation, out)]   # (N, C, OH, OW)
            col[:, i, j] = window.transpose(1, 0, 2, 3)            # (C, N, OH, OW)
    return col


def _col2im_cpu(col, x_shape, kernel, stride, padding, dilation, out):
    N, C, H, W = x_shape
    ph, pw = padding
    col = col.reshape(C, kernel[0], kernel[1], N, out[0], out[1])
    x_pad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=col.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            x_pad[_window(i, j, stride, dilation, out)] += col[:, i, j].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(x_pad[:, :, ph:ph + H, pw:pw + W])   # (N, C, H, W)
