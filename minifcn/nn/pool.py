"""``MaxPool2d`` and ``AdaptiveAvgPool2d``: pooling layers, thin wrappers around the functional
pairs."""
from __future__ import annotations

import numpy as np

from ..ops.arguments import pool_options
from ..ops.average_pool import adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward
from ..ops.pool import max_pool2d_backward, max_pool2d_forward
from .module import Module


_ONE_PIXEL = np.zeros((1, 1, 1, 1), np.float32)


class MaxPool2d(Module):
    """2-D max pooling, like ``torch.nn.MaxPool2d`` (no dilation, no return_indices).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int, (int, int) or None (the default: stride = kernel_size)
    padding : int or (int, int), at most half the kernel size; the padding is -inf.
    ceil_mode : bool; round the output size up (FCN's VGG pools: ``MaxPool2d(2, 2,
        ceil_mode=True)``). See :func:`minifcn.ops.max_pool2d_output_size`.

    No parameters. ``forward`` keeps only the argmax offsets (an int8 array of the output's
    size), and ``backward(dy)`` routes each gradient to its window's first maximum.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        (self.kernel_size, self.stride, self.padding,
         self.ceil_mode) = pool_options(kernel_size, stride, padding, ceil_mode)

    def forward(self, x):
        y, cache = max_pool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                      self.ceil_mode)
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        return max_pool2d_backward(dy, cache)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, ceil_mode={self.ceil_mode}")


class AdaptiveAvgPool2d(Module):
    """Global average pooling, ``torch.nn.AdaptiveAvgPool2d(1)``: (N, C, H, W) -> (N, C, 1, 1).
    Only ``output_size=1`` is offered (see :func:`minifcn.ops.adaptive_avg_pool2d_forward`)."""

    def __init__(self, output_size=1):
        adaptive_avg_pool2d_forward(_ONE_PIXEL, output_size)      # the same check, now
        self.output_size = output_size

    def forward(self, x):
        y, cache = adaptive_avg_pool2d_forward(x, self.output_size)
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        return adaptive_avg_pool2d_backward(dy, cache)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
