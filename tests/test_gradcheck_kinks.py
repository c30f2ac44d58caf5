"""Kinks in minifcn.gradcheck: failures at points without a derivative are said to be so.

A correct backward fails a central difference at a kink (ReLU at 0, a max-pool tie), and
the pass/fail rule stays as it is; the report counts those failures and says which
one-sided slope the backward follows. It must never excuse a wrong backward at a smooth
point, nor take curvature or float32 rounding for a kink.
"""
import warnings

import numpy as np
import pytest

from minifcn import cli
from minifcn.backend import get_array_module
from minifcn.gradcheck import GradcheckPrecisionWarning, check_function, check_module
from minifcn.gradcheck.numerical import differences_at, directional_differences
from minifcn.models.fcn import FCN8s
from minifcn.nn import Conv2d, ReLU, Sequential
from minifcn.ops import (conv2d_backward, conv2d_forward, max_pool2d_backward,
                         max_pool2d_forward, relu_backward, relu_forward)

ZEROS = [(0, 1, 2, 2), (1, 0, 0, 3), (1, 2, 1, 1)]

# float64 uses check_function's defaults; float32 the settings its warning recommends
SETTINGS = {"float64": {}, "float32": dict(dtype=np.float32, eps=1e-3, atol=1e-2, rtol=1e-2)}


def check(*args, precision="float64", **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradcheckPrecisionWarning)
        return check_function(*args, **SETTINGS[precision], **kwargs)


def with_zeros(xp, rng, shape=(2, 3, 4, 4)):
    x = rng.standard_normal(shape)
    for index in ZEROS:
        x[index] = 0.0
    return xp.asarray(x)


def note_of(report):
    """The report's lines under the tensor table that speak of kinks."""
    return [line.strip() for line in str(report).splitlines() if "kink" in line]


def relu_right_backward(dy, cache):
    """relu's gradient taken as 1 at 0: the right slope."""
    return get_array_module(dy).where(cache >= 0, dy, 0 * dy)


def relu_at_zero_forward(x):
    return relu_forward(x)[0], x


def tanh_forward(x):
    y = get_array_module(x).tanh(x)
    return y, y


def tanh_backward(dy, y):
    return dy * (1 - y * y)


# --- a correct backward at a kink: flagged, with the side it follows ------------------------

@pytest.mark.parametrize("precision", list(SETTINGS))
def test_relu_at_exact_zeros_fails_there_and_says_kink(xp, rng, precision):
    report = check(relu_forward, relu_backward, [with_zeros(xp, rng)], precision=precision)
    x = report.tensor("x")
    assert report.failures() == ["x"]                     # the rule is unchanged: it fails
    assert (x.n_failed, x.n_failed_at_kinks, x.n_kinks) == (3, 3, 3)
    assert x.worst_index in ZEROS and x.worst_at_kink
    assert x.analytic == 0 and x.left_slope == 0          # relu'(0) = 0: the left slope
    assert x.right_slope == pytest.approx(2 * x.numerical, rel=1e-6)   # dy[k], twice the mean
    assert x.matched_slope == "left"
    line, = note_of(report)
    assert line.startswith(f"x: 3 of the 3 failed elements sit at kinks (one-sided slopes "
                           f"differ); at {x.worst_index}: left 0, right ")
    assert "= the left slope: the backward is consistent with one side" in line
    assert "relu inputs away from 0" in line


def test_large_outputs_that_do_not_move_hide_no_kink(rng):
    # float32 outputs of 1e4 that no perturbation reaches add no rounding to the slopes
    def forward(x):
        y, cache = relu_forward(x)
        return np.concatenate([y.reshape(-1), np.full(1000, 1e4, y.dtype)]), cache

    def backward(dy, cache):
        return relu_backward(dy[:-1000].reshape(cache.mask.shape), cache)

    report = check(forward, backward, [with_zeros(np, rng)], precision="float32")
    x = report.tensor("x")
    assert (x.n_failed, x.n_failed_at_kinks, x.matched_slope) == (3, 3, "left")


def test_the_other_convention_follows_the_right_slope(rng):
    report = check_function(relu_at_zero_forward, relu_right_backward, [with_zeros(np, rng)])
    x = report.tensor("x")
    assert (x.n_failed, x.n_failed_at_kinks, x.matched_slope) == (3, 3, "right")
    assert x.analytic == x.right_slope
    assert "= the right slope" in note_of(report)[0]


def test_abs_with_zero_at_zero_passes_at_its_kink_and_prints_nothing(rng):
    x = rng.standard_normal(6)
    x[2] = 0.0
    report = check_function(lambda x: (np.abs(x), x), lambda dy, x: np.sign(x) * dy, [x])
    t = report.tensor("x")
    assert report.passed, str(report)                     # 0 is the slopes' mean: it passes
    assert (t.n_kinks, t.n_failed_at_kinks) == (1, 0)
    assert note_of(report) == []


def test_max_pool_ties_are_kinks(xp, rng):
    x = rng.permutation(2 * 4 * 4).reshape(1, 2, 4, 4) / 8.0       # distinct values
    x[0, 1, 2, 1] = x[0, 1, 3, 0] = x[0, 1, 2:, :2].max() + 0.5    # a tie in one window
    report = check_function(max_pool2d_forward, max_pool2d_backward,
                            [xp.asarray(x), 2, 2, 0, False])
    t = report.tensor("x")
    assert report.failures() == ["x"]
    assert (t.n_failed, t.n_failed_at_kinks, t.n_kinks) == (2, 2, 2)
    assert t.worst_index in [(0, 1, 2, 1), (0, 1, 3, 0)] and t.worst_at_kink
    # dy goes to the first of the tied: it follows the right slope, the other the left
    assert t.matched_slope == ("right" if t.worst_index == (0, 1, 2, 1) else "left")
    assert "2 of the 2 failed elements sit at kinks" in note_of(report)[0]


# --- no kink where there is none --------------------------------------------------------------

def cube_forward(x):
    return x ** 3, x


def normal(*shapes):
    """Inputs: standard normal arrays of ``shapes``."""
    return lambda xp, rng: [xp.asarray(rng.standard_normal(s)) for s in shapes]


SMOOTH = {
    "tanh": (tanh_forward, tanh_backward, normal((2, 3, 4, 4))),
    "cube": (cube_forward, lambda dy, x: 3 * x * x * dy, normal(40)),
    "conv2d": (lambda x, w, b: conv2d_forward(x, w, b, 1, 1, 1), conv2d_backward,
               normal((2, 3, 5, 6), (4, 3, 3, 3), (4,))),
    # float32 outputs near 1e4 move by a few ulps per step: rounding, not a kink
    "offset-1e4": (lambda x: (x + 1e4, None), lambda dy, cache: dy, normal(40)),
    "tanh-times-1e4": (lambda x: (1e4 * tanh_forward(x)[0], tanh_forward(x)[0]),
                       lambda dy, y: 1e4 * tanh_backward(dy, y), normal(40)),
}


@pytest.mark.parametrize("mode", ["full", "directional"])
@pytest.mark.parametrize("precision", list(SETTINGS))
@pytest.mark.parametrize("case", list(SMOOTH))
def test_smooth_functions_have_no_kinks(xp, rng, case, precision, mode):
    forward, backward, inputs = SMOOTH[case]
    report = check(forward, backward, inputs(xp, rng), precision=precision, mode=mode)
    assert [t.n_kinks for t in report.tensors] == [0] * len(report.tensors), str(report)
    assert note_of(report) == []


def test_curvature_within_the_margin_is_not_a_kink():
    # x ** 2 at 0.02, dy = 1: the slopes 0.04 -+ eps differ by 2 eps = 4 tolerances
    # (1e-7 + 1e-5 * 0.04), inside the margin of 8
    square = (lambda x: (x * x, x), lambda dy, x: 2 * x * dy)
    report = check_function(*square, [np.array([0.02, 0.5, -1.5])], grad_output=np.ones(3))
    assert report.passed and report.tensor("x").n_kinks == 0
    # at 0 they differ by 20 tolerances: at this eps, as a kink would; it passes, unreported
    report = check_function(*square, [np.array([0.0, 0.5])], grad_output=np.ones(2))
    assert report.passed and report.tensor("x").n_kinks == 1 and note_of(report) == []


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_a_wrong_backward_at_a_smooth_point_is_not_excused(xp, rng, mode):
    x = xp.asarray(rng.standard_normal((2, 3, 4, 4)))
    report = check_function(tanh_forward, lambda dy, y: 1.01 * tanh_backward(dy, y), [x],
                            mode=mode)
    t = report.tensor("x")
    assert report.failures() == ["x"] and t.n_failed >= 1
    assert (t.n_kinks, t.n_failed_at_kinks, t.worst_at_kink, t.matched_slope) == \
        (0, 0, False, "")
    assert abs(t.right_slope - t.left_slope) < 1e-4          # both sides agree
    assert note_of(report) == []


def test_a_real_error_beside_kinks_is_still_called_an_error(rng):
    x = with_zeros(np, rng)
    x[0, 0, 0, 0] = 1.5                                       # a smooth point

    def backward(dy, cache):
        dx = relu_backward(dy, cache)
        dx[0, 0, 0, 0] += 3.0                                 # the worst error, and real
        return dx

    report = check_function(relu_forward, backward, [x])
    t = report.tensor("x")
    assert (t.n_failed, t.n_failed_at_kinks) == (4, 3)
    assert t.worst_index == (0, 0, 0, 0) and not t.worst_at_kink
    line, = note_of(report)
    assert line.startswith("x: 3 of the 4 failed elements sit at kinks")
    assert "the worst, at (0, 0, 0, 0), does not" in line
    assert line.endswith("the backward is wrong there")


def test_a_wrong_value_at_a_kink_matches_neither_side(rng):
    x = with_zeros(np, rng)

    def backward(dy, x):
        return np.where(x > 0, dy, 0.0) + np.where(x == 0, 2 * dy, 0.0)   # 2, not 0 or 1

    report = check_function(relu_at_zero_forward, backward, [x])
    t = report.tensor("x")
    assert (t.n_failed, t.n_failed_at_kinks, t.matched_slope) == (3, 3, "")
    assert "equal to neither slope: the kink does not explain it" in note_of(report)[0]


# --- directional mode: a network whose ReLUs sit at 0 in a padded border ------------------

def border_net():
    """conv 1x1 with padding 1 and zero bias: its output's border is exactly 0 going into
    the ReLU, as in a freshly initialised FCN's padded border."""
    return Sequential(Conv2d(3, 4, 1, padding=1, init="kaiming", rng=0), ReLU(),
                      Conv2d(4, 2, 3, rng=1))


def test_directional_check_of_a_network_with_kinks(rng):
    report = check_module(border_net(), rng.standard_normal((2, 3, 4, 4)), mode="directional")
    bias = report.tensor("0.bias")
    assert report.failures() == ["0.bias"]                  # the border's ReLUs move with it
    assert (bias.n_failed, bias.n_failed_at_kinks, bias.worst_at_kink) == (1, 1, True)
    assert bias.left_slope != pytest.approx(bias.right_slope, abs=1e-3)
    assert all(t.n_kinks == 0 for t in report.tensors if t.name != "0.bias")
    line, = note_of(report)
    assert line.startswith("0.bias: the direction crosses a kink (one-sided directional "
                           "derivatives differ): left ")
    assert "mode='full'" in line


def test_full_check_of_the_same_network_finds_the_side(rng):
    report = check_module(border_net(), rng.standard_normal((2, 3, 4, 4)))
    bias = report.tensor("0.bias")
    assert report.failures() == ["0.bias"]
    assert (bias.n_failed, bias.n_failed_at_kinks, bias.matched_slope) == (4, 4, "left")


def test_fresh_fcn8s_directional_failures_are_its_trunk_biases_at_kinks(rng):
    model = FCN8s(n_class=3, width=1 / 32, dtype=np.float64, rng=0).eval()
    for name, p in model.named_parameters():     # score layers start at 0: give them values
        if name.startswith("score"):
            p.data = rng.normal(0.0, 0.1, p.shape)
    report = check_module(model, rng.standard_normal((1, 3, 11, 13)), mode="directional")
    failed = report.failures()
    assert failed and all(n.startswith("conv") and n.endswith(".bias") for n in failed)
    assert all(report.tensor(n).n_failed_at_kinks == 1 for n in failed)
    assert all(t.n_kinks == 0 for t in report.tensors if t.name not in failed)
    assert len(note_of(report)) == len(failed)


# --- the numerical parts ----------------------------------------------------------------------

def test_one_sided_slopes_of_abs_at_zero(xp):
    x = xp.asarray([0.0, 2.0])
    dy = xp.asarray([1.5, 1.0])
    d = differences_at(xp.abs, x, dy, 1e-6, [0, 1], y0=xp.abs(x))
    np.testing.assert_allclose(d.left, [-1.5, 1.0], rtol=1e-9)
    np.testing.assert_allclose(d.right, [1.5, 1.0], rtol=1e-9)
    np.testing.assert_allclose(d.central, [0.0, 1.0], atol=1e-9)
    u = xp.asarray([0.6, 0.8])
    d = directional_differences(xp.abs, x, u, dy, 1e-6, y0=xp.abs(x))
    assert (d.left[0], d.right[0]) == (pytest.approx(-0.9 + 0.8), pytest.approx(0.9 + 0.8))
    assert d.noise[0] < 1e-8
    assert np.isnan(differences_at(xp.abs, x, dy, 1e-6, [0]).left[0])     # no y0


# --- the command line prints it ---------------------------------------------------------------

LAYER = '''
from minifcn.nn import Conv2d, ReLU, Sequential


def border_net():
    return Sequential(Conv2d(3, 4, 1, padding=1, init="kaiming", rng=0), ReLU(),
                      Conv2d(4, 2, 3, rng=1))
'''


@pytest.mark.parametrize("mode, fragment", [
    ("full", "0.bias: 4 of the 4 failed elements sit at kinks (one-sided slopes differ); "
             "at (0,): left "),
    ("directional", "0.bias: the direction crosses a kink"),
])
def test_the_command_line_report_says_kink(tmp_path, capsys, mode, fragment):
    path = tmp_path / "border.py"
    path.write_text(LAYER)
    status = cli.main(["gradcheck", f"{path}:border_net", "--input-shape", "2x3x4x4",
                       "--mode", mode])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILED: 0.bias" in out and fragment in out, out
