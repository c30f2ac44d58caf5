r"""Softmax cross-entropy over the class axis, as ``torch.nn.functional.cross_entropy``.

Every pixel has C logits x and a label t; its loss is :math:`-w_t \log \mathrm{softmax}(x)_t`.
Every exponential is taken of ``x - max(x) <= 0``, so nothing overflows (log-sum-exp):

.. math:: \log \sum_c e^{x_c} = m + \log \sum_c e^{x_c - m}, \qquad m = \max_c x_c .

The gradient is :math:`w_t (\mathrm{softmax}(x) - \mathrm{onehot}(t))` per pixel. Pixels
labelled ``ignore_index`` (PASCAL VOC's void, 255) get zero loss and zero gradient.
"""
import math

from ...backend import get_array_module


def softmax(x, axis):
    r"""softmax along axis, max-subtracted.

    .. math:: p_c = e^{x_c - m} / \sum_k e^{x_k - m}, \qquad m = \max_k x_k
    """
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))       # <= 1, the max's own term is 1
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis):
    r"""log of softmax along axis, without taking the log of a rounded zero.

    .. math:: \log p_c = (x_c - m) - \log \sum_k e^{x_k - m}
    """
    xp = get_array_module(x)
    z = x - x.max(axis=axis, keepdims=True)               # <= 0
    return z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))


def softmax_cross_entropy_forward(logits, target, weight, ignore_index, reduction):
    r"""Cross-entropy of softmax(logits) against integer labels -> (loss, prob, labels, scale).

    logits (N, C, ...) or (N, C); target (N, ...) integer; weight (C,) or None.
    Per pixel i, with label t and :math:`w_t` (1 without weights, 0 where ignored):

    .. math:: \ell_i = w_t \big(\log \textstyle\sum_c e^{x_c} - x_t\big)

    reduction "none": :math:`\ell` shaped like target; "sum": :math:`\sum_i \ell_i`;
    "mean": :math:`\sum_i \ell_i / Z`, :math:`Z = \sum_i w_{t_i}` (the loss is 0, not NaN,
    when Z = 0). For the backward: prob (N, C, S) the softmax, labels (N, S) int64 (0 where
    ignored), scale (N, S) = :math:`\partial L / \partial \ell_i \cdot w_t`.
    """
    xp = get_array_module(logits)
    N, C = logits.shape[:2]
    S = math.prod(logits.shape[2:])                       # pixels per image; 1 for (N, C)
    x = logits.reshape(N, C, S)                           # (N, C, S)
    t = target.reshape(N, S).astype(xp.int64)             # (N, S)
    valid = t != ignore_index                             # (N, S)
    labels = xp.where(valid, t, 0)                        # (N, S), any class where ignored
    prob = softmax(x, axis=1)                             # (N, C, S)
    log_p = log_softmax(x, axis=1)                        # (N, C, S)
    log_p_t = xp.take_along_axis(log_p, labels[:, None, :], axis=1)[:, 0]   # (N, S)
    w_t = valid.astype(x.dtype) if weight is None else weight[labels] * valid   # (N, S)
    pixel_loss = xp.where(valid, -w_t * log_p_t, x.dtype.type(0))   # (N, S), 0 even at NaN
    loss, scale = reduce_loss(pixel_loss, w_t, reduction, target.shape)
    return loss, prob, labels, scale


def reduce_loss(pixel_loss, w_t, reduction, shape):
    r"""The reduction of the pixel losses (N, S), and the factor
    :math:`\partial L / \partial \ell_i \cdot w_t` (N, S) that the backward needs."""
    xp = get_array_module(pixel_loss)
    if reduction == "none":
        return pixel_loss.reshape(shape), w_t                 # loss (N, ...)
    if reduction == "sum":
        return xp.asarray(pixel_loss.sum()), w_t
    Z = w_t.sum()
    Z = xp.where(Z != 0, Z, xp.ones_like(Z))              # Z = 0: 0/1, on the device
    return xp.asarray(pixel_loss.sum() / Z), w_t / Z


def softmax_cross_entropy_backward(g, prob, labels, scale, logits_shape):
    r"""Gradient with respect to the logits, shaped like them.

    g is the upstream gradient: 0-d ("mean", "sum") or (N, S) ("none").

    .. math:: \frac{\partial L}{\partial x_{n,c,s}} = g\, \mathrm{scale}_{n,s}
              \big(p_{n,c,s} - [c = t_{n,s}]\big)
    """
    xp = get_array_module(prob)
    C = prob.shape[1]
    onehot = xp.arange(C)[None, :, None] == labels[:, None, :]      # (N, C, S) bool
    dlogits = (g * scale)[:, None, :] * (prob - onehot)              # (N, C, S)
    return dlogits.reshape(logits_shape)                             # (N, C, ...)
