r"""The three GEMMs of a convolution, in chunks that respect the workspace limit.

The reference computes ``y = W @ im2col(x)`` over the whole batch in one GEMM, then
transposes ``(F, N, OH, OW)`` to ``(N, F, OH, OW)``. This path computes the same products
over a *plan*: chunks ``(n0, n1, r0, r1)`` of images ``n0:n1`` and, when one image is too
large for the workspace limit, output rows ``r0:r1`` of one image. One GEMM per image
writes straight into y through a view (no transpose), the columns live in pooled scratch
(:func:`minifcn.memory.scratch`) and the results in recycled memory.

A chunk of output rows reads input rows ``r0*S - P`` to ``(r1-1)*S - P + D(KH-1)``: its
im2col is the window copy with a vertical offset ``P - r0*S`` (:mod:`.windows`), so padding
and dilation need no special case. The weight gradient sums over chunks: each chunk's
``dY X^T`` is rounded to the output dtype and accumulated, so in float32 it can differ from
one GEMM by a few units in the last place per chunk (like another BLAS blocking).
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

from ... import memory
from ...backend import get_array_module
from ..arguments import is_pointwise
from .windows import col2im_add, im2col_into

RULE = ("any convolution without groups (the general fast path): chunked under the workspace "
        "limit")


def applies(call) -> bool:
    """Every convolution but a grouped one (those run the reference's per-group GEMMs)."""
    return call.groups == 1


class ConvShape(NamedTuple):
    """The geometry of a convolution of x (N, C, H, W) by a (F, C, KH, KW) weight."""
    x_shape: tuple
    w_shape: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    out: tuple                       # (OH, OW)
    itemsize: int
    what: str                        # e.g. "conv2d forward", for messages
    gpu: bool                        # CuPy arrays: col2im gathers rows into scratch

    @property
    def ckk(self) -> int:
        return self.w_shape[1] * self.w_shape[2] * self.w_shape[3]

    @property
    def pointwise(self) -> bool:
        return is_pointwise(self.w_shape[2:], self.stride, self.padding)

    def col_bytes(self, images: int, rows: int) -> int:
        """The chunk's im2col buffer; none for one image of a 1x1 conv (x is its own col)."""
        if self.pointwise and images == 1:
            return 0
        return self.ckk * images * rows * self.out[1] * self.itemsize

    def rows_bytes(self, images: int, rows: int) -> int:
        """The input rows a chunk of output rows reaches: the GPU col2im's gather buffer
        (the CPU adds into dx in place)."""
        if not self.gpu or (self.pointwise and images == 1):
            return 0
        C, H, W = self.x_shape[1:]
        reach = (rows - 1) * self.stride[0] + self.dilation[0] * (self.w_shape[2] - 1) + 1
        return images * C * min(reach, H) * W * self.itemsize

    def describe(self) -> str:
        return (f"{self.what} (weight {self.w_shape}, im2col image {self.x_shape}, stride "
                f"{self.stride}, padding {self.padding}, dilation {self.dilation})")


def conv_shape(xp, x_shape, w_shape, stride, padding, dilation, dtype, what) -> ConvShape:
    out = tuple((x_shape[2 + a] + 2 * padding[a] - dilation[a] * (w_shape[2 + a] - 1) - 1)
                // stride[a] + 1 for a in range(2))
    return ConvShape(tuple(x_shape), tuple(w_shape), stride, padding, dilation, out,
                     dtype.itemsize, what, xp.__name__ != "numpy")


def plan(conv: ConvShape, cost):
    """Chunks ``(n0, n1, r0, r1)`` whose largest buffer, ``cost(images, rows)``, fits the
    workspace limit: whole images where possible, else rows of one image."""
    N, OH = conv.x_shape[0], conv.out[0]
    images = memory.chunks(N, lambda k: cost(k, OH), conv.describe, required=False)
    if images is not None:
        return [(n0, n1, 0, OH) for n0, n1 in images]
    rows = memory.chunks(OH, lambda r: cost(1, r), conv.describe, unit="output row")
    return [(n, n + 1, r0, r1) for n in range(N) for r0, r1 in rows]


def gemm_plan(conv: ConvShape, cost):
    """The chunks of this path's three GEMMs: :func:`plan`'s, except for a 1x1 convolution,
    which goes image by image (each image of x is its own im2col and each of dy its own
    ``dY``, views that take no memory), where whole batches would be copied. (An empty
    batch keeps :func:`plan`'s one empty chunk, through which the GEMMs give zeros.)"""
    if conv.pointwise and conv.x_shape[0] > 0:
        return [(n, n + 1, 0, conv.out[0]) for n in range(conv.x_shape[0])]
    return plan(conv, cost)


@contextlib.contextmanager
def chunk_columns(x, conv: ConvShape, chunk):
    """im2col of the chunk: (CKK, images*rows*OW), in scratch (or a view of x)."""
    n0, n1, r0, r1 = chunk
    C, H, W = conv.x_shape[1:]
    if conv.pointwise and n1 - n0 == 1:
        yield x[n0].reshape(C, H * W)[:, r0 * W:r1 * W]             # (C, rows*W), a view
        return
    KH, KW = conv.w_shape[2:]
    shape = (C, KH, KW, n1 - n0, r1 - r0, conv.out[1])
    with memory.scratch(get_array_module(x), shape, x.dtype,
                        lambda: f"im2col for {conv.describe()}") as col:
        offset = (conv.padding[0] - r0 * conv.stride[0], conv.padding[1])
        im2col_into(x[n0:n1], col, conv.stride, offset, conv.dilation)
        yield col.reshape(conv.ckk, -1)                              # (CKK, images*rows*OW)


def image_rows(a, n, r0, r1):
    """Rows r0:r1 of image n of a (N, F, OH, OW) as the (F, rows*OW) matrix, a view."""
    F, OH, OW = a.shape[1:]
    return a[n].reshape(F, OH * OW)[:, r0 * OW:r1 * OW]


def add_bias(y, bias):
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


# --- The three GEMMs ------------------------------------------------------------------------

def forward(x, weight, bias, stride, padding, dilation, what="conv2d forward"):
    """y = conv2d(x, weight) + bias: ``W @ im2col(x)`` per chunk, into y (N, F, OH, OW)."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    conv = conv_shape(xp, x.shape, weight.shape, stride, padding, dilation, x.dtype, what)
    F = weight.shape[0]
    w_mat = weight.reshape(F, -1)                                    # (F, CKK)
    y = memory.result(xp, (x.shape[0], F) + conv.out, x.dtype,
                      conv.describe)                               # (N, F, OH, OW)
    for chunk in gemm_plan(conv, conv.col_bytes):
        n0, n1, r0, r1 = chunk
        with chunk_columns(x, conv, chunk) as col:                   # (CKK, images*L)
            L = (r1 - r0) * conv.out[1]
            for k in range(n1 - n0):                                 # a GEMM per image
                xp.matmul(w_mat, col[:, k * L:(k + 1) * L], out=image_rows(y, n0 + k, r0, r1))
    return add_bias(y, bias)


def input_grad(dy, weight, x_shape, stride, padding, dilation, what="conv2d input gradient"):
    """dx = col2im(W^T dY), chunk by chunk: the adjoint of :func:`forward` in x."""
    xp = get_array_module(dy)
    dy = xp.ascontiguousarray(dy)
    conv = conv_shape(xp, x_shape, weight.shape, stride, padding, dilation, dy.dtype, what)
    w_t = weight.reshape(weight.shape[0], -1).T                      # (CKK, F)
    dx = memory.result(xp, x_shape, dy.dtype, conv.describe,
                       zeros=not conv.pointwise)                     # (N, C, H, W)
    for chunk in gemm_plan(conv, lambda k, r: max(conv.col_bytes(k, r),
                                                 conv.rows_bytes(k, r))):
        n0, n1, r0, r1 = chunk
        if conv.pointwise and n1 - n0 == 1:                          # dcol is dx itself
            xp.matmul(w_t, image_rows(dy, n0, r0, r1), out=image_rows(dx, n0, r0, r1))
            continue
        _add_chunk_gradient(dx, dy, w_t, conv, chunk)
    return dx


def _add_chunk_gradient(dx, dy, w_t, conv: ConvShape, chunk):
    """dx[n0:n1] += col2im(W^T dY) for one chunk's rows of dy."""
    n0, n1, r0, r1 = chunk
    C, (KH, KW), OW = conv.x_shape[1], conv.w_shape[2:], conv.out[1]
    shape = (C, KH, KW, n1 - n0, r1 - r0, OW)
    xp = get_array_module(dy)
    with memory.scratch(xp, shape, dy.dtype, lambda: f"col2im for {conv.describe()}") as dcol:
        dcol_mat = dcol.reshape(conv.ckk, -1)                        # (CKK, images*L)
        L = (r1 - r0) * OW
        for k in range(n1 - n0):
            xp.matmul(w_t, image_rows(dy, n0 + k, r0, r1), out=dcol_mat[:, k * L:(k + 1) * L])
        offset = (conv.padding[0] - r0 * conv.stride[0], conv.padding[1])
        col2im_add(dcol, dx[n0:n1], conv.stride, offset, conv.dilation,
                   whole=(r0, r1) == (0, conv.out[0]))


# On the CPU the weight gradient of a layer with few filters is computed as
# ``(im2col(x) @ dY^T)^T``, which OpenBLAS runs faster for F <= 256 (benchmarks/README.md,
# "conv2d's backward").
TRANSPOSED_DW_FILTERS = 256


def weight_grad(dy, x, weight_shape, stride, padding, dilation, what="conv2d weight gradient"):
    """dW = dY im2col(x)^T: the adjoint of :func:`forward` in W, summed over the chunks."""
    xp = get_array_module(x)
    x, dy = xp.ascontiguousarray(x), xp.ascontiguousarray(dy)
    conv = conv_shape(xp, x.shape, weight_shape, stride, padding, dilation, x.dtype, what)
    F = weight_shape[0]
    chunks = gemm_plan(conv, lambda k, r: max(conv.col_bytes(k, r),
                                              F * k * r * conv.out[1] * conv.itemsize
                                              if k > 1 else 0))
    transposed = not conv.gpu and F <= TRANSPOSED_DW_FILTERS
    acc = None
    for chunk in chunks:
        with chunk_columns(x, conv, chunk) as col, _dy_matrix(dy, conv, chunk) as dy_mat:
            a, b = (col, dy_mat) if transposed else (dy_mat, col)
            if acc is None:                              # (CKK, F), or (F, CKK)
                acc = memory.result(xp, (a.shape[0], b.shape[0]), x.dtype, conv.describe)
                xp.matmul(a, b.T, out=acc)
            else:
                accumulate(acc, a, b, conv)
    if transposed:
        dw = memory.result(xp, (F, conv.ckk), x.dtype, conv.describe)
        dw[...] = acc.T                                              # (F, CKK)
        acc = dw
    return acc.reshape(weight_shape)                                 # (F, C, KH, KW)


@contextlib.contextmanager
def _dy_matrix(dy, conv: ConvShape, chunk):
    """The chunk's dy as (F, images*rows*OW): a view for one image, else scratch."""
    n0, n1, r0, r1 = chunk
    if n1 - n0 == 1:
        yield image_rows(dy, n0, r0, r1)
        return
    F = dy.shape[1]
    shape = (F, n1 - n0) + dy.shape[2:]
    with memory.scratch(get_array_module(dy), shape, dy.dtype,
                        lambda: f"dy columns for {conv.describe()}") as mat:
        mat[...] = dy[n0:n1].transpose(1, 0, 2, 3)                  # (F, images, OH, OW)
        yield mat.reshape(F, -1)


def accumulate(acc, a, b, conv: ConvShape):
    """acc += a @ b.T through scratch of at most the workspace limit, in blocks."""
    m, n, size = acc.shape + (conv.itemsize,)    # (F, CKK), or (CKK, F) when transposed
    what = f"weight gradient of {conv.what}"
    cols = memory.chunks(n, lambda c: c * size, what, unit="column")[0][1]
    rows = memory.chunks(m, lambda r: r * cols * size, what, unit="row")[0][1]
    xp = get_array_module(acc)
    with memory.scratch(xp, (rows, cols), acc.dtype, f"weight gradient of {conv.what}") as part:
        for f0 in range(0, m, rows):
            for c0 in range(0, n, cols):
                f1, c1 = min(f0 + rows, m), min(c0 + cols, n)
                block = part[:f1 - f0, :c1 - c0]
                xp.matmul(a[f0:f1], b[c0:c1].T, out=block)          # (rows, cols)
                acc[f0:f1, c0:c1] += block
