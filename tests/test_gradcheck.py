"""Tests of minifcn.gradcheck: it passes correct backwards and catches planted mistakes.

Each planted mistake must fail with a report that names the wrong tensor (or property) and
nothing else, since a user reads the report to find the bug in their own layer.
"""
import warnings

import numpy as np
import pytest

from minifcn.backend import asnumpy, get_array_module
from minifcn.gradcheck import (GradcheckError, GradcheckPrecisionWarning, check_function,
                               check_module, numerical_gradient)
from minifcn.nn import Conv2d, Module, Parameter
from minifcn.ops import conv2d_backward, conv2d_forward

MODES = ["full", "directional"]


def conv_inputs(xp, rng, stride=1, padding=1, dilation=1):
    """[x, weight, bias, stride, padding, dilation]; a square 3x3 kernel."""
    x = xp.asarray(rng.standard_normal((2, 3, 5, 6)))
    weight = xp.asarray(rng.standard_normal((4, 3, 3, 3)))
    bias = xp.asarray(rng.standard_normal(4))
    return [x, weight, bias, stride, padding, dilation]


def device_of_xp(xp):
    return "cpu" if xp is np else "cuda"


def planted(change):
    """conv2d_backward with ``change(dx, dweight, dbias) -> (dx, dweight, dbias)`` applied."""
    return lambda dy, cache: change(*conv2d_backward(dy, cache))


def assert_fails_only(report, name, message=""):
    """``name`` (a tensor) failed, with ``message``; every other tensor and property passed."""
    assert report.passed is False
    assert report.failures() == [name]
    assert report.tensor(name).passed is False
    assert message in report.tensor(name).message
    assert all(t.passed for t in report.tensors if t.name != name)
    text = str(report)
    assert f"FAILED: {name}" in text
    row = next(line for line in text.splitlines() if line.startswith(name + " "))
    assert "FAIL" in row and message in row


def prop(report, fragment):
    """The one property whose name contains ``fragment``."""
    found = [p for p in report.properties if fragment in p.name]
    assert len(found) == 1, [p.name for p in report.properties]
    return found[0]


# --- correct layers pass -----------------------------------------------------------------

@pytest.mark.parametrize("max_elements", [None, 7], ids=["all", "sample7"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geometry", [(1, 1, 1), (2, 1, 2)], ids=["s1p1d1", "s2p1d2"])
def test_correct_conv2d_passes(xp, rng, geometry, mode, max_elements):
    report = check_function(conv2d_forward, conv2d_backward, conv_inputs(xp, rng, *geometry),
                            mode=mode, max_elements=max_elements)
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["x", "weight", "bias"]
    assert report.failures() == []
    assert str(report).startswith("gradcheck conv2d: passed")
    x = report.tensor("x")
    if mode == "directional":
        assert (x.n_checked, x.worst_index) == (1, None)
    else:
        assert x.n_checked == (180 if max_elements is None else 7) and x.n_elements == 180


def test_check_module_conv2d_passes_and_leaves_the_module_alone(xp, rng):
    conv = Conv2d(3, 4, 3, padding=1, rng=0).to(device=device_of_xp(xp))
    weight = conv.weight.data.copy()
    report = check_module(conv, xp.asarray(rng.standard_normal((2, 3, 5, 5)), np.float32))
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["input", "weight", "bias"]
    assert report.settings["dtype"] == "float64"
    assert conv.weight.dtype == np.float32 and conv.weight.grad is None
    assert (asnumpy(conv.weight.data) == asnumpy(weight)).all()


def test_frozen_parameter_is_not_checked(rng):
    conv = Conv2d(3, 2, 3, rng=0)
    conv.bias.requires_grad = False
    report = check_module(conv, rng.standard_normal((1, 3, 4, 4)))
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["input", "weight"]


class Scale(Module):
    """A per-channel gain, written as the module.py docstring shows; ``factor`` plants a bug."""

    def __init__(self, n, factor=1.0):
        super().__init__()
        self.gain = Parameter(np.linspace(0.5, 1.5, n))
        self.factor = factor

    def forward(self, x):
        self.save_for_backward(x)
        return x * self.gain.data[:, None, None]

    def backward(self, dy):
        x, = self.saved()
        self.gain.accumulate(self.factor * (dy * x).sum(axis=(0, 2, 3)))
        return dy * self.gain.data[:, None, None]


class Overwrite(Scale):
    """Sets .grad instead of adding to it."""

    def backward(self, dy):
        x, = self.saved()
        self.gain.grad = (dy * x).sum(axis=(0, 2, 3))
        return dy * self.gain.data[:, None, None]


class FrozenOffset(Scale):
    """Adds a frozen offset, then gives it a gradient anyway (bypassing accumulate)."""

    def __init__(self, n):
        super().__init__(n)
        self.offset = Parameter(np.zeros(n), requires_grad=False)

    def forward(self, x):
        return super().forward(x) + self.offset.data[:, None, None]

    def backward(self, dy):
        self.offset.grad = dy.sum(axis=(0, 2, 3))
        return super().backward(dy)


class Net(Module):
    def __init__(self):
        super().__init__()
        self.conv = Conv2d(3, 2, 3, padding=1, rng=1)
        self.scale = Scale(2)

    def forward(self, x):
        return self.scale.forward(self.conv.forward(x))

    def backward(self, dy):
        return self.conv.backward(self.scale.backward(dy))


def test_user_module_with_a_parameter_passes(xp, rng):
    report = check_module(Scale(3).to(device=device_of_xp(xp)), xp.asarray(rng.standard_normal((2, 3, 4, 4))))
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["input", "gain"]


def test_nested_module_reports_dotted_names(rng):
    report = check_module(Net(), rng.standard_normal((1, 3, 4, 4)), mode="directional")
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["input", "conv.weight", "conv.bias",
                                                "scale.gain"]


# --- planted mistakes in a conv backward ---------------------------------------------------

PLANTS = {
    "weight-transposed": (lambda dx, dw, db: (dx, dw.transpose(0, 1, 3, 2), db), "weight", ""),
    "bias-none": (lambda dx, dw, db: (dx, dw, None), "bias", "backward returned None"),
    "x-times-1.01": (lambda dx, dw, db: (1.01 * dx, dw, db), "x", ""),
    "weight-times-1.01": (lambda dx, dw, db: (dx, 1.01 * dw, db), "weight", ""),
    "weight-wrong-shape": (lambda dx, dw, db: (dx, dw.transpose(1, 0, 2, 3), db), "weight",
                           "gradient has shape (3, 4, 3, 3), input has (4, 3, 3, 3)"),
    "x-float32": (lambda dx, dw, db: (dx.astype(np.float32), dw, db), "x",
                  "gradient is float32 but the input is float64"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("plant", list(PLANTS))
def test_planted_conv_mistake_is_caught_and_named(xp, rng, plant, mode):
    change, name, message = PLANTS[plant]
    report = check_function(conv2d_forward, planted(change), conv_inputs(xp, rng), mode=mode)
    assert_fails_only(report, name, message)


def test_worst_index_points_at_the_planted_element(xp, rng):
    def change(dx, dw, db):
        dx[1, 2, 3, 4] += 0.1
        return dx, dw, db
    report = check_function(conv2d_forward, planted(change), conv_inputs(xp, rng))
    # a constant added to dx is not linear in dy: the linearity properties fail as well
    assert report.failures()[0] == "x"
    assert report.tensor("weight").passed and report.tensor("bias").passed
    x = report.tensor("x")
    assert x.worst_index == (1, 2, 3, 4)
    assert x.analytic - x.numerical == pytest.approx(0.1, abs=1e-6)
    assert x.max_abs_error == pytest.approx(0.1, abs=1e-6)
    assert "(1, 2, 3, 4)" in str(report)


@pytest.mark.parametrize("make, failing, detail", [
    (lambda: Scale(3, factor=1.01), "gain", ""),
    (lambda: Overwrite(3), "parameter gradients accumulate over backward calls",
     "gain differs"),
    (lambda: FrozenOffset(3), "frozen parameters (requires_grad=False) get no gradient",
     "offset"),
], ids=["gain-times-1.01", "overwrites-grad", "frozen-gets-grad"])
def test_planted_module_mistake_is_caught(xp, rng, make, failing, detail):
    module = make().to(device=device_of_xp(xp))
    report = check_module(module, xp.asarray(rng.standard_normal((2, 3, 4, 4))))
    assert report.passed is False
    assert report.failures() == [failing]
    assert f"FAILED: {failing}" in str(report)
    if failing == "gain":
        assert report.tensor("gain").passed is False and report.tensor("input").passed
    else:
        assert all(t.passed for t in report.tensors)
        assert detail in prop(report, failing).detail


# --- structural properties -----------------------------------------------------------------

def tanh_forward(x):
    xp = get_array_module(x)
    y = xp.tanh(x)
    return y, y


def tanh_backward(dy, y):
    return dy * (1 - y * y)


def _random_mask(x, _rng=np.random.default_rng(5)):
    return get_array_module(x).asarray(_rng.random(x.shape) < 0.5)


def _mutating_backward(dy, y):
    dx = dy * (1 - y * y)
    y *= 0.9                              # the cache changes: the next call differs
    return dx


def _dy_mutating_backward(dy, y):
    dy *= 1 - y * y                       # correct values, but written into dy
    return dy


def _input_mutating_backward(dy, x):
    dx = 2 * x * dy
    x += 1e-3                             # the cache aliases the input: backward writes into x
    return dx


def _input_mutating_forward(x):
    y, cache = tanh_forward(x)
    x -= 1e-3
    return y, cache


PROPERTY_PLANTS = {
    "squares-dy": (tanh_forward, lambda dy, y: dy * dy * (1 - y * y), "linear in dy"),
    "adds-constant": (tanh_forward, lambda dy, y: dy * (1 - y * y) + 1e-3,
                      "backward of zeros is zeros"),
    "mutates-cache": (tanh_forward, _mutating_backward, "backward run twice"),
    "random-forward": (lambda x: (x * _random_mask(x), None), None, "hidden randomness"),
    "mutates-input": (_input_mutating_forward, tanh_backward, "forward leaves its inputs"),
    "mutates-dy": (tanh_forward, _dy_mutating_backward, "backward leaves dy"),
    "backward-mutates-input": (lambda x: (x * x, x), _input_mutating_backward,
                               "backward leaves dy and the forward's inputs"),
}


def test_correct_tanh_passes_every_property(xp, rng):
    report = check_function(tanh_forward, tanh_backward, [xp.asarray(rng.standard_normal(7))])
    assert report.passed, str(report)
    assert len(report.properties) == 6 and all(p.passed for p in report.properties)


@pytest.mark.parametrize("plant", list(PROPERTY_PLANTS))
def test_property_violation_is_caught(xp, rng, plant):
    forward, backward, fragment = PROPERTY_PLANTS[plant]
    backward = backward or (lambda dy, cache: dy)
    report = check_function(forward, backward, [xp.asarray(rng.standard_normal((3, 4)))])
    failed = prop(report, fragment)
    assert failed.passed is False and failed.detail
    assert report.passed is False and failed.name in report.failures()
    assert failed.name in str(report)
    if plant == "mutates-input":
        assert failed.detail.startswith("x was modified by")
    if plant == "mutates-dy":             # the gradients themselves are right
        assert report.failures() == [failed.name]
        assert failed.detail.startswith("dy was modified by")
    if plant == "backward-mutates-input":  # blamed on backward, not on the forward
        assert failed.detail.startswith("x was modified by")
        assert prop(report, "forward leaves its inputs unchanged").passed


def test_reused_output_buffers_do_not_fool_the_checker(rng):
    buffers = {}

    def into(key, like):
        return buffers.setdefault(key, np.empty_like(like))

    def random_forward(x):
        return np.multiply(x, _random_mask(x), out=into("y", x)), None

    def buffered_backward(dy, y):      # correct, but always returns the same array
        return np.multiply(dy, 1 - y * y, out=into("dx", dy))

    x = rng.standard_normal((3, 4))
    assert check_function(tanh_forward, buffered_backward, [x]).passed
    report = check_function(random_forward, lambda dy, cache: dy, [x])
    assert prop(report, "hidden randomness").passed is False


# --- report, errors, precision -------------------------------------------------------------

def test_raise_on_failure(rng):
    inputs = conv_inputs(np, rng)
    report = check_function(conv2d_forward, conv2d_backward, inputs, raise_on_failure=True)
    assert report.passed
    bad = planted(PLANTS["weight-transposed"][0])
    with pytest.raises(GradcheckError, match="FAILED: weight") as info:
        check_function(conv2d_forward, bad, inputs, raise_on_failure=True)
    assert "err/tol" in str(info.value) and "\nweight " in str(info.value)
    with pytest.raises(GradcheckError, match="FAILED: gain"):
        check_module(Scale(3, factor=1.01), rng.standard_normal((1, 3, 2, 2)),
                     raise_on_failure=True)


def test_float32_without_promotion_warns(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    with pytest.warns(GradcheckPrecisionWarning, match="float32"):
        report = check_function(conv2d_forward, conv2d_backward, [x, w], dtype=None,
                                eps=1e-2, atol=1e-3, rtol=1e-2)
    assert report.settings["dtype"] == "float32"
    assert report.passed, str(report)


def test_default_dtype_promotes_copies_and_spares_the_callers_arrays(rng):
    seen = []

    def forward(x):
        seen.append(x.dtype)
        x *= 1.0 + 1e-3                   # modifies only the checker's copy
        return 2 * x, None

    x = rng.standard_normal(5).astype(np.float32)
    before = x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # promotion to float64 does not warn
        report = check_function(forward, lambda dy, cache: 2 * dy, [x])
    assert set(seen) == {np.dtype(np.float64)}
    assert x.dtype == np.float32 and (x == before).all()
    assert prop(report, "forward leaves its inputs").passed is False


def test_integer_inputs_pass_through_unchecked(rng):
    labels = np.array([2, 0, 1])
    received = []

    def gather_forward(scores, labels):
        received.append(labels)
        return 3 * scores[np.arange(len(labels)), labels], labels

    def gather_backward(dy, labels):
        dscores = np.zeros((len(labels), 4))
        dscores[np.arange(len(labels)), labels] = 3 * dy
        return dscores, None

    report = check_function(gather_forward, gather_backward,
                            [rng.standard_normal((3, 4)), labels])
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["scores"]
    assert all(r is labels for r in received)
    assert (labels == [2, 0, 1]).all()


def test_fortran_ordered_input_is_checked(rng):
    x = np.asfortranarray(rng.standard_normal((3, 4)))
    assert check_function(tanh_forward, tanh_backward, [x]).passed
    report = check_function(tanh_forward, lambda dy, y: 1.01 * tanh_backward(dy, y), [x])
    assert report.failures() == ["x"]


def test_numerical_gradient_matches_simple_functions(xp, rng):
    x = xp.asarray(rng.standard_normal((3, 4)))
    w = xp.asarray(rng.standard_normal((4, 2)))
    x_before = x.copy()
    dy = xp.asarray(rng.standard_normal((3, 4)))
    got = numerical_gradient(lambda a: a ** 2, x, dy)
    np.testing.assert_allclose(got, asnumpy(2 * x * dy), rtol=1e-6, atol=1e-8)
    dy = xp.asarray(rng.standard_normal((3, 2)))
    np.testing.assert_allclose(numerical_gradient(lambda a: a @ w, x, dy),
                               asnumpy(dy @ w.T), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(numerical_gradient(lambda b: x @ b, w, dy),
                               asnumpy(x.T @ dy), rtol=1e-6, atol=1e-8)
    assert (asnumpy(x) == asnumpy(x_before)).all()
    with pytest.raises(TypeError, match="float array"):
        numerical_gradient(lambda a: a, xp.arange(3), xp.ones(3))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(mode="foo"), ValueError, "mode must be one of"),
    (dict(max_elements=0), ValueError, "max_elements"),
    (dict(grad_output=np.ones((2, 2))), ValueError, "grad_output has shape"),
    (dict(names=["x", "weight"]), ValueError, "names has 2 entries"),
    (dict(forward=lambda *a: conv2d_forward(*a)[0]), TypeError, "pair"),
], ids=["mode", "max_elements", "grad_output", "names", "forward-not-pair"])
def test_invalid_arguments(rng, kwargs, error, match):
    forward = kwargs.pop("forward", conv2d_forward)
    with pytest.raises(error, match=match):
        check_function(forward, conv2d_backward, conv_inputs(np, rng), **kwargs)


# --- edge cases of the report ---------------------------------------------------------------

def test_failed_count_tells_one_bad_element_from_a_wrong_formula(rng):
    x = rng.standard_normal((4, 5))

    def one_wrong(dy, cache):
        dx = tanh_backward(dy, cache)
        dx[2, 3] += 0.5
        return dx

    single = check_function(tanh_forward, one_wrong, [x]).tensor("x")
    everywhere = check_function(tanh_forward, lambda dy, y: 1.01 * tanh_backward(dy, y),
                                [x]).tensor("x")
    assert (single.n_failed, single.worst_index) == (1, (2, 3))
    assert everywhere.n_failed == 20


def test_the_row_is_the_element_furthest_past_its_tolerance_not_the_largest_error():
    # y = w * x: the gradient is w. Element 0 (gradient 1000) is off by 5e-3, within its
    # tolerance 1e-7 + 1e-5 * 1000 = 1e-2; element 1 (gradient 1) is off by only 1e-4, ten
    # times its tolerance 1e-7 + 1e-5. The largest error is at 0, the worst element is 1.
    w = np.array([1000.0, 1.0, 3.0])

    def off_backward(dy, cache):
        return w * dy + np.array([5e-3, 1e-4, 0.0])

    report = check_function(lambda x: (w * x, None), off_backward, [np.ones(3)],
                            grad_output=np.ones(3))
    x = report.tensor("x")
    assert (x.worst_index, x.n_failed) == ((1,), 1)
    assert x.max_abs_error == pytest.approx(5e-3, abs=1e-6)     # elsewhere: not on the row
    assert (x.analytic, x.numerical) == (pytest.approx(1.0001), pytest.approx(1.0))
    assert x.abs_error == pytest.approx(1e-4, rel=1e-4)
    assert x.tolerance_ratio == pytest.approx(1e-4 / (1e-7 + 1e-5), rel=1e-4)
    text = str(report)
    assert "worst at: the element furthest past its tolerance" in text
    row = next(line for line in text.splitlines() if line.startswith("x "))
    assert row.split()[4:10] == ["(1,)", "1.000100e+00", "1.000000e+00", "1.00e-04", "9.9",
                                 "FAIL"]
    assert "5.00e-03" not in text


def test_scalar_output_and_empty_input_are_handled(rng):
    def sum_squares_forward(x, empty):
        return (x * x).sum(), x

    def sum_squares_backward(dy, x):
        return 2 * x * dy, np.zeros((0, 3))

    report = check_function(sum_squares_forward, sum_squares_backward,
                            [rng.standard_normal(5), np.zeros((0, 3))])
    assert report.passed, str(report)
    assert report.tensor("empty").n_checked == 0


def test_wrt_must_name_float_inputs(rng):
    from minifcn.ops import conv2d_backward, conv2d_forward
    x, w = rng.standard_normal((1, 1, 4, 4)), rng.standard_normal((1, 1, 3, 3))
    with pytest.raises(ValueError, match="wrt index 2"):
        check_function(conv2d_forward, conv2d_backward, [x, w, None], wrt=[0, 2])


def test_directional_failure_suggests_full_mode(rng):
    report = check_function(tanh_forward, lambda dy, y: 1.5 * tanh_backward(dy, y),
                            [rng.standard_normal(6)], mode="directional")
    assert "mode='full'" in report.tensor("x").message
