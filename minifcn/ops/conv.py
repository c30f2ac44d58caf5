r"""2-D convolution (cross-correlation, as in every deep-learning library) with its backward.

The three products of a convolution layer are one GEMM each, around one im2col:

====================  ==========================================  =========================
forward               ``y = W @ im2col(x) + b``                    ``(F, CKK) @ (CKK, NL)``
weight gradient       ``dW = dy @ im2col(x).T``                    ``(F, NL) @ (NL, CKK)``
input gradient        ``dx = col2im(W.T @ dy)``                    ``(CKK, F) @ (F, NL)``
====================  ==========================================  =========================

with ``CKK = C*KH*KW`` and ``NL = N*OH*OW``. The code that says exactly this is
``reference/conv.py``. The functions here validate their arguments once and hand each of
the three products to the dispatcher (:mod:`.dispatch`), which runs the reference or a fast
path that computes the same thing (``fast/``: chunks under the workspace limit, Winograd,
dx as a correlation of dy). ``minifcn.ops.explain("conv2d", ...)`` says which and why.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate as _checks
from .. import memory
from ..backend import array_module_of
from . import dispatch
from .arguments import check_conv, conv_geometry


class Conv2dCache(NamedTuple):
    """What ``conv2d_backward`` needs. Only ``x`` is kept (not its im2col, 9x larger for a
    3x3 kernel); backward unfolds it again."""
    x: object
    weight: object
    has_bias: bool
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int = 1


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    r"""2-D convolution, like ``torch.nn.functional.conv2d``, grouped or not.

    Parameters
    ----------
    x : array (N, C, H, W), float32 or float64
    weight : array (F, C/G, KH, KW), same dtype and device as x
    bias : array (F,) or None
    stride, padding, dilation : int or (int, int); padding is zeros on both sides.
    groups : int G dividing C and F: filters ``f`` of group ``g = f // (F/G)`` see only
        channels ``g C/G`` to ``(g + 1) C/G - 1``. ``G = C`` is a depthwise convolution.

    Returns
    -------
    y : array (N, F, OH, OW) with ``OH = floor((H + 2P - D(KH-1) - 1) / S) + 1`` (same for OW)
    cache : Conv2dCache for :func:`conv2d_backward`

    Notes
    -----
    .. math::

        y[n, f, p, q] = b[f] + \sum_{c, i, j} W[f, c, i, j]\,
                        x_{pad}[n, c, pS_H + iD_H, qS_W + jD_W]

    that is ``W.reshape(F, CKK) @ im2col(x)``. With groups, the sum over c runs over the
    C/G channels of f's group: one such product per group.
    """
    groups = _checks.positive_int("groups", groups)
    check_conv(x, weight, bias, groups=groups)
    kernel, stride, padding, dilation, out = conv_geometry(x.shape, weight.shape[2:], stride,
                                                           padding, dilation)
    call = dispatch.conv_call(x, x.shape, weight.shape, stride, padding, dilation, out,
                              groups=groups)
    y = dispatch.run("conv2d.forward", call, x, weight, bias, stride, padding, dilation)
    return y, Conv2dCache(x, weight, bias is not None, stride, padding, dilation, groups)


def conv2d_backward(dy, cache: Conv2dCache):
    r"""Gradients of :func:`conv2d_forward` with respect to x, weight and bias.

    Parameters
    ----------
    dy : array (N, F, OH, OW), the gradient of the loss with respect to y
    cache : Conv2dCache from the forward

    Returns
    -------
    dx : array (N, C, H, W)
    dweight : array (F, C/G, KH, KW)
    dbias : array (F,), or None when the forward had no bias

    Notes
    -----
    With ``X = im2col(x)`` and ``Y = y.reshape(F, NL)`` the forward is ``Y = W X + b``, so

    .. math::

        dW = dY\,X^T, \qquad dX = W^T dY \;\Rightarrow\; dx = \mathrm{col2im}(W^T dY),
        \qquad db[f] = \sum_{n, p, q} dy[n, f, p, q].
    """
    _checks.cache_of(cache, Conv2dCache, "conv2d_forward")
    x, weight = cache.x, cache.weight
    geometry = (cache.stride, cache.padding, cache.dilation)
    out = conv_geometry(x.shape, weight.shape[2:], *geometry)[4]
    _checks.grad_shape(dy, (x.shape[0], weight.shape[0]) + out, x.dtype)
    array_module_of(dy=dy, x=x)
    call = dispatch.conv_call(x, x.shape, weight.shape, *geometry, out, groups=cache.groups)
    with memory.purpose("conv2d backward (dx)"):
        dx = dispatch.run("conv2d.input_grad", call, dy, weight, x.shape, *geometry)
    with memory.purpose("conv2d backward (dweight)"):
        dweight = dispatch.run("conv2d.weight_grad", call, dy, x, weight.shape, *geometry)
    dbias = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dweight, dbias
