"""Where the time of minifcn's slower FCN layers goes, stage by stage, on the CPU.

    python benchmarks/profile_layers.py                    # upscore8, float32
    python benchmarks/profile_layers.py --layer pool1 --repeat 20
    python benchmarks/profile_layers.py --what-if          # and alternatives a tuning pass could take

The layers are those of ``bench_layers.py`` where minifcn ran about twice as long as torch or
more: upscore8's transposed convolution (forward and backward), pool1's backward, drop6's
backward and the loss's forward. Each stage of the op (minifcn/ops/conv_transpose.py,
pool.py, activation.py, loss.py) is replayed on its own with the same calls, beside the whole
op, and timed as the median of ``--repeat`` calls, so the stages can be checked to add up.
Stages timed apart see caches and fresh-page faults a little differently from the whole op.
The ``--what-if`` alternatives are checked to compute what the op computes before they are
timed.
"""
from __future__ import annotations

import sys

import numpy as np

from _common import parse_profile, print_stages  # (script directory)
from bench_layers import CASES
from minifcn.bench import relative_difference
from minifcn.bench.cases import SEED
from minifcn.ops import (col2im, conv_transpose2d_backward, conv_transpose2d_forward,
                         dropout_backward, dropout_forward, im2col, max_pool2d_backward,
                         max_pool2d_forward, softmax_cross_entropy_backward,
                         softmax_cross_entropy_forward)


def upscore8(x, weight, dy):
    """conv_transpose2d, kernel 16 stride 8: forward = GEMM + col2im, backward = conv2d of dy
    (im2col + GEMM) for dx and im2col + GEMM for dW."""
    k, s = weight.shape[2], 8
    C_in = weight.shape[0]
    w2 = weight.reshape(C_in, -1)                                   # (C_in, C_out*K*K)
    x_mat = x.reshape(C_in, -1)                                     # (C_in, H*W), N == 1
    dcol = w2.T @ x_mat                                             # (C_out*K*K, H*W)
    col = im2col(dy, k, stride=s)                                   # (C_out*K*K, H*W)
    y, cache = conv_transpose2d_forward(x, weight, stride=s)
    gemm = 2 * w2.size * x_mat.shape[1]
    stages = [
        ("fwd  GEMM W.T @ x -> dcol", lambda: w2.T @ x_mat, gemm),
        ("fwd  col2im: zeros + K*K adds", lambda: col2im(dcol, dy.shape, k, stride=s), 0),
        ("fwd  = conv_transpose2d_forward",
         lambda: conv_transpose2d_forward(x, weight, stride=s), gemm),
        ("bwd  im2col(dy), for dx", lambda: im2col(dy, k, stride=s), 0),
        ("bwd  GEMM W @ col -> dx", lambda: w2 @ col, gemm),
        ("bwd  im2col(dy) again, for dW", lambda: im2col(dy, k, stride=s), 0),
        ("bwd  GEMM x @ col.T -> dW", lambda: x_mat @ col.T, gemm),
        ("bwd  = conv_transpose2d_backward", lambda: conv_transpose2d_backward(dy, cache),
         2 * gemm),
    ]
    buffer = np.empty_like(dcol)
    check("phase col2im", phase_col2im(dcol, dy.shape, k, s), col2im(dcol, dy.shape, k, stride=s))
    check("phase im2col", phase_im2col(dy, k, s), col)
    check("sub-pixel forward", subpixel_forward(x, weight, s), y)
    check("sub-pixel dx", subpixel_backward(dy, x, weight, s)[0],
          conv_transpose2d_backward(dy, cache)[0])
    check("sub-pixel dW", subpixel_backward(dy, x, weight, s)[1],
          conv_transpose2d_backward(dy, cache)[1])
    what_ifs = [
        ("if   GEMM into a reused dcol", lambda: np.matmul(w2.T, x_mat, out=buffer), gemm),
        ("if   col2im as (K/S)^2 phase blocks", lambda: phase_col2im(dcol, dy.shape, k, s), 0),
        ("if   im2col as (K/S)^2 phase blocks", lambda: phase_im2col(dy, k, s), 0),
        ("if   dW as (col @ x.T).T", lambda: (col @ x_mat.T).T, gemm),
        ("if   sub-pixel forward", lambda: subpixel_forward(x, weight, s), gemm),
        ("if   sub-pixel backward", lambda: subpixel_backward(dy, x, weight, s), 2 * gemm),
    ]
    return stages, what_ifs


def subpixel_weight(weight, s):
    """For K = mS: the ``(S*S*C_out, C_in*m*m)`` matrix of the m x m convolution whose S*S*C_out
    output channels are the transposed convolution's output phases (a, b, c)."""
    C_in, C_out, k = weight.shape[:3]
    m = k // s
    w6 = weight.reshape(C_in, C_out, m, s, m, s)[:, :, ::-1, :, ::-1]  # (c_in, c, p', a, q', b)
    w6 = w6.transpose(3, 5, 1, 0, 2, 4)                              # (a, b, c, c_in, p', q')
    return np.ascontiguousarray(w6).reshape(s * s * C_out, C_in * m * m)


def subpixel_forward(x, weight, s):
    """The transposed convolution (K = mS, padding 0, N = 1) as a stride-1 m x m convolution
    of x padded by m - 1, with S*S times the output channels, then a pixel shuffle: output
    phase (a, b) of block (h, w) is channel (a, b, c) of pixel (h, w). No K*K-times larger
    dcol, no scatter-adds: one small GEMM and one transposing copy of y."""
    C_out, m = weight.shape[1], weight.shape[2] // s
    H, W = x.shape[2] + m - 1, x.shape[3] + m - 1                    # blocks of S x S
    col = im2col(x, m, padding=m - 1)                                # (C_in*m*m, H*W)
    phases = subpixel_weight(weight, s) @ col                        # (S*S*C_out, H*W)
    y5 = phases.reshape(s, s, C_out, H, W).transpose(2, 3, 0, 4, 1)  # (c, h, a, w, b)
    return np.ascontiguousarray(y5).reshape(1, C_out, H * s, W * s)


def subpixel_backward(dy, x, weight, s):
    """Its adjoint: a pixel unshuffle of dy, then the m x m convolution's dx (GEMM + col2im)
    and dW (im2col of the small x + GEMM)."""
    C_in, C_out, k = weight.shape[:3]
    m = k // s
    H, W = x.shape[2] + m - 1, x.shape[3] + m - 1
    d5 = dy.reshape(C_out, H, s, W, s).transpose(2, 4, 0, 1, 3)      # (a, b, c, h, w)
    d = np.ascontiguousarray(d5).reshape(s * s * C_out, H * W)
    dx = col2im(subpixel_weight(weight, s).T @ d, x.shape, m, padding=m - 1)
    dw = d @ im2col(x, m, padding=m - 1).T                           # (S*S*C_out, C_in*m*m)
    dw6 = dw.reshape(s, s, C_out, C_in, m, m).transpose(3, 2, 4, 0, 5, 1)  # (c_in, c, p', a, ..)
    return dx, np.ascontiguousarray(dw6[:, :, ::-1, :, ::-1]).reshape(weight.shape)


def _phases(k, s, OH, OW):
    """With K = mS (and padding 0), input pixel (h, w) and kernel offset (i, j) = (pS + a,
    qS + b) meet at output pixel ((h + p)S + a, (w + q)S + b): each of the m*m taps (p, q)
    is one shift of whole blocks. Returns m and the input's H, W."""
    m = k // s
    return m, OH // s - (m - 1), OW // s - (m - 1)


def phase_col2im(dcol, y_shape, k, s):
    """col2im for K = mS, stride S, padding 0, N = 1: m*m adds of whole (C, H, S, W, S)
    blocks instead of K*K adds of (C, H, W) slices."""
    C = y_shape[1]
    m, H, W = _phases(k, s, *y_shape[2:])
    y5 = np.zeros((C, H + m - 1, s, W + m - 1, s), dcol.dtype)      # (C, OH/S, S, OW/S, S)
    d7 = dcol.reshape(C, m, s, m, s, H, W)                          # (C, p, a, q, b, h, w)
    for p in range(m):
        for q in range(m):
            y5[:, p:p + H, :, q:q + W, :] += d7[:, p, :, q].transpose(0, 3, 1, 4, 2)
    return y5.reshape(y_shape)


def phase_im2col(y, k, s):
    """im2col's adjoint view of the same blocks: m*m strided copies."""
    C = y.shape[1]
    m, H, W = _phases(k, s, *y.shape[2:])
    y5 = y.reshape(C, H + m - 1, s, W + m - 1, s)                   # (C, OH/S, S, OW/S, S)
    col = np.empty((C, m, s, m, s, H, W), y.dtype)                  # (C, p, a, q, b, h, w)
    for p in range(m):
        for q in range(m):
            col[:, p, :, q] = y5[:, p:p + H, :, q:q + W, :].transpose(0, 2, 4, 1, 3)
    return col.reshape(C * k * k, H * W)


def pool1(x, dy):
    """max_pool2d_backward, kernel 2 stride 2: a zeroed dx, then per kernel offset k a
    compare, a ``where`` and a strided store (minifcn/ops/pool.py, _backward_cpu)."""
    _, cache = max_pool2d_forward(x, 2, 2, ceil_mode=True)
    argmax = cache.argmax                                           # (N, C, OH, OW) int8
    zero = dy.dtype.type(0)
    hits = [argmax == k for k in range(4)]                          # 4 x (N, C, OH, OW) bool
    routed = [np.where(hit, dy, zero) for hit in hits]
    windows = [(Ellipsis, slice(i, None, 2), slice(j, None, 2)) for i in range(2)
               for j in range(2)]                                   # 2*OH == H here
    reused = np.zeros(x.shape, x.dtype)

    def stores(dx):
        for window, r in zip(windows, routed):
            dx[window] = r
        return dx

    def multiply_into(dx):   # no temporaries: dy * hit written straight into dx's slice
        for window, hit in zip(windows, hits):
            np.multiply(dy, hit, out=dx[window])
        return dx

    stages = [
        ("bwd  4x argmax == k", lambda: [argmax == k for k in range(4)], 0),
        ("bwd  4x np.where(hit, dy, 0)", lambda: [np.where(h, dy, zero) for h in hits], 0),
        ("bwd  4x strided store, fresh dx", lambda: stores(np.zeros(x.shape, x.dtype)), 0),
        ("bwd  = max_pool2d_backward", lambda: max_pool2d_backward(dy, cache), 0),
    ]
    check("multiply into dx", multiply_into(np.empty(x.shape, x.dtype)),
          max_pool2d_backward(dy, cache))
    what_ifs = [
        ("if   4x strided store, reused dx", lambda: stores(reused), 0),
        ("if   4x dy * hit instead of where", lambda: [dy * h for h in hits], 0),
        ("if   4x multiply(dy, hit, out=dx[k])",
         lambda: multiply_into(np.empty(x.shape, x.dtype)), 0),
    ]
    return stages, what_ifs


def drop6(x, dy):
    """dropout_backward: ``dy * mask`` (float times bool), then ``*= 1/(1-p)``."""
    _, cache = dropout_forward(x, 0.5, True, rng=SEED)
    mask, scale = cache.mask, dy.dtype.type(cache.scale)
    dx, out = dy * mask, np.empty_like(dy)
    float_mask = mask * scale                                       # torch keeps this
    check("dy * float mask", dy * float_mask, dropout_backward(dy, cache))
    stages = [
        ("bwd  dy * mask", lambda: dy * mask, 0),
        ("bwd  *= scale", lambda: np.multiply(dx, scale, out=out), 0),
        ("bwd  = dropout_backward", lambda: dropout_backward(dy, cache), 0),
    ]
    what_ifs = [
        ("if   dy * float mask (torch's cache)", lambda: dy * float_mask, 0),
        ("if   dy * scale alone (a floor)", lambda: dy * scale, 0),
    ]
    return stages, what_ifs


def loss(logits, target, dy):
    """softmax_cross_entropy_forward over (N, C, S) logits, S = H*W: the labels (int64 copy,
    checks, flat indices of the targets), then max, subtract, gather, exp, sum, divide, and
    the per-pixel losses' mean (minifcn/ops/loss.py)."""
    N, C = logits.shape[:2]
    S = logits[0, 0].size
    x = logits.reshape(N, C, S)                                     # (N, C, S), a view

    def labels():
        t = target.reshape(N, S).astype(np.int64)                   # (N, S)
        valid = t != 255
        bool((valid & ((t < 0) | (t >= C))).any())                  # the range check
        t[~valid] = 0
        return (np.arange(N, dtype=np.int64)[:, None] * C + t) * S + np.arange(S), valid

    index, valid = labels()
    m = x.max(axis=1, keepdims=True)                                # (N, 1, S)
    z = x - m
    z_t = np.take(z.reshape(-1), index)                             # (N, S)
    e = np.exp(z)
    sum_exp = e.sum(axis=1)                                         # (N, S)
    buffer = np.empty_like(z)

    def pixel_mean():
        w_t = valid.astype(logits.dtype)
        total = w_t.sum()
        return (w_t * (np.log(sum_exp) - z_t)).sum() / total, w_t / total

    _, cache = softmax_cross_entropy_forward(logits, target, ignore_index=255)
    one = np.ones((), logits.dtype)
    stages = [
        ("fwd  labels: int64, checks, index", labels, 0),
        ("fwd  max over C", lambda: x.max(axis=1, keepdims=True), 0),
        ("fwd  x - max", lambda: np.subtract(x, m, out=buffer), 0),
        ("fwd  gather x_t - max", lambda: np.take(z.reshape(-1), index), 0),
        ("fwd  exp", lambda: np.exp(z, out=buffer), 0),
        ("fwd  sum over C", lambda: e.sum(axis=1), 0),
        ("fwd  /= sum", lambda: np.divide(e, sum_exp[:, None, :], out=buffer), 0),
        ("fwd  log, pixel losses, mean", pixel_mean, 0),
        ("fwd  = softmax_cross_entropy_forward",
         lambda: softmax_cross_entropy_forward(logits, target, ignore_index=255), 0),
        ("bwd  = softmax_cross_entropy_backward",
         lambda: softmax_cross_entropy_backward(one, cache), 0),
    ]
    what_ifs = [("if   x - max into a fresh array", lambda: np.subtract(x, m), 0)]
    return stages, what_ifs


def check(what, got, want):
    """The alternatives must compute what the op computes (up to summation order)."""
    error = relative_difference(got, want)
    if error > 1e-5:
        raise AssertionError(f"{what} differs from minifcn's op by {error:.1e}")


PROFILES = {"upscore8": upscore8, "pool1": pool1, "drop6": drop6, "loss": loss}


def main(argv=None) -> int:
    args = parse_profile("Stage-by-stage CPU time of minifcn's slower FCN layers (upscore8, "
                         "pool1's backward, drop6's backward, the loss's forward) at the sizes "
                         "of bench_layers.py.",
                         PROFILES, "upscore8", argv)
    case, dtype, rng = CASES[args.layer], np.dtype(args.dtype), np.random.default_rng(SEED)
    arrays = case.inputs(rng, dtype)
    y, _ = case.forward(SEED, **arrays)
    dy = rng.standard_normal(y.shape, np.float32).astype(dtype)
    print(f"# {case.name} {case.shape}, batch 1, {args.dtype}; median of {args.repeat}+ calls "
          "(as many as fill 50 ms)")
    stages, what_ifs = PROFILES[args.layer](**arrays, dy=dy)
    print_stages(stages + (what_ifs if args.what_if else []), args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
