r"""Batch normalisation over (N, H, W) per channel, PyTorch's ``batch_norm`` semantics.

Training mode normalises by the batch's own statistics and folds them into the running
estimates; eval mode normalises by the running estimates. Either way the output is an affine
function of the normalised input :math:`\hat x = (x - \mu)\,/\sqrt{\sigma^2 + \epsilon}`.
"""
from ...backend import get_array_module


def batch_norm2d_forward(x, running_mean, running_var, weight, bias, training, momentum,
                         eps):
    r"""y = gamma * x_hat + beta; returns ``(y, mean, rstd)``, the statistics it used.

    x (N, C, H, W); running_mean, running_var (C,) or None; weight (gamma), bias (beta) (C,)
    or None. With M = N*H*W values per channel:

    * training: :math:`\mu = \frac1M \sum x`, :math:`\sigma^2 = \frac1M \sum (x - \mu)^2`
      (biased) normalise x, and the running estimates move towards the batch's, the variance
      *unbiased*: ``r_mean = (1 - m) r_mean + m mu``,
      ``r_var = (1 - m) r_var + m sigma^2 M / (M - 1)``, updated in place;
    * eval: :math:`\mu, \sigma^2` are the running estimates, which stay as they are.

    ``mean`` is :math:`\mu` and ``rstd`` is :math:`1/\sqrt{\sigma^2 + \epsilon}`, per channel:
    with x they are all the backward needs, which recomputes x_hat, so that a forward need
    not keep it (the fast path's never builds it).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    if training:
        M = N * H * W
        mean = x.mean(axis=(0, 2, 3))                             # (C,)
        var = x.var(axis=(0, 2, 3))                               # (C,), divided by M
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += (momentum * M / (M - 1)) * var         # unbiased: divided by M - 1
    else:
        mean, var = running_mean.copy(), running_var              # kept: the running one moves
    rstd = 1 / xp.sqrt(var + x.dtype.type(eps))                   # (C,)
    x_hat = (x - mean.reshape(1, C, 1, 1)) * rstd.reshape(1, C, 1, 1)   # (N, C, H, W)
    y = x_hat if weight is None else x_hat * weight.reshape(1, C, 1, 1)
    if bias is not None:
        y = y + bias.reshape(1, C, 1, 1)
    return y, mean, rstd


def batch_norm2d_backward(dy, x, mean, rstd, weight, has_bias, training):
    r"""Gradients of :func:`batch_norm2d_forward`: ``(dx, dweight, dbias)``.

    With :math:`\hat x = (x - \mu)\,r` recomputed from the forward's statistics, g = gamma * r
    (r alone without a weight) and sums over (n, h, w):

    .. math:: d\beta = \sum dy, \qquad d\gamma = \sum dy\, \hat x, \qquad
              dx = g\, dy \;\text{(eval)}, \qquad
              dx = g \left(dy - \frac{\sum dy}{M} - \hat x\, \frac{\sum dy\, \hat x}{M}\right)
              \;\text{(training)}

    (the derivation is in ``minifcn.ops.norm.batch_norm2d_backward``'s docstring).
    dweight is None without a weight, dbias None without a bias.
    """
    N, C, H, W = dy.shape
    x_hat = (x - mean.reshape(1, C, 1, 1)) * rstd.reshape(1, C, 1, 1)   # as in the forward
    dbias = dy.sum(axis=(0, 2, 3))                                # (C,)
    dweight = (dy * x_hat).sum(axis=(0, 2, 3))                    # (C,)
    g = rstd if weight is None else weight * rstd                 # (C,)
    if training:
        M = N * H * W
        dx = dy - (dbias / M).reshape(1, C, 1, 1) - x_hat * (dweight / M).reshape(1, C, 1, 1)
    else:
        dx = dy
    dx = dx * g.reshape(1, C, 1, 1)                               # (N, C, H, W)
    return dx, (dweight if weight is not None else None), (dbias if has_bias else None)
