"""im2col / col2im against the naive loops of tests/reference.py, their adjoint identity,
and the output-size helpers against the shapes PyTorch produces."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minifcn.backend import asnumpy
from minifcn.ops import col2im, conv_output_size, conv_transpose_output_size, im2col

from helpers import rel_error
from reference import GRID_IMAGE_HW, col2im_naive, im2col_naive, output_size, pair, window_grid

CASES, IDS = window_grid()
C = 2


def _image(rng, n, dtype=np.float64):
    return rng.standard_normal((n, C) + GRID_IMAGE_HW).astype(dtype)


def _col_shape(x_shape, kernel, stride, padding, dilation):
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(pair, (kernel, stride, padding, dilation))
    oh, ow = output_size(H, kh, sh, ph, dh), output_size(W, kw, sw, pw, dw)
    return (C * kh * kw, N * oh * ow)


def _adjoint_gap(xp, x, col, options):
    """``(|<im2col(x), col> - <x, col2im(col)>|, scale)`` in float64.

    The scale is ``<|im2col(x)|, |col|>``, the sum of the magnitudes of the products both
    inner products add up: rounding error is relative to it, not to the (possibly
    cancelling) sum itself.
    """
    lhs = float(xp.vdot(im2col(x, *options), col))
    rhs = float(xp.vdot(x, col2im(col, x.shape, *options)))
    scale = float(xp.vdot(xp.abs(im2col(x, *options)), xp.abs(col)))
    return abs(lhs - rhs), scale


# --- Against the naive loops, on the grid ---------------------------------------------------

@pytest.mark.parametrize("kernel, stride, padding, dilation, n", CASES, ids=IDS)
def test_im2col_matches_naive(xp, rng, kernel, stride, padding, dilation, n):
    x = _image(rng, n)
    col = im2col(xp.asarray(x), kernel, stride, padding, dilation)
    want = im2col_naive(x, kernel, stride, padding, dilation)
    assert col.shape == want.shape
    np.testing.assert_array_equal(asnumpy(col), want)   # a pure copy: exact


@pytest.mark.parametrize("kernel, stride, padding, dilation, n", CASES, ids=IDS)
def test_col2im_matches_naive(xp, rng, kernel, stride, padding, dilation, n):
    x_shape = (n, C) + GRID_IMAGE_HW
    col = rng.standard_normal(_col_shape(x_shape, kernel, stride, padding, dilation))
    x = col2im(xp.asarray(col), x_shape, kernel, stride, padding, dilation)
    want = col2im_naive(col, x_shape, kernel, stride, padding, dilation)
    assert x.shape == x_shape and x.dtype == np.float64
    assert rel_error(x, want) < 1e-14   # sums in another order only


@pytest.mark.parametrize("kernel, stride, padding, dilation, n", CASES, ids=IDS)
def test_adjoint_identity(xp, rng, kernel, stride, padding, dilation, n):
    options = (kernel, stride, padding, dilation)
    x = _image(rng, n)
    col = rng.standard_normal(_col_shape(x.shape, *options))
    gap, scale = _adjoint_gap(xp, xp.asarray(x), xp.asarray(col), options)
    assert gap <= 1e-12 * scale, f"<im2col(x), c> - <x, col2im(c)> = {gap:.3e}, scale {scale:.3e}"


@st.composite
def _adjoint_problems(draw):
    """Random small shapes and window options (each a pair, h and w drawn independently)."""
    ints = lambda lo, hi: (draw(st.integers(lo, hi)), draw(st.integers(lo, hi)))
    kernel, stride, padding, dilation = ints(1, 4), ints(1, 3), ints(0, 2), ints(1, 3)
    smallest = [max(1, dilation[a] * (kernel[a] - 1) + 1 - 2 * padding[a]) for a in range(2)]
    hw = tuple(draw(st.integers(lo, lo + 6)) for lo in smallest)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + hw
    return shape, (kernel, stride, padding, dilation), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # xp is stateless
@given(problem=_adjoint_problems())
def test_adjoint_identity_random(xp, problem):
    shape, options, seed = problem
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    col = rng.standard_normal(_col_shape(shape, *options))
    gap, scale = _adjoint_gap(xp, xp.asarray(x), xp.asarray(col), options)
    assert gap <= 1e-12 * scale, f"<im2col(x), c> - <x, col2im(c)> = {gap:.3e}, scale {scale:.3e}"


# --- dtype, layout and the 1x1 shortcut ------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kernel", [1, 3], ids=["k1", "k3"])
def test_dtype_is_preserved(xp, rng, dtype, kernel):
    x = xp.asarray(_image(rng, 2, dtype))
    col = im2col(x, kernel, padding=kernel // 2)
    assert col.dtype == dtype
    assert col2im(col, x.shape, kernel, padding=kernel // 2).dtype == dtype


@pytest.mark.parametrize("n", [1, 3], ids=["n1", "n3"])
def test_pointwise_path(xp, rng, n):
    """1x1 kernel, stride 1, no padding: im2col is a reshape of x, col2im its inverse."""
    x = _image(rng, n)
    col = im2col(xp.asarray(x), 1)
    np.testing.assert_array_equal(asnumpy(col), im2col_naive(x, 1))
    back = col2im(col, x.shape, 1)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(asnumpy(back), x)   # each pixel is read exactly once
    np.testing.assert_array_equal(asnumpy(back), col2im_naive(asnumpy(col), x.shape, 1))


@pytest.mark.parametrize("kernel", [1, 3], ids=["k1", "k3"])
def test_non_contiguous_input(xp, rng, kernel):
    x = xp.asarray(_image(rng, 3))[:, :, ::-1, 1:]   # a strided view on the device, (3, C, 13, 13)
    col = im2col(x, kernel, 2, 1)
    np.testing.assert_array_equal(asnumpy(col), im2col_naive(asnumpy(x), kernel, 2, 1))


def test_col2im_rejects_wrong_col_shape(rng):
    with pytest.raises(ValueError, match="col must have shape"):
        col2im(rng.standard_normal((18, 10)), (1, 2, 5, 5), 3)


# --- Output sizes, against the shapes PyTorch produces ---------------------------------------

@pytest.mark.parametrize("kernel, stride, padding, dilation, n", CASES, ids=IDS)
def test_conv_output_size_matches_torch(torch, kernel, stride, padding, dilation, n):
    H, W = GRID_IMAGE_HW
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(pair, (kernel, stride, padding, dilation))
    y = torch.nn.functional.conv2d(torch.zeros(n, 1, H, W), torch.zeros(1, 1, kh, kw),
                                   stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))
    assert tuple(y.shape[2:]) == (conv_output_size(H, kh, sh, ph, dh),
                                  conv_output_size(W, kw, sw, pw, dw))


_TRANSPOSE_CASES = [(size, k, s, p, op, d)
                    for size in (1, 5) for k in (1, 2, 4) for s in (1, 2, 3)
                    for p in (0, 2) for d in (1, 2) for op in range(max(s, d))]


@pytest.mark.parametrize("size, kernel, stride, padding, output_padding, dilation",
                         _TRANSPOSE_CASES,
                         ids=[f"h{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-op{c[4]}-d{c[5]}"
                              for c in _TRANSPOSE_CASES])
def test_conv_transpose_output_size_matches_torch(torch, size, kernel, stride, padding,
                                                  output_padding, dilation):
    options = (kernel, stride, padding, output_padding, dilation)
    want = (conv_transpose_output_size(size, *options),
            conv_transpose_output_size(size + 1, *options))
    try:
        y = torch.nn.functional.conv_transpose2d(
            torch.zeros(1, 1, size, size + 1), torch.zeros(1, 1, kernel, kernel),
            stride=stride, padding=padding, output_padding=output_padding, dilation=dilation)
    except RuntimeError:   # PyTorch refuses a negative size; the formula must give one too
        assert min(want) < 1, f"PyTorch refused a layer whose output the formula sizes {want}"
        return
    assert tuple(y.shape[2:]) == want
