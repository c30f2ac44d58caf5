r"""A stride-1 convolution's input gradient as a convolution of dy.

With stride 1, input pixel ``(h, w)`` feeds output ``(h + P - iD, w + P - jD)`` through tap
``(i, j)``, so

.. math::

    dx[c, h, w] = \sum_{f, i, j} W[f, c, i, j]\, dy[f, h + P - iD, w + P - jD],

a correlation of dy, zero-padded by ``D(K-1) - P``, with the kernel flipped and its two
channel axes swapped: ``dx = conv2d(dy, W~)``, ``W~[c, f, i, j] = W[f, c, KH-1-i, KW-1-j]``.
Computed by the conv2d forward the dispatcher picks (Winograd for a wide float32 3x3), each
dx element is written once, where col2im adds nine shifted copies (for 3x3) onto a zeroed dx.
"""
from __future__ import annotations

from ...backend import get_array_module
from .. import dispatch
from ..arguments import is_pointwise

RULE = ("no groups, stride 1, a kernel larger than 1x1 or padded, P <= D(K-1), and either no more "
        "filters than channels (F*W <= C*OW) or a correlation that runs by Winograd")


def _padding(call):
    return tuple(call.dilation[a] * (call.w_shape[2 + a] - 1) - call.padding[a]
                 for a in range(2))


def _correlation_call(call):
    """The call of the forward convolution that computes dx (dy by the flipped kernel)."""
    F, C, KH, KW = call.w_shape
    dy_shape = (call.x_shape[0], F) + tuple(call.out)
    return call._replace(x_shape=dy_shape, w_shape=(C, F, KH, KW), padding=_padding(call),
                         out=tuple(call.x_shape[2:]))


def applies(call) -> bool:
    if call.groups != 1 or call.stride != (1, 1) or is_pointwise(call.w_shape[2:], call.stride, call.padding):
        return False
    if min(_padding(call)) < 0:
        return False
    F, C = call.w_shape[:2]
    if F * call.x_shape[3] <= C * call.out[1]:
        return True
    chosen = dispatch.choose("conv2d.forward", _correlation_call(call))
    return chosen is not None and chosen.name == "winograd"


def input_grad(dy, weight, x_shape, stride, padding, dilation):
    """dx = conv2d(dy, W~, padding D(K-1) - P), W~ the flipped, channel-swapped kernel."""
    xp = get_array_module(dy)
    w_flip = xp.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C,F,KH,KW)
    pad = tuple(dilation[a] * (weight.shape[2 + a] - 1) - padding[a] for a in range(2))
    call = dispatch.conv_call(dy, dy.shape, w_flip.shape, (1, 1), pad, dilation, x_shape[2:])
    return dispatch.run("conv2d.forward", call, dy, w_flip, None, (1, 1), pad, dilation)
