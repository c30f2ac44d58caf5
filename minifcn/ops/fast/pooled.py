r"""ReLU, crop and softmax cross-entropy into recycled result memory.

The math is the reference's; what differs is where the results live. On the CPU a fresh
multi-megabyte array costs a page fault per 4 KiB the first time it is written, so these
paths write into :func:`minifcn.memory.result` blocks (recycled once no array refers to
them) with ``out=`` arguments, and the loss gathers each pixel's target logit through flat
indices instead of building the one-hot matrix the reference builds.
"""
from __future__ import annotations

import math

from ... import memory
from ...backend import get_array_module
from ..reference.loss import reduce_loss

RULE = "any array: the reference's math, written into recycled result memory"


def applies(call) -> bool:
    return True


# --- ReLU ----------------------------------------------------------------------------------

def relu_forward(x):
    xp = get_array_module(x)
    mask = xp.greater(x, 0, out=memory.result(xp, x.shape, bool, "relu forward (mask)"))
    y = xp.maximum(x, x.dtype.type(0), out=memory.result(xp, x.shape, x.dtype, "relu forward"))
    return y, mask


def relu_backward(dy, mask):
    xp = get_array_module(dy)
    dx = memory.result(xp, dy.shape, dy.dtype, "relu backward")
    return xp.multiply(dy, mask, out=dx)            # float * bool keeps dy's dtype


# --- Crop ----------------------------------------------------------------------------------

def crop_forward(x, offset, size):
    (top, left), (h, w) = offset, size
    y = memory.result(get_array_module(x), tuple(x.shape[:2]) + (h, w), x.dtype, "crop forward")
    y[...] = x[:, :, top:top + h, left:left + w]    # (N, C, h, w), C order
    return y


def crop_backward(dy, x_shape, offset, size):
    (top, left), (h, w) = offset, size
    dx = memory.result(get_array_module(dy), x_shape, dy.dtype, "crop backward", zeros=True)
    dx[:, :, top:top + h, left:left + w] = dy
    return dx


# --- Softmax cross-entropy -----------------------------------------------------------------

def _flat_index(xp, labels, C):
    """The flat position of (n, labels[n, s], s) in an (N, C, S) array: (N, S) int64."""
    N, S = labels.shape
    return (xp.arange(N, dtype=xp.int64)[:, None] * C + labels) * S + xp.arange(S)


def loss_forward(logits, target, weight, ignore_index, reduction):
    """(loss, prob, labels, scale) as the reference computes them, without a one-hot."""
    xp = get_array_module(logits)
    N, C = logits.shape[:2]
    S = math.prod(logits.shape[2:])                        # pixels per image; 1 for (N, C)
    labels = target.reshape(N, S).astype(xp.int64)         # (N, S), a copy we may change
    valid = labels != ignore_index
    labels[~valid] = 0                                     # any class: its scale is 0
    index = _flat_index(xp, labels, C)                     # (N, S)
    x = logits.reshape(N, C, S)
    z = memory.result(xp, (N, C, S), logits.dtype, "softmax_cross_entropy forward")
    xp.subtract(x, x.max(axis=1, keepdims=True), out=z)    # x - m <= 0
    z_t = xp.take(z.reshape(-1), index)                    # (N, S): x_t - m
    xp.exp(z, out=z)                                       # (N, C, S), all in [0, 1]
    sum_exp = z.sum(axis=1)                                # (N, S), >= 1
    prob = z
    prob /= sum_exp[:, None, :]                            # the softmax, kept for backward
    w_t = valid.astype(logits.dtype) if weight is None else weight[labels] * valid  # (N, S)
    pixel_loss = xp.where(valid, w_t * (xp.log(sum_exp) - z_t), logits.dtype.type(0))
    loss, scale = reduce_loss(pixel_loss, w_t, reduction, target.shape)
    return loss, prob, labels, scale


def loss_backward(g, prob, labels, scale, logits_shape):
    """``g * scale * (prob - onehot)`` with the one-hot subtracted at flat indices."""
    xp = get_array_module(prob)
    gs = g * scale                                         # (N, S)
    dlogits = memory.result(xp, prob.shape, prob.dtype, "softmax_cross_entropy backward")
    xp.multiply(prob, gs[:, None, :], out=dlogits)         # (N, C, S)
    dlogits.reshape(-1)[_flat_index(xp, labels, prob.shape[1])] -= gs
    return dlogits.reshape(logits_shape)
