"""crop_forward / crop_backward against plain slicing and PyTorch (slicing + autograd), at
FCN's offsets and sizes; finite differences; argument errors; and the nn.Crop layer."""
import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.gradcheck import check_function, check_module
from minifcn.nn import Crop
from minifcn.ops import crop_backward, crop_forward

from helpers import rel_error

# (x's (H, W), offset, size): FCN-16s at 500x500 crops score_pool4 (44x44) at 5 to upscore2's
# 34x34; FCN-8s crops score_pool3 (88x88) at 9 to 70x70; then odd/even and uneven cases.
CASES = [
    pytest.param((44, 44), 5, (34, 34), id="fcn-pool4-44-at5-to34"),
    pytest.param((88, 88), 9, (70, 70), id="fcn-pool3-88-at9-to70"),
    pytest.param((13, 14), 0, (5, 8), id="13x14-at0-to5x8"),
    pytest.param((13, 14), 5, (7, 9), id="13x14-at5-to7x9-fits-exactly"),
    pytest.param((13, 14), (2, 3), (6, 5), id="13x14-at2,3-to6x5"),
    pytest.param((9, 8), 0, (9, 8), id="9x8-whole"),
]
grid = pytest.mark.parametrize("hw, offset, size", CASES)


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)],
                         ids=["float64", "float32"])
@grid
def test_crop_matches_slicing_and_torch(xp, torch, rng, hw, offset, size, dtype, tol):
    (top, left), (h, w) = _pair(offset), size
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    y, cache = crop_forward(xp.asarray(x), offset, size)
    np.testing.assert_array_equal(asnumpy(y), x[:, :, top:top + h, left:left + w])
    tx = torch.tensor(x, requires_grad=True)
    ty = tx[:, :, top:top + h, left:left + w]
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx = crop_backward(xp.asarray(dy), cache)
    for name, got, want in [("y", y, ty), ("dx", dx, tx.grad)]:
        assert got.dtype == dtype, f"{name} is {got.dtype}"
        assert rel_error(got, want.detach().numpy()) < tol, name
    assert dx.shape == x.shape


@pytest.mark.parametrize("offset", [0, 5, (1, 4)])
def test_crop_passes_gradcheck(xp, rng, offset):
    x = xp.asarray(rng.standard_normal((2, 3, 11, 12)))
    report = check_function(crop_forward, crop_backward, [x, offset, (5, 6)])
    assert report.passed, str(report)


def test_crop_returns_a_contiguous_copy_not_a_view(xp, rng):
    x = xp.asarray(rng.standard_normal((1, 2, 6, 6)))
    for offset, size in [(1, 3), (0, 6)]:           # a strided view, and the whole of x
        y, _ = crop_forward(x, offset, size)
        assert y.flags.c_contiguous
        y[...] = 123.0
        assert float(abs(x).max()) < 123.0


# --- Errors at the boundary ---------------------------------------------------------------------

@pytest.mark.parametrize("x_shape, offset, size, error, match", [
    pytest.param((3, 13, 14), 0, 5, ValueError, r"x must be 4-D \(N, C, H, W\), got shape "
                 r"\(3, 13, 14\)", id="x-3d"),
    pytest.param((1, 2, 13, 14), 5, (9, 4), ValueError,
                 r"offset \(5, 5\) \+ size \(9, 4\) = \(14, 9\) exceeds x's spatial size "
                 r"\(13, 14\)", id="too-tall"),
    pytest.param((1, 2, 13, 14), (0, 7), (13, 8), ValueError,
                 r"offset \(0, 7\) \+ size \(13, 8\) = \(13, 15\) exceeds", id="too-wide"),
    pytest.param((1, 2, 13, 14), -1, 3, ValueError, r"offset must be at least 0, got -1",
                 id="offset-neg"),
    pytest.param((1, 2, 13, 14), (1, -2), 3, ValueError, r"offset must be at least 0",
                 id="offset-left-neg"),
    pytest.param((1, 2, 13, 14), 0, 0, ValueError, r"size must be positive, got 0",
                 id="size-0"),
    pytest.param((1, 2, 13, 14), 0, (3, -1), ValueError, r"size must be positive",
                 id="size-neg"),
    pytest.param((1, 2, 13, 14), 1.5, 3, TypeError, r"offset must be an int or a pair of ints",
                 id="offset-float"),
    pytest.param((1, 2, 13, 14), 0, (3, 4, 5), TypeError, r"size must be an int or a pair",
                 id="size-triple"),
])
def test_crop_rejects_bad_arguments(x_shape, offset, size, error, match):
    with pytest.raises(error, match=match):
        crop_forward(np.zeros(x_shape), offset, size)


def test_crop_rejects_integer_x():
    with pytest.raises(TypeError, match=r"x must be float32 or float64, got int64"):
        crop_forward(np.zeros((1, 1, 4, 4), np.int64), 0, 2)


@pytest.mark.parametrize("dy, error, match", [
    pytest.param(np.ones((1, 2, 3, 4)), ValueError,
                 r"dy must have the forward output's shape \(1, 2, 4, 3\)", id="shape"),
    pytest.param(np.ones((1, 2, 4, 3), np.float32), TypeError, r"dy has dtype float32",
                 id="dtype"),
])
def test_crop_backward_rejects_bad_dy(dy, error, match):
    _, cache = crop_forward(np.ones((1, 2, 9, 9)), 2, (4, 3))
    with pytest.raises(error, match=match):
        crop_backward(dy, cache)


# --- The nn.Crop layer ----------------------------------------------------------------------------

@pytest.mark.parametrize("like_of", [lambda a: a, lambda a: tuple(a.shape[2:]),
                                     lambda a: a[0, 0]], ids=["array", "pair", "2d-array"])
def test_crop_layer_crops_to_the_size_of_like(xp, rng, like_of):
    score_pool4 = xp.asarray(rng.standard_normal((1, 21, 44, 44)))
    upscore2 = xp.asarray(rng.standard_normal((1, 21, 34, 34)))
    layer = Crop(5)
    y = layer(score_pool4, like_of(upscore2))
    want, cache = crop_forward(score_pool4, 5, (34, 34))
    np.testing.assert_array_equal(asnumpy(y), asnumpy(want))
    dy = xp.asarray(rng.standard_normal(y.shape))
    np.testing.assert_array_equal(asnumpy(layer.backward(dy)), asnumpy(crop_backward(dy, cache)))
    assert repr(layer) == "Crop(offset=(5, 5))"


def test_crop_layer_passes_check_module_with_a_size_pair(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 3, 10, 9)))
    report = check_module(Crop((2, 1)), x, (6, 7))
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["input0"]


@pytest.mark.parametrize("like, error, match", [
    pytest.param(np.zeros(5), ValueError, r"like must be an array with at least 2 dimensions",
                 id="like-1d"),
    pytest.param("big", TypeError, r"like must be an array or an \(h, w\) pair", id="like-str"),
    pytest.param((50, 4), ValueError, r"exceeds x's spatial size", id="like-too-big"),
])
def test_crop_layer_rejects_bad_like(like, error, match):
    with pytest.raises(error, match=match):
        Crop(1)(np.zeros((1, 1, 8, 8)), like)


def test_crop_layer_rejects_bad_offset():
    with pytest.raises(ValueError, match=r"offset must be at least 0, got -5"):
        Crop(-5)
