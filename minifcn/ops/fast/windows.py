r"""The window copy of im2col and its adjoint, with an offset, into given buffers.

``offset = (TOP, LEFT)`` generalises the padding: output row p reads input row
``p*S - TOP + i*D``, and rows outside the image read zeros. ``TOP = P`` is the padded
convolution; a chunk of output rows starting at row r0 uses ``TOP = P - r0*S`` (negative
further down), so no padded copy of x is ever made (the reference pads; this does not).
The CPU bodies loop over the KH*KW kernel offsets, each a strided slice; the GPU bodies are
the CUDA kernels of :mod:`.cuda`, one thread per output element.
"""
from __future__ import annotations

import numpy as np

from ... import memory
from ...backend import get_array_module


def valid_range(size, out, stride, offset, start):
    """The output positions p in [0, out) whose input ``p*stride - offset + start`` lies in
    [0, size), as ``(output slice, input slice)``, or None when there are none."""
    lo = max(0, -((start - offset) // stride))                     # ceil((offset-start)/S)
    hi = min(out, (size - 1 + offset - start) // stride + 1)
    if hi <= lo:
        return None
    first = lo * stride - offset + start
    return slice(lo, hi), slice(first, first + stride * (hi - lo - 1) + 1, stride)


def window_slices(x_hw, out_hw, stride, offset, dilation, i, j):
    """Slices (rows, columns) of output and input for kernel offset (i, j), or None."""
    rows = valid_range(x_hw[0], out_hw[0], stride[0], offset[0], i * dilation[0])
    cols = valid_range(x_hw[1], out_hw[1], stride[1], offset[1], j * dilation[1])
    return None if rows is None or cols is None else (rows, cols)


def _im2col_cpu(x, col, stride, offset, dilation):
    """Fill col (C, KH, KW, N, OH, OW) in place: ``x[n, c, p*S - TOP + i*D, ...]`` or 0."""
    C, KH, KW, N, OH, OW = col.shape
    for i in range(KH):
        for j in range(KW):
            dst = col[:, i, j]                                     # (C, N, OH, OW)
            found = window_slices(x.shape[2:], (OH, OW), stride, offset, dilation, i, j)
            if found is None:
                dst[...] = 0
                continue
            (p, h), (q, w) = found
            dst[:, :, :p.start] = 0                                # rows in the padding
            dst[:, :, p.stop:] = 0
            dst[:, :, p, :q.start] = 0                             # columns in the padding
            dst[:, :, p, q.stop:] = 0
            dst[:, :, p, q] = x[:, :, h, w].transpose(1, 0, 2, 3)  # (C, N, rows, cols)


def _col2im_add_cpu(col, x, stride, offset, dilation):
    """Add col (C, KH, KW, N, OH, OW) onto the image x (N, C, H, W) in place."""
    C, KH, KW, N, OH, OW = col.shape
    for i in range(KH):
        for j in range(KW):
            found = window_slices(x.shape[2:], (OH, OW), stride, offset, dilation, i, j)
            if found is not None:
                (p, h), (q, w) = found
                x[:, :, h, w] += col[:, i, j, :, p, q].transpose(1, 0, 2, 3)


def im2col_into(x, col, stride, offset, dilation):
    """im2col of x (N, C, H, W) into the given col (C, KH, KW, N, OH, OW), on x's device."""
    if get_array_module(x) is np:
        _im2col_cpu(x, col, stride, offset, dilation)
        return
    from .cuda import im2col_gpu
    C, KH, KW, N, OH, OW = col.shape
    im2col_gpu(x, (KH, KW), stride, offset, dilation, (OH, OW), col=col)


def col2im_add(col, x, stride, offset, dilation, whole=False):
    """Add col2im of col (C, KH, KW, N, OH, OW) onto x (N, C, H, W), a view, in place.

    The CUDA kernel is a gather that writes whole images: with ``whole`` (col holds every
    output row and x is still zero) it writes x directly; otherwise the rows the columns
    reach, :func:`_gather_rows`, are gathered into scratch and added.
    """
    if get_array_module(col) is np:
        _col2im_add_cpu(col, x, stride, offset, dilation)
        return
    from .cuda import col2im_gpu
    C, KH, KW, N, OH, OW = col.shape
    if whole and x.flags.c_contiguous:
        col2im_gpu(col, x.shape, (KH, KW), stride, offset, dilation, (OH, OW), img=x)
        return
    lo, hi, sub_offset = _gather_rows(x.shape[2], col.shape, stride, offset, dilation)
    if hi <= lo:
        return
    sub_shape = (N, C, hi - lo, x.shape[3])
    with memory.scratch(get_array_module(col), sub_shape, col.dtype, "col2im rows") as sub:
        col2im_gpu(col, sub_shape, (KH, KW), stride, sub_offset, dilation, (OH, OW), img=sub)
        x[:, :, lo:hi] += sub


def _gather_rows(H, col_shape, stride, offset, dilation):
    """For the GPU's col2im of a chunk: the input rows [lo, hi) that output rows [0, OH)
    reach at vertical offset ``offset[0]``, and the offset that makes row lo the first."""
    C, KH, KW, N, OH, OW = col_shape
    lo = min(max(-offset[0], 0), H)
    hi = min(max((OH - 1) * stride[0] - offset[0] + dilation[0] * (KH - 1) + 1, lo), H)
    return lo, hi, (offset[0] + lo, offset[1])


# --- The public im2col and col2im, into recycled memory --------------------------------------

RULE = "any input: the window copy into recycled memory (NumPy) or the CUDA kernel (CuPy)"


def applies(call) -> bool:
    return True


def im2col(x, kernel, stride, padding, dilation):
    """col (C*KH*KW, N*OH*OW) as the reference computes it, without a padded copy of x."""
    N, C, H, W = x.shape
    out = tuple((x.shape[2 + a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1)
                // stride[a] + 1 for a in range(2))
    if tuple(kernel) == (1, 1) and stride == (1, 1) and padding == (0, 0):
        return x.transpose(1, 0, 2, 3).reshape(C, N * H * W)   # (C, N*H*W); a view when N == 1
    xp = get_array_module(x)
    col = memory.result(xp, (C, kernel[0], kernel[1], N) + out, x.dtype,
                        f"im2col of x {tuple(x.shape)}")       # (C, KH, KW, N, OH, OW)
    im2col_into(xp.ascontiguousarray(x), col, stride, padding, dilation)
    return col.reshape(C * kernel[0] * kernel[1], N * out[0] * out[1])


def col2im(col, x_shape, kernel, stride, padding, dilation):
    """x (N, C, H, W) as the reference computes it: the sum of the windows' columns."""
    N, C, H, W = x_shape
    xp = get_array_module(col)
    if tuple(kernel) == (1, 1) and stride == (1, 1) and padding == (0, 0):
        return xp.ascontiguousarray(col.reshape(C, N, H, W).transpose(1, 0, 2, 3))
    out = tuple((x_shape[2 + a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1)
                // stride[a] + 1 for a in range(2))
    col6 = xp.ascontiguousarray(col).reshape((C, kernel[0], kernel[1], N) + out)
    x = xp.zeros(tuple(x_shape), dtype=col.dtype)
    col2im_add(col6, x, stride, padding, dilation, whole=True)
    return x
