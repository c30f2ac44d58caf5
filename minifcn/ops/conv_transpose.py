r"""Transposed convolution: conv2d's adjoint, built from the same three GEMMs.

A convolution ``C`` with weight ``W`` maps an image of size ``OH`` to one of size ``H``;
its transpose ``C^T`` maps back. The transposed convolution with weight ``W`` *is* ``C^T``:

* its forward is conv2d's input gradient: ``y = col2im(W^T x)``, every input pixel
  scattering a weighted ``KH x KW`` patch onto the output (patches overlap and sum);
* its input gradient is conv2d's forward: ``dx = conv2d(dy, W)``;
* its weight gradient is conv2d's weight gradient with the roles of input and output
  gradient swapped.

So this file holds no im2col of its own: it calls the helpers of ``conv.py`` with the
roles swapped. FCN's ``upscore`` layers are transposed convolutions with stride 2, 8, 16
or 32, initialised to bilinear interpolation (see ``upsample.py``).

With a stride (and no dilation, the kernel at least the stride) the col2im's overlapping
adds are avoided altogether: ``_phases.py`` splits the output into its ``S_H*S_W`` stride
phases, each a small stride-1 correlation of x, so forward and backward become one
convolution with ``S_H*S_W*C_out`` channels on x's grid and a pixel shuffle. Other options
(stride 1, dilation, kernel smaller than the stride) take the col2im path above; both give
the same result up to the order of float additions.
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module_of, get_array_module
from .. import _validate as _checks
from . import _phases
from .conv import _check_conv_args, _conv2d, _conv2d_input_grad, _conv2d_weight_grad
from .im2col import conv_output_size, conv_transpose_output_size


class ConvTranspose2dCache(NamedTuple):
    x: object
    weight: object
    has_bias: bool
    stride: tuple
    padding: tuple
    output_padding: tuple
    dilation: tuple


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                             dilation=1):
    r"""2-D transposed convolution, like ``torch.nn.functional.conv_transpose2d`` (no groups).

    Parameters
    ----------
    x : array (N, C_in, H, W), float32 or float64
    weight : array (C_in, C_out, KH, KW), same dtype and device as x
    bias : array (C_out,) or None
    stride, padding, dilation : int or (int, int); ``padding`` removes P rows/columns from
        each border of the full output (it is the padding of the convolution this reverses).
    output_padding : int or (int, int), extra rows/columns at the bottom/right, smaller than
        the stride or the dilation; it selects among the output sizes that a stride-S
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
    ``col2im(W.reshape(C_in, -1).T @ x)``: conv2d's input gradient with ``dy = x``; with a
    stride, the same sum is computed phase by phase (``_phases.py``), each output once.
    """
    _check_conv_args(x, weight, bias, transposed=True)
    geometry = _transpose_geometry(x.shape, weight.shape, stride, padding, output_padding,
                                   dilation)
    stride, padding, output_padding, dilation, y_shape = geometry
    if _phases.applies(weight.shape[2:], stride, dilation):
        y = _phases.forward(x, weight, stride, padding, y_shape)          # (N, C_out, OH, OW)
    else:
        conv_geometry = (stride, padding, dilation)
        y = _conv2d_input_grad(_pad_to_conv_output(x, y_shape, weight, conv_geometry), weight,
                               y_shape, *conv_geometry,
                               what="conv_transpose2d forward")           # (N, C_out, OH, OW)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y, ConvTranspose2dCache(x, weight, bias is not None, stride, padding,
                                   output_padding, dilation)


def conv_transpose2d_backward(dy, cache: ConvTranspose2dCache):
    r"""Gradients of :func:`conv_transpose2d_forward` with respect to x, weight and bias.

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

    the weight gradient being conv2d's with x and dy in swapped roles. With a stride (see
    the forward) both come from dy's stride phases instead: one GEMM each on x's grid, and
    no im2col of dy.
    """
    _checks.cache_of(cache, ConvTranspose2dCache, "conv_transpose2d_forward")
    x, weight = cache.x, cache.weight
    _, _, _, _, y_shape = _transpose_geometry(x.shape, weight.shape, cache.stride, cache.padding,
                                              cache.output_padding, cache.dilation)
    _checks.grad_shape(dy, y_shape, x.dtype)
    array_module_of(dy=dy, x=x)
    dbias = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    if _phases.applies(weight.shape[2:], cache.stride, cache.dilation):
        dx, dweight = _phases.backward(dy, x, weight, cache.stride, cache.padding)
        return dx, dweight, dbias
    conv_geometry = (cache.stride, cache.padding, cache.dilation)
    N, C_in, H, W = x.shape
    dx = _conv2d(dy, weight, *conv_geometry,
                 what="conv_transpose2d backward (dx)")[:, :, :H, :W]    # (N, C_in, H, W)
    x_full = _pad_to_conv_output(x, y_shape, weight, conv_geometry)
    dweight = _conv2d_weight_grad(x_full, dy, weight.shape, *conv_geometry,
                                  what="conv_transpose2d backward (dweight)")
    return get_array_module(dx).ascontiguousarray(dx), dweight, dbias


def _transpose_geometry(x_shape, w_shape, stride, padding, output_padding, dilation):
    """Validate the options; return them as pairs, with the output shape (N, C_out, OH, OW)."""
    stride = _checks.pair("stride", stride, minimum=1)
    padding = _checks.pair("padding", padding, minimum=0)
    output_padding = _checks.pair("output_padding", output_padding, minimum=0)
    dilation = _checks.pair("dilation", dilation, minimum=1)
    for a in range(2):
        if output_padding[a] >= max(stride[a], dilation[a]):
            raise ValueError(f"output_padding must be smaller than either stride or dilation, "
                             f"got output_padding={output_padding}, stride={stride}, "
                             f"dilation={dilation}")
    out = tuple(conv_transpose_output_size(x_shape[2 + a], w_shape[2 + a], stride[a],
                                           padding[a], output_padding[a], dilation[a])
                for a in range(2))
    if min(out) < 1:
        raise ValueError(f"padding {padding} removes more than the {x_shape[2]}x{x_shape[3]} "
                         f"input produces: the output size would be {out[0]}x{out[1]}, too "
                         f"small (at least 1x1)")
    return stride, padding, output_padding, dilation, (x_shape[0], w_shape[1]) + out


def _pad_to_conv_output(x, y_shape, weight, conv_geometry):
    """x padded with zeros at the bottom/right to the size conv2d maps y_shape to.

    That size equals x's unless output_padding >= stride (allowed when it is below the
    dilation): then the convolution of y has extra rows that no input pixel feeds.
    """
    stride, padding, dilation = conv_geometry
    full = tuple(conv_output_size(y_shape[2 + a], weight.shape[2 + a], stride[a], padding[a],
                                  dilation[a]) for a in range(2))
    extra = (full[0] - x.shape[2], full[1] - x.shape[3])
    if extra == (0, 0):
        return x
    xp = get_array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))     # (N, C_in, H', W')
