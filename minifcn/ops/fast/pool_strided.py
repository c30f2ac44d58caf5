r"""max_pool2d on NumPy for any geometry, without a padded copy of x.

The reference pads x with ``-inf`` and loops over the ``KH*KW`` kernel offsets. This path
loops over the same offsets in the same order, but for each offset takes only the block of
outputs whose window puts that offset inside x (outputs outside it would read the ``-inf``
padding, which never wins), keeps the running maximum and its offset in recycled memory,
and writes the backward's disjoint windows by assignment instead of addition. Results equal
the reference's bit for bit.
"""
from __future__ import annotations

import numpy as np

from ... import memory
from ..reference.pool import index_dtype

RULE = "NumPy, any geometry"


def applies(call) -> bool:
    return call.device == "cpu"


def _axis_slices(offset, size, stride, padding, out):
    """Outputs ``p`` in ``[p0, p1)`` read input index ``p*stride - padding + offset`` in
    ``[0, size)``; return ``(p0, p1)`` and the slice of those input indices."""
    first = padding - offset                       # p*stride >= first
    p0 = max(0, -(-first // stride))               # ceil(first / stride), at least 0
    p1 = min(out, (size - 1 + padding - offset) // stride + 1)
    if p1 <= p0:          # no output reads x at this offset: an empty slice, whose stop
        return (p0, p0), slice(0, 0)      # below would be negative and wrap around
    start = p0 * stride - padding + offset
    return (p0, p1), slice(start, start + (p1 - p0 - 1) * stride + 1, stride)


def _offsets(x_shape, kernel, stride, padding, out):
    """Yield ``(k, outputs, inputs)`` for each kernel offset ``k = i*KW + j`` in row-major
    order: the block of outputs whose window puts (i, j) inside x, and x's strided slice."""
    H, W = x_shape[2:]
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            (p0, p1), rows = _axis_slices(i, H, stride[0], padding[0], out[0])
            (q0, q1), cols = _axis_slices(j, W, stride[1], padding[1], out[1])
            yield (i * kernel[1] + j, (Ellipsis, slice(p0, p1), slice(q0, q1)),
                   (Ellipsis, rows, cols))


def _first_inside(kernel, stride, padding, out):
    """The offset ``i*KW + j`` of each window's first element inside x: the argmax when
    nothing in the window beats -inf."""
    i0 = np.maximum(padding[0] - np.arange(out[0]) * stride[0], 0)    # (OH,)
    j0 = np.maximum(padding[1] - np.arange(out[1]) * stride[1], 0)    # (OW,)
    return i0[:, None] * kernel[1] + j0[None, :]                      # (OH, OW)


def forward(x, kernel, stride, padding, out):
    N, C = x.shape[:2]
    y = memory.result(np, (N, C) + tuple(out), x.dtype, "max_pool2d forward")  # (N,C,OH,OW)
    y.fill(-np.inf)
    argmax = memory.result(np, (N, C) + tuple(out), index_dtype(kernel),
                           "max_pool2d forward (argmax)")
    argmax[...] = _first_inside(kernel, stride, padding, out)
    # The offsets k are visited in increasing order, so a window's argmax only ever moves
    # up to the current k: max(argmax, k * wins) updates it without a masked copy.
    for k, outputs, inputs in _offsets(x.shape, kernel, stride, padding, out):
        best, candidate = y[outputs], x[inputs]                        # (N, C, oh, ow) views
        wins = candidate > best                                        # strict: first max wins
        np.maximum(argmax[outputs], wins * argmax.dtype.type(k), out=argmax[outputs])
        np.maximum(best, candidate, out=best)
    if np.isnan(y).any():           # PyTorch's `val > maxval || isnan(val)`: the last NaN
        for k, outputs, inputs in _offsets(x.shape, kernel, stride, padding, out):
            wins = np.isnan(x[inputs])
            np.maximum(argmax[outputs], wins * argmax.dtype.type(k), out=argmax[outputs])
    return y, argmax


def backward(dy, argmax, x_shape, kernel, stride, padding):
    """Route dy to the winners, offset by offset: in each strided slice every input pixel
    appears once, so ``+=`` is exact, and the order of k is fixed: deterministic."""
    out = tuple(argmax.shape[2:])
    overlapping = stride[0] < kernel[0] or stride[1] < kernel[1]
    dx = memory.result(np, x_shape, dy.dtype, "max_pool2d backward", zeros=True)  # (N,C,H,W)
    for k, outputs, inputs in _offsets(x_shape, kernel, stride, padding, out):
        routed = np.where(argmax[outputs] == k, dy[outputs], dy.dtype.type(0))
        if overlapping:
            dx[inputs] += routed                                      # (N, C, oh, ow)
        else:
            dx[inputs] = routed           # windows are disjoint: each pixel is written once
    return dx
