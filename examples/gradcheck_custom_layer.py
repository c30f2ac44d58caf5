"""Write a layer of your own and check its backward with minifcn.gradcheck.

1. A functional pair, leaky ReLU, checked with check_function.
2. A Module with parameters, a depthwise 3x3 convolution, checked with check_module.
3. The same convolution with a planted bug: the report names the tensor and the element.
4. A backward that writes into its dy: caught by the checker's property checks.

The checker compares every gradient with central differences in float64,
dL/dx[k] ~ <f(x + eps e_k) - f(x - eps e_k), dy> / (2 eps), and prints a table.
Run: python examples/gradcheck_custom_layer.py
"""
from typing import NamedTuple

import numpy as np

from minifcn.backend import get_array_module
from minifcn.gradcheck import GradcheckError, check_function, check_module
from minifcn.nn import Module, Parameter

rng = np.random.default_rng(0)


def section(title):
    print(f"\n=== {title} " + "=" * max(0, 76 - len(title)))


# --- 1. A functional op: leaky ReLU -------------------------------------------------------
# An op is a pair: forward(x, options) -> (y, cache), backward(dy, cache) -> grads.

class LeakyReluCache(NamedTuple):
    positive: object          # x > 0, a boolean mask shaped like x
    negative_slope: float


def leaky_relu_forward(x, negative_slope=0.1):
    """y = x where x > 0, else negative_slope * x."""
    xp = get_array_module(x)
    positive = x > 0
    y = xp.where(positive, x, negative_slope * x)
    return y, LeakyReluCache(positive, negative_slope)


def leaky_relu_backward(dy, cache):
    """dx = dy where x > 0, else negative_slope * dy."""
    xp = get_array_module(dy)
    return (xp.where(cache.positive, dy, cache.negative_slope * dy),)


section("1. leaky ReLU with check_function")
# The kink at 0: there the function has no derivative, and a central difference whose
# two points x - eps and x + eps straddle 0 measures the average of the two slopes.
# The checker perturbs whatever inputs you give it, so keep every |x| well above eps
# (1e-6 by default): here |x| >= 0.1. The float option is not a float array: not checked.
a = rng.uniform(0.1, 2.0, (2, 3, 4, 5)) * rng.choice([-1.0, 1.0], (2, 3, 4, 5))
print(check_function(leaky_relu_forward, leaky_relu_backward, [a, 0.1]))

print("\nThe same check with one element placed 3e-7 from the kink, closer than eps = 1e-6:")
a_near_kink = a.copy()
a_near_kink[0, 1, 2, 3] = 3e-7
near = check_function(leaky_relu_forward, leaky_relu_backward, [a_near_kink, 0.1])
t = near.tensor("x")
print(f"  passed={near.passed}, failures {near.failures()}; worst element {t.worst_index}:")
print(f"  analytic {t.analytic:.4f} = dy * 1, numerical {t.numerical:.4f} = dy * "
      f"{t.numerical / t.analytic:.3f}, the mean slope on [x - eps, x + eps]:")
print("  (1.3e-6 - 0.1 * (-0.7e-6)) / 2e-6 = 0.685. The backward is right and the input is "
      "bad:\n  keep inputs away from every kink.")


# --- 2. A Module with parameters: depthwise 3x3 convolution ------------------------------
# One 3x3 filter per channel (torch: conv2d(x, weight, bias, padding=1, groups=C)), stride 1,
# zero padding 1, so the output is as large as the input:
#     y[n, c, p, q] = b[c] + sum_{i, j} w[c, 0, i, j] * x_pad[n, c, p + i, q + j]

def correlate3x3(x, w):
    """Each channel of x (N, C, H, W) cross-correlated with its own 3x3 filter w (C, 1, 3, 3)."""
    xp = get_array_module(x, w)
    H, W = x.shape[2:]
    x_pad = xp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))            # (N, C, H+2, W+2)
    y = xp.zeros_like(x)                                            # (N, C, H, W)
    for i in range(3):
        for j in range(3):                  # the shifted image times one filter tap
            y += w[:, 0, i, j].reshape(1, -1, 1, 1) * x_pad[:, :, i:i + H, j:j + W]
    return y


def filter_grad(x, dy):
    """dw[c, 0, i, j] = sum_{n, p, q} dy[n, c, p, q] * x_pad[n, c, p + i, q + j]."""
    xp = get_array_module(x, dy)
    H, W = x.shape[2:]
    x_pad = xp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))            # (N, C, H+2, W+2)
    taps = [(dy * x_pad[:, :, i:i + H, j:j + W]).sum(axis=(0, 2, 3))  # (C,) per tap
            for i in range(3) for j in range(3)]
    return xp.stack(taps, axis=1).reshape(-1, 1, 3, 3)              # (C, 1, 3, 3)


class DepthwiseConv3x3(Module):
    """y = correlate3x3(x, weight) + bias, with a learnable weight (C, 1, 3, 3) and bias (C,)."""

    def __init__(self, channels, rng):
        super().__init__()
        self.weight = Parameter(rng.standard_normal((channels, 1, 3, 3)).astype(np.float32) / 3)
        self.bias = Parameter(rng.standard_normal(channels).astype(np.float32))

    def forward(self, x):
        self.save_for_backward(x)
        return correlate3x3(x, self.weight.data) + self.bias.data.reshape(1, -1, 1, 1)

    def backward(self, dy):
        # dx[n, c, u, v] = sum_{i, j} w[c, 0, i, j] * dy_pad[n, c, u - i + 1, v - j + 1]:
        # the same correlation, applied to dy with the filter flipped in both axes.
        x, = self.saved()
        self.weight.accumulate(filter_grad(x, dy))
        self.bias.accumulate(dy.sum(axis=(0, 2, 3)))                # (C,): over batch and space
        return correlate3x3(dy, self.weight.data[:, :, ::-1, ::-1])


section("2. depthwise 3x3 convolution with check_module")
# check_module deep-copies the layer, casts it to float64 and checks the input gradient and
# every parameter's .grad, then that two backward calls accumulate twice the gradient.
layer = DepthwiseConv3x3(3, rng)
x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
print(check_module(layer, x))


# --- 3. Planted bugs: what a failure looks like -----------------------------------------------

class ForgotTheFlip(DepthwiseConv3x3):
    def backward(self, dy):
        x, = self.saved()
        self.weight.accumulate(filter_grad(x, dy))
        self.bias.accumulate(dy.sum(axis=(0, 2, 3)))
        return correlate3x3(dy, self.weight.data)                   # BUG: filter not flipped


class BiasOfFirstImageOnly(DepthwiseConv3x3):
    def backward(self, dy):
        x, = self.saved()
        self.weight.accumulate(filter_grad(x, dy))
        self.bias.accumulate(dy[0].sum(axis=(1, 2)))                # BUG: no sum over batch
        return correlate3x3(dy, self.weight.data[:, :, ::-1, ::-1])


section("3. a planted bug: dx computed without flipping the filter")
buggy = ForgotTheFlip(3, np.random.default_rng(1))
buggy.weight.data, buggy.bias.data = layer.weight.data, layer.bias.data
report = check_module(buggy, x)
print(report)
worst = report.tensor("input")
print("\nOnly 'input' fails: the weight and bias gradients do not use the flipped filter.")
print(f"{worst.n_failed} of its {worst.n_elements} elements are wrong; the worst is "
      f"x{list(worst.worst_index)}.")

print("\nOn a large layer, mode='directional' checks one random direction per tensor in two "
      "forward calls;\nit tells you which tensor is wrong, and mode='full' (or max_elements=) "
      "then finds the element:")
for t in check_module(buggy, x, mode="directional").tensors:
    print(f"  {t.name:6s}  {'ok' if t.passed else 'FAIL: ' + t.message}")

print("\nIn a test, raise_on_failure=True turns the report into a GradcheckError:")
try:
    check_module(BiasOfFirstImageOnly(3, rng), x, raise_on_failure=True)
except GradcheckError as err:
    lines = str(err).strip().splitlines()
    print("  caught GradcheckError:", lines[0])
    print("\n".join("  " + line for line in lines[3:8]))         # the tensor table


# --- 4. A backward that writes into dy ------------------------------------------------------

def leaky_relu_backward_in_place(dy, cache):
    dy[~cache.positive] *= cache.negative_slope                    # BUG: overwrites the caller's dy
    return (dy,)


section("4. property checks: a backward that modifies its dy in place")
# Its gradients are right, but the caller's dy (shared with other layers) is overwritten.
report = check_function(leaky_relu_forward, leaky_relu_backward_in_place, [a, 0.1])
print("failures:", report.failures())
print("detail:  ", next(p.detail for p in report.properties if not p.passed))
