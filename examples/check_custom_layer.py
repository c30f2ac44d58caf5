"""Check your own layer's backward with minifcn's gradient checker.

A layer is a Module subclass: parameters are registered by assigning them to attributes,
forward saves what backward needs, backward returns dx and *adds* parameter gradients.
check_module compares every gradient with central differences in float64 and prints a
table naming each tensor and its worst element. Run: python examples/check_custom_layer.py
"""
import numpy as np

from minifcn.gradcheck import check_module
from minifcn.nn import Module, Parameter


class ScaledTanh(Module):
    """y = a[c] * tanh(x): a learnable gain per channel."""

    def __init__(self, channels):
        super().__init__()
        self.gain = Parameter(np.ones(channels, dtype=np.float32))

    def forward(self, x):
        t = np.tanh(x)
        self.save_for_backward(t)
        return self.gain.data[:, None, None] * t

    def backward(self, dy):
        t, = self.saved()
        self.gain.accumulate((dy * t).sum(axis=(0, 2, 3)))       # dL/da[c] = sum dy * tanh(x)
        return dy * self.gain.data[:, None, None] * (1 - t * t)  # dL/dx = dy * a * (1 - tanh^2)


class BuggyScaledTanh(ScaledTanh):
    """The same layer with a classic mistake: the derivative of tanh forgotten."""

    def backward(self, dy):
        t, = self.saved()
        self.gain.accumulate((dy * t).sum(axis=(0, 2, 3)))
        return dy * self.gain.data[:, None, None]


if __name__ == "__main__":
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    layer = ScaledTanh(3)
    layer.gain.data[:] = [0.5, 1.0, 2.0]

    print(check_module(layer, x))                       # passes
    print()
    buggy = BuggyScaledTanh(3)
    report = check_module(buggy, x)                     # fails, and says where
    print(report)
    assert not report.passed and report.failures() == ["input"]
