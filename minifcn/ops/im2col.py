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

from .. import memory
from ..backend import get_array_module
from .. import _validate as _checks


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output length of a convolution along one axis (the formula of ``torch.nn.Conv2d``):
    ``floor((size + 2P - D(K-1) - 1) / S) + 1`` (0 or less where the kernel does not fit)."""
    size, kernel, stride, padding, dilation = _axis_args(size, kernel, stride, padding,
                                                         dilation)
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution along one axis (``torch.nn.ConvTranspose2d``):
    ``(size - 1)S - 2P + D(K-1) + output_padding + 1``."""
    size, kernel, stride, padding, dilation = _axis_args(size, kernel, stride, padding,
                                                         dilation)
    output_padding = _checks.int_at_least("output_padding", output_padding, 0)
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _axis_args(size, kernel, stride, padding, dilation):
    """Validate one axis's size and window options (ints; size, padding >= 0; others >= 1)."""
    return (_checks.int_at_least("size", size, 0), _checks.int_at_least("kernel", kernel, 1),
            _checks.int_at_least("stride", stride, 1),
            _checks.int_at_least("padding", padding, 0),
            _checks.int_at_least("dilation", dilation, 1))


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
    x_shape = _image_shape(x_shape)
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


def _image_shape(x_shape) -> tuple:
    """x_shape as a tuple of four ints >= 0, (N, C, H, W)."""
    values = tuple(x_shape) if isinstance(x_shape, (tuple, list)) else None
    if values is None or len(values) != 4 or not all(_checks._is_int(v) and v >= 0
                                                      for v in values):
        raise ValueError(f"x_shape must be (N, C, H, W), four ints >= 0, got {x_shape!r}")
    return tuple(int(v) for v in values)


def _im2col_cpu(x, kernel, stride, padding, dilation, out):
    N, C = x.shape[:2]
    col = memory.result(np, (C, kernel[0], kernel[1], N, out[0], out[1]), x.dtype,
                                 f"im2col of x {tuple(x.shape)}")
    _im2col_window_cpu(x, col, stride, padding, dilation)
    return col


def _col2im_cpu(col, x_shape, kernel, stride, padding, dilation, out):
    N, C, H, W = x_shape
    col = col.reshape(C, kernel[0], kernel[1], N, out[0], out[1])
    x = np.zeros(x_shape, dtype=col.dtype)
    _col2im_window_add_cpu(col, x, stride, padding, dilation)
    return x


# --- Windows with an offset: the bodies above, and the chunks of a convolution --------------
#
# ``offset = (TOP, LEFT)`` generalises the padding: output row p reads input row
# ``p*S - TOP + i*D``, and rows outside the image read zeros. ``TOP = P`` is the padded
# convolution; a chunk of output rows starting at row r0 uses ``TOP = P - r0*S`` (negative
# further down), so no padded copy of x is ever made.

def _valid(size, out, stride, offset, start):
    """The output positions p in [0, out) whose input ``p*stride - offset + start`` lies in
    [0, size), as ``(output slice, input slice)``, or None when there are none."""
    lo = max(0, -((start - offset) // stride))                     # ceil((offset-start)/S)
    hi = min(out, (size - 1 + offset - start) // stride + 1)
    if hi <= lo:
        return None
    first = lo * stride - offset + start
    return slice(lo, hi), slice(first, first + stride * (hi - lo - 1) + 1, stride)


def _window_slices(x_hw, out_hw, stride, offset, dilation, i, j):
    """Slices (rows, columns) of output and input for kernel offset (i, j), or None."""
    rows = _valid(x_hw[0], out_hw[0], stride[0], offset[0], i * dilation[0])
    cols = _valid(x_hw[1], out_hw[1], stride[1], offset[1], j * dilation[1])
    return None if rows is None or cols is None else (rows, cols)


def _im2col_window_cpu(x, col, stride, offset, dilation):
    """Fill col (C, KH, KW, N, OH, OW) in place: ``x[n, c, p*S - TOP + i*D, ...]`` or 0."""
    C, KH, KW, N, OH, OW = col.shape
    for i in range(KH):
        for j in range(KW):
            dst = col[:, i, j]                                     # (C, N, OH, OW)
            found = _window_slices(x.shape[2:], (OH, OW), stride, offset, dilation, i, j)
            if found is None:
                dst[...] = 0
                continue
            (p, h), (q, w) = found
            dst[:, :, :p.start] = 0                                # rows in the padding
            dst[:, :, p.stop:] = 0
            dst[:, :, p, :q.start] = 0                             # columns in the padding
            dst[:, :, p, q.stop:] = 0
            dst[:, :, p, q] = x[:, :, h, w].transpose(1, 0, 2, 3)  # (C, N, rows, cols)


def _col2im_window_add_cpu(col, x, stride, offset, dilation):
    """Add col (C, KH, KW, N, OH, OW) onto the image x (N, C, H, W) in place: im2col's adjoint."""
    C, KH, KW, N, OH, OW = col.shape
    for i in range(KH):
        for j in range(KW):
            found = _window_slices(x.shape[2:], (OH, OW), stride, offset, dilation, i, j)
            if found is not None:
                (p, h), (q, w) = found
                x[:, :, h, w] += col[:, i, j, :, p, q].transpose(1, 0, 2, 3)


def _im2col_into(x, col, stride, offset, dilation):
    """im2col of x (N, C, H, W) into the given col (C, KH, KW, N, OH, OW), on x's device."""
    if get_array_module(x) is np:
        _im2col_window_cpu(x, col, stride, offset, dilation)
        return
    from ._cuda import im2col_gpu
    C, KH, KW, N, OH, OW = col.shape
    im2col_gpu(x, (KH, KW), stride, offset, dilation, (OH, OW), col=col)


def _col2im_add(col, x, stride, offset, dilation, whole=False):
    """Add col2im of col (C, KH, KW, N, OH, OW) onto x (N, C, H, W), a view, in place.

    The CUDA kernel is a gather that writes whole images: with ``whole`` (col holds every
    output row and x is still zero) it writes x directly; otherwise the rows the columns
    reach, :func:`_gather_rows`, are gathered into scratch and added.
    """
    if get_array_module(col) is np:
        _col2im_window_add_cpu(col, x, stride, offset, dilation)
        return
    from ._cuda import col2im_gpu
    from ..memory import scratch as borrow
    C, KH, KW, N, OH, OW = col.shape
    if whole and x.flags.c_contiguous:
        col2im_gpu(col, x.shape, (KH, KW), stride, offset, dilation, (OH, OW), img=x)
        return
    lo, hi, sub_offset = _gather_rows(x.shape[2], col.shape, stride, offset, dilation)
    if hi <= lo:
        return
    sub_shape = (N, C, hi - lo, x.shape[3])
    with borrow(get_array_module(col), sub_shape, col.dtype, "col2im rows") as sub:
        col2im_gpu(col, sub_shape, (KH, KW), stride, sub_offset, dilation, (OH, OW), img=sub)
        x[:, :, lo:hi] += sub


def _gather_rows(H, col_shape, stride, offset, dilation):
    """For the GPU's col2im of a chunk: the input rows [lo, hi) that output rows [0, OH)
    reach at vertical offset ``offset[0]``, and the offset that makes row lo the first."""
    C, KH, KW, N, OH, OW = col_shape
    lo = min(max(-offset[0], 0), H)
    hi = min(max((OH - 1) * stride[0] - offset[0] + dilation[0] * (KH - 1) + 1, lo), H)
    return lo, hi, (offset[0] + lo, offset[1])
