"""CUDA kernels for the GPU paths, compiled by CuPy on first use and cached.

Each kernel is a ``cupy.ElementwiseKernel``: CuPy launches one thread per element of the
output and hands the thread its flat index ``i``; the body recovers the multi-index from
``i`` and computes that one element. ``T`` is the array dtype (float or double), so one
source serves float32 and float64. Only this module and ``backend`` touch CuPy.
"""
from __future__ import annotations

import functools

from ..backend import import_cupy

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


@functools.lru_cache(maxsize=None)
def _kernel(name: str):
    cupy = import_cupy()
    if name == "im2col":
        return cupy.ElementwiseKernel(f"raw T img, {_GEOMETRY_PARAMS}", "T col",
                                      _IM2COL_BODY, "minifcn_im2col")
    if name == "col2im":
        return cupy.ElementwiseKernel(f"raw T col, {_GEOMETRY_PARAMS}", "T img",
                                      _COL2IM_BODY, "minifcn_col2im")
    raise KeyError(name)


def _geometry_args(x_shape, kernel, stride, padding, dilation, out):
    N, C, H, W = (int(s) for s in x_shape)
    return (N, C, H, W, kernel[0], kernel[1], out[0], out[1],
            stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1])


def im2col_gpu(x, kernel, stride, padding, dilation, out):
    """CuPy im2col: returns col of shape (C, KH, KW, N, OH, OW)."""
    cupy = import_cupy()
    N, C = x.shape[:2]
    x = cupy.ascontiguousarray(x)
    col = cupy.empty((C, kernel[0], kernel[1], N, out[0], out[1]), dtype=x.dtype)
    _kernel("im2col")(x, *_geometry_args(x.shape, kernel, stride, padding, dilation, out), col)
    return col


def col2im_gpu(col, x_shape, kernel, stride, padding, dilation, out):
    """CuPy col2im as a gather: returns an image of shape x_shape (N, C, H, W)."""
    cupy = import_cupy()
    col = cupy.ascontiguousarray(col)
    img = cupy.empty(tuple(int(s) for s in x_shape), dtype=col.dtype)
    _kernel("col2im")(col, *_geometry_args(x_shape, kernel, stride, padding, dilation, out), img)
    return img
