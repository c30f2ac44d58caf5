"""Sequential: chaining forward, reversing backward, PyTorch-style names."""
import numpy as np
import pytest

from minifcn.gradcheck import check_module
from minifcn.nn import Conv2d, Module, Sequential


def test_names_follow_pytorch_and_backward_runs_in_reverse(rng):
    net = Sequential(Conv2d(2, 3, 3, padding=1, rng=0), Conv2d(3, 4, 1, rng=1))
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert len(net) == 2 and net[1] is list(net)[1]
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    y = net(x)
    dx = net.backward(np.ones_like(y))
    # The same result by hand, layer by layer.
    h = net[0](x)
    dh = net[1].backward(np.ones_like(net[1](h)))
    np.testing.assert_allclose(dx, net[0].backward(dh), rtol=1e-6)


def test_gradcheck_of_a_stack(rng):
    net = Sequential(Conv2d(2, 3, 3, stride=2, padding=1, rng=0), Conv2d(3, 2, 2, rng=1))
    report = check_module(net, rng.standard_normal((2, 2, 7, 6)), max_elements=40)
    assert report.passed, report


def test_rejects_non_modules():
    with pytest.raises(TypeError, match="Sequential argument 1 must be a Module"):
        Sequential(Module(), np.zeros(3))
