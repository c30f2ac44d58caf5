r"""2-D convolution (cross-correlation, as in every deep-learning library) with its backward.

The three products of a convolution layer are one GEMM each, around one im2col:

====================  ==========================================  =========================
forward               ``y = W @ im2col(x) + b``                    ``(F, CKK) @ (CKK, NL)``
weight gradient       ``dW = dy @ im2col(x).T``                    ``(F, NL) @ (NL, CKK)``
input gradient        ``dx = col2im(W.T @ dy)``                    ``(CKK, F) @ (F, NL)``
====================  ==========================================  =========================

with ``CKK = C*KH*KW`` and ``NL = N*OH*OW``. The input gradient of a convolution is a
transposed convolution, and a transposed convolution's forward is this input gradient; the
three private helpers (``_conv_gemm.py``) are written once and reused by both layers with
roles swapped (see ``conv_transpose.py``). For stride 1 the input gradient is also a plain
convolution, of dy with the kernel flipped and its channel axes swapped, and is computed so
where that is cheaper than col2im (``_conv_gemm._input_grad_by_correlation``). With a
workspace limit (``minifcn.set_workspace_limit``) they work in chunks of images and output
rows, so that no im2col buffer exceeds it.
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module_of
from .. import _validate as _checks
from ._conv_gemm import _conv2d, _conv2d_input_grad, _conv2d_weight_grad
from .im2col import _geometry


class Conv2dCache(NamedTuple):
    """What ``conv2d_backward`` needs. Only ``x`` is kept (not its im2col, 9x larger for a
    3x3 kernel); backward unfolds it again."""
    x: object
    weight: object
    has_bias: bool
    stride: tuple
    padding: tuple
    dilation: tuple


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1):
    r"""2-D convolution, like ``torch.nn.functional.conv2d`` (no groups).

    Parameters
    ----------
    x : array (N, C, H, W), float32 or float64
    weight : array (F, C, KH, KW), same dtype and device as x
    bias : array (F,) or None
    stride, padding, dilation : int or (int, int); padding is zeros on both sides.

    Returns
    -------
    y : array (N, F, OH, OW) with ``OH = floor((H + 2P - D(KH-1) - 1) / S) + 1`` (same for OW)
    cache : Conv2dCache for :func:`conv2d_backward`

    Notes
    -----
    .. math::

        y[n, f, p, q] = b[f] + \sum_{c, i, j} W[f, c, i, j]\,
                        x_{pad}[n, c, pS_H + iD_H, qS_W + jD_W]

    computed as ``W.reshape(F, CKK) @ im2col(x)``, over the whole batch at once or, under a
    workspace limit, in chunks of images and output rows.
    """
    _check_conv_args(x, weight, bias)
    _, stride, padding, dilation, _ = _geometry(x.shape, weight.shape[2:], stride, padding,
                                                dilation)
    y = _conv2d(x, weight, stride, padding, dilation)                # (N, F, OH, OW)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y, Conv2dCache(x, weight, bias is not None, stride, padding, dilation)


def conv2d_backward(dy, cache: Conv2dCache):
    r"""Gradients of :func:`conv2d_forward` with respect to x, weight and bias.

    Parameters
    ----------
    dy : array (N, F, OH, OW), the gradient of the loss with respect to y
    cache : Conv2dCache from the forward

    Returns
    -------
    dx : array (N, C, H, W)
    dweight : array (F, C, KH, KW)
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
    out_shape = (x.shape[0], weight.shape[0]) + _out_hw(x.shape, weight.shape, cache)
    _checks.grad_shape(dy, out_shape, x.dtype)
    array_module_of(dy=dy, x=x)
    geometry = (cache.stride, cache.padding, cache.dilation)
    dx = _conv2d_input_grad(dy, weight, x.shape, *geometry, what="conv2d backward (dx)")
    dweight = _conv2d_weight_grad(dy, x, weight.shape, *geometry,
                                  what="conv2d backward (dweight)")
    dbias = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dweight, dbias


def _out_hw(x_shape, w_shape, cache):
    return _geometry(x_shape, w_shape[2:], cache.stride, cache.padding, cache.dilation)[4]


def _check_conv_args(x, weight, bias, transposed=False):
    """Validate conv arguments. Weight is (F, C, KH, KW), or (C, F, KH, KW) when transposed."""
    _checks.image_batch("x", x)
    layout = " (C_in, C_out, KH, KW)" if transposed else " (F, C, KH, KW)"
    _checks.float_array("weight", weight, ndim=4, what=layout)
    if min(weight.shape) < 1:
        raise ValueError(f"weight must have no empty dimension{layout}, got shape "
                         f"{tuple(weight.shape)}")
    if bias is not None:
        _checks.float_array("bias", bias, ndim=1)
    array_module_of(x=x, weight=weight, bias=bias)
    _checks.same_dtype("x", x, weight=weight, bias=bias)
    c_in, c_out = (weight.shape[0], weight.shape[1]) if transposed else (weight.shape[1],
                                                                         weight.shape[0])
    if c_in != x.shape[1]:
        raise ValueError(f"weight expects {c_in} input channels (shape {tuple(weight.shape)}, "
                         f"layout{layout}) but x has {x.shape[1]} (shape {tuple(x.shape)})")
    if bias is not None and bias.shape[0] != c_out:
        raise ValueError(f"bias must have shape ({c_out},) to match weight "
                         f"{tuple(weight.shape)}, got {tuple(bias.shape)}")
