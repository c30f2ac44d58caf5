"""conv_transpose2d_forward / _backward against PyTorch (forward and autograd), the naive loop
and finite differences; the options PyTorch rejects; argument errors; nn.ConvTranspose2d."""
import math

import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.gradcheck import check_module
from minifcn.nn import ConvTranspose2d
from minifcn.ops import conv_transpose2d_backward, conv_transpose2d_forward

from helpers import rel_error
from reference import conv_transpose2d_naive, pair

C_IN, C_OUT = 3, 2       # different, so that a swapped weight layout shows
SIZES = [(5, 6), (4, 7), (6, 5)]           # odd and even heights and widths


def _grid():
    """kernel 1-4 x stride 1-3 x padding 0-2 x output_padding 0-2 x dilation 1, 2; bias or
    not, N 1 or 2 and the input size drawn for each (seeded, so uncorrelated with the options).
    PyTorch rejects about a third of these (output_padding >= stride and >= dilation, or
    an empty output): those must be rejected here too."""
    cases, ids = [], []
    draw = np.random.default_rng(0)
    for k in (1, 2, 3, 4):
        for s in (1, 2, 3):
            for p in (0, 1, 2):
                for op in (0, 1, 2):
                    for d in (1, 2):
                        bias, n = bool(draw.integers(2)), 1 + int(draw.integers(2))
                        hw = SIZES[draw.integers(len(SIZES))]
                        cases.append((k, s, p, op, d, bias, n, hw))
                        ids.append(f"k{k}-s{s}-p{p}-op{op}-d{d}-{'b' if bias else 'nob'}"
                                   f"-n{n}-{hw[0]}x{hw[1]}")
    asymmetric = [((3, 2), (1, 2), (0, 1), (0, 1), (2, 1), True, 2, (5, 6)),
                  ((2, 4), (3, 1), (2, 0), (2, 0), (1, 1), False, 1, (4, 7)),
                  ((1, 3), (2, 2), (0, 2), (1, 0), (2, 3), True, 2, (6, 5))]
    cases += asymmetric
    ids += [f"asym{i}" for i in range(len(asymmetric))]
    return cases, ids


CASES, IDS = _grid()
grid = pytest.mark.parametrize("kernel, stride, padding, output_padding, dilation, bias, n, hw",
                               CASES, ids=IDS)


def _problem(rng, kernel, n, hw, bias, dtype=np.float64):
    x = rng.standard_normal((n, C_IN) + hw).astype(dtype)
    w = rng.standard_normal((C_IN, C_OUT) + pair(kernel)).astype(dtype)
    b = rng.standard_normal(C_OUT).astype(dtype) if bias else None
    return x, w, b


def _on(xp, *arrays):
    return [None if a is None else xp.asarray(a) for a in arrays]


# --- Against PyTorch, the naive loop and finite differences, on the grid ---------------------

@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)],
                         ids=["float64", "float32"])
@grid
def test_matches_torch_or_both_reject(xp, torch, rng, kernel, stride, padding, output_padding,
                                      dilation, bias, n, hw, dtype, tol):
    x, w, b = _problem(rng, kernel, n, hw, bias, dtype)
    options = dict(stride=stride, padding=padding, output_padding=output_padding,
                   dilation=dilation)
    tx, tw = (torch.tensor(a, requires_grad=True) for a in (x, w))
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    try:
        ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, **options)
        rejected = "empty output" if 0 in ty.shape else None
    except RuntimeError as err:
        rejected = str(err)
    if rejected:    # (torch 2.13 returns an empty output for some float32 batches, raises else)
        match = "output_padding" if "output padding" in rejected else "output size"
        with pytest.raises(ValueError, match=match):
            conv_transpose2d_forward(*_on(xp, x, w, b), **options)
        return
    y, cache = conv_transpose2d_forward(*_on(xp, x, w, b), **options)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx, dw, db = conv_transpose2d_backward(xp.asarray(dy), cache)

    compared = [("y", y, ty), ("dx", dx, tx.grad), ("dweight", dw, tw.grad)]
    if bias:
        compared.append(("dbias", db, tb.grad))
    else:
        assert db is None
    for name, got, want in compared:
        want = want.detach().numpy()
        assert got.dtype == dtype, f"{name} is {got.dtype}"
        assert rel_error(got, want) < tol, f"{name}: rel error {rel_error(got, want):.2e}"


def _accepted(kernel, stride, padding, output_padding, dilation, bias, n, hw):
    """PyTorch's rule: output_padding below the stride or the dilation, a non-empty output."""
    k, s, p, op, d = (pair(v) for v in (kernel, stride, padding, output_padding, dilation))
    return all(op[a] < max(s[a], d[a]) and
               (hw[a] - 1) * s[a] - 2 * p[a] + d[a] * (k[a] - 1) + op[a] + 1 >= 1
               for a in range(2))


NAIVE = [c for c in CASES if _accepted(*c)][::6]


@pytest.mark.parametrize("kernel, stride, padding, output_padding, dilation, bias, n, hw", NAIVE)
def test_forward_matches_naive_loop(xp, rng, kernel, stride, padding, output_padding,
                                    dilation, bias, n, hw):
    x, w, b = _problem(rng, kernel, n, hw, bias)
    options = (stride, padding, output_padding, dilation)
    want = conv_transpose2d_naive(x, w, b, *options)
    y, _ = conv_transpose2d_forward(*_on(xp, x, w, b), stride=stride, padding=padding,
                                    output_padding=output_padding, dilation=dilation)
    assert rel_error(y, want) < 1e-12


GRADCHECK = [(3, 1, 0, 0, 1), (4, 2, 1, 0, 1), (3, 2, 1, 1, 1), (2, 3, 0, 2, 1),
             (3, 1, 1, 1, 2), (2, 2, 2, 1, 2), ((3, 2), (2, 1), (1, 0), (1, 0), (1, 2))]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kernel, stride, padding, output_padding, dilation", GRADCHECK)
def test_module_passes_gradcheck(xp, rng, kernel, stride, padding, output_padding, dilation,
                                 bias):
    layer = ConvTranspose2d(C_IN, C_OUT, kernel, stride, padding, output_padding, bias=bias,
                            dilation=dilation, dtype=np.float64, rng=0)
    layer.to(device="cpu" if xp is np else "cuda")
    x = xp.asarray(rng.standard_normal((2, C_IN, 4, 5)))
    report = check_module(layer, x, max_elements=30)
    assert report.passed, str(report)
    assert report.settings["dtype"] == "float64"


def test_output_padding_at_least_stride_but_below_dilation(xp, torch, rng):
    """output_padding 1 at stride 1 is allowed when dilation is 2: the extra row is one that
    a stride-1 convolution of y would read with an input row that x does not have."""
    x, w, b = _problem(rng, 3, 2, (4, 5), True)
    y, cache = conv_transpose2d_forward(*_on(xp, x, w, b), stride=1, output_padding=1,
                                        dilation=2)
    ty = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w),
                                              torch.from_numpy(b), output_padding=1, dilation=2)
    assert y.shape == tuple(ty.shape) == (2, C_OUT, 9, 10)
    assert rel_error(y, ty.numpy()) < 1e-12


# --- Errors at the boundary ------------------------------------------------------------------

def _forward_with(x=None, w=None, b=None, **options):
    """conv_transpose2d_forward on x (2, 3, 4, 5), weight (3, 2, 3, 3), bias (2,), with one
    argument replaced."""
    rng = np.random.default_rng(0)
    good_x, good_w = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((3, 2, 3, 3))
    return conv_transpose2d_forward(good_x if x is None else x(good_x),
                                    good_w if w is None else w(good_w),
                                    np.zeros(2) if b is None else b, **options)


BAD_FORWARD = [
    pytest.param(dict(x=lambda x: x[:, :2]), ValueError,
                 r"weight expects 3 input channels .*layout \(C_in, C_out, KH, KW\).* x has 2",
                 id="channel-mismatch"),
    pytest.param(dict(w=lambda w: w.transpose(1, 0, 2, 3)), ValueError,
                 r"\(C_in, C_out, KH, KW\)", id="conv-layout-weight"),
    pytest.param(dict(b=np.zeros(3)), ValueError, r"bias must have shape \(2,\)", id="bias-len"),
    pytest.param(dict(b=np.zeros((2, 1))), ValueError, r"bias must be 1-D", id="bias-2d"),
    pytest.param(dict(b=np.zeros(2, np.float32)), TypeError, r"bias has dtype float32",
                 id="bias-dtype"),
    pytest.param(dict(x=lambda x: x[0]), ValueError, r"x must be 4-D", id="x-3d"),
    pytest.param(dict(x=lambda x: x.astype(np.int64), w=lambda w: w.astype(np.int64),
                      b=np.zeros(2, np.int64)), TypeError, r"x must be float32", id="x-int"),
    pytest.param(dict(w=lambda w: w[0]), ValueError,
                 r"weight must be 4-D \(C_in, C_out, KH, KW\)", id="weight-3d"),
    pytest.param(dict(stride=2, output_padding=2), ValueError,
                 r"output_padding must be smaller than either stride or dilation",
                 id="output-padding-too-big"),
    pytest.param(dict(padding=4), ValueError, r"output size .* too small", id="output-empty"),
    pytest.param(dict(stride=0), ValueError, r"stride must be positive", id="stride-0"),
    pytest.param(dict(output_padding=-1), ValueError, r"output_padding must be at least 0",
                 id="output-padding-neg"),
    pytest.param(dict(dilation=(1, 0)), ValueError, r"dilation must be positive",
                 id="dilation-0"),
]


@pytest.mark.parametrize("bad, error, match", BAD_FORWARD)
def test_forward_rejects_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        _forward_with(**bad)


@pytest.mark.parametrize("dy_of, error, match", [
    pytest.param(lambda y: y[:, :, 1:], ValueError, r"dy must have the forward output's shape "
                 r"\(2, 2, 6, 7\)", id="dy-shape"),
    pytest.param(lambda y: y.astype(np.float32), TypeError, r"dy has dtype float32",
                 id="dy-dtype"),
])
def test_backward_rejects_bad_dy(dy_of, error, match):
    y, cache = _forward_with()
    with pytest.raises(error, match=match):
        conv_transpose2d_backward(dy_of(y), cache)


# --- The nn.ConvTranspose2d layer --------------------------------------------------------------

@pytest.mark.parametrize("in_channels, out_channels, kernel", [(4, 16, 3), (40, 5, (3, 2))],
                         ids=["c4-f16-k3", "c40-f5-k3x2"])
def test_init_follows_torch_rule(torch, in_channels, out_channels, kernel):
    """Uniform on +-1/sqrt(fan_in) with fan_in = out_channels*KH*KW (the weight's dim 1), as
    torch.nn.ConvTranspose2d's; in != out so that fan_in from dim 0 would show."""
    kh, kw = pair(kernel)
    bound = 1 / math.sqrt(out_channels * kh * kw)
    torch.manual_seed(0)
    theirs = torch.nn.ConvTranspose2d(in_channels, out_channels, kernel)
    ours = ConvTranspose2d(in_channels, out_channels, kernel, rng=0)
    for name, w in [("torch", theirs.weight.detach().numpy()), ("minifcn", ours.weight.data)]:
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound, name
        assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.1, name
    for name, b in [("torch", theirs.bias.detach().numpy()), ("minifcn", ours.bias.data)]:
        assert np.abs(b).max() <= bound, name
    assert ours.weight.shape == tuple(theirs.weight.shape) == (in_channels, out_channels, kh, kw)
    assert ours.bias.shape == tuple(theirs.bias.shape) == (out_channels,)
    assert ours.weight.dtype == np.float32 and ours.bias.dtype == np.float32


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_module_equals_functional_ops(xp, rng, bias):
    layer = ConvTranspose2d(C_IN, C_OUT, (3, 2), stride=(2, 1), padding=1, output_padding=(1, 0),
                            bias=bias, dilation=(1, 2), dtype=np.float64, rng=0)
    layer.to(device="cpu" if xp is np else "cuda")
    x = xp.asarray(rng.standard_normal((2, C_IN, 5, 4)))
    b = layer.bias.data if bias else None
    want_y, cache = conv_transpose2d_forward(x, layer.weight.data, b, stride=(2, 1), padding=1,
                                             output_padding=(1, 0), dilation=(1, 2))
    y = layer.forward(x)
    dy = xp.asarray(rng.standard_normal(y.shape))
    want_dx, want_dw, want_db = conv_transpose2d_backward(dy, cache)
    np.testing.assert_array_equal(asnumpy(y), asnumpy(want_y))
    np.testing.assert_array_equal(asnumpy(layer.backward(dy)), asnumpy(want_dx))
    np.testing.assert_array_equal(asnumpy(layer.weight.grad), asnumpy(want_dw))
    if bias:
        np.testing.assert_array_equal(asnumpy(layer.bias.grad), asnumpy(want_db))
    else:
        assert [name for name, _ in layer.named_parameters()] == ["weight"]


def test_backward_before_forward_raises():
    layer = ConvTranspose2d(2, 3, 4, stride=2, padding=1, rng=0)
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        layer.backward(np.zeros((1, 3, 8, 8), np.float32))


def test_layer_rejects_bad_options():
    with pytest.raises(ValueError, match=r"out_channels must be positive"):
        ConvTranspose2d(2, 0, 3)
    with pytest.raises(ValueError, match=r"output_padding must be at least 0"):
        ConvTranspose2d(2, 3, 3, output_padding=-1)
    assert "output_padding=(1, 1)" in repr(ConvTranspose2d(2, 3, 3, stride=2, output_padding=1))
