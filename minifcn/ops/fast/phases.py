r"""Stride phases: a strided transposed convolution as ``S_H*S_W`` small dense convolutions.

A transposed convolution with stride S writes kernel tap ``i`` of input row ``h`` to output
row ``hS - P + i``. Split the taps by their phase ``a = i mod S``, ``i = a + mS``: output row
``tS + a - P`` receives, from every input row ``h = t - m``, only the taps of phase ``a``.
So the output, seen as a grid of ``S_H x S_W`` pixel blocks, is

.. math::

    y[n, o, tS_H + a - P_H, uS_W + b - P_W] = \sum_{c, m, l} x[n, c, t - m, u - l]\,
                                             W[c, o, a + mS_H, b + lS_W],

for each phase ``(a, b)`` a plain stride-1 correlation of x, zero-padded by ``M - 1``, with
the flipped sub-kernel ``W[:, :, a::S, b::S]`` of ``M = ceil(K / S)`` taps (the kernel is
zero-padded to ``M*S`` taps so that all phases have the same size). Stacking the phases'
sub-kernels as ``S_H*S_W*F`` output channels makes the forward *one* small im2col (of x,
``C*M_H*M_W`` rows instead of ``F*KH*KW``), one GEMM, and one interleaving copy that writes
every output pixel once: no col2im and no overlapping adds. FCN's upscore8 (k16 s8) becomes
``M = 2``: a 2x2 convolution with 1344 output channels on the 70x70 scores.

The backward is that correlation's backward. ``D[(o, a, b), t, u] = dy[o, tS_H + a - P_H,
uS_W + b - P_W]`` (zero outside dy) is dy rearranged into the phases, the gradient of the
correlation's output; then ``dW = D im2col(x)^T`` and ``dx = col2im(W_phases^T D)`` are
conv2d's weight and input gradients on the small grid: each one GEMM with a long inner
dimension (``S_H*S_W*F`` or ``T*U``), and a col2im of ``M_H*M_W`` taps of x's size instead of
an im2col of dy with ``KH*KW`` taps (for upscore8, 84 rows instead of 5376).

Used for dilation 1, ``K >= S`` on both axes and ``S > 1`` on one (:data:`RULE`); on NumPy
and CuPy alike (written against ``xp``, with the window copies of :mod:`.windows`). Chunks
follow the workspace limit through :func:`.gemm.plan`, over images and rows of the phase
grid. Results equal the reference's up to the order of additions.
"""
from __future__ import annotations

from typing import NamedTuple

from ... import memory
from ...backend import get_array_module
from .gemm import ConvShape, accumulate, add_bias, chunk_columns, conv_shape, plan
from .windows import col2im_add, window_slices

RULE = ("a stride above 1, dilation 1, and a kernel at least the stride on both axes "
        "(K < S would leave phases of zeros)")


def applies(call) -> bool:
    """Whether the phase path computes this transposed convolution."""
    return (call.dilation == (1, 1) and call.stride != (1, 1)
            and all(k >= s for k, s in zip(call.w_shape[2:], call.stride)))


def transpose_forward(x, weight, bias, stride, padding, output_padding, dilation):
    """conv_transpose2d's forward (the registered signature)."""
    N, F = x.shape[0], weight.shape[1]
    out = tuple((x.shape[2 + a] - 1) * stride[a] - 2 * padding[a] + weight.shape[2 + a]
                + output_padding[a] for a in range(2))
    return add_bias(forward(x, weight, stride, padding, (N, F) + out), bias)


def transpose_backward(dy, x, weight, has_bias, stride, padding, output_padding, dilation):
    """conv_transpose2d's backward (the registered signature): (dx, dweight, dbias)."""
    dx, dweight = backward(dy, x, weight, stride, padding)
    return dx, dweight, (dy.sum(axis=(0, 2, 3)) if has_bias else None)


class _Grid(NamedTuple):
    """The phase grid of a transposed convolution of x (N, C, H, W) by W (C, F, KH, KW)."""
    stride: tuple            # (S_H, S_W)
    padding: tuple           # (P_H, P_W)
    taps: tuple              # (M_H, M_W) = ceil(K / S)
    size: tuple              # (T, U) = (H + M_H - 1, W + M_W - 1): blocks of S_H x S_W pixels
    out: tuple               # (OH, OW)

    @property
    def phases(self) -> int:
        return self.stride[0] * self.stride[1]


def _grid(x_shape, w_shape, stride, padding, out) -> _Grid:
    taps = tuple(-(-w_shape[2 + a] // stride[a]) for a in range(2))
    size = tuple(x_shape[2 + a] + taps[a] - 1 for a in range(2))
    return _Grid(stride, padding, taps, size, tuple(out))


def _padded_taps(weight, grid: _Grid):
    """W (C, F, KH, KW) zero-padded to (C, F, M_H, S_H, M_W, S_W): ``[c, o, m, a, l, b] =
    W[c, o, a + mS_H, b + lS_W]``."""
    xp = get_array_module(weight)
    C, F, KH, KW = weight.shape
    (SH, SW), (MH, MW) = grid.stride, grid.taps
    full = xp.zeros((C, F, MH * SH, MW * SW), dtype=weight.dtype)
    full[:, :, :KH, :KW] = weight
    return full.reshape(C, F, MH, SH, MW, SW)


def _phase_matrix(weight, grid: _Grid):
    """The phases' correlation weights as one matrix (S_H*S_W*F, C*M_H*M_W), rows ``(o, a,
    b)``, columns ``(c, m', l')`` with flipped taps ``m' = M_H - 1 - m``, ``l' = M_W - 1 - l``."""
    xp = get_array_module(weight)
    taps = _padded_taps(weight, grid)[:, :, ::-1, :, ::-1, :]       # (C, F, MH, SH, MW, SW)
    G = weight.shape[1] * grid.phases
    return xp.ascontiguousarray(taps.transpose(1, 3, 5, 0, 2, 4)).reshape(G, -1)


def _weight_of_matrix(matrix, w_shape, grid: _Grid):
    """Back from :func:`_phase_matrix`'s layout to (C, F, KH, KW): the weight gradient."""
    xp = get_array_module(matrix)
    C, F, KH, KW = w_shape
    (SH, SW), (MH, MW) = grid.stride, grid.taps
    taps = matrix.reshape(F, SH, SW, C, MH, MW)[:, :, :, :, ::-1, ::-1]  # unflipped m, l
    full = taps.transpose(3, 0, 4, 1, 5, 2).reshape(C, F, MH * SH, MW * SW)  # (c, o, i, j)
    return xp.ascontiguousarray(full[:, :, :KH, :KW])


def _correlation(xp, x, grid: _Grid, G, what) -> ConvShape:
    """The geometry of the phases' correlation: x by (G, C, M_H, M_W), stride 1, padding
    M - 1, giving the (T, U) grid; ``chunk_columns`` of it is the forward's im2col."""
    return conv_shape(xp, x.shape, (G, x.shape[1]) + grid.taps, (1, 1),
                 (grid.taps[0] - 1, grid.taps[1] - 1), (1, 1), x.dtype,
                 f"{what} (stride phases)")


# --- Forward ------------------------------------------------------------------------------------

def forward(x, weight, stride, padding, y_shape, what="conv_transpose2d forward"):
    """y = conv_transpose2d(x, weight) without bias, by stride phases; y (N, F, OH, OW)."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    grid = _grid(x.shape, weight.shape, stride, padding, y_shape[2:])
    w_mat = _phase_matrix(weight, grid)                              # (G, C*MH*MW)
    G, U = w_mat.shape[0], grid.size[1]
    conv = _correlation(xp, x, grid, G, what)
    covered = all(grid.padding[a] + grid.out[a] <= grid.size[a] * grid.stride[a]
                  for a in range(2))
    y = memory.result(xp, y_shape, x.dtype, conv.describe,
                               zeros=not covered)                    # (N, F, OH, OW)
    for chunk in plan(conv, lambda k, r: _forward_bytes(conv, G, k, r)):
        n0, n1, r0, r1 = chunk
        L = (r1 - r0) * U
        with chunk_columns(x, conv, chunk) as col, \
                memory.scratch(xp, (G, (n1 - n0) * L), x.dtype,
                                 lambda: f"phases of {conv.describe()}") as z:
            xp.matmul(w_mat, col, out=z)                              # (G, images*rows*U)
            z7 = z.reshape((y_shape[1],) + grid.stride + (n1 - n0, r1 - r0, U))  # a view
            for k in range(n1 - n0):
                _interleave(z7[:, :, :, k], y[n0 + k], grid, r0)      # (F, SH, SW, rows, U)
    return y


def _forward_bytes(conv: ConvShape, G, images, rows):
    """The largest buffer of a forward chunk: the im2col of x or the phases' output."""
    return max(conv.col_bytes(images, rows), G * images * rows * conv.out[1] * conv.itemsize)


def _interleave(z, y_n, grid: _Grid, r0):
    """``y_n[:, tS_H + a - P_H, uS_W + b - P_W] = z[:, a, b, t - r0, u]`` where that lies in
    y_n (F, OH, OW), for the grid rows ``t`` in ``[r0, r0 + rows)`` that z (F, SH, SW, rows, U)
    holds: a strided copy per phase, every output pixel written once."""
    for (a, b), found in _phase_slices(grid, r0, z.shape[3:]):
        if found is not None:
            (p, h), (q, w) = found
            y_n[:, h, w] = z[:, a, b, p, q]                          # (F, rows', cols')


def _phase_slices(grid: _Grid, r0, size):
    """For each phase (a, b): the slices ``((p, h), (q, w))`` of the grid block (rows r0 on,
    ``size`` = (rows, U)) and of the output that it lands on, or None where it misses."""
    offset = (grid.padding[0] - r0 * grid.stride[0], grid.padding[1])
    return [((a, b), window_slices(grid.out, size, grid.stride, offset, (1, 1), a, b))
            for a in range(grid.stride[0]) for b in range(grid.stride[1])]


# --- Backward -----------------------------------------------------------------------------------

def backward(dy, x, weight, stride, padding, what="conv_transpose2d backward"):
    """(dx, dweight) of :func:`forward` for dy (N, F, OH, OW): the phases' correlation's
    gradients with dy's phases D in the role of its output gradient, chunk by chunk,
    ``dW = D im2col(x)^T`` and ``dx = col2im(W^T D)``."""
    xp = get_array_module(dy)
    dy, x = xp.ascontiguousarray(dy), xp.ascontiguousarray(x)
    grid = _grid(x.shape, weight.shape, stride, padding, dy.shape[2:])
    w_mat = _phase_matrix(weight, grid)                              # (G, C*MH*MW)
    G, ckk = w_mat.shape
    conv = _correlation(xp, x, grid, G, what)
    dx = memory.result(xp, x.shape, dy.dtype, conv.describe,
                                zeros=True)                          # (N, C, H, W)
    dw = None                                                        # (G, C*MH*MW)
    for chunk in plan(conv, lambda k, r: _backward_bytes(conv, G, k, r)):
        n0, n1, r0, r1 = chunk
        L = (n1 - n0) * (r1 - r0) * grid.size[1]
        with memory.scratch(xp, (G, L), dy.dtype,
                            lambda: f"phases of dy for {conv.describe()}") \
                as d, chunk_columns(x, conv, chunk) as col:
            _dy_phases(dy[n0:n1], d, grid, r0, r1 - r0)                # (G, images*rows*U)
            if dw is None:
                dw = xp.matmul(d, col.T)                             # (G, C*MH*MW), fresh
            else:
                accumulate(dw, d, col, conv)
            with memory.scratch(xp, (ckk, L), dy.dtype, lambda: f"col2im for {conv.describe()}") \
                    as dcol:
                xp.matmul(w_mat.T, d, out=dcol)                      # (C*MH*MW, images*rows*U)
                dcol6 = dcol.reshape(conv.w_shape[1:] + (n1 - n0, r1 - r0, grid.size[1]))
                offset = (conv.padding[0] - r0, conv.padding[1])
                col2im_add(dcol6, dx[n0:n1], (1, 1), offset, (1, 1),
                            whole=(r0, r1) == (0, conv.out[0]))
    return dx, _weight_of_matrix(dw, weight.shape, grid)


def _backward_bytes(conv: ConvShape, G, images, rows):
    """The largest buffer of a backward chunk: dy's phases, the im2col of x or its col2im
    (the same size), or the GPU col2im's rows."""
    columns = images * rows * conv.out[1]
    return max(G * columns * conv.itemsize, conv.ckk * columns * conv.itemsize,
               conv.rows_bytes(images, rows))


def _dy_phases(dy, d, grid: _Grid, r0, rows):
    """Fill d (G, k*rows*U) with the phases of dy (k, F, OH, OW) for grid rows
    [r0, r0 + rows), image after image."""
    k, F = dy.shape[:2]
    d7 = d.reshape((F,) + grid.stride + (k, rows, grid.size[1]))    # a view: d is contiguous
    for n in range(k):
        _deinterleave(dy[n], d7[:, :, :, n], grid, r0)               # (F, SH, SW, rows, U)


def _deinterleave(dy_n, d, grid: _Grid, r0):
    """``d[:, a, b, t - r0, u] = dy_n[:, tS_H + a - P_H, uS_W + b - P_W]``, zero outside dy_n
    (F, OH, OW): :func:`_interleave`'s adjoint, for d (F, SH, SW, rows, U) holding grid rows
    ``[r0, r0 + rows)``."""
    for (a, b), found in _phase_slices(grid, r0, d.shape[3:]):
        if found is None:
            d[:, a, b] = 0
            continue
        (p, h), (q, w) = found
        d[:, a, b, :p.start] = 0                                     # grid rows outside dy
        d[:, a, b, p.stop:] = 0
        d[:, a, b, p, :q.start] = 0                                  # columns outside dy
        d[:, a, b, p, q.stop:] = 0
        d[:, a, b, p, q] = dy_n[:, h, w]                             # (F, rows', cols')
