"""A layer of your own, checked from the command line (importing this file runs nothing):

    minifcn gradcheck examples/my_layer.py:ScaledTanh --input-shape 2x3x4x4
    minifcn gradcheck examples/my_layer.py:ScaledTanh --init-args 5 --input-shape 2x5x4x4
    minifcn gradcheck examples/my_layer.py:leaky_relu --input-shape 2x3x4x4
    minifcn gradcheck examples/my_layer.py:leaky_relu_forward,leaky_relu_backward \
        --input-shape 2x3x4x4

or from Python: ``python examples/my_layer.py`` runs the same checks with
``check_module`` and ``check_function``.
"""
import numpy as np

from minifcn.backend import get_array_module
from minifcn.nn import Module, Parameter


class ScaledTanh(Module):
    """y = gain[c] * tanh(x), with a learnable gain per channel."""

    def __init__(self, channels=3):
        super().__init__()
        self.gain = Parameter(np.linspace(0.5, 1.5, channels, dtype=np.float32))

    def forward(self, x):
        xp = get_array_module(x)
        t = xp.tanh(x)
        self.save_for_backward(t)
        return self.gain.data[:, None, None] * t                   # (N, C, H, W)

    def backward(self, dy):
        t, = self.saved()
        self.gain.accumulate((dy * t).sum(axis=(0, 2, 3)))         # (C,): over batch and space
        return dy * self.gain.data[:, None, None] * (1 - t * t)


# A functional pair: forward(x) -> (y, cache), backward(dy, cache) -> (dx,).
def leaky_relu_forward(x, negative_slope=0.1):
    xp = get_array_module(x)
    positive = x > 0
    return xp.where(positive, x, negative_slope * x), (positive, negative_slope)


def leaky_relu_backward(dy, cache):
    positive, negative_slope = cache
    return (get_array_module(dy).where(positive, dy, negative_slope * dy),)


leaky_relu = (leaky_relu_forward, leaky_relu_backward)     # NAME may name the pair


if __name__ == "__main__":
    from minifcn.gradcheck import check_function, check_module

    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    print(check_module(ScaledTanh(3), x), end="\n\n")
    print(check_function(leaky_relu_forward, leaky_relu_backward, [x]))
