r"""max_pool2d on NumPy when the windows tile x (kernel == stride, no padding): FCN's pools.

The windows do not overlap, so the ``KH*KW`` kernel offsets' strided views of the block of
whole windows, ``x[:, :, i::KH, j::KW]``, are disjoint, and each output has exactly one
element in each. The forward reduces them pairwise in offset order, the later side taking
over (value and offset) only where it is strictly greater, so that ties stay with the
earlier offset: PyTorch's first maximum in row-major window order. Windows holding NaNs are
then pointed at their last NaN, as PyTorch's ``val > maxval || isnan(val)`` does. The
backward writes
each offset's view of dx once, ``dy * (argmax == k)``: no zero-filled dx to add into and no
``np.where`` (a finite dy only; with an inf or NaN in dy, ``0 * inf`` would put NaN off the
winner, so a masked copy is used instead).

Windows cut by the bottom or right edge (ceil mode with a side not divisible by the kernel)
go through the general loop of :mod:`.pool_strided`; rows or columns that no window reads (floor
mode) get a zero gradient. Results equal the general loop's bit for bit: the same maxima,
the same offsets, each dy copied (not summed) to its winner.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ... import memory
from ..reference.pool import index_dtype
from .pool_strided import backward as _backward_cpu, forward as _forward_cpu

CHUNK_BYTES = 2 ** 20     # a chunk's de-interleaved columns: about one core's L2 cache


RULE = "NumPy, windows that tile x: kernel == stride, no padding"


def applies(call) -> bool:
    """Whether the windows tile x: kernel == stride and no padding."""
    return (call.device == "cpu" and call.kernel == call.stride and call.padding == (0, 0)
            and memory.fits(_row_bytes(call.kernel, call.x_shape, call.dtype.itemsize)))


def _row_bytes(kernel, x_shape, itemsize) -> int:
    """The scratch of one row of windows: KH input rows of x's whole windows, de-interleaved."""
    return kernel[0] * (x_shape[3] // kernel[1]) * kernel[1] * itemsize


def _whole(x_shape, kernel):
    """How many whole windows fit down and across x: (fh, fw)."""
    return x_shape[2] // kernel[0], x_shape[3] // kernel[1]


def _planes(a):
    """(N, C, H, W) as (N*C, H, W): a view for the contiguous arrays made here."""
    return a.reshape((-1,) + a.shape[2:])


def _chunks(planes, whole, row_bytes):
    """``(p0, p1, r0, r1)``: planes and rows of whole windows, in chunks whose de-interleaved
    columns take about :data:`CHUNK_BYTES` (or the workspace limit, if lower): whole planes,
    or rows of one plane."""
    fh = whole[0]
    rows = memory.chunks(fh, lambda r: r * row_bytes, budget=CHUNK_BYTES, required=False)
    if rows is None or len(rows) > 1:
        rows = rows or [(r, r + 1) for r in range(fh)]
        return [(p, p + 1, r0, r1) for p in range(planes) for r0, r1 in rows]
    groups = memory.chunks(planes, lambda n: n * fh * row_bytes, budget=CHUNK_BYTES,
                           required=False) or [(p, p + 1) for p in range(planes)]
    return [(p0, p1, 0, fh) for p0, p1 in groups]


@contextlib.contextmanager
def _columns(a, kernel, whole, chunks):
    """Scratch for a chunk's columns ``j::KW`` side by side, (KW, planes, rows*KH, fw)."""
    (KH, KW), fw = kernel, whole[1]
    planes = max(p1 - p0 for p0, p1, _, _ in chunks)
    rows = max(r1 - r0 for _, _, r0, r1 in chunks)
    with memory.scratch(np, (KW, planes, rows * KH, fw), a.dtype, "max_pool2d columns") as c:
        yield c


def forward(x, kernel, stride, padding, out):
    """y and argmax as the reference computes them, for tiling windows."""
    N, C = x.shape[:2]
    fh, fw = whole = _whole(x.shape, kernel)
    y = memory.result(np, (N, C) + out, x.dtype, "max_pool2d forward")  # (N,C,OH,OW)
    argmax = memory.result(np, (N, C) + out, index_dtype(kernel),
                                    "max_pool2d forward (argmax)")
    if fh and fw:
        _forward_whole(_planes(x), _planes(y), _planes(argmax), kernel, whole)
    for rows, cols in _edges(x.shape, kernel, out):                  # cut windows (ceil mode)
        y[:, :, rows, cols], argmax[:, :, rows, cols] = _forward_cpu(
            x[:, :, _span(rows, kernel[0]), _span(cols, kernel[1])], kernel, stride, padding,
            (rows.stop - rows.start, cols.stop - cols.start))
    return y, argmax


def _forward_whole(x, y, argmax, kernel, whole):
    """The whole windows of x (P, H, W) into y and argmax (P, OH, OW), chunk by chunk: each
    chunk's columns ``j::KW`` are first copied side by side into scratch (one strided pass
    over x), so that every offset's view has contiguous rows."""
    (KH, KW), fw = kernel, whole[1]
    chunks = _chunks(x.shape[0], whole, KH * fw * KW * x.itemsize)
    with _columns(x, kernel, whole, chunks) as cols, \
            memory.scratch(np, cols.shape[1:2] + (cols.shape[2] // KH, fw), x.dtype,
                             "max_pool2d pairs") as best:
        for p0, p1, r0, r1 in chunks:
            n, rows = p1 - p0, r1 - r0
            for j in range(KW):                                      # (n, rows*KH, fw) each
                np.copyto(cols[j, :n, :rows * KH], x[p0:p1, r0 * KH:r1 * KH, j:fw * KW:KW])
            views = [cols[j, :n, i:rows * KH:KH] for i in range(KH) for j in range(KW)]
            _reduce_first_max(views, y[p0:p1, r0:r1, :fw], argmax[p0:p1, r0:r1, :fw],
                              best[:n, :rows])


def _reduce_first_max(views, y, argmax, best):
    """``y = max(views)`` and ``argmax`` = the offset of the first maximum (of the last NaN
    where a window holds NaNs), for views (n, rows, fw) in row-major offset order; ``best``
    is scratch of their shape.

    Offsets are taken in pairs (k, k+1), each pair's winner merged into y and argmax; the
    later side wins only when strictly greater, so ties stay with the earlier offset."""
    index = argmax.dtype.type
    if len(views) == 1:                                            # a 1x1 kernel
        y[...], argmax[...] = views[0], 0
    else:
        _pair_max(views[0], views[1], y, argmax, index(0))
    for k in range(2, len(views) - 1, 2):
        offset = _pair_max(views[k], views[k + 1], best, None, index(k))
        _merge(y, argmax, best, offset)
    if len(views) > 1 and len(views) % 2:                          # the odd one out
        _merge(y, argmax, views[-1], index(len(views) - 1))
    if np.isnan(np.min(y)):                                        # NaN wins: PyTorch's rule
        argmax[np.isnan(y)] = 0
        for k, view in enumerate(views):
            np.maximum(argmax, np.isnan(view) * index(k), out=argmax)


def _pair_max(a, b, best, offset, k):
    """``best = max(a, b)``; return (or write into ``offset``) ``k``, or ``k + 1`` where b is
    strictly greater."""
    right = np.greater(b, a).view(np.int8)                         # 0 or 1
    np.maximum(a, b, out=best)
    return np.add(right, k, out=offset, dtype=type(k))


def _merge(y, argmax, best, offset):
    """Where ``best`` is strictly greater than ``y``, take it and its offset."""
    wins = np.greater(best, y).view(np.int8)                       # 0 or 1
    np.maximum(y, best, out=y)
    argmax += wins * (offset - argmax)           # branch-free: a masked copy mispredicts


def _edges(x_shape, kernel, out):
    """Output blocks ``(rows, cols)`` whose windows are cut by x's bottom or right edge."""
    fh, fw = _whole(x_shape, kernel)
    fh, fw = min(fh, out[0]), min(fw, out[1])
    blocks = []
    if out[0] > fh:
        blocks.append((slice(fh, out[0]), slice(0, out[1])))        # the bottom strip
    if out[1] > fw:
        blocks.append((slice(0, fh), slice(fw, out[1])))            # the right strip
    return [(r, c) for r, c in blocks if r.stop > r.start and c.stop > c.start]


def _span(outputs: slice, k: int) -> slice:
    """The input rows (or columns) a run of tiling windows reads."""
    return slice(outputs.start * k, outputs.stop * k)


def backward(dy, argmax, x_shape, kernel, stride, padding):
    """dx of whole windows by :func:`_backward_whole`; cut windows as the general loop; rows
    and columns no window reads get 0."""
    fh, fw = whole = _whole(x_shape, kernel)
    dx = memory.result(np, x_shape, dy.dtype, "max_pool2d backward")  # (N, C, H, W)
    if fh and fw:
        _backward_whole(_planes(dy), _planes(argmax), _planes(dx), kernel, whole)
    dx[:, :, fh * kernel[0]:, :] = 0
    dx[:, :, :fh * kernel[0], fw * kernel[1]:] = 0
    for rows, cols in _edges(x_shape, kernel, argmax.shape[2:]):
        block = dx[:, :, _span(rows, kernel[0]), _span(cols, kernel[1])]
        block[...] = _backward_cpu(dy[:, :, rows, cols], argmax[:, :, rows, cols],
                                   block.shape, kernel, stride, padding)
    return dx


def _backward_whole(dy, argmax, dx, kernel, whole):
    """dx (P, H, W) of the whole windows from dy and argmax (P, OH, OW): per chunk, each
    offset's view of the side-by-side columns gets ``dy * (argmax == k)`` (exactly dy where
    it won and 0 elsewhere, when dy is finite; else a masked copy, as ``0 * inf`` is NaN),
    then the columns are copied into dx, which is written once."""
    (KH, KW), (fh, fw) = kernel, whole
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(np.sum(dy[:, :fh, :fw]))
    chunks = _chunks(dx.shape[0], whole, KH * fw * KW * dx.itemsize)
    with _columns(dx, kernel, whole, chunks) as cols:
        for p0, p1, r0, r1 in chunks:
            n, rows = p1 - p0, r1 - r0
            dy_c, arg_c = dy[p0:p1, r0:r1, :fw], argmax[p0:p1, r0:r1, :fw]  # (n, rows, fw)
            for i in range(KH):
                for j in range(KW):
                    view, hit = cols[j, :n, i:rows * KH:KH], np.equal(arg_c, i * KW + j)
                    if finite:
                        np.multiply(dy_c, hit, out=view)
                    else:
                        view[...] = 0
                        np.copyto(view, dy_c, where=hit)
            for j in range(KW):
                np.copyto(dx[p0:p1, r0 * KH:r1 * KH, j:fw * KW:KW], cols[j, :n, :rows * KH])
