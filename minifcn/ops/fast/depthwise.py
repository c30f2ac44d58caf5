"""Depthwise conv2d (one input channel per group) on the CPU: the KH*KW taps as
multiply-adds over blocks of channels laid out as padded flat planes (:mod:`.planes`); the
products are too small for a GEMM. :mod:`.grouped` dispatches here when ``C/G = 1``; each
function returns None where one channel alone does not fit the workspace limit.
"""
from __future__ import annotations

import numpy as np

from ... import memory
from .planes import carve, channel_blocks, flat_planes, kernel_taps

# Measured at 65x65 (1 thread): depthwise blocks of 16 channels (about 0.8 MiB) beat 4, 8
# and 32.
CHUNK_BYTES = 2 ** 20     # a depthwise block's planes: about one core's L2 cache


def depthwise_forward(x, weight, stride, padding, dilation, out, what):
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    M, (PH, PW) = F // C, padding                                  # M filters per channel
    lay = flat_planes((H, W), (KH, KW), stride, padding, dilation, out)
    w = weight.reshape(C, M, KH * KW)
    per_channel = lay.Hp * lay.Wp + 2 * M * lay.length
    blocks = channel_blocks(C, per_channel * x.itemsize, CHUNK_BYTES, what)
    if blocks is None:
        return None
    y = memory.result(np, (N, F) + out, x.dtype, what)             # (N, F, OH, OW)
    y5 = y.reshape(N, C, M, *out)                                  # (N, C, M, OH, OW)
    k = blocks[0][1]
    with memory.scratch(np, (k * per_channel,), x.dtype, what) as buf:
        pad, wide, tmp = carve(buf, (k, lay.Hp, lay.Wp), (k, M, lay.length),
                                (k, M, lay.length))
        pad[...] = 0                                               # the zeros around x
        for n in range(N):
            for c0, c1 in blocks:
                pad[:c1 - c0, PH:PH + H, PW:PW + W] = x[n, c0:c1]
                flat = pad[:c1 - c0].reshape(c1 - c0, 1, -1)      # (c, 1, Hp*Wp)
                acc, part = wide[:c1 - c0], tmp[:c1 - c0]          # (c, M, OH*R)
                for t in range(KH * KW):
                    np.multiply(lay.tap(flat, t), w[c0:c1, :, t, None],
                                out=part if t else acc)
                    if t:
                        acc += part
                y5[n, c0:c1] = acc.reshape(c1 - c0, M, out[0], lay.R)[..., :out[1]]
    return y


def depthwise_input_grad(dy, weight, x_shape, stride, padding, dilation, out, what):
    N, C, H, W = x_shape
    F, _, KH, KW = weight.shape
    M, (PH, PW) = F // C, padding
    lay = flat_planes((H, W), (KH, KW), stride, padding, dilation, out)
    dy5 = dy.reshape(N, C, M, *out)                                # (N, C, M, OH, OW)
    w = weight.reshape(C, M, KH * KW)
    per_channel = lay.Hp * lay.Wp + (M + 1) * lay.length
    blocks = channel_blocks(C, per_channel * dy.itemsize, CHUNK_BYTES, what)
    if blocks is None:
        return None
    dx = memory.result(np, x_shape, dy.dtype, what)                # (N, C, H, W)
    k = blocks[0][1]
    with memory.scratch(np, (k * per_channel,), dy.dtype, what) as buf:
        pad, wide, tmp = carve(buf, (k, lay.Hp, lay.Wp), (k, M, out[0], lay.R),
                                (k, lay.length))
        wide[...] = 0                                              # columns OW: stay zero
        for n in range(N):
            for c0, c1 in blocks:
                wide[:c1 - c0, ..., :out[1]] = dy5[n, c0:c1]
                g = wide[:c1 - c0].reshape(c1 - c0, M, -1)         # (c, M, OH*R)
                acc, part = pad[:c1 - c0], tmp[:c1 - c0]
                acc[...] = 0
                flat = acc.reshape(c1 - c0, -1)                    # (c, Hp*Wp)
                for t in range(KH * KW):
                    if M == 1:
                        np.multiply(g[:, 0], w[c0:c1, 0, t, None], out=part)
                    else:                                          # the sum over M filters
                        np.einsum("cml,cm->cl", g, w[c0:c1, :, t], out=part)
                    lay.tap(flat, t)[...] += part                  # (c, OH*R) into the planes
                dx[n, c0:c1] = acc[:, PH:PH + H, PW:PW + W]
    return dx


def depthwise_weight_grad(dy, x, weight_shape, stride, padding, dilation, out, what):
    N, C = x.shape[:2]
    F, _, KH, KW = weight_shape
    M = F // C
    dw = memory.result(np, (C, M, KH, KW), x.dtype, what, zeros=True)
    dy5 = dy.reshape(N, C, M, *out)                                # (N, C, M, OH, OW)
    for n in range(N):
        for i, j, (p, q), (h, v) in kernel_taps(x.shape[2:], out, (KH, KW), stride, padding,
                                          dilation):
            dw[:, :, i, j] += np.einsum("cmpq,cpq->cm", dy5[n, :, :, p, q], x[n, :, h, v])
    return dw.reshape(weight_shape)                                # (F, 1, KH, KW)
