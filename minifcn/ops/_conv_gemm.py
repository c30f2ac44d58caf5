r"""The three GEMMs of a convolution, in chunks that respect the workspace limit.

``conv.py`` and ``conv_transpose.py`` share these helpers (a transposed convolution is a
convolution's adjoint, so its forward is ``_conv2d_input_grad`` and so on). Each helper runs
over a *plan*: a list of chunks ``(n0, n1, r0, r1)``, images ``n0:n1`` and, when one image
is too large, output rows ``r0:r1`` of one image. Without a workspace limit (or when
everything fits) the plan is the whole batch at once, the classic one-im2col-one-GEMM.

A chunk of output rows reads input rows ``r0*S - P`` to ``(r1-1)*S - P + D(KH-1)``: its
im2col is the window copy with a vertical offset ``P - r0*S`` (``im2col._im2col_into``),
rows above or below the image reading zeros, so padding and dilation need no special case.
Scratch (the ``col``/``dcol`` of a chunk) is borrowed from ``minifcn.workspace`` for one
chunk; outputs are allocated fresh and written through views, never taken from the pool.

Rounding: the forward and the input gradient add each output element's terms in one GEMM
as before (the input gradient's col2im adds overlapping rows of neighbouring chunks in
another order). The weight gradient sums over chunks: each chunk's ``dY X^T`` is rounded to
the output dtype and accumulated there, so in float32 it can differ from one GEMM by a few
units in the last place per chunk (relative 1e-7 per chunk, like a different BLAS blocking).
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

from .. import memory
from ..backend import get_array_module
from . import _winograd
from .im2col import _col2im_add, _geometry, _im2col_into, _is_pointwise


class _Conv(NamedTuple):
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
        return _is_pointwise(self.w_shape[2:], self.stride, self.padding)

    def col_bytes(self, images: int, rows: int) -> int:
        """The chunk's im2col buffer; none for one image of a 1x1 conv (x is its own col)."""
        if self.pointwise and images == 1:
            return 0
        return self.ckk * images * rows * self.out[1] * self.itemsize

    def describe(self) -> str:
        return (f"{self.what} (weight {self.w_shape}, im2col image {self.x_shape}, stride "
                f"{self.stride}, padding {self.padding}, dilation {self.dilation})")


def _conv(xp, x_shape, w_shape, stride, padding, dilation, dtype, what) -> _Conv:
    out = _geometry(x_shape, w_shape[2:], stride, padding, dilation)[4]
    return _Conv(tuple(x_shape), tuple(w_shape), stride, padding, dilation, out,
                 dtype.itemsize, what, xp.__name__ != "numpy")


# --- The plan ------------------------------------------------------------------------------

def _plan(conv: _Conv, cost):
    """Chunks ``(n0, n1, r0, r1)`` whose largest buffer, ``cost(images, rows)``, fits the limit."""
    N, OH = conv.x_shape[0], conv.out[0]
    limit = memory.get_workspace_limit()
    if limit is None or cost(N, OH) <= limit:
        return [(0, N, 0, OH)]
    images = _largest(lambda k: cost(k, OH) <= limit, N)
    if images:
        return [(n0, n1, 0, OH) for n0, n1 in _split(N, images)]
    rows = _largest(lambda r: cost(1, r) <= limit, OH)
    if not rows:
        needed = cost(1, 1)
        raise memory.WorkspaceLimitError(
            f"{conv.describe()} needs {_bytes(needed)} of workspace for a single output "
            f"row, more than the workspace limit of {_bytes(limit)}; raise it with "
            f"minifcn.set_workspace_limit", needed, limit)
    return [(n, n + 1, r0, r1) for n in range(N) for r0, r1 in _split(OH, rows)]


def _bytes(n: int) -> str:
    text = memory.format_bytes(n)
    return text if n < 1024 else f"{text} ({n} bytes)"


def _largest(fits, upper: int) -> int:
    """The largest k in [1, upper] with fits(k) (fits is monotone), or 0 if none."""
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _split(total: int, most: int):
    """[0, total) in ceil(total / most) near-equal ranges of at most ``most``."""
    count = -(-total // most)
    size = -(-total // count)
    return [(a, min(a + size, total)) for a in range(0, total, size)]


# --- Per chunk ------------------------------------------------------------------------------

@contextlib.contextmanager
def _columns(x, conv: _Conv, chunk):
    """im2col of the chunk: (CKK, images*rows*OW), borrowed scratch (or a view of x)."""
    n0, n1, r0, r1 = chunk
    C, H, W = conv.x_shape[1:]
    if conv.pointwise and n1 - n0 == 1:
        yield x[n0].reshape(C, H * W)[:, r0 * W:r1 * W]             # (C, rows*W), a view
        return
    KH, KW = conv.w_shape[2:]
    shape = (C, KH, KW, n1 - n0, r1 - r0, conv.out[1])
    with memory.scratch(get_array_module(x), shape, x.dtype, f"im2col for {conv.describe()}") \
            as col:
        offset = (conv.padding[0] - r0 * conv.stride[0], conv.padding[1])
        _im2col_into(x[n0:n1], col, conv.stride, offset, conv.dilation)
        yield col.reshape(conv.ckk, -1)                              # (CKK, images*rows*OW)


def _image_rows(a, n, r0, r1):
    """Rows r0:r1 of image n of a (N, F, OH, OW) as the (F, rows*OW) matrix, a view."""
    F, OH, OW = a.shape[1:]
    return a[n].reshape(F, OH * OW)[:, r0 * OW:r1 * OW]


# --- The three GEMMs ------------------------------------------------------------------------

def _conv2d(x, weight, stride, padding, dilation, what="conv2d forward"):
    """y = conv2d(x, weight) without bias: ``W @ im2col(x)`` per chunk, into y (N, F, OH, OW)."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    conv = _conv(xp, x.shape, weight.shape, stride, padding, dilation, x.dtype, what)
    F = weight.shape[0]
    w_mat = weight.reshape(F, -1)                                    # (F, CKK)
    y = memory.result(xp, (x.shape[0], F) + conv.out, x.dtype,
                               conv.describe())                      # (N, F, OH, OW)
    if _winograd.applies(xp, x.shape, weight.shape, stride, padding, dilation, x.dtype):
        _winograd.conv3x3(x, weight, padding, y)
        return y
    for chunk in _plan(conv, conv.col_bytes):
        n0, n1, r0, r1 = chunk
        with _columns(x, conv, chunk) as col:                        # (CKK, images*L)
            L = (r1 - r0) * conv.out[1]
            for k in range(n1 - n0):                                 # a GEMM per image
                xp.matmul(w_mat, col[:, k * L:(k + 1) * L], out=_image_rows(y, n0 + k, r0, r1))
    return y


def _conv2d_input_grad(dy, weight, x_shape, stride, padding, dilation,
                       what="conv2d input gradient"):
    """dx = col2im(W^T dY): the adjoint of _conv2d in x (a transposed convolution of dy);
    for stride 1 a correlation of dy instead (:func:`_input_grad_by_correlation`)."""
    xp = get_array_module(dy)
    dy = xp.ascontiguousarray(dy)
    # The correlation convolves dy (F channels) by a (C, F, KH, KW) kernel with padding
    # D(K-1) - P, at most 2 for a 3x3 kernel: (0, 0) stands in for it in Winograd's test.
    correlation_w = (x_shape[1], weight.shape[0]) + tuple(weight.shape[2:])
    winograd = _winograd.applies(xp, dy.shape, correlation_w, stride, (0, 0), dilation, dy.dtype)
    if _correlation_padding(dy.shape, weight.shape, x_shape, stride, padding, dilation,
                            any_size=winograd):
        return _input_grad_by_correlation(dy, weight, padding, dilation, what)
    conv = _conv(xp, x_shape, weight.shape, stride, padding, dilation, dy.dtype, what)
    w_t = weight.reshape(weight.shape[0], -1).T                      # (CKK, F)
    dx = memory.result(xp, x_shape, dy.dtype, conv.describe(),
                                zeros=True)                          # (N, C, H, W)
    for chunk in _plan(conv, lambda k, r: max(conv.col_bytes(k, r), _rows_bytes(conv, k, r))):
        n0, n1, r0, r1 = chunk
        if conv.pointwise and n1 - n0 == 1:                          # dcol is dx itself
            xp.matmul(w_t, _image_rows(dy, n0, r0, r1), out=_image_rows(dx, n0, r0, r1))
            continue
        _add_chunk_gradient(dx, dy, w_t, conv, chunk)
    return dx


def _correlation_padding(dy_shape, w_shape, x_shape, stride, padding, dilation,
                         any_size=False):
    """The padding ``D(K-1) - P`` that makes the input gradient a stride-1 correlation of dy,
    or None where it is not one (a stride above 1, P > D(K-1), an output_padding: x larger
    than the correlation gives) or would not pay: a 1x1 kernel without padding (one GEMM
    already), or more filters than channels, F W > C OW, whose im2col of dy would be larger
    than col2im's buffer (and might not fit a workspace limit that col2im's fits), unless
    ``any_size`` (the correlation runs by Winograd, without an im2col)."""
    if stride != (1, 1) or _is_pointwise(w_shape[2:], stride, padding):
        return None
    if not any_size and w_shape[0] * x_shape[3] > w_shape[1] * dy_shape[3]:
        return None
    pad = tuple(dilation[a] * (w_shape[2 + a] - 1) - padding[a] for a in range(2))
    fits = all(pad[a] >= 0 and dy_shape[2 + a] + dilation[a] * (w_shape[2 + a] - 1)
               - 2 * padding[a] == x_shape[2 + a] for a in range(2))
    return pad if fits else None


def _input_grad_by_correlation(dy, weight, padding, dilation, what):
    r"""dx for stride 1 as a convolution: ``dx = conv2d(dy, W~, padding D(K-1) - P)`` with
    ``W~[c, f, i, j] = W[f, c, KH-1-i, KW-1-j]``.

    With stride 1, input pixel ``(h, w)`` feeds output ``(h + P - iD, w + P - jD)`` through
    tap ``(i, j)``, so ``dx[c, h, w] = sum_{f,i,j} W[f, c, i, j] dy[f, h + P - iD, w + P - jD]``:
    a correlation of dy, zero-padded by ``D(K-1) - P``, with the kernel flipped and its two
    channel axes swapped. One im2col of dy and one GEMM write each dx element once, where
    col2im would add nine shifted copies (for 3x3) onto a zeroed dx.
    """
    xp = get_array_module(dy)
    w_flip = xp.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C,F,KH,KW)
    pad = tuple(dilation[a] * (weight.shape[2 + a] - 1) - padding[a] for a in range(2))
    return _conv2d(dy, w_flip, (1, 1), pad, dilation, what)


def _add_chunk_gradient(dx, dy, w_t, conv: _Conv, chunk):
    """dx[n0:n1] += col2im(W^T dY) for one chunk's rows of dy."""
    n0, n1, r0, r1 = chunk
    C, (KH, KW), OW = conv.x_shape[1], conv.w_shape[2:], conv.out[1]
    shape = (C, KH, KW, n1 - n0, r1 - r0, OW)
    xp = get_array_module(dy)
    with memory.scratch(xp, shape, dy.dtype, f"col2im for {conv.describe()}") as dcol:
        dcol_mat = dcol.reshape(conv.ckk, -1)                        # (CKK, images*L)
        L = (r1 - r0) * OW
        for k in range(n1 - n0):
            xp.matmul(w_t, _image_rows(dy, n0 + k, r0, r1), out=dcol_mat[:, k * L:(k + 1) * L])
        offset = (conv.padding[0] - r0 * conv.stride[0], conv.padding[1])
        _col2im_add(dcol, dx[n0:n1], conv.stride, offset, conv.dilation,
                    whole=(r0, r1) == (0, conv.out[0]))


def _rows_bytes(conv: _Conv, images, rows):
    """The input rows a chunk of output rows reaches: the GPU col2im's gather buffer (the
    CPU adds into dx in place)."""
    if not conv.gpu or (conv.pointwise and images == 1):
        return 0
    C, H, W = conv.x_shape[1:]
    reach = (rows - 1) * conv.stride[0] + conv.dilation[0] * (conv.w_shape[2] - 1) + 1
    return images * C * min(reach, H) * W * conv.itemsize


def _conv2d_weight_grad(dy, x, weight_shape, stride, padding, dilation,
                        what="conv2d weight gradient"):
    """dW = dY im2col(x)^T: the adjoint of _conv2d in W, summed over the chunks."""
    xp = get_array_module(x)
    x, dy = xp.ascontiguousarray(x), xp.ascontiguousarray(dy)
    conv = _conv(xp, x.shape, weight_shape, stride, padding, dilation, x.dtype, what)
    F = weight_shape[0]
    if _winograd.applies(xp, x.shape, weight_shape, stride, padding, dilation, x.dtype):
        dw = memory.result(xp, weight_shape, x.dtype, conv.describe())
        return _winograd.weight_grad3x3(dy, x, padding, dw)
    plan = _plan(conv, lambda k, r: max(conv.col_bytes(k, r),
                                        F * k * r * conv.out[1] * conv.itemsize if k > 1 else 0))
    transposed = not conv.gpu and F <= TRANSPOSED_DW_FILTERS
    acc = None
    for chunk in plan:
        with _columns(x, conv, chunk) as col, _dy_matrix(dy, conv, chunk) as dy_mat:
            a, b = (col, dy_mat) if transposed else (dy_mat, col)
            if acc is None:                              # (CKK, F), or (F, CKK)
                acc = memory.result(xp, (a.shape[0], b.shape[0]), x.dtype,
                                             conv.describe())
                xp.matmul(a, b.T, out=acc)
            else:
                _accumulate(acc, a, b, conv)
    if transposed:
        dw = memory.result(xp, (F, conv.ckk), x.dtype, conv.describe())
        dw[...] = acc.T                                              # (F, CKK)
        acc = dw
    return acc.reshape(weight_shape)                                 # (F, C, KH, KW)


# On the CPU the weight gradient of a layer with few filters is computed as
# ``(im2col(x) @ dY^T)^T``: OpenBLAS ran it 8% faster than ``dY @ im2col(x)^T`` for conv1_2
# of FCN-8s (F = 64) and 3-5% for F = 128 and 256 (benchmarks/README.md, "conv2d's
# backward"); for F = 512 the two were the same.
TRANSPOSED_DW_FILTERS = 256


@contextlib.contextmanager
def _dy_matrix(dy, conv: _Conv, chunk):
    """The chunk's dy as (F, images*rows*OW): a view for one image, else borrowed scratch."""
    n0, n1, r0, r1 = chunk
    if n1 - n0 == 1:
        yield _image_rows(dy, n0, r0, r1)
        return
    F = dy.shape[1]
    shape = (F, n1 - n0) + dy.shape[2:]
    with memory.scratch(get_array_module(dy), shape, dy.dtype,
                          f"dy columns for {conv.describe()}") as mat:
        mat[...] = dy[n0:n1].transpose(1, 0, 2, 3)                  # (F, images, OH, OW)
        yield mat.reshape(F, -1)


def _accumulate(acc, a, b, conv: _Conv):
    """acc += a @ b.T through scratch of at most the workspace limit, in blocks."""
    m, n = acc.shape                     # (F, CKK), or (CKK, F) when transposed
    limit = memory.get_workspace_limit()
    cols = n if limit is None else max(1, min(n, limit // conv.itemsize))
    rows = m if limit is None else max(1, min(m, limit // (cols * conv.itemsize)))
    xp = get_array_module(acc)
    with memory.scratch(xp, (rows, cols), acc.dtype, f"weight gradient of {conv.what}") \
            as part:
        for f0 in range(0, m, rows):
            for c0 in range(0, n, cols):
                f1, c1 = min(f0 + rows, m), min(c0 + cols, n)
                block = part[:f1 - f0, :c1 - c0]
                xp.matmul(a[f0:f1], b[c0:c1].T, out=block)          # (rows, cols)
                acc[f0:f1, c0:c1] += block
