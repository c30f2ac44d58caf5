r"""Batch normalisation (``batch_norm2d``) with its backward, in training and eval mode.

Each channel is normalised over the batch and the image, M = N*H*W values, then scaled and
shifted by learned ``weight`` (gamma) and ``bias`` (beta). In training mode the statistics
are the batch's, and the running estimates that eval mode uses are updated in place (as
``torch.nn.functional.batch_norm`` does). ``reference/norm.py`` is the code.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

from .. import _validate as _checks
from ..backend import array_module_of
from . import dispatch


class BatchNorm2dCache(NamedTuple):
    """What ``batch_norm2d_backward`` needs: x and the statistics the forward used, from
    which it recomputes x_hat. Keeping x rather than x_hat (the same size) lets a forward
    write y alone and never build x_hat."""
    x: object            # (N, C, H, W)
    mean: object         # (C,)
    rstd: object         # (C,), 1 / sqrt(var + eps)
    weight: object       # (C,) or None
    has_bias: bool
    training: bool


def batch_norm2d_forward(x, running_mean, running_var, weight=None, bias=None,
                         training=False, momentum=0.1, eps=1e-5):
    r"""Batch normalisation, like ``torch.nn.functional.batch_norm`` on an (N, C, H, W) x.

    Parameters
    ----------
    x : array (N, C, H, W), float32 or float64
    running_mean, running_var : arrays (C,) in x's dtype, or None (training mode only: then
        nothing is tracked). Updated in place in training mode.
    weight, bias : arrays (C,) or None (gamma = 1, beta = 0)
    training : bool; batch statistics (True) or the running ones (False)
    momentum : float in [0, 1], the weight of the batch in the running estimates
    eps : float > 0, added to the variance

    Returns
    -------
    y : array (N, C, H, W)
    cache : BatchNorm2dCache

    Notes
    -----
    .. math::

        y = \gamma\, \hat x + \beta, \qquad \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}

    per channel. Training: :math:`\mu, \sigma^2` are the batch's mean and *biased* variance
    (divided by M), and the running estimates become
    :math:`(1 - m)\, r + m\, s` with s the batch mean and the *unbiased* variance
    :math:`\sigma^2 M / (M - 1)`. Eval: :math:`\mu, \sigma^2` are the running estimates.
    """
    _checks.image_batch("x", x)
    training = _checks.boolean("training", training)
    momentum, eps = _number("momentum", momentum, 0.0, 1.0), _number("eps", eps, 0.0, None)
    C = x.shape[1]
    for name, a in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _channel_vector(name, a, C)
    array_module_of(x=x, running_mean=running_mean, running_var=running_var, weight=weight,
                    bias=bias)
    _checks.same_dtype("x", x, running_mean=running_mean, running_var=running_var,
                       weight=weight, bias=bias)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be arrays or both be None")
    if not training and running_mean is None:
        raise ValueError("eval mode (training=False) normalises by running_mean and "
                         "running_var, so both must be given")
    if training and x.shape[0] * x.shape[2] * x.shape[3] < 2:
        raise ValueError(f"training mode needs more than one value per channel to estimate "
                         f"a variance, got x of shape {tuple(x.shape)}")
    call = dispatch.Call(dispatch.device_kind(x), x.dtype, tuple(x.shape))
    y, mean, rstd = dispatch.run("batch_norm2d.forward", call, x, running_mean, running_var,
                                 weight, bias, training, momentum, eps)
    return y, BatchNorm2dCache(x, mean, rstd, weight, bias is not None, training)


def batch_norm2d_backward(dy, cache: BatchNorm2dCache):
    r"""Gradients of :func:`batch_norm2d_forward` with respect to x, weight and bias.

    Parameters
    ----------
    dy : array (N, C, H, W)
    cache : BatchNorm2dCache from the forward

    Returns
    -------
    dx : array (N, C, H, W)
    dweight, dbias : arrays (C,), or None where the forward had no weight or bias

    Notes
    -----
    Per channel, with sums over the M = N*H*W positions i and :math:`r = 1/\sqrt{\sigma^2 +
    \epsilon}`: :math:`d\beta = \sum_i dy_i` and :math:`d\gamma = \sum_i dy_i \hat x_i`. In
    eval mode :math:`\mu, \sigma` are constants and :math:`dx = \gamma r\, dy`. In training
    mode they depend on every :math:`x_i`. Write :math:`g_i = \gamma\, dy_i` for the gradient
    reaching :math:`\hat x_i`. Since :math:`\partial\mu/\partial x_j = 1/M` and
    :math:`\partial\sigma^2/\partial x_j = 2 (x_j - \mu)/M`,

    .. math::

        \frac{\partial \hat x_i}{\partial x_j}
            = r\,[i = j] - \frac{r}{M} - \frac{r}{M}\, \hat x_i \hat x_j ,

    (the last term is :math:`(x_i - \mu) \cdot (-\tfrac12 r^3) \cdot 2 (x_j - \mu)/M`), so

    .. math::

        dx_j = \sum_i g_i \frac{\partial \hat x_i}{\partial x_j}
             = \frac{\gamma r}{M} \Big( M\, dy_j - \sum_i dy_i
                                        - \hat x_j \sum_i dy_i\, \hat x_i \Big)
             = \gamma r \Big( dy_j - \frac{d\beta}{M} - \hat x_j \frac{d\gamma}{M} \Big).

    The two sums are the ones the weight and bias gradients need anyway.
    """
    _checks.cache_of(cache, BatchNorm2dCache, "batch_norm2d_forward")
    _checks.grad_shape(dy, cache.x.shape, cache.x.dtype)
    array_module_of(dy=dy, x=cache.x)
    call = dispatch.Call(dispatch.device_kind(dy), dy.dtype, tuple(dy.shape))
    return dispatch.run("batch_norm2d.backward", call, dy, cache.x, cache.mean, cache.rstd,
                        cache.weight, cache.has_bias, cache.training)


def _channel_vector(name, a, channels):
    """None, or a float (C,) array for x's C channels."""
    if a is None:
        return
    _checks.float_array(name, a, ndim=1, what=" (C,)")
    if a.shape[0] != channels:
        raise ValueError(f"{name} must have shape ({channels},) for x's {channels} channels, "
                         f"got {tuple(a.shape)}")


def _number(name, value, low, high):
    """A real number in [low, high] (eps: above low)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if high is None and not value > low:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if high is not None and not low <= value <= high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return value
