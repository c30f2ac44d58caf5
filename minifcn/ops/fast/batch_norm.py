r"""Batch normalisation as one scale and shift per channel, in few passes over memory.

The function is ``reference/norm.py``'s; the arithmetic is rearranged. Per channel, with
:math:`r = 1/\sqrt{\sigma^2 + \epsilon}`,

.. math:: y = \gamma\,(x - \mu)\, r + \beta = x \cdot s + t, \qquad
          s = \gamma r, \quad t = \beta - \mu s,

so the forward writes y in two passes (``x * s`` into a recycled result block, ``+= t``) and
never builds x_hat, where the reference makes four full-size temporaries. Per-channel sums run
over the contiguous last axis of an ``(N, C, H*W)`` view (a reduction over axes 0, 2 and 3 of
NCHW walks the array in strides), sums of products are one ``einsum``, and x - mu, which the
variance and the backward need, is made once in scratch memory (again for each use only
where the batch's does not fit the workspace limit, then in pieces of images).

Rounding: ``x * s + t`` loses about :math:`|\mu| / \sigma` units in the last place where the
reference's ``(x - \mu) r`` loses none. Where the mean is of the order of the deviation, as
in the ResNets, float32 results differ from the reference's by about 1e-6 relative; the
parity harness (``tests/test_fast_paths.py``) holds them to 1e-5.

On the project's 2-core machine, at FCN-ResNet50's shapes (``benchmarks/
bench_batch_norm.py``), this takes the forward 1.7-6x and the backward 1.3-2.3x faster than
the reference; beside PyTorch (which fuses each pass) the forward is at 0.4-3x its time and
the backward at 1-6x.
"""
from __future__ import annotations

import contextlib

from ... import memory
from ...backend import get_array_module

RULE = "any array: the reference's function as a per-channel scale and shift, in few passes"


def applies(call) -> bool:
    return True


def forward(x, running_mean, running_var, weight, bias, training, momentum, eps):
    xp = get_array_module(x)
    N, C, H, W = x.shape
    M = N * H * W
    x3 = x.reshape(N, C, H * W)
    if training:
        mean = x3.sum(axis=2).sum(axis=0) / M                         # (C,)
        var = xp.zeros(C, x.dtype)                                    # biased, below
        with _centred(x3, mean, "batch_norm2d forward (x - mean)") as pieces:
            for n0, n1, centred in pieces():
                var += xp.einsum("ncl,ncl->c", centred, centred)
        var /= M
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += (momentum * M / (M - 1)) * var             # unbiased
    else:
        mean, var = running_mean.copy(), running_var
    rstd = 1 / xp.sqrt(var + x.dtype.type(eps))
    scale = rstd if weight is None else weight * rstd                 # s = gamma r
    shift = -mean * scale if bias is None else bias - mean * scale    # t = beta - mu s
    y = memory.result(xp, x3.shape, x.dtype, "batch_norm2d forward")
    xp.multiply(x3, scale[:, None], out=y)
    y += shift[:, None]
    return y.reshape(x.shape), mean, rstd


def backward(dy, x, mean, rstd, weight, has_bias, training):
    xp = get_array_module(dy)
    N, C, H, W = dy.shape
    M = N * H * W
    dy3, x3 = dy.reshape(N, C, H * W), x.reshape(N, C, H * W)
    dbias = dy3.sum(axis=2).sum(axis=0)                               # (C,)
    dweight = xp.zeros(C, dy.dtype)
    with _centred(x3, mean, "batch_norm2d backward (x - mean)") as pieces:
        for n0, n1, centred in pieces():
            dweight += xp.einsum("ncl,ncl->c", dy3[n0:n1], centred)   # sum dy (x - mu)
        dweight *= rstd                                               # sum dy x_hat
        g = rstd if weight is None else weight * rstd
        dx = memory.result(xp, dy3.shape, dy.dtype, "batch_norm2d backward")
        xp.multiply(dy3, g[:, None], out=dx)                          # g dy
        if training:         # - g (dbias + x_hat dweight) / M, x_hat = (x - mu) r
            k, c = g * rstd * dweight / M, g * dbias / M
            for n0, n1, centred in pieces():
                centred *= k[:, None]
                centred += c[:, None]
                dx[n0:n1] -= centred
    return (dx.reshape(dy.shape), dweight if weight is not None else None,
            dbias if has_bias else None)


@contextlib.contextmanager
def _centred(x3, mean, what):
    """``pieces()``, whose every call walks ``x3 - mean`` (per channel) in scratch memory as
    ``(n0, n1, centred)`` pieces of images: the whole batch, made once, where it fits the
    workspace limit; else as many images as fit (at least one) a piece, made on each walk."""
    xp = get_array_module(x3)
    N, C, L = x3.shape
    per_image = C * L * x3.itemsize
    spans = memory.chunks(N, lambda k: k * per_image, what, unit="image",
                          required=False) or [(n, n + 1) for n in range(N)]
    with memory.scratch(xp, (spans[0][1] - spans[0][0], C, L), x3.dtype, what) as buf:
        whole = len(spans) == 1
        if whole:
            xp.subtract(x3, mean[:, None], out=buf)

        def pieces():
            for n0, n1 in spans:
                centred = buf[:n1 - n0]
                if not whole:
                    xp.subtract(x3[n0:n1], mean[:, None], out=centred)
                yield n0, n1, centred
        yield pieces
