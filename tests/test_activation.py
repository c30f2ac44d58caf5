"""relu_* and dropout_* against PyTorch where it is meaningful (ReLU forward and autograd,
dropout's identity and its kept value), the seeded mask's statistics and reproducibility,
finite differences, argument errors, and the nn.ReLU / nn.Dropout layers."""
import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.gradcheck import check_function, check_module
from minifcn.nn import Conv2d, Dropout, ReLU, Sequential
from minifcn.ops import dropout_backward, dropout_forward, relu_backward, relu_forward

from helpers import rel_error

DTYPES = pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)],
                                 ids=["float64", "float32"])
SHAPES = pytest.mark.parametrize("shape", [(2, 3, 13, 14), (1, 4, 7, 7), (5,)],
                                 ids=["n2-13x14", "n1-7x7", "1d"])


def away_from_zero(rng, shape, low=0.1):
    """Values with |x| >= low and random signs: finite differences never cross ReLU's kink."""
    return rng.uniform(low, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def mask_of(y):
    """The kept elements of a dropout output whose input had no zeros."""
    return asnumpy(y) != 0


# --- ReLU ------------------------------------------------------------------------------------

@DTYPES
@SHAPES
def test_relu_matches_torch(xp, torch, rng, shape, dtype, tol):
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[::7] = 0.0                      # exact zeros: the gradient there is 0
    y, cache = relu_forward(xp.asarray(x))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.relu(tx)
    dy = rng.standard_normal(shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx = relu_backward(xp.asarray(dy), cache)
    for name, got, want in [("y", y, ty), ("dx", dx, tx.grad)]:
        assert got.dtype == dtype, f"{name} is {got.dtype}"
        assert rel_error(got, want.detach().numpy()) < tol, name
    assert (asnumpy(dx).reshape(-1)[::7] == 0).all()


def test_relu_nan_propagates_as_in_torch(xp, torch):
    x = np.array([np.nan, -1.0, 2.0])
    y, cache = relu_forward(xp.asarray(x))
    np.testing.assert_array_equal(asnumpy(y), torch.relu(torch.tensor(x)).numpy())
    np.testing.assert_array_equal(asnumpy(relu_backward(xp.ones(3), cache)), [0.0, 0.0, 1.0])


def test_relu_caches_a_bool_mask_and_returns_new_arrays(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 3, 4, 5)))
    y, cache = relu_forward(x)
    assert cache.mask.dtype == np.bool_ and cache.mask.shape == x.shape
    dy = xp.ones_like(y)
    dx = relu_backward(dy, cache)
    assert dx is not dy and y is not x


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_relu_passes_gradcheck(xp, rng, mode):
    x = xp.asarray(away_from_zero(rng, (2, 3, 5, 6)))
    report = check_function(relu_forward, relu_backward, [x], mode=mode)
    assert report.passed, str(report)


def test_relu_module_equals_functional_ops_and_passes_gradcheck(xp, rng):
    x = xp.asarray(away_from_zero(rng, (2, 3, 5, 6)))
    layer = ReLU()
    y = layer(x)
    dx = layer.backward(xp.ones_like(y))
    want_y, cache = relu_forward(x)
    assert (asnumpy(y) == asnumpy(want_y)).all()
    assert (asnumpy(dx) == asnumpy(relu_backward(xp.ones_like(y), cache))).all()
    assert check_module(layer, x).passed
    net = Sequential(Conv2d(3, 4, 3, padding=1, rng=0), ReLU(), Conv2d(4, 2, 1, rng=1))
    net.to(device="cpu" if xp is np else "cuda")
    report = check_module(net, xp.asarray(rng.standard_normal((1, 3, 5, 6))), max_elements=30)
    assert report.passed, str(report)


@pytest.mark.parametrize("x, error, match", [
    pytest.param(np.arange(6).reshape(2, 3), TypeError, r"x must be float32 or float64, got int",
                 id="int"),
    pytest.param(np.ones(3, np.float16), TypeError, r"x must be float32 or float64", id="f16"),
    pytest.param([1.0, -1.0], TypeError, r"x must be a NumPy or CuPy array, got list",
                 id="list"),
])
def test_relu_rejects_bad_x(x, error, match):
    with pytest.raises(error, match=match):
        relu_forward(x)


@pytest.mark.parametrize("dy, error, match", [
    pytest.param(np.ones((2, 4)), ValueError, r"dy must have the forward output's shape \(2, 3\)",
                 id="shape"),
    pytest.param(np.ones((2, 3), np.float32), TypeError, r"dy has dtype float32", id="dtype"),
])
def test_relu_backward_rejects_bad_dy(dy, error, match):
    _, cache = relu_forward(np.ones((2, 3)))
    with pytest.raises(error, match=match):
        relu_backward(dy, cache)


# --- Dropout: the mask -------------------------------------------------------------------------

def test_same_seed_gives_the_same_mask_on_every_backend_and_dtype(xp, rng):
    x = rng.uniform(1.0, 2.0, (2, 3, 9, 10))         # no zeros: y != 0 is the mask
    y_int, _ = dropout_forward(xp.asarray(x), 0.5, True, 7)
    y_again, _ = dropout_forward(xp.asarray(x), 0.5, True, 7)
    y_gen, _ = dropout_forward(xp.asarray(x), 0.5, True, np.random.default_rng(7))
    y_f32, _ = dropout_forward(xp.asarray(x, dtype=np.float32), 0.5, True, 7)
    y_host, _ = dropout_forward(x, 0.5, True, 7)       # NumPy, whatever xp is
    mask = mask_of(y_int)
    for name, y in [("again", y_again), ("generator", y_gen), ("float32", y_f32),
                    ("numpy", y_host)]:
        assert (mask_of(y) == mask).all(), name
    assert 0 < mask.sum() < mask.size
    y_other, _ = dropout_forward(xp.asarray(x), 0.5, True, 8)
    assert (mask_of(y_other) != mask).any()


def test_a_generator_advances_so_each_call_draws_a_new_mask(xp, rng):
    x = xp.asarray(rng.uniform(1.0, 2.0, (4, 50)))
    gen = np.random.default_rng(0)
    first, _ = dropout_forward(x, 0.5, True, gen)
    second, _ = dropout_forward(x, 0.5, True, gen)
    assert (mask_of(first) != mask_of(second)).any()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_fraction_is_p_and_the_mean_is_preserved(xp, p):
    n = 64 * 64 * 64                                  # std of the fraction <= 0.001
    x = xp.ones((1, 64, 64, 64), dtype=np.float32)
    y, cache = dropout_forward(x, p, True, 2026)
    dropped = 1.0 - float(asnumpy(cache.mask).mean())
    assert abs(dropped - p) < 0.005                   # 5 standard deviations
    # E[y] = x: the mean of y is 1 within 5 standard deviations, sqrt(p / (1 - p) / n) each
    assert abs(float(asnumpy(y).astype(np.float64).mean()) - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    assert cache.mask.dtype == np.bool_ and cache.scale == 1.0 / (1.0 - p)


@DTYPES
@pytest.mark.parametrize("p", [0.3, 0.5])     # 1/0.7 is inexact: the scale's rounding shows
def test_kept_elements_are_scaled_by_one_over_one_minus_p(xp, rng, p, dtype, tol):
    x = rng.uniform(1.0, 2.0, (2, 3, 7, 8)).astype(dtype)
    y, cache = dropout_forward(xp.asarray(x), p, True, 3)
    keep = mask_of(y)
    scale = dtype(1.0 / (1.0 - p))                    # applied in x's dtype, as PyTorch does
    assert y.dtype == dtype
    np.testing.assert_array_equal(asnumpy(y), np.where(keep, x * scale, 0))
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = dropout_backward(xp.asarray(dy), cache)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(asnumpy(dx), np.where(keep, dy * scale, 0))
    assert rel_error(dx, dy * keep / (1.0 - p)) < tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_kept_value_equals_torch_dropout(xp, torch, dtype):
    """Masks differ (different generators) but the value a kept 1 becomes is the same."""
    torch.manual_seed(0)
    theirs = torch.nn.functional.dropout(torch.ones(4000, dtype=getattr(torch, np.dtype(
        dtype).name)), 0.3, training=True).numpy()
    ours, _ = dropout_forward(xp.ones(4000, dtype=dtype), 0.3, True, 0)
    kept = [np.unique(a[a != 0]) for a in (asnumpy(ours), theirs)]
    assert kept[0].size == 1 and kept[0].dtype == dtype
    np.testing.assert_array_equal(kept[0], kept[1])


# --- Dropout: identity ---------------------------------------------------------------------------

@pytest.mark.parametrize("p, training", [(0.5, False), (0.0, True), (0.0, False)],
                         ids=["eval", "p0-train", "p0-eval"])
def test_identity_in_eval_and_at_p_zero_like_torch(xp, torch, rng, p, training):
    x = rng.standard_normal((2, 3, 5, 4))
    y, cache = dropout_forward(xp.asarray(x), p, training, 0)
    want = torch.nn.functional.dropout(torch.tensor(x), p, training=training).numpy()
    np.testing.assert_array_equal(asnumpy(y), want)
    assert cache.mask is None                          # nothing drawn, nothing stored
    dy = xp.asarray(rng.standard_normal(x.shape))
    dx = dropout_backward(dy, cache)
    np.testing.assert_array_equal(asnumpy(dx), asnumpy(dy))
    assert dx is not dy                                # new arrays: never an alias
    x_dev = xp.asarray(x)
    assert dropout_forward(x_dev, p, training)[0] is not x_dev


# --- Dropout: gradient checks -------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.5, 0.2])
def test_dropout_passes_gradcheck_with_a_seed_among_its_inputs(xp, rng, p):
    """How to gradient-check dropout: an int seed makes each forward draw the same mask."""
    x = xp.asarray(rng.standard_normal((2, 3, 5, 6)))
    report = check_function(dropout_forward, dropout_backward, [x, p, True, 11])
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["x"]


def test_gradcheck_catches_a_generator_among_the_inputs(xp, rng):
    """A Generator advances: each forward of the checker draws another mask."""
    x = xp.asarray(rng.standard_normal((2, 3, 5, 6)))
    report = check_function(dropout_forward, dropout_backward,
                            [x, 0.5, True, np.random.default_rng(11)])
    assert not report.passed
    hidden = [p for p in report.properties if "hidden randomness" in p.name]
    assert len(hidden) == 1 and not hidden[0].passed


def test_check_module_dropout(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 3, 5, 6)))
    assert check_module(Dropout(0.5, rng=0).eval(), x).passed
    report = check_module(Dropout(0.5, rng=0), x)      # training, a generator: a new mask
    assert not report.passed                            # at every forward
    hidden = [p for p in report.properties if "hidden randomness" in p.name]
    assert len(hidden) == 1 and not hidden[0].passed
    assert "dropout" in hidden[0].detail
    fixed = Dropout(0.5)
    fixed.rng = 0                                       # an int: the same mask every time
    report = check_module(fixed, x)
    assert report.passed, str(report)


# --- Dropout: the layer -----------------------------------------------------------------------

def test_dropout_layer_seeds_reseeds_and_switches_modes(xp, rng):
    x = xp.asarray(rng.uniform(1.0, 2.0, (2, 3, 6, 7)))
    a, b = Dropout(0.4, rng=5), Dropout(0.4, rng=5)
    first, second = mask_of(a(x)), mask_of(a(x))
    assert (first != second).any()                      # a fresh mask at every forward
    assert (mask_of(b(x)) == first).all()               # same seed, same sequence
    a.rng = np.random.default_rng(5)                    # reseed
    assert (mask_of(a(x)) == first).all()
    dy = xp.asarray(rng.standard_normal(x.shape))
    y = a(x)
    dx = a.backward(dy)
    np.testing.assert_array_equal(asnumpy(dx), asnumpy(dy) * mask_of(y) / 0.6)
    a.eval()
    np.testing.assert_array_equal(asnumpy(a(x)), asnumpy(x))
    np.testing.assert_array_equal(asnumpy(a.backward(dy)), asnumpy(dy))
    assert repr(a) == "Dropout(p=0.4)"


def test_cupy_generator_draws_on_the_device(xp, rng):
    if xp is np:
        pytest.skip("a cupy.random.Generator needs CuPy")
    x = xp.ones((1, 64, 64, 64), dtype=np.float32)
    y, cache = dropout_forward(x, 0.3, True, xp.random.default_rng(1))
    assert type(cache.mask) is xp.ndarray and cache.mask.dtype == np.bool_
    assert abs(1.0 - float(cache.mask.mean()) - 0.3) < 0.005
    again, _ = dropout_forward(x, 0.3, True, xp.random.default_rng(1))
    assert (mask_of(again) == mask_of(y)).all()
    with pytest.raises(ValueError, match=r"rng is a cupy.random.Generator but x is a NumPy"):
        dropout_forward(np.ones(4), 0.3, True, xp.random.default_rng(1))


# --- Dropout: errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("change, error, match", [
    pytest.param(dict(p=-0.1), ValueError, r"p must be in \[0, 1\), got -0.1", id="p-neg"),
    pytest.param(dict(p=1.5), ValueError, r"p must be in \[0, 1\), got 1.5", id="p-1.5"),
    pytest.param(dict(p=1.0), ValueError, r"p must be in \[0, 1\), got 1.0 \(p = 1 would",
                 id="p-1"),
    pytest.param(dict(p=float("nan")), ValueError, r"p must be in \[0, 1\), got nan",
                 id="p-nan"),
    pytest.param(dict(p="0.5"), TypeError, r"p must be a float in \[0, 1\), got '0.5'",
                 id="p-str"),
    pytest.param(dict(p=True), TypeError, r"p must be a float", id="p-bool"),
    pytest.param(dict(x=np.arange(6)), TypeError, r"x must be float32 or float64, got int",
                 id="x-int"),
    pytest.param(dict(x=[1.0, 2.0]), TypeError, r"x must be a NumPy or CuPy array", id="x-list"),
    pytest.param(dict(training="no"), TypeError, r"training must be a bool, got 'no'",
                 id="training-str"),
    pytest.param(dict(rng="seed"), TypeError, r"rng must be an int seed, a numpy.random."
                 r"Generator, None, or .*got str", id="rng-str"),
    pytest.param(dict(rng=np.random.RandomState(0)), TypeError, r"rng must be .* got RandomState",
                 id="rng-randomstate"),
    pytest.param(dict(rng=-1), ValueError, r"rng must be a non-negative int seed, got -1",
                 id="rng-neg"),
    pytest.param(dict(training=False, p=2.0), ValueError, r"p must be in", id="eval-checks-p"),
])
def test_dropout_rejects_bad_arguments(change, error, match):
    args = dict(x=np.ones((2, 3)), p=0.5, training=True, rng=0)
    args.update(change)
    with pytest.raises(error, match=match):
        dropout_forward(**args)


@pytest.mark.parametrize("p, error", [(-0.1, ValueError), (1.5, ValueError), ("0.5", TypeError)])
def test_dropout_layer_rejects_bad_p_and_rng_at_construction(p, error):
    with pytest.raises(error, match=r"p must be"):
        Dropout(p)
    with pytest.raises(TypeError, match=r"rng must be"):
        Dropout(0.5, rng=1.5)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_dropout_backward_rejects_bad_dy(training):
    _, cache = dropout_forward(np.ones((2, 3)), 0.5, training, 0)
    with pytest.raises(ValueError, match=r"dy must have the forward output's shape \(2, 3\)"):
        dropout_backward(np.ones((3, 2)), cache)
    with pytest.raises(TypeError, match=r"dy has dtype float32"):
        dropout_backward(np.ones((2, 3), np.float32), cache)
