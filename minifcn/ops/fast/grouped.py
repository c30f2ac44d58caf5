r"""Grouped and depthwise conv2d (groups > 1) on the CPU, a block of channels at a time.

The reference computes groups as one im2col of every channel and a batched GEMM over the
groups. This path computes the same products over *padded flat planes*
(:class:`.planes.Planes`): a block of channels is copied into zeros of (Hp, Wp), and the
output is computed "wide", each output row R positions long of which the first OW are
kept. Then kernel tap (i, j) reads the flat planes at one offset with one step,

.. math:: y_{wide}[n, f, l] \mathrel{+}= W[f, c, i, j]\; x_{flat}[n, c, (iD_H W_p + jD_W) + S_W l]

so every tap is a single long strided slice, and the blocks are sized to stay in cache:

* **Depthwise** (one input channel per group, ``C/G = 1``; M = F/C filters per channel):
  the products are too small for a GEMM, so each tap is one broadcast multiply-add over the
  block (:mod:`.depthwise`); the input gradient adds each tap's ``W dy`` back at the same
  offsets, and the weight gradient is one dot product per channel and tap.
* **Several channels per group** (here): im2col of the block is one copy of a strided view
  of the planes (:meth:`.planes.Planes.columns`), then one batched GEMM over the block's
  groups, as the reference; col2im adds the columns back a tap at a time. When a single
  group does not fit the workspace limit, each group is an ordinary convolution and runs
  :mod:`.gemm`, which splits it further.

The weight gradients sum in another order than the reference's GEMM (float32: a few units
in the last place, as :mod:`.gemm`'s chunks); forward and input gradient of a depthwise
convolution sum the taps in another order too.
"""
from __future__ import annotations

import numpy as np

from ... import memory
from . import gemm
from .depthwise import depthwise_forward, depthwise_input_grad, depthwise_weight_grad
from .planes import carve, channel_blocks, flat_planes, out_size

RULE = ("CPU, groups > 1: depthwise as KH*KW multiply-adds over blocks of channels, several "
        "channels per group as im2col and batched GEMMs over blocks of groups, under the "
        "workspace limit")

# Measured at 65x65 (1 thread): 32 groups of 8 channels ran 10-15% faster in 2 MiB blocks
# than in 8 MiB ones, and 40% faster than in one block of the whole layer.
GROUP_BYTES = 2 ** 21     # a block of groups' planes, columns and products


def applies(call) -> bool:
    """Grouped convolutions on NumPy (on CuPy the reference's batched GEMM stays: the tap
    loop would be 2*KH*KW kernel launches per block, and no GPU measured it)."""
    return call.groups > 1 and call.device == "cpu"


# --- Several channels per group: im2col of the planes and batched GEMMs over blocks of groups

def _layout(x_shape, weight_shape, stride, padding, dilation, out):
    """``(G, F/G, C/G, CKK/G, planes)`` of a grouped convolution."""
    F, Cg, KH, KW = weight_shape
    G = x_shape[1] // Cg
    lay = flat_planes(tuple(x_shape[2:]), (KH, KW), stride, padding, dilation, out)
    return G, F // G, Cg, Cg * KH * KW, lay


def _grouped_forward(x, weight, stride, padding, dilation, out, what):
    N, _, H, W = x.shape
    (PH, PW), (KH, KW) = padding, weight.shape[2:]
    G, Fg, Cg, ckk, lay = _layout(x.shape, weight.shape, stride, padding, dilation, out)
    per_group = Cg * lay.Hp * lay.Wp + (ckk + Fg) * lay.length
    blocks = channel_blocks(G, per_group * x.itemsize, GROUP_BYTES, what)
    if blocks is None:
        return None
    y = memory.result(np, (N, G * Fg) + out, x.dtype, what)       # (N, F, OH, OW)
    w = weight.reshape(G, Fg, ckk)                                 # (G, F/G, CKK/G)
    k = blocks[0][1]
    with memory.scratch(np, (k * per_group,), x.dtype, what) as buf:
        pad, col, wide = carve(buf, (k * Cg, lay.Hp, lay.Wp), (k, ckk, lay.length),
                                (k, Fg, lay.length))
        pad[...] = 0                                               # the zeros around x
        for n in range(N):
            for g0, g1 in blocks:
                c0, c1, f0, f1 = g0 * Cg, g1 * Cg, g0 * Fg, g1 * Fg
                pad[:c1 - c0, PH:PH + H, PW:PW + W] = x[n, c0:c1]
                col[:g1 - g0].reshape(c1 - c0, KH, KW, -1)[...] = lay.columns(pad[:c1 - c0])
                np.matmul(w[g0:g1], col[:g1 - g0], out=wide[:g1 - g0])   # (g, F/G, OH*R)
                y[n, f0:f1] = wide[:g1 - g0].reshape(f1 - f0, out[0], lay.R)[..., :out[1]]
    return y


def _grouped_input_grad(dy, weight, x_shape, stride, padding, dilation, out, what):
    N, _, H, W = x_shape
    (PH, PW), (KH, KW) = padding, weight.shape[2:]
    G, Fg, Cg, ckk, lay = _layout(x_shape, weight.shape, stride, padding, dilation, out)
    per_group = Cg * lay.Hp * lay.Wp + (ckk + Fg) * lay.length
    blocks = channel_blocks(G, per_group * dy.itemsize, GROUP_BYTES, what)
    if blocks is None:
        return None
    dx = memory.result(np, x_shape, dy.dtype, what)                # (N, C, H, W)
    w_t = weight.reshape(G, Fg, ckk).transpose(0, 2, 1)            # (G, CKK/G, F/G)
    k = blocks[0][1]
    with memory.scratch(np, (k * per_group,), dy.dtype, what) as buf:
        pad, dcol, wide = carve(buf, (k * Cg, lay.Hp, lay.Wp), (k, ckk, lay.length),
                                 (k * Fg, out[0], lay.R))
        wide[...] = 0                                              # columns OW: stay zero
        for n in range(N):
            for g0, g1 in blocks:
                c0, c1, f0, f1 = g0 * Cg, g1 * Cg, g0 * Fg, g1 * Fg
                wide[:f1 - f0, :, :out[1]] = dy[n, f0:f1]
                np.matmul(w_t[g0:g1], wide[:f1 - f0].reshape(g1 - g0, Fg, -1),
                          out=dcol[:g1 - g0])                      # (g, CKK/G, OH*R)
                acc = pad[:c1 - c0]
                acc[...] = 0
                flat = acc.reshape(c1 - c0, -1)                    # (c, Hp*Wp)
                taps = dcol[:g1 - g0].reshape(c1 - c0, KH * KW, -1)  # (c, KH*KW, OH*R)
                for t in range(KH * KW):                           # col2im, a tap at a time
                    lay.tap(flat, t)[...] += taps[:, t]
                dx[n, c0:c1] = acc[:, PH:PH + H, PW:PW + W]
    return dx


def _grouped_weight_grad(dy, x, weight_shape, stride, padding, dilation, out, what):
    N, _, H, W = x.shape
    (PH, PW), (KH, KW) = padding, weight_shape[2:]
    G, Fg, Cg, ckk, lay = _layout(x.shape, weight_shape, stride, padding, dilation, out)
    per_group = Cg * lay.Hp * lay.Wp + N * (ckk + Fg) * lay.length + ckk * Fg
    blocks = channel_blocks(G, per_group * x.itemsize, GROUP_BYTES, what)
    if blocks is None:
        return None
    dw = memory.result(np, (G, Fg, ckk), x.dtype, what)           # (G, F/G, CKK/G)
    k = blocks[0][1]
    with memory.scratch(np, (k * per_group,), x.dtype, what) as buf:
        pad, col, wide, dw_t = carve(buf, (k * Cg, lay.Hp, lay.Wp),
                                      (k * ckk, N, lay.length), (k * Fg, N, out[0], lay.R),
                                      (k, ckk, Fg))
        pad[...] = 0
        wide[...] = 0                                              # columns OW: stay zero
        for g0, g1 in blocks:
            c0, c1, f0, f1 = g0 * Cg, g1 * Cg, g0 * Fg, g1 * Fg
            for n in range(N):                                     # every image's columns
                pad[:c1 - c0, PH:PH + H, PW:PW + W] = x[n, c0:c1]
                col[:(g1 - g0) * ckk, n].reshape(c1 - c0, KH, KW, -1)[...] = \
                    lay.columns(pad[:c1 - c0])
                wide[:f1 - f0, n, :, :out[1]] = dy[n, f0:f1]
            # (col @ dY^T)^T: OpenBLAS runs it faster than dY @ col^T when F/G is small
            # (about 1.6x at F/G = 8; gemm.TRANSPOSED_DW_FILTERS is the same choice)
            np.matmul(col[:(g1 - g0) * ckk].reshape(g1 - g0, ckk, -1),  # (g, CKK/G, N*OH*R)
                      wide[:f1 - f0].reshape(g1 - g0, Fg, -1).transpose(0, 2, 1),
                      out=dw_t[:g1 - g0])                          # (g, CKK/G, F/G)
            dw[g0:g1] = dw_t[:g1 - g0].transpose(0, 2, 1)
    return dw.reshape(weight_shape)                                # (F, C/G, KH, KW)


# --- Where one group does not fit the workspace limit: each group by gemm ----------------------

def _forward_by_gemm(x, weight, stride, padding, dilation, out, what):
    N, (F, Cg) = x.shape[0], weight.shape[:2]
    G = x.shape[1] // Cg
    Fg = F // G
    y = memory.result(np, (N, F) + out, x.dtype, what)            # (N, F, OH, OW)
    for g in range(G):
        y[:, g * Fg:(g + 1) * Fg] = gemm.forward(
            x[:, g * Cg:(g + 1) * Cg], weight[g * Fg:(g + 1) * Fg], None, stride, padding,
            dilation, what)
    return y


def _input_grad_by_gemm(dy, weight, x_shape, stride, padding, dilation, out, what):
    N, C, H, W = x_shape
    F, Cg = weight.shape[:2]
    G = C // Cg
    Fg = F // G
    dx = memory.result(np, x_shape, dy.dtype, what)                # (N, C, H, W)
    for g in range(G):
        dx[:, g * Cg:(g + 1) * Cg] = gemm.input_grad(
            dy[:, g * Fg:(g + 1) * Fg], weight[g * Fg:(g + 1) * Fg], (N, Cg, H, W), stride,
            padding, dilation, what)
    return dx


def _weight_grad_by_gemm(dy, x, weight_shape, stride, padding, dilation, out, what):
    F, Cg = weight_shape[:2]
    G = x.shape[1] // Cg
    Fg = F // G
    dw = memory.result(np, weight_shape, x.dtype, what)           # (F, C/G, KH, KW)
    for g in range(G):
        dw[g * Fg:(g + 1) * Fg] = gemm.weight_grad(
            dy[:, g * Fg:(g + 1) * Fg], x[:, g * Cg:(g + 1) * Cg], (Fg,) + weight_shape[1:],
            stride, padding, dilation, what)
    return dw


# --- The three pieces, with the reference's signatures ----------------------------------------

def forward(x, weight, bias, stride, padding, dilation):
    """y = conv2d(x, weight, groups=C/(C/G)) + bias."""
    x = np.ascontiguousarray(x)
    args = (x, weight, stride, padding, dilation,
            out_size(x.shape, weight.shape, stride, padding, dilation), "grouped conv2d forward")
    y = (depthwise_forward if weight.shape[1] == 1 else _grouped_forward)(*args)
    return gemm.add_bias(_forward_by_gemm(*args) if y is None else y, bias)


def input_grad(dy, weight, x_shape, stride, padding, dilation):
    """dx of a grouped conv2d: the adjoint of :func:`forward` in x."""
    args = (np.ascontiguousarray(dy), weight, tuple(x_shape), stride, padding, dilation,
            out_size(x_shape, weight.shape, stride, padding, dilation),
            "grouped conv2d input gradient")
    dx = (depthwise_input_grad if weight.shape[1] == 1 else _grouped_input_grad)(*args)
    return _input_grad_by_gemm(*args) if dx is None else dx


def weight_grad(dy, x, weight_shape, stride, padding, dilation):
    """dW of a grouped conv2d: the adjoint of :func:`forward` in W."""
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    args = (dy, x, tuple(weight_shape), stride, padding, dilation,
            out_size(x.shape, weight_shape, stride, padding, dilation),
            "grouped conv2d weight gradient")
    dw = (depthwise_weight_grad if weight_shape[1] == 1 else _grouped_weight_grad)(*args)
    return _weight_grad_by_gemm(*args) if dw is None else dw
