r"""Softmax cross-entropy over the class axis, with ``softmax`` and ``log_softmax`` helpers.

FCN scores every pixel with C class logits and trains on the cross-entropy of their softmax
against an integer label map, skipping "void" pixels (255 in PASCAL VOC). The loss follows
``torch.nn.functional.cross_entropy`` with integer targets: class ``weight``,
``ignore_index`` and ``reduction`` mean the same there and here.

Every exponential is taken of ``x - max(x)``, which is at most 0, so nothing overflows: with
:math:`m = \max_c x_c`,

.. math::

    \log \sum_c e^{x_c} = m + \log \sum_c e^{x_c - m}, \qquad
    \mathrm{softmax}(x)_c = \frac{e^{x_c - m}}{\sum_k e^{x_k - m}}.

``reference/loss.py`` computes it with an explicit one-hot matrix; the fast path
(``fast/pooled.py``) gathers the target's logit through flat indices instead and writes into
recycled memory.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .. import _validate as _checks
from ..backend import array_module_of, get_array_module
from . import dispatch
from .reference import loss as _reference

REDUCTIONS = ("mean", "sum", "none")


# --- softmax and log_softmax ---------------------------------------------------------------

def softmax(x, axis=1):
    r"""Softmax along ``axis`` (the class axis of ``(N, C, ...)`` scores by default).

    Parameters
    ----------
    x : array (..., C, ...), float32 or float64
    axis : int

    Returns
    -------
    p : array shaped like x, same dtype; entries in [0, 1] summing to 1 along ``axis``

    Notes
    -----
    .. math:: p_c = \frac{e^{x_c - m}}{\sum_k e^{x_k - m}}, \qquad m = \max_k x_k

    Subtracting the maximum changes nothing mathematically and keeps every exponent <= 0.
    """
    return _reference.softmax(x, _check_softmax_args(x, axis))


def log_softmax(x, axis=1):
    r"""Logarithm of :func:`softmax`, computed without taking the log of a rounded zero.

    Parameters
    ----------
    x : array (..., C, ...), float32 or float64
    axis : int

    Returns
    -------
    array shaped like x, same dtype; entries <= 0

    Notes
    -----
    .. math:: \log p_c = (x_c - m) - \log \sum_k e^{x_k - m}, \qquad m = \max_k x_k

    so a class whose probability underflows to 0 still gets its finite log-probability.
    """
    return _reference.log_softmax(x, _check_softmax_args(x, axis))


def _check_softmax_args(x, axis) -> int:
    _checks.float_array("x", x)
    if not (isinstance(axis, numbers.Integral) and not isinstance(axis, bool)):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be in [-{x.ndim}, {x.ndim}) for x of shape "
                         f"{tuple(x.shape)}, got {axis}")
    return int(axis) % x.ndim


# --- softmax cross-entropy -----------------------------------------------------------------

class SoftmaxCrossEntropyCache(NamedTuple):
    """What ``softmax_cross_entropy_backward`` needs: the softmax probabilities (cached, not
    recomputed; the backward starts from a copy of them) and per-pixel factors."""
    prob: object          # (N, C, S) softmax of the logits, S = H*W (1 for (N, C) logits)
    labels: object        # (N, S) int64: the target, 0 at ignored pixels
    scale: object         # (N, S) w[t] / normaliser; 0 at ignored pixels
    logits_shape: tuple   # (N, C, H, W) or (N, C): the shape dlogits takes
    reduction: str


def softmax_cross_entropy_forward(logits, target, weight=None, ignore_index=255,
                                  reduction="mean"):
    r"""Cross-entropy of the softmax of ``logits`` against integer ``target``, like
    ``torch.nn.functional.cross_entropy(logits, target, weight, ignore_index=...,
    reduction=...)``.

    Parameters
    ----------
    logits : array (N, C, H, W), or (N, C), or (N, C, d1, ..., dk); float32 or float64
    target : integer array (N, H, W) (resp. (N,), (N, d1, ..., dk)) of class indices in
        [0, C), or ``ignore_index``. Any integer dtype (uint8 label maps are fine).
    weight : array (C,) or None; a rescaling weight per class, same dtype as logits.
    ignore_index : int; pixels with this label get zero loss and zero gradient and do not
        count in the mean. 255 (PASCAL VOC's void) by default.
    reduction : ``"mean"``, ``"sum"`` or ``"none"``

    Returns
    -------
    loss : 0-d array of logits' dtype for ``"mean"`` and ``"sum"``; for ``"none"`` an
        array shaped like target, 0 at ignored pixels.
    cache : SoftmaxCrossEntropyCache for :func:`softmax_cross_entropy_backward`. It holds
        the softmax probabilities (one array the size of logits).

    Raises
    ------
    ValueError
        for a label outside [0, C) that is not ``ignore_index`` (naming the value, how many
        there are and where the first is), for shapes that do not match, and for an unknown
        reduction. Checking the labels reads one boolean back from the GPU.
    TypeError
        for a non-integer target, non-float logits, or weight of another dtype.

    Notes
    -----
    With :math:`t` the label of a pixel, :math:`x` its C logits and :math:`m = \max_c x_c`,

    .. math::

        \ell = -w_t \log \mathrm{softmax}(x)_t
             = w_t \Big(\log \sum_c e^{x_c - m} - (x_t - m)\Big)

    (the log-sum-exp trick: every exponent is <= 0), with :math:`w_t = 1` without weights
    and :math:`\ell = 0` at ignored pixels. Over the valid pixels V the reductions are

    ========  ==================================================================
    mean      :math:`L = \sum_{i \in V} \ell_i \,/\, Z`, :math:`Z = \sum_{i \in V} w_{t_i}`
              (the pixel count without weights); :math:`L = 0` when :math:`Z = 0`
    sum       :math:`L = \sum_{i \in V} \ell_i` (FCN's original, unnormalised loss)
    none      :math:`\ell_i` per pixel
    ========  ==================================================================

    Edge cases (Z = 0, NaN and infinite logits, the ``ignore_index`` default) follow PyTorch
    except where ``docs/compatibility.md`` says otherwise.
    """
    reduction, ignore_index = loss_options(reduction, ignore_index)
    xp = _check_arrays(logits, target, weight)
    _check_labels(xp, target, logits.shape[1], ignore_index)
    call = dispatch.Call(dispatch.device_kind(logits), logits.dtype, tuple(logits.shape))
    loss, prob, labels, scale = dispatch.run("softmax_cross_entropy.forward", call, logits,
                                             target, weight, ignore_index, reduction)
    return loss, SoftmaxCrossEntropyCache(prob, labels, scale, tuple(logits.shape), reduction)


def softmax_cross_entropy_backward(dloss, cache: SoftmaxCrossEntropyCache):
    r"""Gradient of :func:`softmax_cross_entropy_forward` with respect to the logits.

    Parameters
    ----------
    dloss : the upstream gradient: a 0-d array or a Python number for ``"mean"`` and
        ``"sum"``; for ``"none"`` an array shaped like target (a number is broadcast).
        Arrays must have the logits' dtype and device.
    cache : SoftmaxCrossEntropyCache from the forward

    Returns
    -------
    dlogits : array shaped like logits
    None, None : target (integer labels) and weight get no gradient

    Notes
    -----
    The derivative of :math:`\ell = -w_t \log \mathrm{softmax}(x)_t` is
    :math:`w_t\,(\mathrm{softmax}(x) - e_t)`, so

    .. math::

        \frac{\partial L}{\partial x_{n,c,s}} =
            g_{n,s}\, \frac{w_t}{Z}\, \big(p_{n,c,s} - [c = t_{n,s}]\big)

    with :math:`g` = dloss (per pixel for ``"none"``), :math:`Z` the mean's normaliser
    (1 for ``"sum"`` and ``"none"``), and 0 at ignored pixels.
    """
    _checks.cache_of(cache, SoftmaxCrossEntropyCache, "softmax_cross_entropy_forward")
    xp = get_array_module(cache.prob)
    call = dispatch.Call(dispatch.device_kind(cache.prob), cache.prob.dtype, cache.logits_shape)
    dlogits = dispatch.run("softmax_cross_entropy.backward", call, _upstream(xp, dloss, cache),
                           cache.prob, cache.labels, cache.scale, cache.logits_shape)
    return dlogits, None, None                              # target and weight: no gradient


def _upstream(xp, dloss, cache):
    """dloss as an array of the cache's dtype: 0-d, or (N, S) for reduction="none"."""
    dtype = cache.prob.dtype
    if isinstance(dloss, numbers.Real) and not isinstance(dloss, bool):
        return xp.asarray(dloss, dtype=dtype)
    N, S = cache.labels.shape
    expected = (cache.logits_shape[:1] + cache.logits_shape[2:]
                if cache.reduction == "none" else ())
    _checks.float_array("dloss", dloss)
    array_module_of(dloss=dloss, logits=cache.prob)
    if tuple(dloss.shape) != expected:
        raise ValueError(f"dloss must have the loss's shape {expected} "
                         f"(reduction={cache.reduction!r}), got {tuple(dloss.shape)}")
    if dloss.dtype != dtype:
        raise TypeError(f"dloss has dtype {dloss.dtype} but the forward ran in {dtype}")
    return dloss.reshape(N, S) if cache.reduction == "none" else dloss


# --- argument checks -----------------------------------------------------------------------

def loss_options(reduction, ignore_index):
    """Validate ``reduction`` and ``ignore_index`` (shared with ``nn.SoftmaxCrossEntropyLoss``)."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, "
                         f"got {reduction!r}")
    if not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    return reduction, int(ignore_index)


def _check_arrays(logits, target, weight):
    """Validate the three arrays; return their array module."""
    _checks.float_array("logits", logits)
    if logits.ndim < 2:
        raise ValueError("logits must be at least 2-D, (N, C) or (N, C, H, W), "
                         f"got shape {tuple(logits.shape)}")
    if logits.shape[1] < 1:
        raise ValueError(f"logits must have at least one class (C >= 1 in (N, C, ...)), "
                         f"got shape {tuple(logits.shape)}")
    if not (hasattr(target, "dtype") and hasattr(target, "shape")):
        raise TypeError(f"target must be a NumPy or CuPy array, got {type(target).__name__}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices (e.g. int64 or uint8), "
                        f"got dtype {target.dtype}")
    expected = tuple(logits.shape[:1] + logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"target must have shape {expected} to match logits "
                         f"{tuple(logits.shape)} (N, C, ...), got {tuple(target.shape)}")
    if weight is not None:
        _checks.float_array("weight", weight, ndim=1, what=" (C,)")
        if weight.shape[0] != logits.shape[1]:
            raise ValueError(f"weight must have shape ({logits.shape[1]},), one entry per "
                             f"class of logits {tuple(logits.shape)}, got {tuple(weight.shape)}")
    xp = array_module_of(logits=logits, target=target, weight=weight)
    _checks.same_dtype("logits", logits, weight=weight)
    return xp


def _check_labels(xp, target, n_classes, ignore_index):
    """Raise ValueError naming the first label outside [0, C) that is not ignore_index."""
    t = target.reshape(-1).astype(xp.int64)
    bad = (t != ignore_index) & ((t < 0) | (t >= n_classes))
    if not bool(bad.any()):
        return
    where = xp.flatnonzero(bad)
    first = int(where[0])
    value = int(t[first])
    position = tuple(int(i) for i in np.unravel_index(first, target.shape))
    raise ValueError(f"target has {where.size} label(s) outside [0, {n_classes}) that are not "
                     f"ignore_index={ignore_index}: the first is {value} at index {position}")
