"""CUDA kernels for the GPU paths, compiled by CuPy on first use and cached.

Each kernel is a ``cupy.ElementwiseKernel``: CuPy launches one thread per element of the
output and hands the thread its flat index ``i``; the body recovers the multi-index from
``i`` and computes that one element. ``T`` is the array dtype (float or double), so one
source serves float32 and float64. Only this module and ``backend`` touch CuPy. The
kernels compute what ``minifcn/ops/reference/`` computes, one output element per thread.
"""
from __future__ import annotations

import functools

from ...backend import import_cupy
from ..reference.pool import index_dtype

RULE = "CuPy arrays: one CUDA thread per output element (max_pool2d: per output, then per input)"


def applies(call) -> bool:
    return call.device == "cuda"

_GEOMETRY_PARAMS = ("int32 N, int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 OH, int32 OW, "
                    "int32 SH, int32 SW, int32 PH, int32 PW, int32 DH, int32 DW")

# Thread i writes col[c, kh, kw, n, oh, ow]: the input pixel that kernel offset (kh, kw)
# of output position (oh, ow) reads, or 0 in the padding.
_IM2COL_BODY = r"""
    ptrdiff_t t = i;
    const int ow = t % OW; t /= OW;
    const int oh = t % OH; t /= OH;
    const int n  = t % N;  t /= N;
    const int kw = t % KW; t /= KW;
    const int kh = t % KH;
    const int c  = t / KH;
    const int h = oh * SH - PH + kh * DH;
    const int w = ow * SW - PW + kw * DW;
    if (0 <= h && h < H && 0 <= w && w < W) {
        col = img[((ptrdiff_t)(n * C + c) * H + h) * W + w];
    } else {
        col = (T)0;
    }
"""

# Thread i writes img[n, c, h, w]: the sum of every column entry that im2col copied from
# this pixel. Kernel offset kh reaches row h from output row oh = (h + PH - kh*DH) / SH when
# that division is exact and oh lies in [0, OH); likewise for columns. A gather, so each
# output is written by one thread in a fixed order: no atomics, deterministic.
_COL2IM_BODY = r"""
    ptrdiff_t t = i;
    const int w = t % W; t /= W;
    const int h = t % H; t /= H;
    const int c = t % C;
    const int n = t / C;
    T sum = 0;
    for (int kh = 0; kh < KH; ++kh) {
        const int y = h + PH - kh * DH;
        if (y < 0 || y % SH != 0) continue;
        const int oh = y / SH;
        if (oh >= OH) continue;
        for (int kw = 0; kw < KW; ++kw) {
            const int x = w + PW - kw * DW;
            if (x < 0 || x % SW != 0) continue;
            const int ow = x / SW;
            if (ow >= OW) continue;
            sum += col[((((ptrdiff_t)(c * KH + kh) * KW + kw) * N + n) * OH + oh) * OW + ow];
        }
    }
    img = sum;
"""


_POOL_PARAMS = ("int32 N, int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 OH, int32 OW, "
                "int32 SH, int32 SW, int32 PH, int32 PW")

# Thread i writes y[n, c, oh, ow] and argmax[n, c, oh, ow]: the maximum of the window's part
# inside x (the -inf padding never wins) and its kernel offset kh*KW + kw. The running
# maximum starts at the window's first element inside x and moves on `v > best || isnan(v)`,
# PyTorch's rule: the first maximum in row-major order wins ties, a NaN wins the window.
_MAX_POOL_FORWARD_BODY = r"""
    ptrdiff_t t = i;
    const int ow = t % OW; t /= OW;
    const int oh = t % OH;
    const ptrdiff_t plane = t / OH;                  /* n * C + c */
    const int h0 = oh * SH - PH, w0 = ow * SW - PW;  /* window origin, may be in the padding */
    const int hs = max(h0, 0), he = min(h0 + KH, H);
    const int ws = max(w0, 0), we = min(w0 + KW, W);
    const T* xp = &x[plane * H * W];
    T best = xp[hs * W + ws];
    int arg = (hs - h0) * KW + (ws - w0);
    for (int h = hs; h < he; ++h) {
        for (int w = ws; w < we; ++w) {
            const T v = xp[h * W + w];
            if (v > best || isnan(v)) {
                best = v;
                arg = (h - h0) * KW + (w - w0);
            }
        }
    }
    y = best;
    argmax = arg;
"""

# Thread i writes dx[n, c, h, w]: the sum of dy over the windows that contain (h, w) and
# chose it. Output row oh's window covers rows [oh*SH - PH, oh*SH - PH + KH), so (h, w) lies
# in the windows oh = ceil((h + PH - KH + 1) / SH) .. floor((h + PH) / SH), likewise ow.
# They are visited with oh and ow decreasing, i.e. kernel offsets (kh, kw) increasing, the
# NumPy path's order: a gather without atomics, deterministic and equal to the CPU sum.
_MAX_POOL_BACKWARD_BODY = r"""
    ptrdiff_t t = i;
    const int w = t % W; t /= W;
    const int h = t % H;
    const ptrdiff_t plane = t / H;                   /* n * C + c */
    const int oh_lo = max(0, (h + PH - KH + SH) / SH), oh_hi = min(OH - 1, (h + PH) / SH);
    const int ow_lo = max(0, (w + PW - KW + SW) / SW), ow_hi = min(OW - 1, (w + PW) / SW);
    T sum = 0;
    for (int oh = oh_hi; oh >= oh_lo; --oh) {
        const int kh = h + PH - oh * SH;
        for (int ow = ow_hi; ow >= ow_lo; --ow) {
            const int kw = w + PW - ow * SW;
            const ptrdiff_t o = (plane * OH + oh) * OW + ow;
            if (argmax[o] == kh * KW + kw) sum += dy[o];
        }
    }
    dx = sum;
"""


# name: (in_params, out_params, body) of each cupy.ElementwiseKernel, "minifcn_" + name on
# the GPU. tests/test_cuda_nvcc.py compiles every entry with nvcc, and the CuPy emulation of
# the tests runs every entry compiled for the host.
KERNELS = {
    "im2col": (f"raw T img, {_GEOMETRY_PARAMS}", "T col", _IM2COL_BODY),
    "col2im": (f"raw T col, {_GEOMETRY_PARAMS}", "T img", _COL2IM_BODY),
    "max_pool2d_forward": (f"raw T x, {_POOL_PARAMS}", "T y, I argmax",
                           _MAX_POOL_FORWARD_BODY),
    "max_pool2d_backward": (f"raw T dy, raw I argmax, {_POOL_PARAMS}", "T dx",
                            _MAX_POOL_BACKWARD_BODY),
}


@functools.lru_cache(maxsize=None)
def _kernel(name: str):
    in_params, out_params, body = KERNELS[name]
    return import_cupy().ElementwiseKernel(in_params, out_params, body, f"minifcn_{name}")


def _geometry_args(x_shape, kernel, stride, padding, dilation, out):
    N, C, H, W = (int(s) for s in x_shape)
    return (N, C, H, W, kernel[0], kernel[1], out[0], out[1],
            stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1])


def im2col_gpu(x, kernel, stride, padding, dilation, out, col=None):
    """CuPy im2col: returns col of shape (C, KH, KW, N, OH, OW), written into ``col`` when
    given (C-contiguous). ``padding`` is the top/left offset: output row oh reads input row
    ``oh*SH - PH + kh*DH``; a negative PH starts further down (a chunk of output rows)."""
    cupy = import_cupy()
    N, C = x.shape[:2]
    x = cupy.ascontiguousarray(x)
    if col is None:
        col = cupy.empty((C, kernel[0], kernel[1], N, out[0], out[1]), dtype=x.dtype)
    _kernel("im2col")(x, *_geometry_args(x.shape, kernel, stride, padding, dilation, out), col)
    return col


def col2im_gpu(col, x_shape, kernel, stride, padding, dilation, out, img=None):
    """CuPy col2im as a gather: returns an image of shape x_shape (N, C, H, W), written into
    ``img`` when given (C-contiguous)."""
    cupy = import_cupy()
    col = cupy.ascontiguousarray(col)
    if img is None:
        img = cupy.empty(tuple(int(s) for s in x_shape), dtype=col.dtype)
    _kernel("col2im")(col, *_geometry_args(x_shape, kernel, stride, padding, dilation, out), img)
    return img


def _pool_args(x_shape, kernel, stride, padding, out):
    N, C, H, W = (int(s) for s in x_shape)
    return (N, C, H, W, kernel[0], kernel[1], out[0], out[1],
            stride[0], stride[1], padding[0], padding[1])


def max_pool2d_forward_gpu(x, kernel, stride, padding, out):
    """CuPy max pooling, one thread per output: returns y and argmax, both (N, C, OH, OW)."""
    cupy = import_cupy()
    x = cupy.ascontiguousarray(x)
    shape = tuple(x.shape[:2]) + tuple(out)
    y = cupy.empty(shape, dtype=x.dtype)
    argmax = cupy.empty(shape, dtype=index_dtype(kernel))
    _kernel("max_pool2d_forward")(x, *_pool_args(x.shape, kernel, stride, padding, out),
                                  y, argmax)
    return y, argmax


def max_pool2d_backward_gpu(dy, argmax, x_shape, kernel, stride, padding):
    """CuPy max-pooling backward as a gather, one thread per input pixel: returns dx."""
    cupy = import_cupy()
    dy = cupy.ascontiguousarray(dy)
    out = tuple(argmax.shape[2:])
    dx = cupy.empty(tuple(int(s) for s in x_shape), dtype=dy.dtype)
    _kernel("max_pool2d_backward")(dy, argmax, *_pool_args(x_shape, kernel, stride, padding,
                                                          out), dx)
    return dx
