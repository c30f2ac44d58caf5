"""``MaxPool2d``: the max-pooling layer, a thin wrapper around the functional pair."""
from __future__ import annotations

from ..ops.arguments import pool_options
from ..ops.pool import max_pool2d_backward, max_pool2d_forward
from .module import Module


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
