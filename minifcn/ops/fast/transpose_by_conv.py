r"""conv_transpose2d through conv2d's fast pieces: the duality, at full speed.

A transposed convolution is conv2d's adjoint (the reference, ``reference/conv.py``, writes
it so): its forward is conv2d's input gradient, its input gradient conv2d's forward, its
weight gradient conv2d's weight gradient with x and dy in swapped roles. This path computes
the same three through the dispatcher, so each runs by the fast path that applies to it
(chunked GEMMs, the stride-1 correlation, Winograd).
"""
from __future__ import annotations

from ...backend import get_array_module
from .. import dispatch
from ..reference.conv import pad_to_conv_output

RULE = "any transposed convolution the stride phases do not take (conv2d's pieces, dispatched)"


def applies(call) -> bool:
    return True


def _full_input(x, stride, output_padding):
    """x, or x padded to the size conv2d maps y's size to (output_padding >= stride)."""
    if all(o < s for o, s in zip(output_padding, stride)):
        return x                                                     # no copy
    return pad_to_conv_output(x, stride, output_padding)             # (N, C_in, H', W')


def _y_shape(x, weight, stride, padding, output_padding, dilation):
    return (x.shape[0], weight.shape[1]) + tuple(
        (x.shape[2 + a] - 1) * stride[a] - 2 * padding[a]
        + dilation[a] * (weight.shape[2 + a] - 1) + output_padding[a] + 1 for a in range(2))


def forward(x, weight, bias, stride, padding, output_padding, dilation):
    """y = conv2d's input gradient with dy = x (+ bias)."""
    y_shape = _y_shape(x, weight, stride, padding, output_padding, dilation)
    x_full = _full_input(x, stride, output_padding)
    call = dispatch.conv_call(x, y_shape, weight.shape, stride, padding, dilation,
                              x_full.shape[2:])
    y = dispatch.run("conv2d.input_grad", call, x_full, weight, y_shape, stride, padding,
                     dilation)                                       # (N, C_out, OH, OW)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def backward(dy, x, weight, has_bias, stride, padding, output_padding, dilation):
    """dx = conv2d(dy, W), dW = conv2d's weight gradient of dy with x's rows as dy's."""
    xp = get_array_module(dy)
    x_full = _full_input(x, stride, output_padding)
    call = dispatch.conv_call(dy, dy.shape, weight.shape, stride, padding, dilation,
                              x_full.shape[2:])
    H, W = x.shape[2:]
    dx = dispatch.run("conv2d.forward", call, dy, weight, None, stride, padding,
                      dilation)[:, :, :H, :W]                        # (N, C_in, H, W)
    dweight = dispatch.run("conv2d.weight_grad", call, x_full, dy, weight.shape, stride,
                           padding, dilation)                        # (C_in, C_out, KH, KW)
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return xp.ascontiguousarray(dx), dweight, dbias
