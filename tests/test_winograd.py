"""Winograd F(4x4, 3x3): the transform matrices compute a correlation exactly (in 1-D, in
float64), and the float32 path agrees with float64 im2col on y, dx and dW for uneven sizes,
paddings, batches and row chunks; it is taken only where it should be, and a planted wrong
matrix entry is caught."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minifcn import memory
from minifcn.ops import _winograd, conv2d_backward, conv2d_forward

from helpers import count_calls, rel_error


@pytest.fixture
def every_channel_count(monkeypatch):
    """Take the Winograd path for any number of channels, so that small tests reach it."""
    monkeypatch.setattr(_winograd, "MIN_CHANNELS", 1)


@pytest.fixture
def calls(monkeypatch):
    """How often the forward and the weight gradient ran by Winograd."""
    return count_calls(monkeypatch, _winograd, ("conv3x3", "weight_grad3x3"))


def test_one_dimensional_identity_is_a_correlation(rng):
    """A^T [(G g) * (B^T d)] = the four valid outputs of correlating d (6) with g (3)."""
    for _ in range(20):
        d, g = rng.standard_normal(6), rng.standard_normal(3)
        got = _winograd.AT @ ((_winograd.G @ g) * (_winograd.BT @ d))
        want = np.array([d[i:i + 3] @ g for i in range(4)])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_transposed_identity_is_the_weight_gradient(rng):
    """G^T [(A dy) * (B^T x)] = sum_i dy_i x_{i+k}, the three taps' gradients."""
    for _ in range(20):
        x, dy = rng.standard_normal(6), rng.standard_normal(4)
        got = _winograd.G.T @ ((_winograd.AT.T @ dy) * (_winograd.BT @ x))
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


def test_row_chunks_under_a_small_workspace_limit(rng, every_channel_count):
    x = rng.standard_normal((2, 8, 37, 21)).astype(np.float32)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 6, 37, 21)).astype(np.float32)
    whole = _conv_all(x, w, None, 1, dy)
    assert _winograd._rows(8, 6, 10, 6, 4) == 10                      # all 10 tile rows at once
    with memory.limited(64 * 1024):
        assert _winograd._rows(8, 6, 10, 6, 4) == 2                   # ... in chunks of 2
        chunked = _conv_all(x, w, None, 1, dy)
    for g, e in zip(chunked, whole):               # dW sums its chunks in another order
        assert rel_error(g, e) < 1e-5


def test_taken_only_for_float32_3x3_stride_1_with_enough_channels(rng, calls):
    def run(c, dtype=np.float32, kernel=3, **options):
        x = rng.standard_normal((1, c, 10, 10)).astype(dtype)
        w = rng.standard_normal((4, c, kernel, kernel)).astype(dtype)
        conv2d_forward(x, w, None, **options)
        return calls["conv3x3"]
    assert run(_winograd.MIN_CHANNELS, padding=1) == 1
    assert run(_winograd.MIN_CHANNELS - 1, padding=1) == 1           # too few channels
    assert run(_winograd.MIN_CHANNELS, dtype=np.float64, padding=1) == 1
    assert run(_winograd.MIN_CHANNELS, stride=2) == 1
    assert run(_winograd.MIN_CHANNELS, dilation=2) == 1
    assert run(_winograd.MIN_CHANNELS, kernel=5) == 1
    _winograd.set_conv_algorithm("im2col")
    try:
        assert run(_winograd.MIN_CHANNELS, padding=1) == 1
    finally:
        _winograd.set_conv_algorithm("auto")


def test_a_planted_wrong_entry_is_caught(rng, every_channel_count, monkeypatch):
    x = rng.standard_normal((1, 4, 8, 8))
    w = rng.standard_normal((3, 4, 3, 3))
    want, _ = conv2d_forward(x, w, None, padding=1)
    bad = _winograd.BT.copy()
    bad[0, 2] = -4.0                                                 # was -5
    monkeypatch.setattr(_winograd, "BT", bad)
    got, _ = conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, padding=1)
    assert rel_error(got, want) > 1e-2


def test_algorithm_names_are_checked():
    with pytest.raises(ValueError, match="^algorithm must be one of 'auto', 'im2col'"):
        _winograd.set_conv_algorithm("fft")
    code = ("import numpy as np; from minifcn.ops import conv2d_forward; "
            "conv2d_forward(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), "
            "np.float32), None)")
    env = dict(os.environ, MINIFCN_CONV_ALGORITHM="fast")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode != 0
    assert "MINIFCN_CONV_ALGORITHM must be one of auto, im2col, got 'fast'" in done.stderr
