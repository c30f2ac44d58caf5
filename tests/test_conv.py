"""conv2d_forward / conv2d_backward against PyTorch (forward and autograd), the naive loop,
and finite differences; argument errors; and the nn.Conv2d layer around them."""
import math

import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.gradcheck import check_module
from minifcn.nn import Conv2d
from minifcn.ops import conv2d_backward, conv2d_forward

from helpers import rel_error
from reference import GRID_IMAGE_HW, conv2d_naive, pair, window_grid

CASES, IDS = window_grid()
C, F = 2, 3          # input and output channels: small, and different so a swap shows

grid = pytest.mark.parametrize("kernel, stride, padding, dilation, n", CASES, ids=IDS)
with_bias = pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])


def _problem(rng, kernel, n, bias, dtype=np.float64):
    """x (n, C, 13, 14), weight (F, C, KH, KW) and bias (F,) or None, as NumPy arrays."""
    x = rng.standard_normal((n, C) + GRID_IMAGE_HW).astype(dtype)
    w = rng.standard_normal((F, C) + pair(kernel)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    return x, w, b


def _on(xp, *arrays):
    return [None if a is None else xp.asarray(a) for a in arrays]


# --- Against PyTorch, the naive loop and finite differences, on the grid ---------------------

@with_bias
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)],
                         ids=["float64", "float32"])
@grid
def test_conv2d_matches_torch(xp, torch, rng, kernel, stride, padding, dilation, n,
                              dtype, tol, bias):
    x, w, b = _problem(rng, kernel, n, bias, dtype)
    options = dict(stride=stride, padding=padding, dilation=dilation)
    y, cache = conv2d_forward(*_on(xp, x, w, b), **options)
    tx, tw = (torch.tensor(a, requires_grad=True) for a in (x, w))
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, **options)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx, dw, db = conv2d_backward(xp.asarray(dy), cache)

    compared = [("y", y, ty), ("dx", dx, tx.grad), ("dweight", dw, tw.grad)]
    if bias:
        compared.append(("dbias", db, tb.grad))
    else:
        assert db is None
    for name, got, want in compared:
        want = want.detach().numpy()
        assert got.dtype == dtype, f"{name} is {got.dtype}"
        assert rel_error(got, want) < tol, f"{name}: rel error {rel_error(got, want):.2e}"


@with_bias
@grid
def test_conv2d_forward_matches_naive(xp, rng, kernel, stride, padding, dilation, n, bias):
    x, w, b = _problem(rng, kernel, n, bias)
    y, _ = conv2d_forward(*_on(xp, x, w, b), stride, padding, dilation)
    want = conv2d_naive(x, w, b, stride, padding, dilation)
    assert rel_error(y, want) < 1e-12


@with_bias
@grid
def test_conv2d_module_passes_gradcheck(xp, rng, kernel, stride, padding, dilation, n, bias):
    layer = Conv2d(C, F, kernel, stride, padding, dilation, bias=bias, rng=0)
    layer.to(device="cpu" if xp is np else "cuda")
    x = xp.asarray(rng.standard_normal((n, C) + GRID_IMAGE_HW))
    report = check_module(layer, x, max_elements=30)
    assert report.passed, str(report)


# --- dtype and bias ---------------------------------------------------------------------------

@pytest.mark.parametrize("kernel, stride, padding, dilation, n",
                         [(3, 2, 1, 2, 3), (1, 1, 0, 1, 1), (1, 1, 0, 1, 3), (7, 1, 3, 1, 2)],
                         ids=["k3-s2-p1-d2-n3", "k1-pointwise-n1", "k1-pointwise-n3",
                              "k7-s1-p3-d1-n2"])
def test_float32_stays_float32(xp, rng, kernel, stride, padding, dilation, n):
    x, w, b = _on(xp, *_problem(rng, kernel, n, True, np.float32))
    y, cache = conv2d_forward(x, w, b, stride, padding, dilation)
    grads = conv2d_backward(xp.asarray(rng.standard_normal(y.shape).astype(np.float32)), cache)
    for name, a in zip(["y", "dx", "dweight", "dbias"], (y,) + grads):
        assert a.dtype == np.float32, f"{name} is {a.dtype}"


def test_dbias_is_none_without_bias(xp, rng):
    x, w, _ = _on(xp, *_problem(rng, 3, 2, False))
    y, cache = conv2d_forward(x, w, None, padding=1)
    dx, dw, db = conv2d_backward(xp.ones_like(y), cache)
    assert db is None
    assert dx.shape == x.shape and dw.shape == w.shape


# --- Errors at the boundary name the argument ------------------------------------------------

def _forward_with(x=None, w=None, b=None, **options):
    """Call conv2d_forward on a good problem (x (2, 3, 6, 7), weight (4, 3, 3, 3), bias (4,))
    with one argument replaced by a bad one."""
    rng = np.random.default_rng(0)
    good_x = rng.standard_normal((2, 3, 6, 7))
    good_w = rng.standard_normal((4, 3, 3, 3))
    return conv2d_forward(good_x if x is None else x(good_x), good_w if w is None else w(good_w),
                          np.zeros(4) if b is None else b, **options)


BAD_FORWARD = [
    pytest.param(dict(x=lambda x: x[0]), ValueError, r"x must be 4-D", id="x-3d"),
    pytest.param(dict(x=lambda x: x[:, :2]), ValueError, r"channels", id="channel-mismatch"),
    pytest.param(dict(w=lambda w: np.zeros((4, 3, 7, 3))), ValueError,
                 r"kernel .* larger than the padded input", id="kernel-too-large"),
    pytest.param(dict(w=lambda w: np.zeros((4, 3, 3, 3)), dilation=4), ValueError,
                 r"larger than the padded input", id="dilated-kernel-too-large"),
    pytest.param(dict(stride=0), ValueError, r"stride must be positive", id="stride-0"),
    pytest.param(dict(stride=(1, -2)), ValueError, r"stride must be positive", id="stride-neg"),
    pytest.param(dict(stride=1.5), TypeError, r"stride must be an int", id="stride-float"),
    pytest.param(dict(padding=-1), ValueError, r"padding", id="padding-neg"),
    pytest.param(dict(dilation=0), ValueError, r"dilation", id="dilation-0"),
    pytest.param(dict(x=lambda x: x.astype(np.float16), w=lambda w: w.astype(np.float16),
                      b=np.zeros(4, np.float16)), TypeError, r"x must be float32", id="x-float16"),
    pytest.param(dict(x=lambda x: x.astype(np.int64), w=lambda w: w.astype(np.int64),
                      b=np.zeros(4, np.int64)), TypeError, r"x must be float32", id="x-int"),
    pytest.param(dict(w=lambda w: w.astype(np.float32)), TypeError, r"weight has dtype float32",
                 id="weight-dtype"),
    pytest.param(dict(b=np.zeros(4, np.float32)), TypeError, r"bias has dtype", id="bias-dtype"),
    pytest.param(dict(b=np.zeros(5)), ValueError, r"bias must have shape \(4,\)", id="bias-len"),
    pytest.param(dict(b=np.zeros((4, 1))), ValueError, r"bias must be 1-D", id="bias-2d"),
    pytest.param(dict(w=lambda w: list(w)), TypeError, r"weight must be a NumPy or CuPy array",
                 id="weight-list"),
]


@pytest.mark.parametrize("bad, error, match", BAD_FORWARD)
def test_forward_rejects_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        _forward_with(**bad)


@pytest.mark.parametrize("dy_of, error, match", [
    pytest.param(lambda y: y[:, :, :-1], ValueError, r"dy must have the forward output's shape",
                 id="dy-shape"),
    pytest.param(lambda y: y[0], ValueError, r"dy must have", id="dy-3d"),
    pytest.param(lambda y: y.astype(np.float32), TypeError, r"dy has dtype float32",
                 id="dy-dtype"),
])
def test_backward_rejects_bad_dy(dy_of, error, match):
    y, cache = _forward_with()
    with pytest.raises(error, match=match):
        conv2d_backward(dy_of(y), cache)


# --- The nn.Conv2d layer ------------------------------------------------------------------------

@pytest.mark.parametrize("in_channels, out_channels, kernel", [(16, 8, 3), (5, 40, (3, 2))],
                         ids=["c16-f8-k3", "c5-f40-k3x2"])
def test_conv2d_init_follows_torch_rule(torch, in_channels, out_channels, kernel):
    """Weight and bias uniform on +-1/sqrt(fan_in), fan_in = C*KH*KW, as torch.nn.Conv2d's."""
    kh, kw = pair(kernel)
    bound = 1 / math.sqrt(in_channels * kh * kw)
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(in_channels, out_channels, kernel)
    ours = Conv2d(in_channels, out_channels, kernel, rng=0)
    for name, w in [("torch", theirs.weight.detach().numpy()), ("minifcn", ours.weight.data)]:
        # a uniform sample of 288+ values reaches near both ends and has std bound/sqrt(3)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound, name
        assert w.min() < -0.9 * bound and w.max() > 0.9 * bound, name
        assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.1, name
    assert np.abs(theirs.bias.detach().numpy()).max() <= bound
    assert np.abs(ours.bias.data).max() <= bound
    assert ours.weight.shape == tuple(theirs.weight.shape)
    assert ours.bias.shape == tuple(theirs.bias.shape)
    assert ours.weight.dtype == np.float32 and ours.bias.dtype == np.float32


def test_conv2d_init_dtype_and_no_bias():
    layer = Conv2d(2, 3, 3, bias=False, dtype=np.float64, rng=1)
    assert layer.bias is None and layer.weight.dtype == np.float64
    assert [name for name, _ in layer.named_parameters()] == ["weight"]


@with_bias
def test_conv2d_module_equals_functional_ops(xp, rng, bias):
    layer = Conv2d(C, F, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), bias=bias,
                   dtype=np.float64, rng=0)
    layer.to(device="cpu" if xp is np else "cuda")
    x = xp.asarray(rng.standard_normal((2, C, 9, 8)))
    b = layer.bias.data if bias else None
    want_y, cache = conv2d_forward(x, layer.weight.data, b, (2, 1), 1, (1, 2))
    y = layer.forward(x)
    dy = xp.asarray(rng.standard_normal(y.shape))
    want_dx, want_dw, want_db = conv2d_backward(dy, cache)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(asnumpy(y), asnumpy(want_y))
    np.testing.assert_array_equal(asnumpy(dx), asnumpy(want_dx))
    np.testing.assert_array_equal(asnumpy(layer.weight.grad), asnumpy(want_dw))
    if bias:
        np.testing.assert_array_equal(asnumpy(layer.bias.grad), asnumpy(want_db))


def test_conv2d_backward_before_forward_raises():
    layer = Conv2d(2, 3, 3, rng=0)
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        layer.backward(np.zeros((1, 3, 4, 4), np.float32))


# --- The input gradient as a correlation (stride 1) -----------------------------------------

CORRELATION_CASES = [  # F, C, kernel, padding, dilation, correlation expected
    (4, 4, 3, 1, 1, True), (2, 5, (3, 2), (2, 0), 1, True), (3, 3, 3, (0, 4), (1, 2), True),
    (2, 5, 3, 0, 2, True), (6, 3, 3, 1, 1, False), (3, 3, 3, 3, 1, False),
    (3, 3, 1, 0, 1, False), (3, 4, 5, 0, 2, False)]     # the last: dy's im2col 27 > 4 rows


@pytest.mark.parametrize("F, C, kernel, padding, dilation, expected", CORRELATION_CASES,
                         ids=[f"F{c[0]}-C{c[1]}-k{c[2]}-p{c[3]}-d{c[4]}".replace(" ", "")
                              for c in CORRELATION_CASES])
def test_stride_1_input_gradient_as_a_correlation_equals_col2im(xp, rng, monkeypatch, F, C,
                                                                 kernel, padding, dilation,
                                                                 expected):
    """Stride 1 with F <= C and P <= D(K-1) takes dx as a correlation of dy with the flipped
    kernel (no col2im); it equals the reference's col2im to rounding."""
    from minifcn import ops
    kh, kw = pair(kernel)
    x = xp.asarray(rng.standard_normal((2, C, 11, 9)))
    w = xp.asarray(rng.standard_normal((F, C, kh, kw)))
    y, cache = conv2d_forward(x, w, None, 1, padding, dilation)
    dy = xp.asarray(rng.standard_normal(y.shape))
    chosen = ops.explain("conv2d", x.shape, w.shape, padding=padding, dilation=dilation,
                         dtype="float64", device="cpu" if xp is np else "cuda").choices
    assert (chosen["conv2d.input_grad"] == "correlation") == expected
    dx, dw, _ = conv2d_backward(dy, cache)
    with ops.using("reference"):                                 # col2im(W^T dY)
        dx_col2im, dw_col2im, _ = conv2d_backward(dy, cache)
    assert rel_error(dx, dx_col2im) < 1e-13 and rel_error(dw, dw_col2im) < 1e-13
    assert dx.shape == x.shape and dx.flags.c_contiguous


@pytest.mark.parametrize("limit", [None, "6KiB"], ids=["whole", "chunked"])
def test_weight_gradient_products_agree(rng, monkeypatch, limit):
    """dW as dY @ col^T (F above TRANSPOSED_DW_FILTERS) and as (col @ dY^T)^T (F at most it,
    on the CPU) agree, whole and summed over workspace chunks."""
    from minifcn import memory
    from minifcn.ops.fast import gemm
    x = rng.standard_normal((2, 3, 12, 10))
    w = rng.standard_normal((5, 3, 3, 3))
    y, cache = conv2d_forward(x, w, None, 1, 1)
    dy = rng.standard_normal(y.shape)
    results = []
    for filters in (0, 5):                                   # 0: never transposed; 5: always
        monkeypatch.setattr(gemm, "TRANSPOSED_DW_FILTERS", filters)
        with memory.limited(limit):
            results.append(conv2d_backward(dy, cache)[1])
    assert results[0].flags.c_contiguous and results[1].flags.c_contiguous
    assert rel_error(results[0], results[1]) < 1e-13
    assert rel_error(results[1], conv2d_naive_weight_grad(x, dy, w.shape)) < 1e-12


def conv2d_naive_weight_grad(x, dy, w_shape):
    """dW[f, c, i, j] = sum over n, p, q of dy[n, f, p, q] x_pad[n, c, p + i, q + j]."""
    x_pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dw = np.zeros(w_shape)
    OH, OW = dy.shape[2:]
    for i in range(w_shape[2]):
        for j in range(w_shape[3]):
            dw[:, :, i, j] = np.einsum("nfpq,ncpq->fc", dy, x_pad[:, :, i:i + OH, j:j + OW])
    return dw
