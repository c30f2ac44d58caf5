"""Property-based parity with PyTorch for max_pool2d, bilinear upsampling, softmax
cross-entropy, relu and crop: hypothesis draws shapes and options, and each example is checked
forward and backward (torch.autograd with a random dy) in float64 to 1e-10 relative.

Rejection parity, both ways: a second property per op draws from a wider range, invalid
options included. Where PyTorch raises, minifcn must raise a ValueError naming the offending
argument; where PyTorch accepts, minifcn must accept and agree. Where minifcn deliberately
differs from PyTorch, the property skips that region and says why.

The example count per property comes from the hypothesis profile (tests/conftest.py):
``pytest --hypothesis-profile=thorough tests/test_parity_properties.py`` runs 20 times more.
"""
import math
import re

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from minifcn.backend import asnumpy
from minifcn.ops import (crop_backward, crop_forward, max_pool2d_backward, max_pool2d_forward,
                         relu_backward, relu_forward, softmax_cross_entropy_backward,
                         softmax_cross_entropy_forward, upsample_bilinear2d_backward,
                         upsample_bilinear2d_forward)

from helpers import rel_error

TOL = 1e-10
TORCH_ERRORS = (RuntimeError, ValueError, IndexError)
seeds = st.integers(0, 2 ** 32 - 1)


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def _int_or_pair(lo, hi):
    """An int, or a pair of ints (equal or not), each in [lo, hi]."""
    return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))


def assert_close(name, got, want, floor=0.0):
    """Same shape and dtype float64; equal NaN/inf where ``want`` has them, and relative
    error (:func:`helpers.rel_error`) below TOL on the finite rest. ``floor``: the size of
    the terms that cancel into ``want``, when that is larger than ``want`` itself."""
    got, want = asnumpy(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == np.float64, (name, got.shape, got.dtype)
    special = ~np.isfinite(want)
    np.testing.assert_array_equal(got[special], want[special], err_msg=name)
    got, want = np.where(special, 0.0, got), np.where(special, 0.0, want)
    scale = np.abs(want).max(initial=0.0) or 1.0
    err = rel_error(got, want) * scale / max(scale, floor)
    assert err < TOL, f"{name}: relative error {err:.2e}"


def expect_rejection(call, culprits, torch_error):
    """The reference refused (``torch_error``, None for the crop rule): ``call`` must raise
    a ValueError naming one of ``culprits`` as a word (``size`` is not ``kernel_size``)."""
    event("rejected")
    assert culprits, f"torch rejected options the test takes as valid: {torch_error!r}"
    names = "|".join(rf"(?<![\w.]){re.escape(name)}(?!\w)" for name in sorted(culprits))
    with pytest.raises(ValueError, match=names):
        call()


def parity(torch, xp, x, torch_forward, forward, backward, rng, culprits):
    """Run ``torch_forward(tx)``; where torch raises, expect minifcn to reject naming a
    culprit; else compare ``forward(x)`` and ``backward(dy, cache)`` with torch's y and
    autograd dx for a random dy."""
    tx = torch.tensor(x, requires_grad=True)
    try:
        ty = torch_forward(tx)
    except TORCH_ERRORS as err:
        expect_rejection(lambda: forward(xp.asarray(x)), culprits, err)
        return
    event("accepted")
    y, cache = forward(xp.asarray(x))
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    assert_close("y", y, ty.detach().numpy())
    assert_close("dx", backward(xp.asarray(dy), cache), tx.grad.numpy())


# --- max_pool2d --------------------------------------------------------------------------------
# minifcn's max_pool2d has no dilation argument (FCN never dilates a pool), so every example
# uses PyTorch's default dilation=1; neither does it return indices (return_indices).

def _near_edge(edge):
    """A side length in 1..20, often where the kernel only just fits (edge), sometimes one
    less (ceil mode can still fit a window there: PyTorch accepts it)."""
    return st.one_of(st.just(edge), st.integers(max(1, edge - 1), edge + 1),
                     st.integers(edge, 20))


@st.composite
def pool_cases(draw):
    """Options PyTorch accepts (padding <= kernel/2) and inputs around the kernel's size."""
    kernel = draw(_int_or_pair(1, 5))
    k = _pair(kernel)
    padding = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    padding = padding[0] if padding[0] == padding[1] and draw(st.booleans()) else padding
    p = _pair(padding)
    hw = tuple(draw(_near_edge(max(1, ki - 2 * pi))) for ki, pi in zip(k, p))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5))) + hw
    stride = draw(st.one_of(st.none(), _int_or_pair(1, 4)))
    return shape, (kernel, stride, padding, draw(st.booleans()))


@st.composite
def wide_pool_cases(draw):
    """A valid case with some arguments replaced by values from a wider range, invalid ones
    included: non-positive kernel or stride, negative padding or padding just over half the
    kernel, a kernel just larger than the padded input, zero batch (valid), channels, rows
    or columns."""
    shape, (kernel, stride, padding, ceil_mode) = draw(pool_cases())
    k, p = _pair(kernel), _pair(padding)
    wider = {
        "kernel_size": st.one_of(_int_or_pair(-1, 0), _int_or_pair(1, 9), st.just(
            tuple(n + 2 * pi + 1 for n, pi in zip(shape[2:], p)))),
        "stride": _int_or_pair(-1, 5),
        "padding": st.one_of(_int_or_pair(-1, 5), st.just(tuple(ki // 2 + 1 for ki in k))),
    }
    options = {"kernel_size": kernel, "stride": stride, "padding": padding}
    for name in draw(st.sets(st.sampled_from(sorted(wider) + ["x"]), max_size=2)):
        if name == "x":
            axis = draw(st.integers(0, 3))
            shape = tuple(0 if i == axis else n for i, n in enumerate(shape))
        else:
            options[name] = draw(wider[name])
    return shape, (options["kernel_size"], options["stride"], options["padding"], ceil_mode)


def pool_culprits(shape, kernel, stride, padding):
    """The arguments a rejection may name: those out of range, else (the output is empty)
    kernel_size, too large for the padded input."""
    k, p = _pair(kernel), _pair(padding)
    names = set()
    if min(k) < 1:
        names.add("kernel_size")
    if stride is not None and min(_pair(stride)) < 1:
        names.add("stride")
    if min(p) < 0 or any(pi > ki // 2 for ki, pi in zip(k, p)):
        names.add("padding")
    if min(shape[1:]) < 1:             # PyTorch accepts an empty batch, not empty C, H or W
        names.add("x")
    return names or {"kernel_size"}


def tie_free(rng, shape):
    """Distinct values in random order: one maximum per window, a well-defined gradient."""
    return rng.permutation(np.linspace(-1.0, 1.0, math.prod(shape))).reshape(shape)


def pool_parity(torch, xp, x, options, rng):
    kernel, stride, padding, ceil_mode = options
    parity(torch, xp, x,
           lambda tx: torch.nn.functional.max_pool2d(tx, kernel, stride, padding,
                                                     ceil_mode=ceil_mode),
           lambda ax: max_pool2d_forward(ax, *options), max_pool2d_backward, rng,
           pool_culprits(x.shape, kernel, stride, padding))


@given(case=pool_cases(), seed=seeds)
# Found by this property: an offset that no output reads inside x (here column 0 of the
# kernel, for the output whose window starts in the left padding) gave a slice whose stop
# wrapped around, and the backward failed with a NumPy broadcast error.
@example(case=((1, 1, 5, 2), (5, 2, (0, 2), False)), seed=0)
def test_max_pool2d_matches_torch(xp, torch, case, seed):
    shape, options = case
    rng = np.random.default_rng(seed)
    pool_parity(torch, xp, tie_free(rng, shape), options, rng)


@given(case=pool_cases(), seed=seeds, nan=st.booleans(), minus_inf=st.booleans())
@example(case=((2, 3, 6, 6), (2, None, 0, False)), seed=0, nan=False, minus_inf=False)  # tiles
def test_max_pool2d_ties_inf_nan_match_torch(xp, torch, case, seed, nan, minus_inf):
    """Documented to match PyTorch: ties go to the first maximum in row-major window order,
    a window of -inf to its first pixel inside x, a NaN wins its window (the last NaN)."""
    shape, options = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, shape).astype(np.float64)             # many ties
    x[rng.random(shape) < (0.3 if minus_inf else 0.0)] = -np.inf
    x[rng.random(shape) < (0.1 if nan else 0.0)] = np.nan
    pool_parity(torch, xp, x, options, rng)


@given(case=wide_pool_cases(), seed=seeds)
@example(case=((1, 1, 5, 5), (3, 1, 2, False)), seed=0)          # padding just over half
@example(case=((1, 1, 0, 5), (2, None, 1, False)), seed=0)       # no rows, padding makes one
@example(case=((0, 2, 4, 4), (2, None, 0, False)), seed=0)       # empty batch, tiling windows
@example(case=((1, 1, 3, 3), (4, 1, 0, False)), seed=0)          # kernel just too large
def test_max_pool2d_rejects_what_torch_rejects(xp, torch, case, seed):
    shape, options = case
    rng = np.random.default_rng(seed)
    pool_parity(torch, xp, rng.standard_normal(shape), options, rng)


# --- Bilinear upsampling -----------------------------------------------------------------------
# minifcn follows interpolate's default recompute_scale_factor=None (a given scale is used for
# the source coordinates) and takes align_corners as a bool, not None; neither is drawn.

NICE_SCALES = (0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4)


def scales(side):
    """Scale factors up to 4 that keep at least one row of ``side`` rows."""
    nice = [s for s in NICE_SCALES if side * s >= 1]
    return st.one_of(st.sampled_from(nice), st.floats(1.0 / side, 4.0))


@st.composite
def upsample_cases(draw):
    """Up and down sampling of 1..20 sides, by an explicit size (int or pair, 1..20) or a
    scale factor (one number, or one per axis)."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 20)),
             draw(st.integers(1, 20)))
    if draw(st.booleans()):
        return shape, (draw(_int_or_pair(1, 20)), None, draw(st.booleans()))
    scale = draw(st.one_of(scales(min(shape[2:])), st.tuples(*map(scales, shape[2:]))))
    return shape, (None, scale, draw(st.booleans()))


BAD_SCALES = st.sampled_from([0.0, -1.0, -0.5, 1e-3, math.inf, math.nan])


@st.composite
def wide_upsample_cases(draw):
    """A valid case with size, scale_factor or x corrupted: sizes from -2, zero, negative,
    tiny and non-finite scales, both or neither given, zero batch (valid), channels or sides."""
    shape, (size, scale, align_corners) = draw(upsample_cases())
    for name in draw(st.sets(st.sampled_from(["size", "scale_factor", "x"]), max_size=2)):
        if name == "size":
            size = draw(st.one_of(st.none(), _int_or_pair(-2, 0), _int_or_pair(-2, 20)))
        elif name == "scale_factor":
            bad = st.one_of(BAD_SCALES, st.floats(0.01, 4.0))
            scale = draw(st.one_of(st.none(), bad, st.tuples(bad, bad)))
        else:
            axis = draw(st.integers(0, 3))
            shape = tuple(0 if i == axis else n for i, n in enumerate(shape))
    return shape, (size, scale, align_corners)


def upsample_culprits(shape, size, scale):
    names = {"x"} if min(shape[1:]) < 1 else set()
    if (size is None) == (scale is None):
        return names | {"size", "scale_factor"}
    if size is not None and min(_pair(size)) < 1:
        names.add("size")
    if scale is not None and not all(math.isfinite(s) and math.floor(h * s) >= 1
                                     for s, h in zip(_pair(scale), shape[2:])):
        names.add("scale_factor")
    return names


def upsample_parity(torch, xp, shape, options, rng):
    size, scale, align_corners = options
    parity(torch, xp, rng.standard_normal(shape),
           lambda tx: torch.nn.functional.interpolate(tx, size, scale, mode="bilinear",
                                                      align_corners=align_corners),
           lambda ax: upsample_bilinear2d_forward(ax, *options), upsample_bilinear2d_backward,
           rng, upsample_culprits(shape, size, scale))


@given(case=upsample_cases(), seed=seeds)
# Found by this property (thorough profile): scale 1.25 keeps 3 rows, and PyTorch copies an
# axis whose length does not change instead of resampling it with the given scale.
@example(case=((1, 1, 3, 5), (None, 1.25, False)), seed=0)
def test_upsample_bilinear2d_matches_torch(xp, torch, case, seed):
    upsample_parity(torch, xp, *case, np.random.default_rng(seed))


@given(case=wide_upsample_cases(), seed=seeds)
@example(case=((1, 1, 4, 4), ((3, 0), None, False)), seed=0)
@example(case=((1, 1, 4, 4), (None, 0.2, False)), seed=0)        # floor(4 * 0.2) = 0 rows
@example(case=((1, 1, 4, 4), (None, math.nan, False)), seed=0)
def test_upsample_bilinear2d_rejects_what_torch_rejects(xp, torch, case, seed):
    upsample_parity(torch, xp, *case, np.random.default_rng(seed))


# --- Softmax cross-entropy ---------------------------------------------------------------------
# Integer class targets with weight, ignore_index and reduction; minifcn has no
# label_smoothing, no probability targets, and wants a batch axis (no unbatched (C,) logits).

REDUCTIONS = ("mean", "sum", "none")


@st.composite
def loss_cases(draw):
    """Logits (N, C, ...) with 0-2 spatial axes, classes 1..5; ignore_index outside the
    classes (-100, -1, 255) or one of them; none, some or all pixels ignored; class weights
    (some 0) or none; every reduction; logits of scale 1 to 100."""
    C = draw(st.integers(1, 5))
    shape = (draw(st.integers(1, 3)), C) + tuple(draw(st.lists(st.integers(1, 5), max_size=2)))
    options = dict(ignore_index=draw(st.one_of(st.sampled_from([-100, -1, 255]),
                                               st.integers(0, C - 1))),
                   reduction=draw(st.sampled_from(REDUCTIONS)))
    problem = dict(shape=shape, ignored=draw(st.sampled_from([0.0, 0.3, 1.0])),
                   weighted=draw(st.booleans()), scale=draw(st.sampled_from([1.0, 10.0, 100.0])),
                   dtype=draw(st.sampled_from([np.int64, np.int32, np.uint8])))
    return problem, options


def loss_arrays(rng, shape, ignored, weighted, scale, dtype, ignore_index):
    """logits, target (``dtype`` where its values fit, else int64) and weight or None."""
    N, C = shape[:2]
    logits = scale * rng.standard_normal(shape)
    target = rng.integers(0, C, (N,) + shape[2:])
    target[rng.random(target.shape) < ignored] = ignore_index
    info = np.iinfo(dtype)
    if not info.min <= target.min(initial=0) <= target.max(initial=0) <= info.max:
        dtype = np.int64
    weight = rng.uniform(0.1, 3.0, C) * (rng.random(C) > 0.2) if weighted else None
    return logits, target.astype(dtype), weight


def loss_culprits(logits, target, weight, ignore_index, reduction):
    names = set() if reduction in REDUCTIONS else {"reduction"}
    if weight is not None and weight.shape != logits.shape[1:2]:
        names.add("weight")
    labels = target[target != ignore_index]
    if (target.shape != logits.shape[:1] + logits.shape[2:] or labels.min(initial=0) < 0
            or labels.max(initial=0) >= logits.shape[1]):
        names.add("target")
    return names


def loss_parity(torch, xp, logits, target, weight, options, rng):
    tlogits = torch.tensor(logits, requires_grad=True)
    tweight = None if weight is None else torch.from_numpy(weight)

    def ours():
        return softmax_cross_entropy_forward(xp.asarray(logits), xp.asarray(target),
                                             None if weight is None else xp.asarray(weight),
                                             **options)

    try:
        tloss = torch.nn.functional.cross_entropy(
            tlogits, torch.from_numpy(target.astype(np.int64)), tweight, **options)
    except TORCH_ERRORS as err:
        expect_rejection(ours, loss_culprits(logits, target, weight, **options), err)
        return
    event("accepted")
    loss, cache = ours()
    dloss = np.asarray(rng.standard_normal(tuple(tloss.shape)))
    dlogits = softmax_cross_entropy_backward(xp.asarray(dloss), cache)[0]
    w_t = loss_pixel_weights(target, weight, options["ignore_index"])
    mean = options["reduction"] == "mean"
    if mean and w_t.sum() == 0:
        # Deliberate: a mean over no pixels (all ignored, or all of weight 0) is 0/0 = NaN in
        # PyTorch; minifcn documents a loss of 0 and a zero gradient instead.
        event("mean over no pixels")
        assert math.isnan(tloss.item())
        assert float(loss) == 0.0 and not asnumpy(dlogits).any()
        return
    tloss.backward(torch.from_numpy(dloss))
    # Where the softmax saturates (logits of scale 100), the loss log(1 + tiny) and the
    # gradient w (p - 1) are differences of terms of size w, and both libraries round them
    # to within an ulp of w: measure errors against the terms, not the tiny differences.
    # The gradient's terms are g w / Z (Z: the mean's normaliser), dL/dlog(p) at the target.
    g = np.abs(dloss) * w_t / (w_t.sum() if mean else 1.0)
    floor = {"mean": 1.0, "sum": w_t.sum(), "none": w_t.max(initial=0.0)}
    assert_close("loss", loss, tloss.detach().numpy(), floor[options["reduction"]])
    assert_close("dlogits", dlogits, tlogits.grad.numpy(), g.max(initial=0.0))


def loss_pixel_weights(target, weight, ignore_index):
    """Each pixel's class weight (1 without weights), 0 where ignored."""
    valid = target != ignore_index
    if weight is None:
        return valid.astype(np.float64)
    return np.where(valid, weight[np.where(valid, target, 0)], 0.0)


@given(case=loss_cases(), seed=seeds)
@example(case=(dict(shape=(2, 3, 4), ignored=0.3, weighted=True, scale=1.0, dtype=np.int64),
               dict(ignore_index=255, reduction="mean")), seed=1)
def test_softmax_cross_entropy_matches_torch(xp, torch, case, seed):
    problem, options = case
    rng = np.random.default_rng(seed)
    arrays = loss_arrays(rng, ignore_index=options["ignore_index"], **problem)
    loss_parity(torch, xp, *arrays, options, rng)


@given(case=loss_cases(), seed=seeds,
       wrong=st.sets(st.sampled_from(["labels", "target shape", "weight", "reduction"]),
                     max_size=2),
       # Not drawn: "elementwise_mean", which PyTorch still takes (deprecated, with a
       # warning) for "mean"; minifcn accepts the three current names only.
       reduction=st.sampled_from(["avg", "batchmean", "MEAN", ""]),
       extra=st.sampled_from([-1, 1]), label=st.integers(-3, 2))
@example(case=(dict(shape=(2, 3, 4), ignored=0.0, weighted=False, scale=1.0, dtype=np.int64),
               dict(ignore_index=255, reduction="mean")),
         seed=0, wrong={"labels"}, reduction="avg", extra=1, label=0)     # a label equal to C
def test_softmax_cross_entropy_rejects_what_torch_rejects(xp, torch, case, seed, wrong,
                                                          reduction, extra, label):
    """Labels outside the classes (-3 to -1, C to C + 2) unless they are ignore_index, a
    target of another shape, a weight with one class too few or too many, an unknown
    reduction."""
    problem, options = case
    rng = np.random.default_rng(seed)
    logits, target, weight = loss_arrays(rng, ignore_index=options["ignore_index"], **problem)
    C = logits.shape[1]
    if "labels" in wrong:
        target = target.astype(np.int64)
        outside = rng.random(target.shape) < 0.3
        outside.flat[rng.integers(outside.size)] = True
        target[outside] = label if label < 0 else C + label
    if "target shape" in wrong:
        axis = rng.integers(target.ndim)
        target = np.repeat(target, 2, axis) if extra > 0 else target.take([], axis)
    if "weight" in wrong:
        weight = rng.uniform(0.1, 3.0, C + extra)
    if "reduction" in wrong:
        options = dict(options, reduction=reduction)
    loss_parity(torch, xp, logits, target, weight, options, rng)


# --- ReLU --------------------------------------------------------------------------------------
# No rejection property: relu has no options, and any float array is valid in both libraries
# (integer tensors, which torch.relu takes, are refused with a TypeError: ops compute in float).

@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=4), seed=seeds,
       special=st.sets(st.sampled_from(["zero", "-zero", "inf", "-inf", "nan"])))
def test_relu_matches_torch(xp, torch, shape, seed, special):
    """Exact zeros (the gradient there is 0 in both), signed zeros, infinities and NaN."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    values = {"zero": 0.0, "-zero": -0.0, "inf": np.inf, "-inf": -np.inf, "nan": np.nan}
    for name in special:
        x[rng.random(shape) < 0.3] = values[name]
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.relu(tx)
    y, cache = relu_forward(xp.asarray(x))
    dy = rng.standard_normal(shape)
    ty.backward(torch.from_numpy(dy))
    dx = asnumpy(relu_backward(xp.asarray(dy), cache))
    assert_close("y", y, ty.detach().numpy())
    # Deliberate: at NaN minifcn's gradient is 0 (it passes dy where x > 0), torch's is dy
    # (it blocks dy where the output <= 0, which NaN is not). Compared everywhere else.
    number = ~np.isnan(x)
    assert not dx[~number].any()
    assert_close("dx", dx[number], tx.grad.numpy()[number])


# --- Crop --------------------------------------------------------------------------------------
# PyTorch has no crop: the reference is slicing a torch tensor, x[:, :, t:t + h, l:l + w], and
# its autograd. Slicing never raises (it clips, and wraps negative starts), so rejection is
# checked against the rule instead: offsets >= 0, sizes >= 1, and the crop inside x.

@st.composite
def crop_cases(draw):
    """A crop of a 1..20 x 1..20 input that fits (int offset and size: the same on both
    axes), often touching the bottom or right edge."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 20)),
             draw(st.integers(1, 20)))
    if draw(st.booleans()):
        side = min(shape[2:])
        offset = draw(st.integers(0, side - 1))
        return shape, offset, draw(st.integers(1, side - offset))
    offset = tuple(draw(st.integers(0, n - 1)) for n in shape[2:])
    size = tuple(draw(st.one_of(st.just(n - o), st.integers(1, n - o)))
                 for n, o in zip(shape[2:], offset))
    return shape, offset, size


def crop_culprits(shape, offset, size):
    """The arguments a rejection may name; empty when the crop is valid. As for slicing, an
    empty batch or no channels is valid; no rows or columns leave no crop that fits."""
    (top, left), (h, w) = _pair(offset), _pair(size)
    names = set()
    if min(top, left) < 0:
        names.add("offset")
    if min(h, w) < 1:
        names.add("size")
    if not names and (top + h > shape[2] or left + w > shape[3]):
        names.update({"offset", "size"})
    return names


def crop_parity(torch, xp, shape, offset, size, rng):
    x = rng.standard_normal(shape)
    culprits = crop_culprits(shape, offset, size)
    if culprits:
        expect_rejection(lambda: crop_forward(xp.asarray(x), offset, size), culprits, None)
        return
    (top, left), (h, w) = _pair(offset), _pair(size)
    parity(torch, xp, x, lambda tx: tx[:, :, top:top + h, left:left + w],
           lambda ax: crop_forward(ax, offset, size), crop_backward, rng, culprits)


@given(case=crop_cases(), seed=seeds)
def test_crop_matches_torch_slicing(xp, torch, case, seed):
    crop_parity(torch, xp, *case, np.random.default_rng(seed))


moves = st.one_of(st.integers(-3, 3), st.integers(-25, 25))


@given(case=crop_cases(), seed=seeds, wrong=st.sets(st.sampled_from(["offset", "size", "x"]),
                                                   min_size=1, max_size=2),
       offset_move=st.tuples(moves, moves), size_move=st.tuples(moves, moves),
       axis=st.integers(0, 3))
@example(case=((1, 1, 5, 6), (2, 3), (3, 3)), seed=0, wrong={"size"}, offset_move=(0, 0),
         size_move=(1, 0), axis=0)                                # one row past the bottom
def test_crop_rejects_invalid_crops(xp, torch, case, seed, wrong, offset_move, size_move,
                                    axis):
    """A valid crop with its offset or size moved (often by 1 to 3, past x's edge or below
    0), or a zero-sized axis of x."""
    shape, offset, size = case
    if "offset" in wrong:
        offset = tuple(o + m for o, m in zip(_pair(offset), offset_move))
    if "size" in wrong:
        size = tuple(n + m for n, m in zip(_pair(size), size_move))
    if "x" in wrong:
        shape = tuple(0 if i == axis else n for i, n in enumerate(shape))
    crop_parity(torch, xp, shape, offset, size, np.random.default_rng(seed))
