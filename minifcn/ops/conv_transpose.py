r"""Transposed convolution: conv2d's adjoint, built from conv2d's three products.

A convolution ``C`` with weight ``W`` maps an image of size ``OH`` to one of size ``H``;
its transpose ``C^T`` maps back. The transposed convolution with weight ``W`` *is* ``C^T``:

* its forward is conv2d's input gradient: ``y = col2im(W^T x)``, every input pixel
  scattering a weighted ``KH x KW`` patch onto the output (patches overlap and sum);
* its input gradient is conv2d's forward: ``dx = conv2d(dy, W)``;
* its weight gradient is conv2d's weight gradient with the roles of input and output
  gradient swapped.

``reference/conv.py`` writes it so, calling conv2d's pieces with the roles swapped. FCN's
``upscore`` layers are transposed convolutions with stride 2, 8, 16 or 32, initialised to
bilinear interpolation (see ``upsample.py``). With a stride the fast path ``fast/phases.py``
computes the same sum phase by phase, each output pixel written once.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate as _checks
from .. import memory
from ..backend import array_module_of
from . import dispatch
from .arguments import check_conv, transpose_geometry


class ConvTranspose2dCache(NamedTuple):
    x: object
    weight: object
    has_bias: bool
    stride: tuple
    padding: tuple
    output_padding: tuple
    dilation: tuple


def conv_transpose2d_forward(x, weight, bias=None, *, stride=1, padding=0, output_padding=0,
                             dilation=1):
    r"""2-D transposed convolution, like ``torch.nn.functional.conv_transpose2d`` (no groups).

    The options after ``bias`` are keyword-only, so that no positional call can mean
    PyTorch's seventh argument (``groups``) and get ``dilation``; the edge cases are in
    ``docs/compatibility.md``.

    Parameters
    ----------
    x : array (N, C_in, H, W), float32 or float64
    weight : array (C_in, C_out, KH, KW), same dtype and device as x
    bias : array (C_out,) or None
    stride, padding, dilation : int or (int, int); ``padding`` removes P rows/columns from
        each border of the full output (it is the padding of the convolution this reverses).
    output_padding : int or (int, int), extra rows/columns at the bottom/right, below
        ``max(stride, dilation)``: it picks one of the output sizes that a stride-S
        convolution maps to the same input size.

    Returns
    -------
    y : array (N, C_out, OH, OW), ``OH = (H - 1)S - 2P + D(KH - 1) + output_padding + 1``
    cache : ConvTranspose2dCache

    Notes
    -----
    Each input pixel adds a weighted copy of the kernel onto the output:

    .. math::

        y[n, o, hS - P + iD, wS - P + jD] \mathrel{+}= x[n, c, h, w]\, W[c, o, i, j],
        \qquad y[n, o] \mathrel{+}= b[o],

    summed over c, h, w, i, j (terms landing outside the output are dropped). This is
    ``col2im(W.reshape(C_in, -1).T @ x)``: conv2d's input gradient with ``dy = x``.
    """
    check_conv(x, weight, bias, transposed=True)
    stride, padding, output_padding, dilation, y_shape = transpose_geometry(
        x.shape, weight.shape, stride, padding, output_padding, dilation)
    call = dispatch.conv_call(x, x.shape, weight.shape, stride, padding, dilation,
                              y_shape[2:], output_padding)
    with memory.purpose("conv_transpose2d forward"):
        y = dispatch.run("conv_transpose2d.forward", call, x, weight, bias, stride, padding,
                         output_padding, dilation)                    # (N, C_out, OH, OW)
    return y, ConvTranspose2dCache(x, weight, bias is not None, stride, padding,
                                   output_padding, dilation)


def conv_transpose2d_backward(dy, cache: ConvTranspose2dCache):
    r"""Gradients of :func:`conv_transpose2d_forward` with respect to x, weight and bias.

    Parameters
    ----------
    dy : array (N, C_out, OH, OW), the gradient of the loss with respect to y
    cache : ConvTranspose2dCache from the forward

    Returns
    -------
    dx : array (N, C_in, H, W)
    dweight : array (C_in, C_out, KH, KW)
    dbias : array (C_out,), or None when the forward had no bias

    Notes
    -----
    The forward is ``y = C^T x`` with ``C`` the convolution by W, so ``dx = C dy``:

    .. math::

        dx = \mathrm{conv2d}(dy, W), \qquad
        dW[c, o, i, j] = \sum_{n, h, w} x[n, c, h, w]\, dy_{pad}[n, o, hS + iD, wS + jD],
        \qquad db[o] = \sum_{n, p, q} dy[n, o, p, q],

    the weight gradient being conv2d's with x and dy in swapped roles.
    """
    _checks.cache_of(cache, ConvTranspose2dCache, "conv_transpose2d_forward")
    x, weight = cache.x, cache.weight
    options = (cache.stride, cache.padding, cache.output_padding, cache.dilation)
    y_shape = transpose_geometry(x.shape, weight.shape, *options)[4]
    _checks.grad_shape(dy, y_shape, x.dtype)
    array_module_of(dy=dy, x=x)
    stride, padding, output_padding, dilation = options
    call = dispatch.conv_call(x, x.shape, weight.shape, stride, padding, dilation, y_shape[2:],
                              output_padding)
    with memory.purpose("conv_transpose2d backward"):
        return dispatch.run("conv_transpose2d.backward", call, dy, x, weight, cache.has_bias,
                            *options)
