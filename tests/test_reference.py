"""minifcn/ops/reference/ checked on its own, in float64: against the naive loops of
tests/reference.py (an independent statement of the math) and against torch.nn.functional,
forward and autograd backward. The last tests check that float32 stays float32 and that a
planted mistake is caught."""
import math

import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.ops import max_pool2d_output_size
from minifcn.ops.reference import activation, conv, crop, loss, pool, upsample
from minifcn.ops.reference.im2col import col2im, im2col

from helpers import rel_error
from reference import (col2im_naive, conv2d_naive, conv_transpose2d_naive, im2col_naive,
                       max_pool2d_backward_naive, max_pool2d_naive)


def assert_close(got, want, tol=1e-10):
    error = rel_error(got, want)
    assert error < tol, f"relative error {error:.1e} >= {tol:.0e}"


def autograd(torch, rng, fn, arrays):
    """torch's ``fn(*arrays)``, a random dy, and the gradients of <fn(arrays), dy>."""
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    ty = fn(*tensors)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    return ty.detach().numpy(), dy, [t.grad.numpy() for t in tensors]


def pair_id(letter, value):
    return letter + (str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}")


# --- im2col, col2im, conv2d -----------------------------------------------------------------

HW = (5, 6)                                         # odd and even
WINDOWS = [(k, (s, s), (p, p), (d, d), n)
           for k in ((1, 1), (2, 2), (3, 3), (2, 3), (3, 1)) for s in (1, 2, 3)
           for p in (0, 1, 2) for d in (1, 2) for n in (1, 2)]
WINDOWS += [((3, 2), (1, 2), (2, 0), (2, 1), 2), ((2, 3), (3, 1), (0, 2), (1, 2), 1)]
windows = pytest.mark.parametrize(
    "kernel, stride, padding, dilation, n", WINDOWS,
    ids=["-".join(pair_id(c, v) for c, v in zip("kspd", case[:4])) + f"-n{case[4]}"
         for case in WINDOWS])


@windows
def test_im2col_col2im_match_naive_and_are_adjoint(xp, rng, kernel, stride, padding,
                                                   dilation, n):
    x = rng.standard_normal((n, 2) + HW)
    geometry = (kernel, stride, padding, dilation)
    col = im2col(xp.asarray(x), *geometry)
    np.testing.assert_array_equal(asnumpy(col), im2col_naive(x, *geometry))   # copies: exact
    c = rng.standard_normal(col.shape)
    folded = col2im(xp.asarray(c), x.shape, *geometry)
    assert folded.flags.c_contiguous
    assert_close(folded, col2im_naive(c, x.shape, *geometry))
    z = rng.standard_normal(x.shape)                 # <im2col(z), c> == <z, col2im(c)>
    lhs = np.vdot(asnumpy(im2col(xp.asarray(z), *geometry)), c)
    assert abs(lhs - np.vdot(z, asnumpy(folded))) <= 1e-10 * max(abs(lhs), 1.0)


def check_conv2d(xp, torch, rng, kernel, stride, padding, dilation, n):
    x, w, b = (rng.standard_normal(s) for s in ((n, 2) + HW, (3, 2) + kernel, (3,)))
    geometry = (stride, padding, dilation)
    want_y, dy, want_grads = autograd(
        torch, rng, lambda *t: torch.nn.functional.conv2d(*t, *geometry), (x, w, b))
    y = conv.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), *geometry)
    assert y.flags.c_contiguous
    assert_close(y, conv2d_naive(x, w, b, *geometry))
    assert_close(y, want_y)
    grads = conv.conv2d_backward(xp.asarray(dy), xp.asarray(x), xp.asarray(w), True, *geometry)
    for got, want in zip(grads, want_grads):        # dx, dweight, dbias
        assert_close(got, want)


@windows
def test_conv2d_matches_naive_and_torch(xp, torch, rng, kernel, stride, padding, dilation, n):
    check_conv2d(xp, torch, rng, kernel, stride, padding, dilation, n)


GROUPED = {  # id: (C, F, groups, kernel, stride, padding, dilation)
    "g2": (4, 6, 2, (3, 3), (1, 1), (1, 1), (1, 1)),
    "depthwise-s2": (3, 3, 3, (3, 3), (2, 2), (1, 1), (1, 1)),
    "depthwise-x2-d2": (2, 4, 2, (3, 2), (1, 2), (2, 0), (2, 1)),
}


@pytest.mark.parametrize("case", GROUPED.values(), ids=GROUPED.keys())
def test_grouped_conv2d_matches_naive_and_torch(xp, torch, rng, case):
    C, F, groups, kernel, *geometry = case
    x, w, b = (rng.standard_normal(s) for s in ((2, C) + HW, (F, C // groups) + kernel, (F,)))
    want_y, dy, want_grads = autograd(
        torch, rng, lambda *t: torch.nn.functional.conv2d(*t, *geometry, groups), (x, w, b))
    y = conv.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), *geometry)
    assert_close(y, conv2d_naive(x, w, b, *geometry, groups=groups))
    assert_close(y, want_y)
    grads = conv.conv2d_backward(xp.asarray(dy), xp.asarray(x), xp.asarray(w), True, *geometry)
    for got, want in zip(grads, want_grads):        # dx, dweight, dbias
        assert_close(got, want)


# --- conv_transpose2d -----------------------------------------------------------------------

TRANSPOSED = [(k, (s, s), (p, p), (op, op), (d, d))
              for k in ((1, 1), (2, 2), (3, 3), (2, 3), (4, 4)) for s in (1, 2, 3)
              for p in (0, 1) for d in (1, 2) for op in sorted({0, max(s, d) - 1})]
TRANSPOSED += [((2, 3), (2, 1), (1, 0), (1, 1), (1, 2))]   # output_padding >= stride along W


@pytest.mark.parametrize(
    "kernel, stride, padding, output_padding, dilation", TRANSPOSED,
    ids=["-".join(pair_id(c, v) for c, v in zip(("k", "s", "p", "op", "d"), case))
         for case in TRANSPOSED])
def test_conv_transpose2d_matches_naive_and_torch(xp, torch, rng, kernel, stride, padding,
                                                   output_padding, dilation):
    x, w, b = (rng.standard_normal(s) for s in ((2, 3, 4, 5), (3, 2) + kernel, (2,)))
    geometry = (stride, padding, output_padding, dilation)
    want_y, dy, want_grads = autograd(
        torch, rng, lambda x, w, b: torch.nn.functional.conv_transpose2d(
            x, w, b, stride, padding, output_padding, dilation=dilation), (x, w, b))
    y = conv.conv_transpose2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), *geometry)
    assert y.flags.c_contiguous
    assert_close(y, conv_transpose2d_naive(x, w, b, *geometry))
    assert_close(y, want_y)
    grads = conv.conv_transpose2d_backward(xp.asarray(dy), xp.asarray(x), xp.asarray(w), True,
                                           *geometry)
    assert grads[0].flags.c_contiguous
    for got, want in zip(grads, want_grads):        # dx, dweight, dbias
        assert_close(got, want)


# --- max_pool2d -----------------------------------------------------------------------------

POOLS = [((k, k), (s, s), (p, p), ceil, n, hw)
         for k in (1, 2, 3) for s in (k, 1, 2, 3) for p in range(k // 2 + 1)
         for ceil in (False, True) for n, hw in ((1, (7, 8)), (2, (6, 5)))]
POOLS += [((3, 2), (2, 1), (1, 1), True, 2, (7, 8))]


def pool_input(rng, shape, kind):
    """distinct values, integer-valued ties, NaNs (two side by side), or a -inf corner."""
    if kind == "ties":
        return rng.integers(-1, 2, shape).astype(np.float64)
    x = rng.standard_normal(shape)
    if kind == "nan":
        x[0, 0, 1, 1:3] = x[-1, -1, -1, -1] = np.nan
    if kind == "-inf":
        x[..., :3, :3] = -np.inf                     # windows with nothing above -inf
    return x


def flat_winners(argmax, x_shape, kernel, stride, padding):
    """argmax's window offsets ``i*KW + j`` as torch's flat input indices ``h*W + w``."""
    i, j = np.divmod(argmax.astype(np.int64), kernel[1])
    h = np.arange(argmax.shape[2])[:, None] * stride[0] - padding[0] + i
    w = np.arange(argmax.shape[3])[None, :] * stride[1] - padding[1] + j
    return h * x_shape[3] + w


@pytest.mark.parametrize("kind", ["distinct", "ties", "nan", "-inf"])
@pytest.mark.parametrize(
    "kernel, stride, padding, ceil, n, hw", POOLS,
    ids=["-".join(pair_id(c, v) for c, v in zip("ksp", case[:3]))
         + f"-{'ceil' if case[3] else 'floor'}-n{case[4]}" for case in POOLS])
def test_max_pool2d_matches_naive_and_torch(xp, torch, rng, kernel, stride, padding, ceil, n,
                                            hw, kind):
    x = pool_input(rng, (n, 3) + hw, kind)
    out = tuple(max_pool2d_output_size(hw[a], kernel[a], stride[a], padding[a], ceil)
                for a in range(2))
    y, argmax = pool.max_pool2d_forward(xp.asarray(x), kernel, stride, padding, out)
    y, argmax = asnumpy(y), asnumpy(argmax)
    assert argmax.dtype == pool.index_dtype(kernel)
    want_y, winners = max_pool2d_naive(x, kernel, stride, padding, ceil)
    np.testing.assert_array_equal(y, want_y)        # a maximum is exact; NaN == NaN here
    np.testing.assert_array_equal(flat_winners(argmax, x.shape, kernel, stride, padding), winners)
    ty, indices = torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride, padding,
                                                 ceil_mode=ceil, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(winners, indices.numpy())
    tx = torch.tensor(x, requires_grad=True)
    dy = rng.standard_normal(y.shape)
    torch.nn.functional.max_pool2d(tx, kernel, stride, padding, ceil_mode=ceil).backward(
        torch.from_numpy(dy))
    dx = pool.max_pool2d_backward(xp.asarray(dy), xp.asarray(argmax), x.shape, kernel, stride,
                                  padding)
    assert dx.flags.c_contiguous
    assert_close(dx, max_pool2d_backward_naive(dy, winners, x.shape))
    assert_close(dx, tx.grad.numpy())


# --- upsample_bilinear2d --------------------------------------------------------------------

RESIZES = [((5, 6), (9, 13), None), ((5, 6), (3, 4), None), ((5, 6), (5, 12), None),
           ((4, 4), (1, 1), None), ((5, 6), None, (2.0, 2.0)), ((5, 6), None, (1.5, 0.5)),
           ((3, 7), None, (1.2, 3.0))]


@pytest.mark.parametrize("align_corners", [False, True], ids=["centres", "corners"])
@pytest.mark.parametrize("hw, size, scales", RESIZES, ids=[
    f"{h}x{w}-" + (f"size{s[0]}x{s[1]}" if s else f"scale{f[0]}x{f[1]}")
    for (h, w), s, f in RESIZES])
def test_upsample_bilinear2d_matches_torch(xp, torch, rng, hw, size, scales, align_corners):
    x = rng.standard_normal((2, 3) + hw)
    out = size or tuple(math.floor(hw[a] * scales[a]) for a in range(2))
    want_y, dy, (want_dx,) = autograd(torch, rng, lambda t: torch.nn.functional.interpolate(
        t, size=size, scale_factor=scales, mode="bilinear", align_corners=align_corners), (x,))
    y, a_h, a_w = upsample.upsample_bilinear2d_forward(xp.asarray(x), out, align_corners,
                                                       scales or (None, None))
    assert_close(y, want_y)
    assert_close(upsample.upsample_bilinear2d_backward(xp.asarray(dy), a_h, a_w), want_dx)


# --- softmax cross-entropy ------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 4)], ids=["NxC", "NxCxHxW"])
def test_cross_entropy_matches_torch(xp, torch, rng, shape, weighted, reduction):
    N, C = shape[:2]
    logits, t_shape = 3 * rng.standard_normal(shape), shape[:1] + shape[2:]
    target = rng.integers(0, C, t_shape)
    target[rng.random(t_shape) < 0.3] = 255                                 # ignored
    weight = rng.random(C) + 0.5 if weighted else None
    g = rng.standard_normal(t_shape) if reduction == "none" else np.asarray(0.7)
    tx = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(
        tx, torch.from_numpy(target), None if weight is None else torch.from_numpy(weight),
        ignore_index=255, reduction=reduction)
    want.backward(torch.from_numpy(g))
    got, prob, labels, scale = loss.softmax_cross_entropy_forward(
        xp.asarray(logits), xp.asarray(target.astype(np.uint8)),
        None if weight is None else xp.asarray(weight), 255, reduction)
    assert got.shape == tuple(want.shape)
    assert_close(got, want.detach().numpy())
    g = xp.asarray(g.reshape(N, -1) if reduction == "none" else g)
    assert_close(loss.softmax_cross_entropy_backward(g, prob, labels, scale, shape),
                 tx.grad.numpy())


def test_all_ignored_mean_is_zero_and_ignored_nan_logits_add_nothing(xp, rng):
    logits = xp.asarray(rng.standard_normal((2, 4, 3, 3)))
    target = xp.full((2, 3, 3), 255)
    got, prob, labels, scale = loss.softmax_cross_entropy_forward(logits, target, None, 255,
                                                                  "mean")
    assert float(got) == 0.0
    dlogits = loss.softmax_cross_entropy_backward(xp.asarray(1.0), prob, labels, scale,
                                                  logits.shape)
    assert not asnumpy(dlogits).any()
    logits[0, :, 0, 0] = np.nan                       # an ignored pixel's logits are NaN
    target[1] = 0
    per_pixel = loss.softmax_cross_entropy_forward(logits, target, None, 255, "none")[0]
    assert float(per_pixel[0, 0, 0]) == 0.0 and np.isfinite(asnumpy(per_pixel)).all()


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax_match_torch(xp, torch, rng, axis):
    x = 30 * rng.standard_normal((3, 4, 5))
    assert_close(loss.softmax(xp.asarray(x), axis), torch.softmax(torch.from_numpy(x), axis))
    assert_close(loss.log_softmax(xp.asarray(x), axis),
                 torch.log_softmax(torch.from_numpy(x), axis))


# --- relu, dropout, crop --------------------------------------------------------------------

def test_relu_dropout_and_crop_match_numpy(xp, rng):
    x, dy = rng.standard_normal((2, 3, 7, 8)), rng.standard_normal((2, 3, 7, 8))
    x[0, 0, 0, :2] = [0.0, np.nan]
    y, mask = activation.relu_forward(xp.asarray(x))
    np.testing.assert_array_equal(asnumpy(y), np.maximum(x, 0))            # NaN stays NaN
    np.testing.assert_array_equal(asnumpy(mask), x > 0)
    np.testing.assert_array_equal(asnumpy(activation.relu_backward(xp.asarray(dy), mask)),
                                  dy * (x > 0))
    keep, scale = rng.random(x.shape) >= 0.3, 1 / 0.7
    for fn, a in ((activation.dropout_forward, x), (activation.dropout_backward, dy)):
        np.testing.assert_array_equal(asnumpy(fn(xp.asarray(a), xp.asarray(keep), scale)),
                                      a * keep * scale)
    y = crop.crop_forward(xp.asarray(x), (1, 2), (4, 5))
    np.testing.assert_array_equal(asnumpy(y), x[:, :, 1:5, 2:7])
    dx = np.zeros_like(x)
    dx[:, :, 1:5, 2:7] = dy[:, :, :4, :5]
    np.testing.assert_array_equal(
        asnumpy(crop.crop_backward(xp.asarray(dy[:, :, :4, :5]), x.shape, (1, 2), (4, 5))), dx)
    whole = crop.crop_forward(xp.asarray(x), (0, 0), (7, 8))
    assert whole.flags.c_contiguous and not np.shares_memory(asnumpy(whole), x)


# --- float32 in, float32 out ----------------------------------------------------------------

ONE = ((1, 1), (1, 1), (1, 1))                       # stride, padding, dilation


def float32_outputs(op, xp, x, w, b):
    """Every float array an op's forward and backward return, for x (2, 3, 6, 6)."""
    if op == "im2col":
        col = im2col(x, (3, 3), *ONE)
        return [col, col2im(col, x.shape, (3, 3), *ONE)]
    if op == "conv2d":
        y = conv.conv2d_forward(x, w, b, *ONE)
        return [y, *conv.conv2d_backward(y, x, w, True, *ONE)]
    if op == "conv_transpose2d":
        geometry = ((2, 2), (1, 1), (1, 1), (1, 1))
        y = conv.conv_transpose2d_forward(x, w, b, *geometry)
        return [y, *conv.conv_transpose2d_backward(y, x, w, True, *geometry)]
    if op == "max_pool2d":
        y, argmax = pool.max_pool2d_forward(x, (2, 2), (2, 2), (1, 1), (4, 4))
        return [y, pool.max_pool2d_backward(y, argmax, x.shape, (2, 2), (2, 2), (1, 1))]
    if op == "upsample":
        y, a_h, a_w = upsample.upsample_bilinear2d_forward(x, (9, 12), False, (None, None))
        return [y, a_h, a_w, upsample.upsample_bilinear2d_backward(y, a_h, a_w)]
    if op == "cross_entropy":
        target = xp.zeros((2, 6, 6), dtype=np.int64)
        got, prob, labels, scale = loss.softmax_cross_entropy_forward(x, target, b, 255, "mean")
        return [got, prob, scale,
                loss.softmax_cross_entropy_backward(got, prob, labels, scale, x.shape),
                loss.softmax(x, 1), loss.log_softmax(x, 1)]
    if op == "relu":
        y, mask = activation.relu_forward(x)
        return [y, activation.relu_backward(y, mask)]
    if op == "dropout":
        return [activation.dropout_forward(x, x > 0, 1 / 0.7),
                activation.dropout_backward(x, x > 0, 1 / 0.7)]
    y = crop.crop_forward(x, (1, 1), (4, 4))
    return [y, crop.crop_backward(y, x.shape, (1, 1), (4, 4))]


@pytest.mark.parametrize("op", ["im2col", "conv2d", "conv_transpose2d", "max_pool2d",
                                "upsample", "cross_entropy", "relu", "dropout", "crop"])
def test_float32_stays_float32(xp, rng, op):
    x, w, b = (xp.asarray(rng.standard_normal(s), dtype=np.float32)
               for s in ((2, 3, 6, 6), (3, 3, 3, 3), (3,)))
    dtypes = [str(a.dtype) for a in float32_outputs(op, xp, x, w, b)]
    assert dtypes == ["float32"] * len(dtypes)


# --- the checks can fail --------------------------------------------------------------------

def col2im_without_last_offset(col, x_shape, kernel, stride, padding, dilation):
    """A planted mistake: col2im that forgets the last kernel offset (i, j) = (KH-1, KW-1)."""
    col = col.reshape(x_shape[1], kernel[0] * kernel[1], -1).copy()       # (C, KH*KW, N*OH*OW)
    col[:, -1] = 0
    return col2im(col.reshape(-1, col.shape[-1]), x_shape, kernel, stride, padding, dilation)


def test_a_planted_mistake_is_caught(xp, torch, rng, monkeypatch):
    case = ((3, 3), (1, 1), (1, 1), (1, 1), 2)
    check_conv2d(xp, torch, rng, *case)
    monkeypatch.setattr(conv, "col2im", col2im_without_last_offset)
    with pytest.raises(AssertionError, match="relative error"):
        check_conv2d(xp, torch, rng, *case)
