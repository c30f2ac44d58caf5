r"""A convolution whose zero padding is wider than its kernel: compute only the middle.

FCN pads conv1_1 by 100, so on a 192x192 image three quarters of conv1_1's 390x390 output
windows hold nothing but padding: there ``y = b`` exactly. Along each axis the outputs
``p`` whose window ``pS - P + iD`` (``0 <= i < K``) meets the image form one range
``[p0, p1)``; this path computes the convolution on that middle block only, as a convolution
of x with the smaller padding ``P' = P - p0 S``, and fills the border with the bias. The
backward needs the middle block of dy only (the border read no pixel of x and no weight
times a non-zero), except the bias gradient, which sums all of dy. Measured on the
project's 2-core machine (benchmarks/README.md): it pays for FCN-8s at width 1/16 (conv1_1
3->4), not at width 1 (3->64), where writing the 64-channel border costs what it saves.
"""
from __future__ import annotations

from ... import memory
from ...backend import get_array_module
from .. import dispatch

RULE = ("no groups, and zero padding wider than the kernel's reach, so that at least a quarter of the "
        "output windows read nothing but padding (FCN's conv1_1: padding 100), the rest a "
        "convolution of x with less padding, and no more filters than C*KH*KW (where the "
        "output, not the im2col, is the larger array, filling the border costs as much as "
        "it saves)")
SMALLEST_SAVING = 0.25           # the border's share of the output, below which it skips


def _middle(size, out, kernel, stride, padding, dilation):
    """The outputs [p0, p1) whose window meets [0, size) along one axis, and P'."""
    reach = dilation * (kernel - 1)
    p0 = max(0, -(-(padding - reach) // stride))                  # pS - P + reach >= 0
    p1 = min(out, (size - 1 + padding) // stride + 1)              # pS - P <= size - 1
    return p0, p1, padding - p0 * stride


def _ranges(call):
    return [_middle(call.x_shape[2 + a], call.out[a], call.w_shape[2 + a], call.stride[a],
                    call.padding[a], call.dilation[a]) for a in range(2)]


def applies(call) -> bool:
    if call.groups != 1:
        return False
    ranges = _ranges(call)
    for a, (p0, p1, inner) in enumerate(ranges):
        if p1 <= p0 or inner < 0 or _outputs(call, a, inner) != p1 - p0:
            return False                      # the middle block is not a padded conv of x
    (r0, r1, _), (c0, c1, _) = ranges
    saved = 1 - (r1 - r0) * (c1 - c0) / (call.out[0] * call.out[1])
    F, C, KH, KW = call.w_shape
    return saved >= SMALLEST_SAVING and C * KH * KW >= F


def _outputs(call, a, padding):
    """Outputs along axis a of the convolution of x with ``padding`` on both sides."""
    reach = call.dilation[a] * (call.w_shape[2 + a] - 1)
    return (call.x_shape[2 + a] + 2 * padding - reach - 1) // call.stride[a] + 1


def _inner_call(call, x_shape):
    (r0, r1, pr), (c0, c1, pc) = _ranges(call)
    return call._replace(x_shape=tuple(x_shape), padding=(pr, pc), out=(r1 - r0, c1 - c0))


def forward(x, weight, bias, stride, padding, dilation):
    """y = bias everywhere, and the convolution of x in the middle block."""
    xp = get_array_module(x)
    call = _call(x, x.shape, weight.shape, stride, padding, dilation)
    (r0, r1, _), (c0, c1, _) = _ranges(call)
    inner = _inner_call(call, x.shape)
    middle = dispatch.run("conv2d.forward", inner, x, weight, bias, stride, inner.padding,
                          dilation)                                   # (N, F, r1-r0, c1-c0)
    y = memory.result(xp, (x.shape[0], weight.shape[0]) + tuple(call.out), x.dtype,
                      "conv2d forward (border)")
    y[...] = 0 if bias is None else bias.reshape(1, -1, 1, 1)
    y[:, :, r0:r1, c0:c1] = middle
    return y


def input_grad(dy, weight, x_shape, stride, padding, dilation):
    """dx from the middle block of dy alone (the border read only padding)."""
    xp = get_array_module(dy)
    call = _call(dy, x_shape, weight.shape, stride, padding, dilation, dy.shape[2:])
    (r0, r1, _), (c0, c1, _) = _ranges(call)
    inner = _inner_call(call, x_shape)
    middle = xp.ascontiguousarray(dy[:, :, r0:r1, c0:c1])
    return dispatch.run("conv2d.input_grad", inner, middle, weight, x_shape, stride,
                        inner.padding, dilation)


def weight_grad(dy, x, weight_shape, stride, padding, dilation):
    """dW from the middle block of dy alone (the border multiplied only zeros)."""
    xp = get_array_module(dy)
    call = _call(x, x.shape, weight_shape, stride, padding, dilation, dy.shape[2:])
    (r0, r1, _), (c0, c1, _) = _ranges(call)
    inner = _inner_call(call, x.shape)
    middle = xp.ascontiguousarray(dy[:, :, r0:r1, c0:c1])
    return dispatch.run("conv2d.weight_grad", inner, middle, x, weight_shape, stride,
                        inner.padding, dilation)


def _call(like, x_shape, w_shape, stride, padding, dilation, out=None):
    """The call, with the output size computed where it is not given (the forward)."""
    if out is None:
        out = tuple((x_shape[2 + a] + 2 * padding[a] - dilation[a] * (w_shape[2 + a] - 1) - 1)
                    // stride[a] + 1 for a in range(2))
    return dispatch.conv_call(like, x_shape, w_shape, stride, padding, dilation, out)
