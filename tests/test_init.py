"""Initial values of the convolution layers: PyTorch's default, He-normal, zeros."""
import math

import numpy as np
import pytest

from minifcn.nn import Conv2d, ConvTranspose2d


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kaiming_has_he_std_and_zero_bias(dtype):
    layer = Conv2d(64, 128, 3, dtype=dtype, rng=0, init="kaiming")
    assert layer.weight.dtype == dtype and layer.bias.dtype == dtype
    assert layer.weight.data.std() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)
    assert abs(layer.weight.data.mean()) < 1e-3 and not layer.bias.data.any()


def test_default_is_uniform_within_the_pytorch_bound():
    layer = ConvTranspose2d(40, 5, 3, rng=1)                 # fan_in from dim 1: 5*3*3
    bound = 1 / math.sqrt(5 * 9)
    w = layer.weight.data
    assert w.min() >= -bound and w.max() <= bound and w.max() - w.min() > 1.9 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_zeros_and_same_seed_same_values():
    assert not Conv2d(3, 4, 3, init="zeros").weight.data.any()
    a, b = Conv2d(3, 4, 3, rng=7), Conv2d(3, 4, 3, rng=7)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(init="he"), ValueError, "init must be one of 'default', 'kaiming', 'zeros'"),
    (dict(dtype=np.float16), TypeError, "dtype must be float32 or float64"),
])
def test_bad_init_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conv2d(3, 4, 3, **kwargs)
