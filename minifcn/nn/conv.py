"""``Conv2d`` and ``ConvTranspose2d``: convolution layers holding a weight and a bias."""
from __future__ import annotations

import math

import numpy as np

from .. import _validate as _checks
from ..ops.conv import conv2d_backward, conv2d_forward
from ..ops.conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from .module import Module, Parameter


def _rng(rng):
    """Accept a ``numpy.random.Generator``, an int seed, or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


INITS = ("default", "kaiming", "zeros")


def initial_values(init, shape, fan_in, dtype, rng, is_bias=False):
    """Starting values of a weight or bias.

    ``"default"``: PyTorch's, uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` for weight and
    bias (kaiming_uniform with a = sqrt(5)). ``"kaiming"``: He-normal weights,
    ``std = sqrt(2 / fan_in)``, for ReLU nets trained from scratch, and zero biases.
    ``"zeros"``: all zeros (before loading weights; big zero arrays cost no time or memory
    until written). Drawn directly in ``dtype``.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
    if init == "zeros" or (init == "kaiming" and is_bias):
        return np.zeros(shape, dtype)
    if init == "kaiming":
        return rng.standard_normal(shape, dtype=dtype) * dtype.type(math.sqrt(2.0 / fan_in))
    bound = dtype.type(1.0 / math.sqrt(fan_in))
    return (rng.random(shape, dtype=dtype) * 2 - 1) * bound


class _Conv(Module):
    """What both convolution layers share: parameters, their initialisation, the calls."""

    def __init__(self, weight_shape, fan_in, bias, dtype, rng, init, **options):
        rng, dtype = _rng(rng), np.dtype(dtype)
        _checks.float_dtype("dtype", dtype)
        self.weight = Parameter(initial_values(init, weight_shape, fan_in, dtype, rng))
        n_out = weight_shape[1] if self.transposed else weight_shape[0]
        self.bias = (Parameter(initial_values(init, n_out, fan_in, dtype, rng, is_bias=True))
                     if bias else None)
        self.options = options

    def forward(self, x):
        bias = self.bias.data if self.bias is not None else None
        y, cache = self._forward(x, self.weight.data, bias, **self.options)
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        dx, dweight, dbias = self._backward(dy, cache)
        self.weight.accumulate(dweight, copy=False)    # fresh arrays: handed over
        if self.bias is not None:
            self.bias.accumulate(dbias, copy=False)
        return dx

    def extra_repr(self):
        c_a, c_b, kh, kw = self.weight.shape
        groups = self.options.get("groups", 1)
        in_c, out_c = (c_a, c_b) if self.transposed else (c_b * groups, c_a)
        options = ", ".join(f"{k}={v}" for k, v in self.options.items()
                            if k != "groups" or v != 1)
        return (f"{in_c}, {out_c}, kernel_size=({kh}, {kw}), {options}, "
                f"bias={self.bias is not None}")


class Conv2d(_Conv):
    """2-D convolution layer, like ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or (int, int)
    groups : int dividing both channel counts (``groups=in_channels``: depthwise)
    bias : bool
    dtype : float32 (default) or float64
    rng : numpy Generator or int seed for the initial weights
    init : "default", "kaiming" or "zeros" (see :func:`initial_values`)

    Weight ``(out_channels, in_channels/groups, KH, KW)`` and bias ``(out_channels,)`` start
    by default as PyTorch's do: uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``,
    fan_in = C/G*KH*KW (Kaiming-uniform with a = sqrt(5)).
    """
    transposed = False
    _forward = staticmethod(conv2d_forward)
    _backward = staticmethod(conv2d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, dtype=np.float32, rng=None,
                 init="default"):
        in_channels = _checks.positive_int("in_channels", in_channels)
        out_channels = _checks.positive_int("out_channels", out_channels)
        groups = _checks.positive_int("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels ({in_channels}) and "
                             f"out_channels ({out_channels})")
        kh, kw = _checks.pair("kernel_size", kernel_size, minimum=1)
        c_group = in_channels // groups
        super().__init__((out_channels, c_group, kh, kw), c_group * kh * kw, bias,
                         dtype, rng, init, stride=_checks.pair("stride", stride, minimum=1),
                         padding=_checks.pair("padding", padding, minimum=0),
                         dilation=_checks.pair("dilation", dilation, minimum=1),
                         groups=groups)


class ConvTranspose2d(_Conv):
    """2-D transposed convolution layer, like ``torch.nn.ConvTranspose2d`` (no groups).

    Weight ``(in_channels, out_channels, KH, KW)`` and bias ``(out_channels,)``, initialised
    as PyTorch does, with fan_in = out_channels*KH*KW (PyTorch reads the fan from the
    weight's second dimension). FCN replaces this start with a bilinear kernel
    (``minifcn.ops.bilinear_upsampling_weight``) and often freezes it.
    """
    transposed = True
    _forward = staticmethod(conv_transpose2d_forward)
    _backward = staticmethod(conv_transpose2d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True, dilation=1, dtype=np.float32, rng=None,
                 init="default"):
        in_channels = _checks.positive_int("in_channels", in_channels)
        out_channels = _checks.positive_int("out_channels", out_channels)
        kh, kw = _checks.pair("kernel_size", kernel_size, minimum=1)
        super().__init__((in_channels, out_channels, kh, kw), out_channels * kh * kw, bias,
                         dtype, rng, init, stride=_checks.pair("stride", stride, minimum=1),
                         padding=_checks.pair("padding", padding, minimum=0),
                         output_padding=_checks.pair("output_padding", output_padding,
                                                     minimum=0),
                         dilation=_checks.pair("dilation", dilation, minimum=1))
