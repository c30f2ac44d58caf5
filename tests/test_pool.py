"""max_pool2d_forward / max_pool2d_backward against PyTorch (forward and autograd), the naive
loop and finite differences; the tie rule, the -inf padding, ceil mode and FCN's shapes;
argument errors; and the nn.MaxPool2d layer around them."""
import itertools

import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.gradcheck import check_function, check_module
from minifcn.nn import MaxPool2d
from minifcn.ops import max_pool2d_backward, max_pool2d_forward, max_pool2d_output_size

from helpers import rel_error
from reference import max_pool2d_backward_naive, max_pool2d_naive

C = 3
# (N, (H, W)): odd and even sides. With these sizes ceil mode adds a partial window for
# k2-s2, k2-s3, k3-s2 and k3-s3, and PyTorch drops a last window that would start in the
# right padding for k1-s2, k1-s3, k2-s2-p1, k2-s3, k3-s3-p1 and k3-p1 (see test_grid_covers).
SIZES = [(1, (7, 8)), (2, (6, 5))]
CASES = [(k, s, p, ceil, n, hw)
         for k, s, p, ceil, (n, hw) in itertools.product((1, 2, 3), (None, 1, 2, 3), (0, 1),
                                                         (False, True), SIZES)
         if p <= k // 2]
IDS = [f"k{k}-s{s or 'k'}-p{p}-{'ceil' if ceil else 'floor'}-n{n}-{h}x{w}"
       for k, s, p, ceil, n, (h, w) in CASES]
grid = pytest.mark.parametrize("kernel, stride, padding, ceil_mode, n, hw", CASES, ids=IDS)


def tie_free(rng, shape, dtype=np.float64):
    """A shuffled linspace on [-1, 1]: no two values equal, so every window has one maximum
    and a finite-difference step never changes the winner."""
    size = int(np.prod(shape))
    return rng.permutation(np.linspace(-1.0, 1.0, size)).reshape(shape).astype(dtype)


def torch_pool(torch, x, dy, kernel, stride, padding, ceil_mode):
    """torch's y and autograd dx for NumPy x and dy (dy=None: forward only)."""
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, kernel, stride, padding, ceil_mode=ceil_mode)
    if dy is None:
        return ty.detach().numpy(), None
    ty.backward(torch.from_numpy(dy))
    return ty.detach().numpy(), tx.grad.numpy()


def pool(xp, x, dy_of, *options):
    """Our y and dx, run on xp, returned as NumPy; dy_of(y_shape) gives the NumPy dy."""
    y, cache = max_pool2d_forward(xp.asarray(x), *options)
    dy = dy_of(y.shape)
    return asnumpy(y), asnumpy(max_pool2d_backward(xp.asarray(dy), cache)), dy


# --- Against PyTorch, the naive loop and finite differences, on the grid -----------------------

def test_grid_covers_partial_and_dropped_windows():
    covered = {"partial": 0, "dropped": 0}
    for k, s, p, ceil, _, hw in CASES:
        for size in hw if ceil else ():
            s_ = s or k
            raw = (size + 2 * p - k + s_ - 1) // s_ + 1              # before the start rule
            ceil_size = max_pool2d_output_size(size, k, s, p, ceil_mode=True)
            covered["dropped"] += raw > ceil_size
            covered["partial"] += ceil_size > max_pool2d_output_size(size, k, s, p)
    assert covered["partial"] >= 10 and covered["dropped"] >= 10, covered


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)],
                         ids=["float64", "float32"])
@grid
def test_max_pool2d_matches_torch(xp, torch, rng, kernel, stride, padding, ceil_mode, n, hw,
                                  dtype, tol):
    x = tie_free(rng, (n, C) + hw, dtype)
    options = (kernel, stride, padding, ceil_mode)
    y, dx, dy = pool(xp, x, lambda shape: rng.standard_normal(shape).astype(dtype), *options)
    want_y, want_dx = torch_pool(torch, x, dy, *options)
    assert y.dtype == dtype and dx.dtype == dtype
    assert y.shape == want_y.shape
    np.testing.assert_array_equal(y, want_y)                 # a maximum is exact
    assert dx.shape == x.shape
    assert rel_error(dx, want_dx) < tol, f"dx: rel error {rel_error(dx, want_dx):.2e}"


@grid
def test_max_pool2d_matches_naive(xp, rng, kernel, stride, padding, ceil_mode, n, hw):
    x = tie_free(rng, (n, C) + hw)
    options = (kernel, stride, padding, ceil_mode)
    y, dx, dy = pool(xp, x, rng.standard_normal, *options)
    want_y, winners = max_pool2d_naive(x, *options)
    np.testing.assert_array_equal(y, want_y)
    assert rel_error(dx, max_pool2d_backward_naive(dy, winners, x.shape)) < 1e-12


@grid
def test_max_pool2d_passes_check_function(xp, rng, kernel, stride, padding, ceil_mode, n, hw):
    x = xp.asarray(tie_free(rng, (n, C) + hw))
    report = check_function(max_pool2d_forward, max_pool2d_backward,
                            [x, kernel, stride, padding, ceil_mode], max_elements=40)
    assert report.passed, str(report)


@pytest.mark.parametrize("kernel, stride, padding, hw", [
    ((3, 2), (1, 2), (1, 0), (7, 8)), ((2, 3), (3, 1), (0, 1), (6, 5)),
    ((1, 3), (2, 2), (0, 1), (5, 9))], ids=["k3x2-s1x2-p1x0", "k2x3-s3x1-p0x1", "k1x3-s2-p0x1"])
@pytest.mark.parametrize("ceil_mode", [False, True], ids=["floor", "ceil"])
def test_asymmetric_options_match_torch(xp, torch, rng, kernel, stride, padding, hw, ceil_mode):
    """Height and width options that differ catch a swapped (h, w) pair."""
    x = tie_free(rng, (2, C) + hw)
    options = (kernel, stride, padding, ceil_mode)
    y, dx, dy = pool(xp, x, rng.standard_normal, *options)
    want_y, want_dx = torch_pool(torch, x, dy, *options)
    np.testing.assert_array_equal(y, want_y)
    assert rel_error(dx, want_dx) < 1e-12


def test_kernel_over_127_elements_uses_int32_offsets(xp, torch, rng):
    x = tie_free(rng, (1, 2, 13, 14))
    y, cache = max_pool2d_forward(xp.asarray(x), 12, 1, 0, False)          # 144 offsets
    assert cache.argmax.dtype == np.int32
    dy = rng.standard_normal(y.shape)
    want_y, want_dx = torch_pool(torch, x, dy, 12, 1, 0, False)
    np.testing.assert_array_equal(asnumpy(y), want_y)
    assert rel_error(max_pool2d_backward(xp.asarray(dy), cache), want_dx) < 1e-12


def test_cache_holds_an_int8_index_of_the_output_size_not_x(xp, rng):
    y, cache = max_pool2d_forward(xp.asarray(tie_free(rng, (2, C, 7, 8))), 3, 2, 1, True)
    assert cache.argmax.shape == y.shape and cache.argmax.dtype == np.int8
    assert not any(getattr(field, "shape", None) == (2, C, 7, 8) for field in cache)


# --- Ties, -inf padding, NaN ------------------------------------------------------------------

def test_all_equal_window_sends_the_gradient_to_its_first_element(xp, torch):
    x = np.ones((1, 1, 4, 6))
    dy = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    _, dx, _ = pool(xp, x, lambda shape: dy, 2, 2, 0, False)
    want = np.zeros_like(x)
    want[..., ::2, ::2] = dy                          # each window's top-left element
    np.testing.assert_array_equal(dx, want)
    np.testing.assert_array_equal(dx, torch_pool(torch, x, dy, 2, 2, 0, False)[1])


@pytest.mark.parametrize("kernel, stride, padding, ceil_mode",
                         [(2, 2, 0, False), (3, 1, 1, False), (3, 2, 1, True), (2, 3, 1, True)],
                         ids=["k2-s2", "k3-s1-p1", "k3-s2-p1-ceil", "k2-s3-p1-ceil"])
def test_partial_ties_follow_torch(xp, torch, rng, kernel, stride, padding, ceil_mode):
    """Values from {0, 1, 2}: most windows hold tied maxima; the first in row-major order
    wins, in ours, in torch and in the naive loop."""
    x = rng.integers(0, 3, (2, C, 7, 8)).astype(np.float64)
    options = (kernel, stride, padding, ceil_mode)
    y, dx, dy = pool(xp, x, rng.standard_normal, *options)
    want_y, want_dx = torch_pool(torch, x, dy, *options)
    _, winners = max_pool2d_naive(x, *options)
    np.testing.assert_array_equal(y, want_y)
    assert rel_error(dx, want_dx) < 1e-12
    assert rel_error(dx, max_pool2d_backward_naive(dy, winners, x.shape)) < 1e-12


@pytest.mark.parametrize("kernel, stride, padding, ceil_mode",
                         [(3, 1, 1, False), (2, 2, 1, False), (3, 2, 1, True)],
                         ids=["k3-s1-p1", "k2-s2-p1", "k3-s2-p1-ceil"])
def test_padding_acts_as_minus_infinity(xp, torch, rng, kernel, stride, padding, ceil_mode):
    x = -rng.uniform(1.0, 2.0, (2, C, 6, 5))                 # all negative
    options = (kernel, stride, padding, ceil_mode)
    y, dx, dy = pool(xp, x, rng.standard_normal, *options)
    assert (y < 0).all(), "a zero-padded pool would output 0 at the borders"
    np.testing.assert_array_equal(y, torch_pool(torch, x, dy, *options)[0])


def test_minus_infinity_and_nan_inputs_follow_torch(xp, torch, rng):
    """A window of -inf points at its first pixel inside x (not at the padding), and a NaN
    wins its window, as in torch: its maximum is NaN and the gradient goes to the NaN."""
    x = rng.standard_normal((1, 2, 6, 7))
    x[0, 0, :3, :3] = -np.inf
    x[0, 1, 2, 3] = x[0, 1, 3, 5] = np.nan
    options = (3, 2, 1, True)
    y, dx, dy = pool(xp, x, rng.standard_normal, *options)
    want_y, want_dx = torch_pool(torch, x, dy, *options)
    np.testing.assert_array_equal(y, want_y)                 # NaNs in the same places
    np.testing.assert_array_equal(dx, want_dx)


# --- Output sizes: ceil mode and FCN ------------------------------------------------------------

def test_fcn_pool_sizes(xp, torch):
    """FCN-8s at 500x500: conv1_1 pads by 100 (500 + 200 - 2 = 698), then five 2x2 stride-2
    ceil-mode pools: 349, 175, 88, 44, 22."""
    sizes, x, tx = [], xp.zeros((1, 2, 698, 698)), torch.zeros(1, 2, 698, 698)
    for _ in range(5):
        x, _ = max_pool2d_forward(x, 2, 2, 0, True)
        tx = torch.nn.functional.max_pool2d(tx, 2, 2, ceil_mode=True)
        assert tuple(x.shape) == tuple(tx.shape)
        sizes.append(x.shape[-1])
    assert sizes == [349, 175, 88, 44, 22]
    helper = [698]
    for _ in range(5):
        helper.append(max_pool2d_output_size(helper[-1], 2, 2, 0, ceil_mode=True))
    assert helper[1:] == sizes


@pytest.mark.parametrize("size, kernel, stride, padding, ceil_mode, want", [
    (7, 2, 2, 0, False, 3), (7, 2, 2, 0, True, 4), (4, 2, 3, 1, True, 2), (6, 3, 3, 1, True, 3),
    (1, 2, 2, 0, True, 1), (5, 6, 1, 0, True, 0), (5, 3, None, 1, True, 2)])
def test_output_size_helper_matches_torch(torch, size, kernel, stride, padding, ceil_mode, want):
    assert max_pool2d_output_size(size, kernel, stride, padding, ceil_mode) == want
    if want > 0:
        ty = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, size), kernel, stride,
                                            padding, ceil_mode=ceil_mode)
        assert tuple(ty.shape[2:]) == (want, want)


# --- Errors at the boundary name the argument ---------------------------------------------------

GOOD_X = np.zeros((2, 3, 6, 7))

BAD_FORWARD = [
    pytest.param(dict(x=GOOD_X[0]), ValueError, r"x must be 4-D", id="x-3d"),
    pytest.param(dict(x=GOOD_X.astype(np.int64)), TypeError, r"x must be float32", id="x-int"),
    pytest.param(dict(x=list(GOOD_X)), TypeError, r"x must be a NumPy or CuPy array",
                 id="x-list"),
    pytest.param(dict(kernel_size=8), ValueError,
                 r"output size .* too small: kernel_size \(8, 8\) is larger than the padded",
                 id="kernel-too-large"),
    pytest.param(dict(kernel_size=6, stride=1, ceil_mode=True, x=np.zeros((1, 1, 5, 5))),
                 ValueError, r"output size 0x0 is too small", id="kernel-too-large-ceil"),
    pytest.param(dict(kernel_size=3, padding=2), ValueError,
                 r"padding must be at most half the kernel size", id="padding-over-half"),
    pytest.param(dict(kernel_size=(2, 4), padding=(1, 3)), ValueError,
                 r"padding must be at most half", id="padding-over-half-w"),
    pytest.param(dict(padding=-1), ValueError, r"padding must be at least 0", id="padding-neg"),
    pytest.param(dict(stride=0), ValueError, r"stride must be positive", id="stride-0"),
    pytest.param(dict(stride=(2, -1)), ValueError, r"stride must be positive", id="stride-neg"),
    pytest.param(dict(stride=1.5), TypeError, r"stride must be an int", id="stride-float"),
    pytest.param(dict(kernel_size=0), ValueError, r"kernel_size must be positive", id="kernel-0"),
    pytest.param(dict(ceil_mode=1), TypeError, r"ceil_mode must be a bool", id="ceil-int"),
]


@pytest.mark.parametrize("bad, error, match", BAD_FORWARD)
def test_forward_rejects_bad_input(bad, error, match):
    args = dict(x=GOOD_X, kernel_size=2, stride=None, padding=0, ceil_mode=False)
    args.update(bad)
    with pytest.raises(error, match=match):
        max_pool2d_forward(**args)


@pytest.mark.parametrize("dy_of, error, match", [
    pytest.param(lambda y: y[:, :, :-1], ValueError, r"dy must have the forward output's shape",
                 id="dy-shape"),
    pytest.param(lambda y: y.astype(np.float32), TypeError, r"dy has dtype float32",
                 id="dy-dtype"),
])
def test_backward_rejects_bad_dy(dy_of, error, match):
    y, cache = max_pool2d_forward(GOOD_X, 2, None, 0, True)
    with pytest.raises(error, match=match):
        max_pool2d_backward(dy_of(y), cache)


# --- The nn.MaxPool2d layer ---------------------------------------------------------------------

@pytest.mark.parametrize("options", [dict(kernel_size=2, stride=2, ceil_mode=True),
                                     dict(kernel_size=3, stride=1, padding=1),
                                     dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 0),
                                          ceil_mode=True)],
                         ids=["vgg", "k3-s1-p1", "asymmetric-ceil"])
def test_maxpool2d_module_passes_check_module(xp, rng, options):
    layer = MaxPool2d(**options)
    report = check_module(layer, xp.asarray(tie_free(rng, (2, C, 7, 8))))
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["input"]


def test_maxpool2d_module_equals_functional_ops(xp, rng):
    layer = MaxPool2d(3, 2, padding=1, ceil_mode=True)
    x = xp.asarray(tie_free(rng, (2, C, 7, 8), np.float32))
    want_y, cache = max_pool2d_forward(x, 3, 2, 1, True)
    y = layer(x)
    dy = xp.asarray(rng.standard_normal(y.shape).astype(np.float32))
    np.testing.assert_array_equal(asnumpy(y), asnumpy(want_y))
    np.testing.assert_array_equal(asnumpy(layer.backward(dy)),
                                  asnumpy(max_pool2d_backward(dy, cache)))
    assert layer.parameters() == []


def test_maxpool2d_module_options_and_errors():
    assert repr(MaxPool2d(2, ceil_mode=True)) == (
        "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=True)")
    with pytest.raises(ValueError, match=r"padding must be at most half the kernel size"):
        MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match=r"stride must be positive"):
        MaxPool2d(2, stride=0)
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        MaxPool2d(2).backward(np.zeros((1, 1, 2, 2)))
