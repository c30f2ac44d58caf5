"""Winograd F(4x4, 3x3): the transform matrices compute a correlation exactly (in 1-D, in
float64), and the float32 path agrees with float64 im2col on y, dx and dW for uneven sizes,
paddings, batches and row chunks; it is taken only where it should be, and a planted wrong
matrix entry is caught. A wide layer under a workspace limit that only Winograd's weights
fit allocates no scratch buffer above the limit (its weight gradient's sums are two buffers
of (36, F, C) values, not one of twice that)."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from minifcn import memory, ops
from minifcn.ops import conv2d_backward, conv2d_forward, dispatch
from minifcn.ops.fast import winograd

from helpers import count_calls, rel_error


@pytest.fixture
def every_channel_count(monkeypatch):
    """Take the Winograd path for any number of channels, so that small tests reach it."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)


@pytest.fixture
def calls(monkeypatch):
    """How often the forward and the weight gradient ran by Winograd."""
    return count_calls(monkeypatch, winograd, ("conv3x3", "weight_grad3x3"))


def test_one_dimensional_identity_is_a_correlation(rng):
    """A^T [(G g) * (B^T d)] = the four valid outputs of correlating d (6) with g (3)."""
    for _ in range(20):
        d, g = rng.standard_normal(6), rng.standard_normal(3)
        got = winograd.AT @ ((winograd.G @ g) * (winograd.BT @ d))
        want = np.array([d[i:i + 3] @ g for i in range(4)])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_transposed_identity_is_the_weight_gradient(rng):
    """G^T [(A dy) * (B^T x)] = sum_i dy_i x_{i+k}, the three taps' gradients."""
    for _ in range(20):
        x, dy = rng.standard_normal(6), rng.standard_normal(4)
        got = winograd.G.T @ ((winograd.AT.T @ dy) * (winograd.BT @ x))
        want = np.array([dy @ x[k:k + 4] for k in range(3)])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


CASES = {                               # N, C, F, H, W, padding
    "square p1": (1, 6, 5, 8, 8, 1),
    "uneven p1": (2, 5, 7, 9, 7, 1),
    "no padding": (1, 4, 3, 6, 11, 0),
    "padding 2": (1, 3, 4, 5, 6, 2),
    "padding (1, 2)": (1, 4, 4, 4, 5, (1, 2)),
    "one output": (1, 3, 2, 3, 3, 0),
    "many filters": (1, 3, 9, 13, 10, 1),
}


def _conv_all(x, w, b, padding, dy):
    y, cache = conv2d_forward(x, w, b, padding=padding)
    return (y,) + conv2d_backward(dy, cache)[:2]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_float32_agrees_with_float64_im2col(rng, every_channel_count, calls, case):
    N, C, F, H, W, padding = case
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, 3, 3))
    b = rng.standard_normal(F)
    y64, _ = conv2d_forward(x, w, b, padding=padding)                # float64: im2col
    dy = rng.standard_normal(y64.shape)
    want = _conv_all(x, w, b, padding, dy)
    got = _conv_all(*(a.astype(np.float32) for a in (x, w, b)), padding, dy.astype(np.float32))
    assert calls["conv3x3"] == 2 and calls["weight_grad3x3"] == 1    # y, dx; dW
    for name, g, e in zip(("y", "dx", "dweight"), got, want):
        assert g.dtype == np.float32, name
        assert rel_error(g, e) < 2e-5, name


def test_row_chunks_under_a_small_workspace_limit(rng, every_channel_count, calls):
    x = rng.standard_normal((2, 8, 37, 21)).astype(np.float32)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 6, 37, 21)).astype(np.float32)
    whole = _conv_all(x, w, None, 1, dy)
    assert winograd._rows(8, 6, 10, 6, 4) == 10                       # all 10 tile rows at once
    with memory.limited(64 * 1024):
        assert winograd._rows(8, 6, 10, 6, 4) == 2                    # ... in chunks of 2
        chunked = _conv_all(x, w, None, 1, dy)
    assert calls == {"conv3x3": 4, "weight_grad3x3": 2}             # Winograd both times
    for g, e in zip(chunked, whole):               # dW sums its chunks in another order
        assert rel_error(g, e) < 1e-5


def test_taken_only_for_float32_3x3_stride_1_with_enough_channels(rng, calls):
    def run(c, dtype=np.float32, kernel=3, **options):
        x = rng.standard_normal((1, c, 10, 10)).astype(dtype)
        w = rng.standard_normal((4, c, kernel, kernel)).astype(dtype)
        chosen = ops.explain("conv2d", x.shape, w.shape, dtype=np.dtype(dtype).name,
                             **options).choices["conv2d.forward"]
        before = calls["conv3x3"]
        conv2d_forward(x, w, None, **options)
        assert (chosen == "winograd") == (calls["conv3x3"] > before), chosen
        return calls["conv3x3"]
    assert run(winograd.MIN_CHANNELS, padding=1) == 1
    assert run(winograd.MIN_CHANNELS - 1, padding=1) == 1            # too few channels
    assert run(winograd.MIN_CHANNELS, dtype=np.float64, padding=1) == 1
    assert run(winograd.MIN_CHANNELS, stride=2) == 1
    assert run(winograd.MIN_CHANNELS, dilation=2) == 1
    assert run(winograd.MIN_CHANNELS, kernel=5) == 1
    with memory.limited(36 * 4 * winograd.MIN_CHANNELS * 4 - 1):    # U (36, F, C) too large
        assert run(winograd.MIN_CHANNELS, padding=1) == 1
    previous = ops.get_algorithm()
    ops.set_conv_algorithm("im2col")                                 # the older name
    try:
        assert run(winograd.MIN_CHANNELS, padding=1) == 1
    finally:
        ops.set_algorithm(previous)


def test_a_planted_wrong_entry_is_caught(rng, every_channel_count, monkeypatch):
    x = rng.standard_normal((1, 4, 8, 8))
    w = rng.standard_normal((3, 4, 3, 3))
    want, _ = conv2d_forward(x, w, None, padding=1)
    bad = winograd.BT.copy()
    bad[0, 2] = -4.0                                                 # was -5
    monkeypatch.setattr(winograd, "BT", bad)
    got, _ = conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, padding=1)
    assert rel_error(got, want) > 1e-2


def test_algorithm_names_are_checked():
    with pytest.raises(ValueError, match="^algorithm must be one of 'auto', 'im2col'"):
        ops.set_conv_algorithm("fft")
    code = ("import numpy as np; from minifcn.ops import conv2d_forward; "
            "conv2d_forward(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), "
            "np.float32), None)")
    env = dict(os.environ, MINIFCN_CONV_ALGORITHM="fast")
    env.pop("MINIFCN_ALGORITHM", None)                               # it would be read first
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode != 0
    assert ("MINIFCN_CONV_ALGORITHM must be one of auto, im2col, reference, got 'fast'"
            in done.stderr)


# --- A wide layer's scratch under a workspace limit -------------------------------------------

def _tolerance(piece, name):
    """The float32 tolerance the registry states for a fast path."""
    return {p.name: p.float32_tolerance for p in dispatch.paths(piece)}[name]


WIDE = dict(x=(1, 128, 20, 20), w=(128, 128, 3, 3))               # padding 1: y is 20x20
WINOGRAD_WEIGHTS = 36 * 128 * 128 * 4        # the (36, F, C) float32 values of U or one sum


def _check_scratch_within(monkeypatch, x, w, dy, limit):
    """y, dx and dW of a padded 3x3 conv under ``limit`` with the scratch pool off, so that
    every scratch buffer is allocated (and recorded): Winograd computes all three (dx as a
    correlation that runs by Winograd), no scratch buffer exceeds the limit, and the results
    equal the reference's to the registered float32 tolerances."""
    sizes = []
    allocate = memory._allocate

    def recording(xp, shape, dtype, what="workspace"):
        sizes.append((math.prod(shape) * np.dtype(dtype).itemsize, shape, what))
        return allocate(xp, shape, dtype, what)

    with monkeypatch.context() as patch:
        patch.setattr(memory, "_allocate", recording)
        calls = count_calls(patch, winograd, ("conv3x3", "weight_grad3x3"))
        with memory.pooling(scratch=False), memory.limited(limit):
            chosen = ops.explain("conv2d", x.shape, w.shape, padding=1).choices
            got = _conv_all(x, w, None, 1, dy)
    assert chosen == {"conv2d.forward": "winograd", "conv2d.input_grad": "correlation",
                      "conv2d.weight_grad": "winograd"}, chosen
    assert calls == {"conv3x3": 2, "weight_grad3x3": 1}             # y, dx; dW
    with ops.using("reference"):
        want = _conv_all(x, w, None, 1, dy)
    pieces = (("conv2d.forward", "winograd"), ("conv2d.input_grad", "correlation"),
              ("conv2d.weight_grad", "winograd"))
    for name, g, e, piece in zip(("y", "dx", "dweight"), got, want, pieces):
        assert g.dtype == np.float32, name
        assert rel_error(g, e) < _tolerance(*piece), f"{name}: {rel_error(g, e):.1e}"
    assert sizes, "no scratch was recorded"
    above = [(n, shape, what) for n, shape, what in sizes if n > limit]
    assert not above, f"scratch above the workspace limit of {limit} bytes: {above}"


def test_wide_layer_scratch_stays_within_a_limit_that_only_the_weights_fit(rng, monkeypatch):
    """The tightest limit under which Winograd applies: its transformed weights, 36*F*C
    float32 values. The weight gradient's two sums, (36, F, C) each, fit it one by one; the
    single (2, 36, F, C) buffer they once shared would be twice the limit."""
    x, w = (rng.standard_normal(WIDE[k]).astype(np.float32) for k in ("x", "w"))
    dy = rng.standard_normal(WIDE["x"][:1] + WIDE["w"][:1] + WIDE["x"][2:]).astype(np.float32)
    F, C = w.shape[:2]
    limit = 36 * F * C * 4
    assert limit == WINOGRAD_WEIGHTS and 2 * 36 * F * C * 4 > limit
    _check_scratch_within(monkeypatch, x, w, dy, limit)


def test_the_scratch_check_catches_both_sums_in_one_buffer(rng, monkeypatch):
    """Planted: the weight gradient allocates its sums as one (2, 36, F, C) buffer again (the
    old layout), beside the real computation: the same check fails, naming the buffer."""
    x, w = (rng.standard_normal(WIDE[k]).astype(np.float32) for k in ("x", "w"))
    dy = rng.standard_normal(WIDE["x"][:1] + WIDE["w"][:1] + WIDE["x"][2:]).astype(np.float32)
    F, C = w.shape[:2]
    weight_grad3x3 = winograd.weight_grad3x3

    def one_buffer_of_both_sums(dy, x, padding, dw):
        with memory.scratch(np, (2, 36) + dw.shape[:2], x.dtype, "Winograd F(4x4, 3x3) sums"):
            return weight_grad3x3(dy, x, padding, dw)

    monkeypatch.setattr(winograd, "weight_grad3x3", one_buffer_of_both_sums)
    with pytest.raises(AssertionError, match=r"above the workspace limit .*\(2, 36, 128, 128\)"):
        _check_scratch_within(monkeypatch, x, w, dy, 36 * F * C * 4)
