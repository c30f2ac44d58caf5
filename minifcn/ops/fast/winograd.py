r"""Winograd's minimal filtering F(4x4, 3x3): a 3x3, stride-1 convolution in a quarter of the
multiplications.

One output tile of 4x4 pixels reads a 6x6 input tile ``d``. Lavin and Gray ("Fast
Algorithms for Convolutional Neural Networks", 2016) write the tile's correlation with a
3x3 kernel ``g`` as

.. math::

    Y = A^T \left[ (G g G^T) \odot (B^T d B) \right] A,

with constant matrices ``B^T`` (6x6), ``G`` (6x3) and ``A^T`` (4x6) below: 36 products per
tile instead of 144. Summed over input channels, the element-wise product becomes, for each
of the 36 positions ``(a, b)`` of the 6x6 transformed tile, one matrix product
``M[a, b] = U[a, b] @ V[a, b]`` of the transformed weights ``U`` (F, C) and the transformed
tiles ``V`` (C, tiles). So a convolution is: transform the input tiles (``V``), 36 GEMMs,
transform back (``Y``). The GEMMs do 2*36*F*C flops per 16 output pixels where im2col's one
GEMM does 2*9*F*C per pixel: 4x fewer.

The price is rounding: ``B^T`` and ``A^T`` hold 4, 5 and 8, ``G`` holds 1/6 and 1/24, so in
float32 the result differs from im2col's by about 1e-5 of the output's largest value
(im2col's own rounding is about 5e-7). minifcn therefore takes this path only where it pays
and only in float32 (:data:`RULE`); float64, and so every gradient check, stays on im2col.
``minifcn.ops.set_algorithm("im2col")`` turns it off.

**The weight gradient** uses the same transforms, transposed. Reading the 1-D algorithm
``y = A^T [(G g) * (B^T d)]`` as a bilinear form, ``u . y = sum_t (A u)_t (G g)_t (B^T d)_t``
for any u, so the coefficient of ``g_k``, which is ``dW_k = sum_i dy_i x_{i+k}``, is
``G^T [(A dy) * (B^T x)]``. In 2-D, summed over the tiles p (the sum goes inside, the
transforms are linear):

.. math::

    dW = G^T \Big[ \sum_p (A\, dy_p A^T) \odot (B^T x_p B) \Big] G,

36 GEMMs ``(F, tiles) @ (tiles, C)`` of the transformed output gradient and the same
transformed input tiles as the forward, then one small transform back to 3x3.

The tiles are processed a few tile rows at a time, in scratch from the workspace pool, so
that the transformed tiles stay in the cache between the transforms and the GEMMs.
"""
from __future__ import annotations

import contextlib

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ... import memory

# Interpolation points 0, 1, -1, 2, -2 and infinity (Lavin and Gray's F(4x4, 3x3)).
BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], dtype=np.float64)
M_OUT, ALPHA = 4, 6                   # output tile, input tile

MIN_CHANNELS = 128                    # below, the transforms cost more than the GEMMs save
TILE_BYTES = 8 * 2 ** 20              # the transformed tiles of one chunk (cache-sized)
MIN_TILES = 256                       # ... but at least this many tiles: GEMMs worth a call

RULE = (f"CPU, float32, no groups, a 3x3 kernel, stride and dilation 1, padding at most 2, at least "
        f"{MIN_CHANNELS} input channels, and its transformed weights (36*F*C values) and one "
        f"tile row's scratch within the workspace limit")


def applies(call) -> bool:
    """Whether a convolution (forward or weight gradient) takes this path."""
    return (call.device == "cpu" and call.dtype == np.float32 and call.groups == 1
            and tuple(call.w_shape[2:]) == (3, 3) and call.stride == (1, 1)
            and call.dilation == (1, 1) and max(call.padding) <= 2
            and call.w_shape[1] >= MIN_CHANNELS and _fits(call))


def _fits(call) -> bool:
    """The transformed weights (or the gradient's sums) and one tile row's scratch fit the
    workspace limit."""
    F, C = call.w_shape[:2]
    TX = -(-(call.x_shape[3] + 2 * call.padding[1] - 2) // M_OUT)
    return (memory.fits(_weights_bytes(F, C, 4))
            and memory.fits(_chunk_bytes(C, F, 1, TX, 4)))


def _weights_bytes(F, C, itemsize) -> int:
    """U (the forward's transformed weights) or one of the weight gradient's sums."""
    return 36 * F * C * itemsize


def forward(x, weight, bias, stride, padding, dilation):
    """y = conv2d(x, weight) + bias by Winograd F(4x4, 3x3) (stride and dilation 1)."""
    N, F = x.shape[0], weight.shape[0]
    out = tuple(x.shape[2 + a] + 2 * padding[a] - 2 for a in range(2))
    y = memory.result(np, (N, F) + out, x.dtype, "conv2d forward (Winograd)")
    conv3x3(np.ascontiguousarray(x), weight, padding, y)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def weight_grad(dy, x, weight_shape, stride, padding, dilation):
    """dW (F, C, 3, 3) of y = conv2d(x, W) by the transposed Winograd transforms."""
    dw = memory.result(np, weight_shape, x.dtype, "conv2d weight gradient (Winograd)")
    return weight_grad3x3(np.ascontiguousarray(dy), np.ascontiguousarray(x), padding, dw)


def transformed_weight(weight, out):
    r"""``U[a, b] = (G g G^T)[a, b]`` for every filter and channel, as (36, F, C) in ``out``:
    one GEMM of ``kron(G, G)`` (36, 9) with the kernels as columns (9, F*C)."""
    F, C = weight.shape[:2]
    kron = np.kron(G, G).astype(weight.dtype)                        # (36, 9)
    np.matmul(kron, weight.reshape(F * C, 9).T, out=out.reshape(36, F * C))
    return out


def conv3x3(x, weight, padding, y):
    """y[:] = conv2d(x, weight, padding) (stride 1, no bias) for x (N, C, H, W), weight
    (F, C, 3, 3) and y (N, F, OH, OW), tile rows by tile rows."""
    N, C = x.shape[:2]
    F, (OH, OW) = weight.shape[0], y.shape[2:]
    TY, TX = -(-OH // M_OUT), -(-OW // M_OUT)
    rows = _rows(C, F, TY, TX, x.itemsize)
    with memory.scratch(np, (36, F, C), x.dtype, "Winograd F(4x4, 3x3) weights") as u, \
            _scratch(C, F, rows, TX, x.dtype) as (tile, v, m, s, out):
        U = transformed_weight(weight, u)                            # (36, F, C)
        for n in range(N):
            for ty0 in range(0, TY, rows):
                r = min(rows, TY - ty0)
                P = r * TX
                _pad_rows(x[n], padding, ty0, r, TX, tile)
                V = _transformed_tiles(tile, C, r, TX, v)            # (36, C, P)
                M = np.matmul(U, V, out=m[:36 * F * P].reshape(36, F, P))
                Y = _untransform(M, F, r, TX, s, out)                # (4, 4, F, r, TX)
                oh0, oh1 = ty0 * M_OUT, min((ty0 + r) * M_OUT, OH)
                y[n, :, oh0:oh1] = Y.transpose(2, 3, 0, 4, 1).reshape(
                    F, r * M_OUT, TX * M_OUT)[:, :oh1 - oh0, :OW]   # (F, rows, OW)


def _rows(C, F, TY, TX, itemsize) -> int:
    """Tile rows per chunk: transformed tiles of about TILE_BYTES, at least MIN_TILES
    tiles, and no more than fit the workspace limit (at least one)."""
    rows = max(1, min(TY, max(TILE_BYTES // (36 * C * TX * itemsize), -(-MIN_TILES // TX))))
    fitting = memory.chunks(rows, lambda r: _chunk_bytes(C, F, r, TX, itemsize),
                            "Winograd F(4x4, 3x3)", unit="tile row", required=False)
    return fitting[0][1] if fitting else 1


def weight_grad3x3(dy, x, padding, dw):
    """dw[:] = the weight gradient (F, C, 3, 3) of y = conv2d(x, W, padding) (stride 1) for
    dy (N, F, OH, OW), summed over images and tiles."""
    N, C = x.shape[:2]
    F, (OH, OW) = dy.shape[1], dy.shape[2:]
    TY, TX = -(-OH // M_OUT), -(-OW // M_OUT)
    rows = _rows(C, F, TY, TX, x.itemsize)
    first = True
    with _scratch(C, F, rows, TX, x.dtype) as (tile, v, m, s, out), \
            memory.scratch(np, (36, F, C), x.dtype, "Winograd F(4x4, 3x3) sums") as acc, \
            memory.scratch(np, (36, F, C), x.dtype, "Winograd F(4x4, 3x3) sums") as part:
        for n in range(N):
            for ty0 in range(0, TY, rows):
                r = min(rows, TY - ty0)
                _pad_rows(x[n], padding, ty0, r, TX, tile)
                V = _transformed_tiles(tile, C, r, TX, v)            # (36, C, P)
                D = _transformed_dy(dy[n], ty0, r, TX, m, s, out)    # (36, F, P)
                Vt = V.transpose(0, 2, 1)                            # (36, P, C)
                if first:
                    np.matmul(D, Vt, out=acc)                        # (36, F, C)
                    first = False
                    continue
                np.matmul(D, Vt, out=part)                           # (36, F, C)
                acc += part
        kron = np.kron(G, G).astype(x.dtype)                         # (36, 9)
        np.matmul(acc.reshape(36, F * C).T, kron, out=dw.reshape(F * C, 9))  # G^T M G
    return dw


def _transformed_dy(dy, ty0, r, TX, m, s, out):
    """A dy_p A^T of every 4x4 tile of dy's tile rows ty0..ty0+r (zero past its edge):
    (36, F, r*TX) in ``m``."""
    F, OH, OW = dy.shape
    P = r * TX
    blocks = out[:16 * F * P].reshape(M_OUT, M_OUT, F, r, TX)        # [i, j, f, ty, tx]
    oh0, oh1 = ty0 * M_OUT, min((ty0 + r) * M_OUT, OH)
    rows = dy[:, oh0:oh1]                                            # (F, <= 4r, OW)
    if oh1 - oh0 < r * M_OUT or OW < TX * M_OUT:                     # zeros past the edge
        whole = s[:16 * F * P].reshape(F, r * M_OUT, TX * M_OUT)
        whole[...] = 0
        whole[:, :oh1 - oh0, :OW] = rows
        rows = whole
    blocks.transpose(2, 3, 0, 4, 1)[...] = rows.reshape(F, r, M_OUT, TX, M_OUT)
    a = AT.T.astype(dy.dtype)                                        # (6, 4)
    half = s[:24 * F * P].reshape(ALPHA, M_OUT * F * P)
    np.matmul(a, blocks.reshape(M_OUT, -1), out=half)                # A dy, over i
    D = m[:36 * F * P].reshape(ALPHA, ALPHA, F * P)
    np.matmul(a, half.reshape(ALPHA, M_OUT, F * P), out=D)           # (A dy) A^T, over j
    return D.reshape(36, F, P)


def _chunk_bytes(C, F, rows, TX, itemsize) -> int:
    """The chunk's scratch: the padded rows, V twice, M, A^T M and Y."""
    P = rows * TX
    return itemsize * (C * (rows * M_OUT + 2) * (TX * M_OUT + 2) + 72 * C * P + 76 * F * P)


@contextlib.contextmanager
def _scratch(C, F, rows, TX, dtype):
    """One pooled buffer carved into the chunk's scratch: the padded rows, V (twice: a
    transform's input and output), M, A^T M and Y."""
    P = rows * TX
    sizes = (C * (rows * M_OUT + 2) * (TX * M_OUT + 2), 36 * C * P, 36 * C * P, 36 * F * P,
             24 * F * P, 16 * F * P)
    with memory.scratch(np, (sum(sizes),), dtype, "Winograd F(4x4, 3x3) tiles") as flat:
        ends = np.cumsum(sizes)
        tile, va, vb, m, s, out = (flat[e - n:e] for n, e in zip(sizes, ends))
        yield tile, (va, vb), m, s, out


def _pad_rows(image, padding, ty0, r, TX, tile):
    """The input rows tile rows ty0..ty0+r read, zero-padded: (C, 4r+2, 4TX+2) in ``tile``."""
    C, H, W = image.shape
    ph, pw = padding
    hh, ww = r * M_OUT + 2, TX * M_OUT + 2
    t = tile[:C * hh * ww].reshape(C, hh, ww)
    top = ty0 * M_OUT - ph                                           # x row of t's row 0
    a, b = max(top, 0), min(top + hh, H)
    t[:, :a - top] = 0
    t[:, b - top:] = 0
    t[:, a - top:b - top, :pw] = 0
    t[:, a - top:b - top, pw + W:] = 0
    t[:, a - top:b - top, pw:pw + W] = image[:, a:b, :min(W, ww - pw)]
    return t


def _transformed_tiles(tile, C, r, TX, v):
    """V = B^T d B of every 6x6 tile d of the chunk's padded rows: (36, C, r*TX)."""
    P = r * TX
    hh, ww = r * M_OUT + 2, TX * M_OUT + 2
    t = tile[:C * hh * ww].reshape(C, hh, ww)
    s0, s1, s2 = t.strides
    d = as_strided(t, shape=(ALPHA, ALPHA, C, r, TX),
                   strides=(s1, s2, s0, M_OUT * s1, M_OUT * s2))    # d[i, j, c, ty, tx]
    va, vb = v
    gathered = va[:36 * C * P].reshape(ALPHA, ALPHA, C, r, TX)
    gathered[...] = d
    bt = BT.astype(t.dtype)
    rows_done = vb[:36 * C * P].reshape(ALPHA, ALPHA * C * P)
    np.matmul(bt, gathered.reshape(ALPHA, -1), out=rows_done)        # B^T d, over i
    V = va[:36 * C * P].reshape(ALPHA, ALPHA, C * P)
    np.matmul(bt, rows_done.reshape(ALPHA, ALPHA, C * P), out=V)     # (B^T d) B, over j
    return V.reshape(36, C, P)


def _untransform(M, F, r, TX, s, out):
    """Y = A^T M A for every tile: (4, 4, F, r, TX) in ``out``."""
    P = r * TX
    at = AT.astype(M.dtype)
    S = s[:24 * F * P].reshape(M_OUT, ALPHA * F * P)
    np.matmul(at, M.reshape(ALPHA, ALPHA * F * P), out=S)            # A^T M, over a
    Y = out[:16 * F * P].reshape(M_OUT, M_OUT, F * P)
    np.matmul(at, S.reshape(M_OUT, ALPHA, F * P), out=Y)             # (A^T M) A, over b
    return Y.reshape(M_OUT, M_OUT, F, r, TX)
