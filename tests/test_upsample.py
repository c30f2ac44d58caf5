"""upsample_bilinear2d_forward / _backward against torch interpolate (forward and autograd) and
finite differences; FCN's bilinear kernels and their equivalence with interpolation; argument
errors; and the nn.UpsamplingBilinear2d layer."""
import doctest

import numpy as np
import pytest

import minifcn.ops.upsample
from minifcn.backend import asnumpy
from minifcn.gradcheck import check_function, check_module
from minifcn.nn import UpsamplingBilinear2d
from minifcn.ops import (bilinear_kernel, bilinear_upsampling_weight, conv_transpose2d_forward,
                         upsample_bilinear2d_backward, upsample_bilinear2d_forward)
from minifcn.ops.upsample import linear_interpolation_matrix

from helpers import rel_error

N, C = 2, 3

IN_HW = [(1, 1), (1, 4), (5, 7), (6, 8), (7, 4)]            # odd, even, and single rows
RESIZE = {                                                 # id -> (size, scale_factor)
    "size1x1": ((1, 1), None),
    "size3x2-smaller": ((3, 2), None),
    "size13x16-bigger": ((13, 16), None),
    "size9": (9, None),
    "same-size": ("same", None),
    "scale1": (None, 1.0),
    "scale2": (None, 2),
    "scale1.5": (None, 1.5),
    "scale0.5": (None, 0.5),
    "scale3.7": (None, 3.7),
    "scale2.5x0.75": (None, (2.5, 0.75)),
}
DTYPES = pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)],
                                 ids=["float64", "float32"])
ALIGN = pytest.mark.parametrize("align_corners", [False, True], ids=["ac0", "ac1"])


def _resize(name, hw):
    size, scale = RESIZE[name]
    return (hw if size == "same" else size), scale


def _torch_interpolate(torch, x, size, scale, align_corners, dy_seed):
    """y and dx from torch, or None when torch rejects the arguments."""
    tx = torch.tensor(x, requires_grad=True)
    try:
        ty = torch.nn.functional.interpolate(tx, size=size, scale_factor=scale, mode="bilinear",
                                             align_corners=align_corners)
    except RuntimeError:
        return None
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(ty.shape)).astype(x.dtype)
    ty.backward(torch.from_numpy(dy))
    return ty.detach().numpy(), dy, tx.grad.numpy()


# --- Against PyTorch and finite differences, on the grid -------------------------------------

@DTYPES
@ALIGN
@pytest.mark.parametrize("resize", list(RESIZE))
@pytest.mark.parametrize("hw", IN_HW, ids=[f"{h}x{w}" for h, w in IN_HW])
def test_matches_torch_interpolate(xp, torch, rng, hw, resize, align_corners, dtype, tol):
    x = rng.standard_normal((N, C) + hw).astype(dtype)
    size, scale = _resize(resize, hw)
    want = _torch_interpolate(torch, x, size, scale, align_corners, dy_seed=1)
    if want is None:        # torch rejects an empty output (scale 0.5 of 1 row): so must we
        with pytest.raises(ValueError, match=r"scale_factor=.* empty"):
            upsample_bilinear2d_forward(xp.asarray(x), size, scale, align_corners)
        return
    want_y, dy, want_dx = want
    y, cache = upsample_bilinear2d_forward(xp.asarray(x), size, scale, align_corners)
    dx = upsample_bilinear2d_backward(xp.asarray(dy), cache)
    for name, got, ref in [("y", y, want_y), ("dx", dx, want_dx)]:
        assert got.dtype == dtype and got.shape == ref.shape, (name, got.dtype, got.shape)
        assert rel_error(got, ref) < tol, f"{name}: rel error {rel_error(got, ref):.2e}"


@ALIGN
@pytest.mark.parametrize("hw, size, scale", [((5, 6), None, 2), ((5, 6), None, 0.6),
                                             ((4, 7), None, (1.5, 0.5)), ((1, 3), (4, 1), None),
                                             ((6, 5), (4, 9), None)],
                         ids=["up2", "down0.6", "scale1.5x0.5", "1x3-to-4x1", "size4x9"])
def test_passes_gradcheck(xp, rng, hw, size, scale, align_corners):
    x = xp.asarray(rng.standard_normal((N, C) + hw))
    report = check_function(upsample_bilinear2d_forward, upsample_bilinear2d_backward,
                            [x, size, scale, align_corners])
    assert report.passed, str(report)


def test_scale_factor_samples_with_the_given_scale(xp, torch, rng):
    """PyTorch's default: scale 1.5 on 5 rows gives 7 rows sampled at (o + 0.5)/1.5 - 0.5,
    which is not size=7 (sampled at (o + 0.5) 5/7 - 0.5); recompute_scale_factor=True is."""
    x = rng.standard_normal((1, 2, 5, 5))
    by_scale, _ = upsample_bilinear2d_forward(xp.asarray(x), scale_factor=1.5)
    by_size, _ = upsample_bilinear2d_forward(xp.asarray(x), size=7)
    F, tx = torch.nn.functional, torch.from_numpy(x)
    for recompute, want in [(None, by_scale), (False, by_scale), (True, by_size)]:
        ty = F.interpolate(tx, scale_factor=1.5, mode="bilinear", recompute_scale_factor=recompute)
        assert rel_error(want, ty.numpy()) < 1e-12, recompute
    assert rel_error(by_scale, asnumpy(by_size)) > 1e-2


@ALIGN
@pytest.mark.parametrize("in_size, out_size, scale", [(1, 5, None), (5, 1, None), (4, 9, None),
                                                      (9, 4, None), (5, 18, 3.7)])
def test_interpolation_rows_blend_two_neighbours(in_size, out_size, scale, align_corners):
    a = linear_interpolation_matrix(in_size, out_size, align_corners, scale)
    assert a.shape == (out_size, in_size)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert (a >= 0).all() and ((a > 0).sum(axis=1) <= 2).all()
    nonzero = [np.flatnonzero(row) for row in a]
    assert all(len(nz) < 2 or nz[1] == nz[0] + 1 for nz in nonzero)     # adjacent neighbours


def test_float32_stays_float32_and_backward_is_the_adjoint(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 3, 5, 6)).astype(np.float32))
    y, cache = upsample_bilinear2d_forward(x, scale_factor=(2.5, 0.5), align_corners=True)
    dy = xp.asarray(rng.standard_normal(y.shape).astype(np.float32))
    dx = upsample_bilinear2d_backward(dy, cache)
    assert y.dtype == dx.dtype == np.float32 and dx.shape == x.shape
    lhs, rhs = float(xp.vdot(y, dy)), float(xp.vdot(x, dx))    # <A x, dy> == <x, A^T dy>
    assert abs(lhs - rhs) < 1e-4 * max(abs(lhs), 1.0)


def test_docstring_examples_run():
    result = doctest.testmod(minifcn.ops.upsample)
    assert result.attempted >= 5 and result.failed == 0


# --- FCN's bilinear kernels --------------------------------------------------------------------

def test_bilinear_kernel_values():
    np.testing.assert_allclose(bilinear_kernel(3), np.outer([.5, 1, .5], [.5, 1, .5]))
    np.testing.assert_allclose(bilinear_kernel(4)[:, 0], [1 / 16, 3 / 16, 3 / 16, 1 / 16])
    np.testing.assert_allclose(bilinear_kernel(1), [[1.0]])
    for k in (2, 4, 8, 16, 32, 64):     # kernel 2s sums to s^2: each output gets total 1
        kernel = bilinear_kernel(k)
        assert abs(kernel.sum() - (k // 2) ** 2) < 1e-9 and kernel.shape == (k, k)
        assert np.array_equal(kernel, kernel.T) and np.array_equal(kernel, kernel[::-1, ::-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bilinear_upsampling_weight_is_diagonal(dtype):
    w = bilinear_upsampling_weight(3, 4, dtype=dtype)
    assert w.shape == (3, 3, 4, 4) and w.dtype == dtype
    for c in range(3):
        for o in range(3):
            want = bilinear_kernel(4) if c == o else np.zeros((4, 4))
            np.testing.assert_array_equal(w[c, o], want.astype(dtype))


def _border_factor(out_size, s, in_size):
    """1 - distance of each output's source coordinate from [0, in_size - 1]: how much of the
    tent lands inside the image, which is all a zero-padded transposed conv can sum."""
    src = (np.arange(out_size) + 0.5) / s - 0.5
    return 1 - np.maximum(0, np.maximum(-src, src - (in_size - 1)))


@pytest.mark.parametrize("s", [2, 4, 8, 16, 32])
def test_bilinear_transposed_conv_equals_interpolation_inside(xp, rng, s):
    """Kernel 2s, stride s, padding s/2 (or padding 0 cropped by s/2) == interpolate by s,
    align_corners=False, except the s/2 rows/columns at each border: there the source
    coordinate leaves [0, H-1], interpolate clamps (weight 1 on the border pixel) while the
    transposed conv's other neighbour is a zero, so it gives (1 - |distance|) of that."""
    H, W = 5, 6
    x = xp.asarray(rng.uniform(0.5, 1.5, (1, 2, H, W)))          # positive: every border differs
    w = xp.asarray(bilinear_upsampling_weight(2, 2 * s, dtype=np.float64))
    y_pad, _ = conv_transpose2d_forward(x, w, stride=s, padding=s // 2)
    y_full, _ = conv_transpose2d_forward(x, w, stride=s)                        # ((H+1)s, (W+1)s)
    y_crop = y_full[:, :, s // 2:s // 2 + H * s, s // 2:s // 2 + W * s]
    y_interp, _ = upsample_bilinear2d_forward(x, scale_factor=s)
    assert y_pad.shape == y_crop.shape == y_interp.shape == (1, 2, H * s, W * s)
    assert rel_error(y_crop, y_pad) < 1e-14

    b = s // 2
    inside = (slice(None), slice(None), slice(b, H * s - b), slice(b, W * s - b))
    assert rel_error(y_pad[inside], y_interp[inside]) < 1e-12
    f_h, f_w = _border_factor(H * s, s, H), _border_factor(W * s, s, W)
    assert (f_h[b:H * s - b] == 1).all() and (f_h[:b] < 1).all() and (f_h[H * s - b:] < 1).all()
    want = asnumpy(y_interp) * f_h[:, None] * f_w[None, :]    # exact everywhere, borders too
    assert rel_error(y_pad, want) < 1e-12
    differs = np.abs(asnumpy(y_pad - y_interp)).max(axis=(0, 1)) > 1e-9    # (H*s, W*s)
    rows = np.flatnonzero(differs[:, b:W * s - b].any(axis=1))   # among the inner columns
    cols = np.flatnonzero(differs[b:H * s - b].any(axis=0))      # among the inner rows
    assert list(rows) == list(range(b)) + list(range(H * s - b, H * s))
    assert list(cols) == list(range(b)) + list(range(W * s - b, W * s))


@pytest.mark.parametrize("s", [2, 4, 8, 16, 32])
def test_bilinear_overlap_sums_to_one_inside(xp, s):
    """Kernel 2s at stride s: the shifted tents sum to exactly 1 (no checkerboard)."""
    H, W = 4, 5
    ones = xp.ones((1, 1, H, W))
    w = xp.asarray(bilinear_upsampling_weight(1, 2 * s, dtype=np.float64))
    y = asnumpy(conv_transpose2d_forward(ones, w, stride=s, padding=s // 2)[0])[0, 0]
    b = s // 2
    np.testing.assert_allclose(y[b:H * s - b, b:W * s - b], 1.0, rtol=0, atol=1e-13)
    assert y[:b].max() < 1 and y[:, -b:].max() < 1


def _overlap_counts(xp, kernel, stride, H=6, W=7):
    """How many input pixels' kernel copies land on each output pixel (all-ones weight)."""
    ones, w = xp.ones((1, 1, H, W)), xp.ones((1, 1, kernel, kernel))
    return asnumpy(conv_transpose2d_forward(ones, w, stride=stride)[0])[0, 0]


def test_overlap_pattern_kernel3_stride2_is_uneven_kernel4_is_even(xp):
    k3, k4 = _overlap_counts(xp, 3, 2), _overlap_counts(xp, 4, 2)
    inner3 = k3[1:-1, 1:-1]            # away from the first/last k - s rows and columns
    per_row = np.where(np.arange(1, k3.shape[0] - 1) % 2 == 0, 2, 1)
    per_col = np.where(np.arange(1, k3.shape[1] - 1) % 2 == 0, 2, 1)
    np.testing.assert_array_equal(inner3, np.outer(per_row, per_col))    # 1, 2, 4: checkerboard
    assert set(np.unique(inner3)) == {1.0, 2.0, 4.0}
    np.testing.assert_array_equal(k4[2:-2, 2:-2], 4.0)                  # 2 x 2 everywhere


# --- Errors at the boundary name the argument ------------------------------------------------

GOOD_X = np.zeros((1, 2, 4, 5))

BAD = [
    pytest.param(dict(), ValueError, r"exactly one of size and scale_factor.*None.*None",
                 id="neither"),
    pytest.param(dict(size=8, scale_factor=2), ValueError,
                 r"exactly one of size and scale_factor, got size=8 and scale_factor=2",
                 id="both"),
    pytest.param(dict(size=0), ValueError, r"size must be positive", id="size-0"),
    pytest.param(dict(size=(4, -1)), ValueError, r"size must be positive", id="size-negative"),
    pytest.param(dict(size=2.5), TypeError, r"size must be an int", id="size-float"),
    pytest.param(dict(scale_factor=0), ValueError, r"scale_factor must be positive", id="scale-0"),
    pytest.param(dict(scale_factor=(2, -1.5)), ValueError, r"scale_factor must be positive",
                 id="scale-negative"),
    pytest.param(dict(scale_factor=float("nan")), ValueError, r"finite", id="scale-nan"),
    pytest.param(dict(scale_factor="2"), TypeError, r"scale_factor must be a number",
                 id="scale-str"),
    pytest.param(dict(scale_factor=(1, 2, 3)), TypeError, r"pair of numbers", id="scale-triple"),
    pytest.param(dict(scale_factor=0.1), ValueError, r"empty 0x0 output", id="scale-empty"),
    pytest.param(dict(x=GOOD_X[0], size=3), ValueError, r"x must be 4-D \(N, C, H, W\)",
                 id="x-3d"),
    pytest.param(dict(x=GOOD_X.astype(np.int64), size=3), TypeError, r"x must be float32",
                 id="x-int"),
    pytest.param(dict(x=GOOD_X[:, :, :0], size=3), ValueError, r"positive height", id="x-empty"),
    pytest.param(dict(size=3, align_corners=None), TypeError, r"align_corners must be True or",
                 id="align-corners-none"),
]


@pytest.mark.parametrize("options, error, match", BAD)
def test_forward_rejects_bad_input(options, error, match):
    options = dict(options)
    with pytest.raises(error, match=match):
        upsample_bilinear2d_forward(options.pop("x", GOOD_X), **options)


@pytest.mark.parametrize("dy_of, error, match", [
    (lambda y: y[..., :-1], ValueError, r"dy must have the forward output's shape \(1, 2, 8, 10\)"),
    (lambda y: y.astype(np.float32), TypeError, r"dy has dtype float32"),
], ids=["dy-shape", "dy-dtype"])
def test_backward_rejects_bad_dy(dy_of, error, match):
    y, cache = upsample_bilinear2d_forward(GOOD_X, scale_factor=2)
    with pytest.raises(error, match=match):
        upsample_bilinear2d_backward(dy_of(y), cache)


@pytest.mark.parametrize("kernel_size, channels, dtype, error, match", [
    (0, 1, np.float32, ValueError, r"kernel_size must be positive"),
    (4.0, 1, np.float32, TypeError, r"kernel_size must be an int"),
    (4, 0, np.float32, ValueError, r"channels must be positive"),
    (4, 2, np.int32, TypeError, r"dtype must be float32 or float64, got int32"),
], ids=["kernel-0", "kernel-float", "channels-0", "dtype-int"])
def test_bilinear_weight_rejects_bad_input(kernel_size, channels, dtype, error, match):
    with pytest.raises(error, match=match):
        bilinear_upsampling_weight(channels, kernel_size, dtype=dtype)


# --- The nn.UpsamplingBilinear2d layer ----------------------------------------------------------

@ALIGN
def test_module_equals_functional_ops_and_passes_check_module(xp, rng, align_corners):
    layer = UpsamplingBilinear2d(scale_factor=(1.5, 2), align_corners=align_corners)
    x = xp.asarray(rng.standard_normal((2, 3, 5, 4)))
    want_y, cache = upsample_bilinear2d_forward(x, None, (1.5, 2), align_corners)
    y = layer.forward(x)
    dy = xp.asarray(rng.standard_normal(y.shape))
    np.testing.assert_array_equal(asnumpy(y), asnumpy(want_y))
    np.testing.assert_array_equal(asnumpy(layer.backward(dy)),
                                  asnumpy(upsample_bilinear2d_backward(dy, cache)))
    assert layer.parameters() == []
    report = check_module(UpsamplingBilinear2d(size=(3, 7), align_corners=align_corners), x)
    assert report.passed, str(report)


def test_module_checks_options_and_order():
    assert repr(UpsamplingBilinear2d(size=4)) == "UpsamplingBilinear2d(size=4, align_corners=False)"
    with pytest.raises(ValueError, match=r"exactly one of size and scale_factor"):
        UpsamplingBilinear2d()
    with pytest.raises(ValueError, match=r"scale_factor must be positive"):
        UpsamplingBilinear2d(scale_factor=-2)
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        UpsamplingBilinear2d(scale_factor=2).backward(np.zeros((1, 1, 2, 2)))
