"""The parity harness: every registered fast path against the reference, on one grid.

For each piece an op dispatches ("conv2d.forward", "max_pool2d.backward", ...) the grid below
holds geometries on both sides of every fast path's rule (kernel, stride, padding, dilation,
odd and even sizes, batch sizes, channel counts around Winograd's 128 and the correlation's
F*W <= C*OW, ties and NaNs for the pools), in float32 and float64, with and without a tight
workspace limit. Every fast path whose ``applies(call)`` holds for a case is run beside the
reference and must agree: float64 to 1e-10 relative, float32 to the path's registered
tolerance. A new fast path is covered by registering it (``minifcn/ops/fast/__init__.py``);
:func:`test_every_fast_path_is_exercised` fails until the grid reaches it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pytest

from minifcn import memory
from minifcn.backend import asnumpy
from minifcn.ops import dispatch
from minifcn.ops.reference import conv as ref_conv, im2col as ref_im2col, pool as ref_pool

from helpers import rel_error

FLOAT64_TOLERANCE = 1e-10
TIGHT = 32 * 1024              # a workspace limit that makes the small cases work in chunks


class Case(NamedTuple):
    piece: str
    name: str
    make: Callable             # (rng, dtype, xp) -> (call, args)
    small: bool = True         # one output row fits TIGHT: also run under it


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def _device(xp):
    return "cpu" if xp is np else "cuda"


def _normal(rng, xp, shape, dtype):
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


# --- conv2d: forward, input gradient, weight gradient ---------------------------------------

CONV = {  # name: (N, C, F, (H, W), kernel, stride, padding, dilation)
    "k3-s1-p1": (2, 4, 2, (9, 8), 3, 1, 1, 1),
    "k3-s1-p1-F>C": (2, 2, 6, (9, 8), 3, 1, 1, 1),
    "k3-s1-p0-d2": (1, 3, 3, (11, 10), 3, 1, 0, 2),
    "k3-s1-p3": (2, 3, 3, (7, 8), 3, 1, 3, 1),
    "k(3,2)-s(2,1)-p(1,0)": (2, 3, 4, (10, 9), (3, 2), (2, 1), (1, 0), 1),
    "k1-s1-p0": (2, 5, 3, (6, 7), 1, 1, 0, 1),
    "k1-s2-p1": (2, 3, 2, (7, 6), 1, 2, 1, 1),
    "k5-s3-p2": (1, 2, 3, (13, 11), 5, 3, 2, 1),
    "k2-s2-p0": (2, 3, 2, (8, 8), 2, 2, 0, 1),
    "k(3,5)-s1-p(0,4)-d(1,2)": (1, 3, 3, (9, 12), (3, 5), 1, (0, 4), (1, 2)),
    "k3-s1-p10-border": (2, 3, 4, (6, 5), 3, 1, 10, 1),
    "k3-s2-p(7,9)-d2-border": (1, 2, 3, (5, 7), 3, 2, (7, 9), 2),
    "k1-s1-p6-border": (1, 3, 2, (4, 4), 1, 1, 6, 1),
    "winograd-C128-p1": (1, 128, 8, (10, 9), 3, 1, 1, 1),
    "winograd-C128-p2-N2": (2, 128, 4, (7, 6), 3, 1, 2, 1),
    "winograd-C127": (1, 127, 4, (8, 8), 3, 1, 1, 1),
    "winograd-C128-s2": (1, 128, 4, (8, 8), 3, 2, 1, 1),
    # grouped (the last field, G): only the grouped path takes them (another path would read
    # the wrong channels). Tight: groups2-k3 runs a group a block, depthwise-C16 blocks of 8;
    # the single group of the *-one-*-tight cases is over the limit (each group by gemm).
    "groups2-k3-s1-p1": (2, 4, 6, (9, 8), 3, 1, 1, 1, 2),
    "groups2-C256-winograd-shape": (1, 256, 4, (6, 6), 3, 1, 1, 1, 2),
    "groups4-k3-s2-p2-d2": (2, 8, 12, (11, 10), 3, 2, 2, 2, 4),
    "groups2-k(2,3)-s(1,3)-p(1,0)": (1, 6, 4, (7, 11), (2, 3), (1, 3), (1, 0), 1, 2),
    "groups2-one-group-tight": (2, 8, 4, (16, 15), 3, 1, 1, 1, 2),
    "depthwise-k3-s1-p10-border": (1, 3, 3, (6, 5), 3, 1, 10, 1, 3),
    "depthwise-C16-k3-s1-p1": (2, 16, 16, (12, 11), 3, 1, 1, 1, 16),
    "depthwise-M2-k3-s(2,1)-p2-d2": (2, 3, 6, (11, 9), 3, (2, 1), 2, 2, 3),
    "depthwise-k(3,5)-s(3,2)-p(0,3)-d(2,1)": (1, 4, 4, (13, 12), (3, 5), (3, 2), (0, 3),
                                              (2, 1), 4),
    "depthwise-M3-k1-s1-p0": (2, 2, 6, (5, 6), 1, 1, 0, 1, 2),
    "depthwise-one-plane-tight": (1, 2, 2, (56, 56), 3, 1, 1, 1, 2),
}


def _conv_problem(name, rng, dtype, xp):
    N, C, F, (H, W), kernel, stride, padding, dilation, *groups = CONV[name]
    groups = groups[0] if groups else 1
    kernel, stride, padding, dilation = map(_pair, (kernel, stride, padding, dilation))
    x = _normal(rng, xp, (N, C, H, W), dtype)
    w = _normal(rng, xp, (F, C // groups) + kernel, dtype)
    b = _normal(rng, xp, (F,), dtype)
    y = ref_conv.conv2d_forward(x, w, None, stride, padding, dilation)
    dy = _normal(rng, xp, y.shape, dtype)
    call = dispatch.Call(_device(xp), np.dtype(dtype), x.shape, w.shape, kernel, stride,
                         padding, dilation, y.shape[2:], groups=groups)
    return call, x, w, b, dy, (stride, padding, dilation)


def _conv_case(piece, name):
    def make(rng, dtype, xp):
        call, x, w, b, dy, geometry = _conv_problem(name, rng, dtype, xp)
        args = {"conv2d.forward": (x, w, b) + geometry,
                "conv2d.input_grad": (dy, w, x.shape) + geometry,
                "conv2d.weight_grad": (dy, x, w.shape) + geometry}[piece]
        return call, args
    return Case(piece, name, make, small=CONV[name][1] < 100)


# --- conv_transpose2d: forward and backward -------------------------------------------------

TRANSPOSE = {  # name: (N, C_in, C_out, (H, W), kernel, stride, padding, output_padding, dilation)
    "k4-s2-p1": (2, 3, 2, (5, 4), 4, 2, 1, 0, 1),
    "k16-s8-p4": (1, 2, 2, (3, 3), 16, 8, 4, 0, 1),
    "k3-s2-p1-op1": (2, 2, 3, (4, 5), 3, 2, 1, 1, 1),
    "k3-s1-p1": (2, 3, 2, (6, 5), 3, 1, 1, 0, 1),
    "k2-s3-p0": (1, 2, 2, (4, 4), 2, 3, 0, 0, 1),
    "k3-s2-p1-op1-d2": (1, 2, 3, (4, 4), 3, 2, 1, 1, 2),
    "k3-s1-p0-op1-d2": (1, 2, 2, (4, 5), 3, 1, 0, 1, 2),
    "k(4,3)-s(2,1)-p(1,0)": (2, 2, 3, (4, 5), (4, 3), (2, 1), (1, 0), 0, 1),
}


def _transpose_case(piece, name):
    def make(rng, dtype, xp):
        N, C, F, (H, W), kernel, stride, padding, output_padding, dilation = TRANSPOSE[name]
        options = tuple(map(_pair, (stride, padding, output_padding, dilation)))
        x = _normal(rng, xp, (N, C, H, W), dtype)
        w = _normal(rng, xp, (C, F) + _pair(kernel), dtype)
        b = _normal(rng, xp, (F,), dtype)
        y = ref_conv.conv_transpose2d_forward(x, w, None, *options)
        call = dispatch.Call(_device(xp), np.dtype(dtype), x.shape, w.shape, _pair(kernel),
                             options[0], options[1], options[3], y.shape[2:], options[2])
        if piece.endswith("forward"):
            return call, (x, w, b) + options
        return call, (_normal(rng, xp, y.shape, dtype), x, w, True) + options
    return Case(piece, name, make)


# --- im2col and col2im ------------------------------------------------------------------------

def _window_case(piece, name):
    def make(rng, dtype, xp):
        call, x, w, _, dy, geometry = _conv_problem(name, rng, dtype, xp)
        call = call._replace(w_shape=())
        if piece == "im2col":
            return call, (x, call.kernel) + geometry
        col = ref_im2col.im2col(x, call.kernel, *geometry)
        return call, (_normal(rng, xp, col.shape, dtype), x.shape, call.kernel) + geometry
    return Case(piece, name, make, small=CONV[name][1] < 100)


# --- max_pool2d ---------------------------------------------------------------------------------

POOL = {  # name: ((N, C, H, W), kernel, stride, padding, ceil_mode, values)
    "2x2-s2-even": ((2, 3, 8, 6), 2, 2, 0, False, "ties"),
    "2x2-s2-ceil-odd": ((2, 3, 7, 9), 2, 2, 0, True, "ties"),
    "2x2-s2-floor-odd": ((1, 2, 7, 5), 2, 2, 0, False, "normal"),
    "3x3-s2-p1-ceil": ((2, 2, 8, 7), 3, 2, 1, True, "ties"),
    "3x3-s1-overlap": ((1, 3, 6, 6), 3, 1, 0, False, "ties"),
    "2x3-s(2,3)": ((1, 2, 6, 9), (2, 3), (2, 3), 0, False, "normal"),
    "1x1": ((1, 2, 3, 4), 1, 1, 0, False, "normal"),
    "2x2-s2-nan": ((1, 2, 6, 6), 2, 2, 0, False, "nan"),
    "3x3-s2-p1-nan-inf": ((1, 2, 7, 7), 3, 2, 1, True, "nan"),
}


def _pool_input(rng, xp, shape, dtype, values):
    if values == "normal":
        return _normal(rng, xp, shape, dtype)
    x = rng.integers(-2, 3, size=shape).astype(dtype)        # many ties
    if values == "nan":
        x.reshape(-1)[::7] = np.nan
        x.reshape(-1)[3::11] = -np.inf
    return xp.asarray(x)


def _pool_case(piece, name):
    def make(rng, dtype, xp):
        from minifcn.ops import max_pool2d_output_size
        shape, kernel, stride, padding, ceil_mode, values = POOL[name]
        kernel, stride, padding = map(_pair, (kernel, stride, padding))
        out = tuple(max_pool2d_output_size(shape[2 + a], kernel[a], stride[a], padding[a],
                                           ceil_mode) for a in range(2))
        x = _pool_input(rng, xp, shape, dtype, values)
        call = dispatch.Call(_device(xp), np.dtype(dtype), shape, (), kernel, stride, padding,
                             (1, 1), out)
        if piece.endswith("forward"):
            return call, (x, kernel, stride, padding, out)
        _, argmax = ref_pool.max_pool2d_forward(x, kernel, stride, padding, out)
        dy = _normal(rng, xp, shape[:2] + out, dtype)
        return call, (dy, argmax, shape, kernel, stride, padding)
    return Case(piece, name, make)


# --- relu, crop, softmax cross-entropy ----------------------------------------------------------

def _relu_case(piece):
    def make(rng, dtype, xp):
        x = rng.integers(-2, 3, size=(2, 3, 5, 4)).astype(dtype)    # zeros too
        x.reshape(-1)[::9] = np.nan
        call = dispatch.Call(_device(xp), np.dtype(dtype), x.shape)
        if piece.endswith("forward"):
            return call, (xp.asarray(x),)
        return call, (_normal(rng, xp, x.shape, dtype), xp.asarray(x > 0))
    return Case(piece, "nan-and-zeros", make)


def _crop_case(piece):
    def make(rng, dtype, xp):
        shape, offset, size = (2, 3, 9, 8), (1, 2), (5, 4)
        call = dispatch.Call(_device(xp), np.dtype(dtype), shape)
        if piece.endswith("forward"):
            return call, (_normal(rng, xp, shape, dtype), offset, size)
        return call, (_normal(rng, xp, shape[:2] + size, dtype), shape, offset, size)
    return Case(piece, "offset(1,2)", make)


LOSS = {  # name: (logits shape, weighted, reduction)
    "mean": ((2, 5, 4, 3), False, "mean"), "mean-weighted": ((2, 5, 4, 3), True, "mean"),
    "sum": ((2, 5, 4, 3), False, "sum"), "none-weighted": ((2, 5, 4, 3), True, "none"),
    "NC-mean": ((6, 4), False, "mean"), "all-ignored": ((1, 3, 2, 2), False, "mean"),
}


def _loss_case(piece, name):
    def make(rng, dtype, xp):
        from minifcn.ops.reference import loss as ref_loss
        shape, weighted, reduction = LOSS[name]
        logits = _normal(rng, xp, shape, dtype) * 3
        target = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
        target.reshape(-1)[::4] = 255
        if name == "all-ignored":
            target[...] = 255
        target = xp.asarray(target)
        weight = _normal(rng, xp, (shape[1],), dtype) ** 2 if weighted else None
        call = dispatch.Call(_device(xp), np.dtype(dtype), shape)
        if piece.endswith("forward"):
            return call, (logits, target, weight, 255, reduction)
        _, prob, labels, scale = ref_loss.softmax_cross_entropy_forward(
            logits, target, weight, 255, reduction)
        g = (_normal(rng, xp, labels.shape, dtype) if reduction == "none"
             else xp.asarray(1.5, dtype=dtype))
        return call, (g, prob, labels, scale, shape)
    return Case(piece, name, make)


BATCH_NORM = {  # name: (x shape, training, affine)
    "train-affine": ((2, 3, 5, 4), True, True), "train-plain": ((3, 2, 1, 1), True, False),
    "eval-affine": ((2, 3, 5, 4), False, True), "eval-plain": ((1, 4, 3, 2), False, False),
    # under the tight limit x - mean is made in pieces of 2 and 1 images, or image by image
    "train-pieces": ((3, 2, 20, 40), True, True), "eval-pieces": ((3, 2, 20, 40), False, True),
    "train-images": ((2, 4, 30, 40), True, True),
}


def _batch_norm_case(piece, name):
    def make(rng, dtype, xp):
        from minifcn.ops.reference import norm as ref_norm
        shape, training, affine = BATCH_NORM[name]
        C = shape[1]
        x = _normal(rng, xp, shape, dtype) * 3 + 2                   # far from mean 0, std 1
        stats = (_normal(rng, xp, (C,), dtype), xp.asarray(rng.uniform(0.5, 2, C).astype(dtype)))
        weight, bias = ((_normal(rng, xp, (C,), dtype), _normal(rng, xp, (C,), dtype))
                        if affine else (None, None))
        call = dispatch.Call(_device(xp), np.dtype(dtype), shape)
        if piece.endswith("forward"):     # running statistics: each side updates its own
            return call, (x, *stats, weight, bias, training, 0.1, 1e-5)
        _, mean, rstd = ref_norm.batch_norm2d_forward(x, *stats, weight, bias, training,
                                                      0.1, 1e-5)
        return call, (_normal(rng, xp, shape, dtype), x, mean, rstd, weight, affine, training)
    return Case(piece, name, make)


CASES = (
    [_conv_case(p, n) for p in ("conv2d.forward", "conv2d.input_grad", "conv2d.weight_grad")
     for n in CONV]
    + [_transpose_case(p, n) for p in ("conv_transpose2d.forward", "conv_transpose2d.backward")
       for n in TRANSPOSE]
    + [_window_case(p, n) for p in ("im2col", "col2im") for n in CONV if CONV[n][1] < 100]
    + [_pool_case(p, n) for p in ("max_pool2d.forward", "max_pool2d.backward") for n in POOL]
    + [_relu_case(p) for p in ("relu.forward", "relu.backward")]
    + [_crop_case(p) for p in ("crop.forward", "crop.backward")]
    + [_loss_case(p, n) for p in ("softmax_cross_entropy.forward",
                                  "softmax_cross_entropy.backward") for n in LOSS]
    + [_batch_norm_case(p, n) for p in ("batch_norm2d.forward", "batch_norm2d.backward")
       for n in BATCH_NORM]
)
RUNS = [pytest.param(case, dtype, limit, id=f"{case.piece}-{case.name}-{dtype.__name__}"
                     + ("-tight" if limit else ""))
        for case in CASES for dtype in (np.float64, np.float32)
        for limit in ((None, TIGHT) if case.small else (None,))]


# --- The check ----------------------------------------------------------------------------------

def _assert_same(got, want, tolerance, what):
    """Arrays agree: integers and booleans exactly, floats to ``tolerance`` relative with
    NaN where the reference has NaN; tuples element by element; None only with None."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), f"{what}: {got!r}"
        for k, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, tolerance, f"{what}[{k}]")
        return
    if want is None:
        assert got is None, f"{what}: expected None"
        return
    got, want = np.asarray(asnumpy(got)), np.asarray(asnumpy(want))
    assert got.shape == want.shape and got.dtype == want.dtype, \
        f"{what}: {got.shape} {got.dtype} against the reference's {want.shape} {want.dtype}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaNs")
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=f"{what}: infinities")
    error = rel_error(np.where(finite, got, 0), np.where(finite, want, 0))
    assert error <= tolerance, f"{what}: relative error {error:.2e} above {tolerance:.0e}"


def check_piece(case: Case, dtype, limit, xp, seed=20261206):
    """Run every fast path of ``case.piece`` that applies beside the reference; return the
    names of those that ran."""
    call, args = case.make(np.random.default_rng(seed), dtype, xp)
    want = dispatch.reference_of(case.piece)(*args)
    ran = []
    with memory.limited(limit):
        for path in dispatch.paths(case.piece):
            if not path.applies(call):
                continue
            got = path.run(*args)
            tolerance = FLOAT64_TOLERANCE if dtype == np.float64 else path.float32_tolerance
            _assert_same(got, want, tolerance, f"{case.piece} by {path.name} ({case.name})")
            ran.append(path.name)
    return ran


_RAN: dict[str, set] = {}


@pytest.mark.parametrize("case, dtype, limit", RUNS)
def test_fast_path_equals_reference(xp, case, dtype, limit):
    ran = check_piece(case, dtype, limit, xp)
    _RAN.setdefault(case.piece, set()).update(ran)


def test_every_fast_path_is_exercised():
    """Every registered NumPy fast path applied to at least one case of the grid (CuPy's run
    where a GPU is; they are listed here once it has)."""
    for case in CASES:
        for dtype in (np.float64, np.float32):
            _RAN.setdefault(case.piece, set()).update(check_piece(case, dtype, None, np))
    missing = [f"{p.piece}: {p.name}" for p in dispatch.paths()
               if p.name not in _RAN.get(p.piece, set()) and p.name != "cuda"]
    assert not missing, f"fast paths the grid never reaches: {missing}"


def test_a_wrong_fast_path_is_caught(monkeypatch):
    """A planted fast path, off by one part in a million at one pixel, fails the harness."""
    reference = dispatch.reference_of("conv2d.forward")

    def wrong(*args):
        y = reference(*args)
        y[0, 0, 0, 0] *= 1 + 1e-6
        return y

    planted = dispatch.Path("conv2d.forward", "planted", "always", lambda call: True, wrong,
                            1e-5)
    monkeypatch.setitem(dispatch._paths, "conv2d.forward",
                        [planted] + dispatch.paths("conv2d.forward"))
    case = next(c for c in CASES if c.piece == "conv2d.forward")
    with pytest.raises(AssertionError, match="conv2d.forward by planted"):
        check_piece(case, np.float64, None, np)
    assert check_piece(case, np.float32, None, np)[0] == "planted"    # within float32's 1e-5


def test_a_path_that_claims_too_much_is_caught(monkeypatch):
    """A fast path whose rule is too broad (Winograd claiming a stride-2 convolution) fails
    on the grid's cases outside its true domain."""
    from minifcn.ops.fast import winograd
    planted = next(p for p in dispatch.paths("conv2d.forward") if p.name == "winograd")
    planted = planted._replace(applies=lambda call: True)
    assert planted.run is winograd.forward
    monkeypatch.setitem(dispatch._paths, "conv2d.forward", [planted])
    case = next(c for c in CASES if c.piece == "conv2d.forward" and c.name == "k1-s2-p1")
    with pytest.raises((AssertionError, ValueError)):
        check_piece(case, np.float32, None, np)
