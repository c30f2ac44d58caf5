"""``Conv2d``: a convolution layer holding its weight and bias."""
from __future__ import annotations

import math

import numpy as np

from ..ops import _checks
from ..ops.conv import conv2d_backward, conv2d_forward
from .module import Module, Parameter


def _rng(rng):
    """Accept a ``numpy.random.Generator``, an int seed, or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class Conv2d(Module):
    """2-D convolution layer, like ``torch.nn.Conv2d`` (no groups).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or (int, int)
    bias : bool
    dtype : float32 (default) or float64
    rng : numpy Generator or int seed for the initial weights

    Weight ``(out_channels, in_channels, KH, KW)`` and bias ``(out_channels,)`` start as
    PyTorch's do: uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, fan_in = C*KH*KW
    (Kaiming-uniform with a = sqrt(5)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, bias=True, dtype=np.float32, rng=None):
        in_channels = _checks.positive_int("in_channels", in_channels)
        out_channels = _checks.positive_int("out_channels", out_channels)
        kh, kw = _checks.pair("kernel_size", kernel_size, minimum=1)
        self.stride = _checks.pair("stride", stride, minimum=1)
        self.padding = _checks.pair("padding", padding, minimum=0)
        self.dilation = _checks.pair("dilation", dilation, minimum=1)
        rng = _rng(rng)
        bound = 1.0 / math.sqrt(in_channels * kh * kw)
        shape = (out_channels, in_channels, kh, kw)
        self.weight = Parameter(rng.uniform(-bound, bound, shape).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, out_channels).astype(dtype)) if bias else None

    def forward(self, x):
        bias = self.bias.data if self.bias is not None else None
        y, cache = conv2d_forward(x, self.weight.data, bias, self.stride, self.padding,
                                  self.dilation)
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        dx, dweight, dbias = conv2d_backward(dy, cache)
        self.weight.accumulate(dweight)
        if self.bias is not None:
            self.bias.accumulate(dbias)
        return dx

    def extra_repr(self):
        out_c, in_c, kh, kw = self.weight.shape
        return (f"{in_c}, {out_c}, kernel_size=({kh}, {kw}), stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}")
