"""softmax_cross_entropy_forward / _backward against torch.nn.functional.cross_entropy (values
and autograd) over shapes, class weights, reductions and ignore patterns; extreme logits;
the all-ignored "mean" convention; argument errors; finite differences; the nn layer; and
softmax / log_softmax against torch."""
import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.gradcheck import check_function, check_module
from minifcn.nn import SoftmaxCrossEntropyLoss
from minifcn.ops import (log_softmax, softmax, softmax_cross_entropy_backward,
                         softmax_cross_entropy_forward)

from helpers import rel_error

SHAPES = [
    pytest.param((2, 5, 4, 6), id="NCHW-even"),
    pytest.param((3, 4, 5, 7), id="NCHW-odd"),
    pytest.param((7, 6), id="NC"),
    pytest.param((2, 3, 3, 4, 5), id="NCDHW"),
]
# (which pixels are ignored, ignore_index): 255 is VOC's void label, -100 PyTorch's default
IGNORE = [
    pytest.param("none", 255, id="none-ignored"),
    pytest.param("some", 255, id="some-ignored-255"),
    pytest.param("some", -100, id="some-ignored-m100"),
    pytest.param("all", 255, id="all-ignored-255"),
    pytest.param("all", -100, id="all-ignored-m100"),
]
DTYPES = pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)],
                                 ids=["float64", "float32"])
REDUCTIONS = pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
WEIGHTED = pytest.mark.parametrize("weighted", [False, True], ids=["noweight", "weight"])


def _problem(rng, shape, weighted, ignored="some", ignore_index=255, dtype=np.float64,
             scale=3.0):
    """logits (N, C, ...), int64 target (N, ...) and weight (C,) or None, as NumPy arrays."""
    N, C = shape[:2]
    logits = (scale * rng.standard_normal(shape)).astype(dtype)
    target = rng.integers(0, C, (N,) + shape[2:])
    if ignored == "some":
        target[rng.random(target.shape) < 0.3] = ignore_index
        target.flat[0], target.flat[-1] = ignore_index, C - 1    # at least one of each
    elif ignored == "all":
        target[...] = ignore_index
    weight = rng.uniform(0.2, 3.0, C).astype(dtype) if weighted else None
    return logits, target, weight


def _on(xp, *arrays):
    return [None if a is None else xp.asarray(a) for a in arrays]


def _torch_cross_entropy(torch, logits, target, weight, ignore_index, reduction, dloss):
    """PyTorch's loss and its autograd gradient for the logits, as NumPy arrays."""
    tx = torch.tensor(logits, requires_grad=True)
    tw = None if weight is None else torch.from_numpy(weight)
    loss = torch.nn.functional.cross_entropy(tx, torch.from_numpy(target), weight=tw,
                                             ignore_index=ignore_index, reduction=reduction)
    loss.backward(torch.from_numpy(np.asarray(dloss)))
    return loss.detach().numpy(), tx.grad.numpy()


def _dloss(rng, reduction, target, dtype):
    shape = target.shape if reduction == "none" else ()
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


# --- Against PyTorch on the grid -------------------------------------------------------------

@DTYPES
@pytest.mark.parametrize("ignored, ignore_index", IGNORE)
@REDUCTIONS
@WEIGHTED
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch(xp, torch, rng, shape, weighted, reduction, ignored, ignore_index,
                       dtype, tol):
    logits, target, weight = _problem(rng, shape, weighted, ignored, ignore_index, dtype)
    dloss = _dloss(rng, reduction, target, dtype)
    loss, cache = softmax_cross_entropy_forward(*_on(xp, logits, target, weight),
                                                ignore_index=ignore_index, reduction=reduction)
    dlogits, dtarget, dweight = softmax_cross_entropy_backward(xp.asarray(dloss), cache)
    want_loss, want_grad = _torch_cross_entropy(torch, logits, target, weight, ignore_index,
                                                reduction, dloss)
    assert isinstance(loss, xp.ndarray) and loss.dtype == dtype and dlogits.dtype == dtype
    assert loss.shape == want_loss.shape and dlogits.shape == logits.shape
    assert dtarget is None and dweight is None
    if reduction == "none":
        assert (asnumpy(loss)[target == ignore_index] == 0).all()
    assert (asnumpy(dlogits).transpose(0, *range(2, len(shape)), 1)[target == ignore_index]
            == 0).all()
    if ignored == "all" and reduction == "mean":
        # Documented difference: PyTorch divides 0 by 0; minifcn returns 0 and zero gradient.
        assert np.isnan(want_loss)
        assert float(loss) == 0.0 and not asnumpy(dlogits).any()
        return
    assert rel_error(loss, want_loss) < tol, f"loss: {rel_error(loss, want_loss):.2e}"
    assert rel_error(dlogits, want_grad) < tol, f"dlogits: {rel_error(dlogits, want_grad):.2e}"


@DTYPES
@REDUCTIONS
@WEIGHTED
def test_extreme_logits_stay_finite_and_match_torch(xp, torch, rng, weighted, reduction,
                                                    dtype, tol):
    """Logits of +-1e4: exp would overflow without the max shift; the loss is about 2e4 at
    pixels whose label holds -1e4."""
    logits, target, weight = _problem(rng, (2, 4, 3, 5), weighted, dtype=dtype)
    logits = (1e4 * np.sign(logits)).astype(dtype)
    logits[0, :, 1, 1] = [1e4, 1e4, -1e4, -1e4]            # a tie at the maximum
    dloss = _dloss(rng, reduction, target, dtype)
    loss, cache = softmax_cross_entropy_forward(*_on(xp, logits, target, weight),
                                                reduction=reduction)
    dlogits, _, _ = softmax_cross_entropy_backward(xp.asarray(dloss), cache)
    want_loss, want_grad = _torch_cross_entropy(torch, logits, target, weight, 255,
                                                reduction, dloss)
    assert np.isfinite(asnumpy(loss)).all() and np.isfinite(asnumpy(dlogits)).all()
    assert asnumpy(loss).max() > 1e3                         # a -1e4 label was hit
    assert rel_error(loss, want_loss) < tol
    assert rel_error(dlogits, want_grad) < tol


def test_a_non_contiguous_uint8_problem_matches_torch(xp, torch, rng):
    """Logits as a transposed NHWC view and a uint8 VOC-style label map."""
    logits_nhwc, target, _ = _problem(rng, (2, 5, 6, 3), False)     # read as (N, H, W, C)
    logits = logits_nhwc.transpose(0, 3, 1, 2)                      # (2, 3, 5, 6), a view
    target = rng.integers(0, 3, (2, 5, 6)).astype(np.uint8)
    target[:, 0] = 255
    loss, cache = softmax_cross_entropy_forward(xp.asarray(logits_nhwc).transpose(0, 3, 1, 2),
                                                xp.asarray(target))
    dlogits, _, _ = softmax_cross_entropy_backward(1.0, cache)
    want_loss, want_grad = _torch_cross_entropy(torch, np.ascontiguousarray(logits),
                                                target.astype(np.int64), None, 255, "mean", 1.0)
    assert rel_error(loss, want_loss) < 1e-12 and rel_error(dlogits, want_grad) < 1e-12


def test_cache_holds_the_softmax(xp, torch, rng):
    logits, target, _ = _problem(rng, (2, 5, 4, 3), False)
    _, cache = softmax_cross_entropy_forward(xp.asarray(logits), xp.asarray(target))
    want = torch.softmax(torch.from_numpy(logits), dim=1).numpy().reshape(2, 5, 12)
    assert rel_error(cache.prob, want) < 1e-12


# --- The all-ignored convention and the upstream gradient ---------------------------------------

@WEIGHTED
def test_all_ignored_mean_is_zero_with_zero_gradient(xp, rng, weighted):
    """PyTorch gives NaN (0/0) here; minifcn documents and returns 0 and a zero gradient."""
    logits, target, weight = _problem(rng, (2, 3, 4, 5), weighted, "all")
    loss, cache = softmax_cross_entropy_forward(*_on(xp, logits, target, weight))
    dlogits, _, _ = softmax_cross_entropy_backward(1.0, cache)
    assert loss.shape == () and float(loss) == 0.0
    assert dlogits.shape == logits.shape and not asnumpy(dlogits).any()
    total, _ = softmax_cross_entropy_forward(*_on(xp, logits, target, weight), reduction="sum")
    assert float(total) == 0.0


@REDUCTIONS
def test_python_scalar_dloss_equals_an_array(xp, rng, reduction):
    logits, target, weight = _problem(rng, (2, 3, 4, 5), True)
    loss, cache = softmax_cross_entropy_forward(*_on(xp, logits, target, weight),
                                                reduction=reduction)
    by_scalar, _, _ = softmax_cross_entropy_backward(2.5, cache)
    by_array, _, _ = softmax_cross_entropy_backward(xp.full(loss.shape, 2.5), cache)
    assert rel_error(by_scalar, by_array) == 0.0


# --- Errors at the boundary name the argument ---------------------------------------------------

def _forward_with(logits=None, target=None, weight=None, **options):
    """softmax_cross_entropy_forward on logits (2, 3, 4, 5), target (2, 4, 5), weight (3,),
    with one argument replaced through a function of its good value."""
    good_logits, good_target, good_weight = _problem(np.random.default_rng(0), (2, 3, 4, 5),
                                                     True)
    pick = lambda change, good: good if change is None else change(good)
    return softmax_cross_entropy_forward(pick(logits, good_logits), pick(target, good_target),
                                         pick(weight, good_weight), **options)


def _set(index, value):
    def change(target):
        target = target.copy()
        target[index] = value
        return target
    return change


BAD = [
    pytest.param(dict(target=_set((1, 2, 3), 7)), ValueError,
                 r"1 label\(s\) outside \[0, 3\) .* ignore_index=255: the first is 7 at index "
                 r"\(1, 2, 3\)", id="label-too-large"),
    pytest.param(dict(target=_set((0, 0, slice(1, 3)), -3)), ValueError,
                 r"2 label\(s\) .* the first is -3 at index \(0, 0, 1\)", id="label-negative"),
    pytest.param(dict(target=_set((0, 1, 1), 3)), ValueError, r"the first is 3 ",
                 id="label-equals-C"),
    pytest.param(dict(target=_set((0, 1, 1), 255), ignore_index=-100), ValueError,
                 r"ignore_index=-100: the first is 255", id="void-label-with-torch-default"),
    pytest.param(dict(target=lambda t: t.astype(np.float64)), TypeError,
                 r"target must hold integer class indices .* got dtype float64",
                 id="target-float"),
    pytest.param(dict(target=lambda t: t > 0), TypeError, r"target .* got dtype bool",
                 id="target-bool"),
    pytest.param(dict(target=lambda t: t.tolist()), TypeError,
                 r"target must be a NumPy or CuPy array", id="target-list"),
    pytest.param(dict(target=lambda t: t[:, :, :-1]), ValueError,
                 r"target must have shape \(2, 4, 5\) .* got \(2, 4, 4\)", id="target-shape"),
    pytest.param(dict(target=lambda t: t[:, None]), ValueError,
                 r"target must have shape \(2, 4, 5\)", id="target-4d"),
    pytest.param(dict(weight=lambda w: np.ones(4)), ValueError,
                 r"weight must have shape \(3,\), one entry per class", id="weight-length"),
    pytest.param(dict(weight=lambda w: np.ones((3, 1))), ValueError, r"weight must be 1-D",
                 id="weight-2d"),
    pytest.param(dict(weight=lambda w: w.astype(np.float32)), TypeError,
                 r"weight has dtype float32 but logits has float64", id="weight-dtype"),
    pytest.param(dict(reduction="avg"), ValueError,
                 r"reduction must be one of 'mean', 'sum', 'none', got 'avg'",
                 id="reduction-unknown"),
    pytest.param(dict(reduction=None), ValueError, r"reduction must be one of",
                 id="reduction-none-object"),
    pytest.param(dict(ignore_index=255.0), TypeError, r"ignore_index must be an int",
                 id="ignore-index-float"),
    pytest.param(dict(logits=lambda x: x[0, :, 0, 0]), ValueError,
                 r"logits must be at least 2-D", id="logits-1d"),
    pytest.param(dict(logits=lambda x: x.astype(np.int64)), TypeError,
                 r"logits must be float32 or float64", id="logits-int"),
]


@pytest.mark.parametrize("bad, error, match", BAD)
def test_forward_rejects_bad_input(xp, bad, error, match):
    on_device = {k: (lambda change: (lambda good: _to_xp(xp, change(good))))(v)
                 if callable(v) else v for k, v in bad.items()}
    with pytest.raises(error, match=match):
        _forward_with(**{"logits": lambda x: xp.asarray(x), "target": lambda t: xp.asarray(t),
                         "weight": lambda w: xp.asarray(w), **on_device})


def _to_xp(xp, a):
    return a if isinstance(a, list) else xp.asarray(a)


@pytest.mark.parametrize("reduction, dloss_of, error, match", [
    pytest.param("mean", lambda loss: np.ones(1), ValueError,
                 r"dloss must have the loss's shape \(\) \(reduction='mean'\), got \(1,\)",
                 id="mean-shape"),
    pytest.param("none", lambda loss: loss[:, :-1], ValueError,
                 r"dloss must have the loss's shape \(2, 4, 5\)", id="none-shape"),
    pytest.param("sum", lambda loss: loss.astype(np.float32), TypeError,
                 r"dloss has dtype float32 but the forward ran in float64", id="sum-dtype"),
    pytest.param("none", lambda loss: loss.astype(np.int64), TypeError,
                 r"dloss must be float32 or float64", id="none-int"),
])
def test_backward_rejects_bad_dloss(reduction, dloss_of, error, match):
    loss, cache = _forward_with(reduction=reduction)
    with pytest.raises(error, match=match):
        softmax_cross_entropy_backward(dloss_of(np.asarray(loss)), cache)


# --- Finite differences ----------------------------------------------------------------------

@REDUCTIONS
@WEIGHTED
@pytest.mark.parametrize("shape", [(2, 4, 3, 5), (5, 3)], ids=["NCHW", "NC"])
def test_check_function_passes(xp, rng, shape, weighted, reduction):
    logits, target, weight = _on(xp, *_problem(rng, shape, weighted))
    report = check_function(softmax_cross_entropy_forward, softmax_cross_entropy_backward,
                            [logits, target, weight, 255, reduction], wrt=[0])
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["logits"]


# --- The nn layer ----------------------------------------------------------------------------

def _device(xp):
    return "cpu" if xp is np else "cuda"


@REDUCTIONS
@WEIGHTED
def test_check_module_passes(xp, rng, weighted, reduction):
    logits, target, weight = _problem(rng, (2, 4, 3, 5), weighted, dtype=np.float32)
    loss_fn = SoftmaxCrossEntropyLoss(weight, reduction=reduction).to(device=_device(xp))
    report = check_module(loss_fn, xp.asarray(logits), xp.asarray(target))
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == ["input0"]
    assert loss_fn.weight is None or loss_fn.weight.dtype == np.float32   # the copy was cast


def test_module_backward_defaults_to_one_like_torch(xp, torch, rng):
    logits, target, weight = _problem(rng, (2, 4, 3, 5), True, ignore_index=-100)
    loss_fn = SoftmaxCrossEntropyLoss(weight, ignore_index=-100).to(device=_device(xp))
    loss = loss_fn(*_on(xp, logits, target))
    dlogits = loss_fn.backward()
    want_loss, want_grad = _torch_cross_entropy(torch, logits, target, weight, -100, "mean",
                                                1.0)
    assert rel_error(loss, want_loss) < 1e-12 and rel_error(dlogits, want_grad) < 1e-12
    assert loss_fn.parameters() == []


def test_module_weight_moves_and_casts_with_to(xp):
    loss_fn = SoftmaxCrossEntropyLoss([1.0, 2.0, 0.5], ignore_index=0, reduction="sum")
    assert loss_fn.weight.dtype == np.float32
    loss_fn.to(device=_device(xp), dtype=np.float64)
    assert isinstance(loss_fn.weight, xp.ndarray) and loss_fn.weight.dtype == np.float64
    assert repr(loss_fn) == ("SoftmaxCrossEntropyLoss(weight=array(shape=(3,)), "
                             "ignore_index=0, reduction='sum')")


def test_module_rejects_bad_options_at_construction():
    with pytest.raises(ValueError, match=r"reduction must be one of 'mean', 'sum', 'none'"):
        SoftmaxCrossEntropyLoss(reduction="average")
    with pytest.raises(ValueError, match=r"weight must be 1-D"):
        SoftmaxCrossEntropyLoss(weight=[[1.0, 2.0]])
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        SoftmaxCrossEntropyLoss().backward()


# --- softmax and log_softmax -------------------------------------------------------------------

@DTYPES
@pytest.mark.parametrize("shape, axis", [((2, 5, 4, 3), 1), ((7, 6), 1), ((7, 6), -1),
                                         ((3, 4, 5), 0)],
                         ids=["NCHW-axis1", "NC-axis1", "NC-axis-1", "3d-axis0"])
@pytest.mark.parametrize("extreme", [False, True], ids=["normal", "pm1e4"])
def test_softmax_and_log_softmax_match_torch(xp, torch, rng, shape, axis, dtype, tol,
                                             extreme):
    x = rng.standard_normal(shape).astype(dtype)
    if extreme:
        x = (1e4 * np.sign(x)).astype(dtype)
    p, logp = softmax(xp.asarray(x), axis), log_softmax(xp.asarray(x), axis)
    want_p = torch.softmax(torch.from_numpy(x), dim=axis).numpy()
    want_logp = torch.log_softmax(torch.from_numpy(x), dim=axis).numpy()
    assert p.dtype == dtype and logp.dtype == dtype
    assert np.isfinite(asnumpy(p)).all() and np.isfinite(asnumpy(logp)).all()
    assert rel_error(p, want_p) < tol and rel_error(logp, want_logp) < tol
    assert np.abs(asnumpy(p).sum(axis=axis) - 1).max() < 10 * np.finfo(dtype).eps


@pytest.mark.parametrize("function", [softmax, log_softmax])
def test_softmax_rejects_bad_input(function):
    with pytest.raises(ValueError, match=r"axis must be in \[-2, 2\) for x of shape \(3, 4\)"):
        function(np.zeros((3, 4)), axis=2)
    with pytest.raises(TypeError, match=r"axis must be an int"):
        function(np.zeros((3, 4)), axis=1.0)
    with pytest.raises(TypeError, match=r"x must be float32 or float64"):
        function(np.zeros((3, 4), dtype=np.int32))
