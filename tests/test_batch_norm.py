"""batch_norm2d: the reference against a naive per-channel loop and torch.nn.functional in
float64 (output, autograd gradients and running statistics), in training and eval mode, with
and without affine parameters, by the reference and by the fast path that ``auto`` runs; finite differences in both modes; errors that name the
argument. Planted mistakes (a biased running variance, a dropped term of the training
backward) are caught."""
import numpy as np
import pytest

from minifcn.gradcheck import check_function
from minifcn.ops import batch_norm2d_backward, batch_norm2d_forward, dispatch
from minifcn.ops.reference import norm

from helpers import rel_error
from reference import batch_norm2d_naive

SHAPE = (3, 4, 5, 3)
MODES = [pytest.param(t, a, id=("train" if t else "eval") + ("-affine" if a else "-plain"))
         for t in (True, False) for a in (True, False)]


def _problem(rng, affine):
    x = rng.standard_normal(SHAPE) * 2 + 0.5
    mean, var = rng.standard_normal(SHAPE[1]), rng.random(SHAPE[1]) + 0.5
    weight, bias = (rng.standard_normal(SHAPE[1]) for _ in range(2)) if affine else (None, None)
    return x, mean, var, weight, bias


@pytest.mark.parametrize("algorithm", ["reference", "auto"])
@pytest.mark.parametrize("training, affine", MODES)
def test_batch_norm2d_matches_naive_and_torch(xp, torch, rng, training, affine, algorithm):
    with dispatch.using(algorithm):
        _matches_naive_and_torch(xp, torch, rng, training, affine)


def _matches_naive_and_torch(xp, torch, rng, training, affine):
    x, mean, var, weight, bias = _problem(rng, affine)
    options = dict(training=training, momentum=0.3, eps=1e-3)
    want_y, want_mean, want_var = batch_norm2d_naive(x, mean, var, weight, bias, *options.values())
    t_mean, t_var = torch.tensor(mean), torch.tensor(var)
    tensors = [torch.tensor(a, requires_grad=True) if a is not None else None
               for a in (x, weight, bias)]
    ty = torch.nn.functional.batch_norm(tensors[0], t_mean, t_var, tensors[1], tensors[2],
                                        **options)
    dy = rng.standard_normal(SHAPE)
    ty.backward(torch.from_numpy(dy))

    r_mean, r_var = xp.asarray(mean), xp.asarray(var)            # updated in place
    y, cache = batch_norm2d_forward(xp.asarray(x), r_mean, r_var,
                                    *(None if a is None else xp.asarray(a) for a in (weight, bias)),
                                    **options)
    for got, naive, want in ((y, want_y, ty), (r_mean, want_mean, t_mean),
                             (r_var, want_var, t_var)):
        assert rel_error(got, naive) < 1e-10
        assert rel_error(got, want.detach().numpy()) < 1e-10
    grads = batch_norm2d_backward(xp.asarray(dy), cache)
    for got, t in zip(grads, tensors):                            # dx, dweight, dbias
        assert (got is None) == (t is None)
        if t is not None:
            assert rel_error(got, t.grad.numpy()) < 1e-10


@pytest.mark.parametrize("training, affine", MODES)
def test_batch_norm2d_gradcheck(rng, training, affine):
    x, mean, var, weight, bias = _problem(rng, True)
    if affine:
        def forward(x, weight, bias):
            return batch_norm2d_forward(x, None if training else mean, None if training else var,
                                        weight, bias, training=training)
        inputs = [x, weight, bias]
    else:
        def forward(x):
            return batch_norm2d_forward(x, None if training else mean, None if training else var,
                                        training=training)
        inputs = [x]
    backward = batch_norm2d_backward if affine else lambda dy, c: batch_norm2d_backward(dy, c)[0]
    assert check_function(forward, backward, inputs).passed


def test_float32_stays_float32(rng):
    x = rng.standard_normal(SHAPE).astype(np.float32)
    mean, var = np.zeros(4, np.float32), np.ones(4, np.float32)
    y, cache = batch_norm2d_forward(x, mean, var, training=True)
    assert y.dtype == mean.dtype == var.dtype == np.float32
    assert batch_norm2d_backward(np.ones_like(y), cache)[0].dtype == np.float32


PLANTS = {   # a line of reference/norm.py and its mistaken version
    "biased running variance": (
        "running_var += (momentum * M / (M - 1)) * var",
        "running_var += momentum * var"),
    "training backward without the x_hat term": (
        "- x_hat * (dweight / M).reshape(1, C, 1, 1)\n",
        "\n"),
    "eval backward with batch terms": (
        "    else:\n        dx = dy\n",
        "    else:\n        dx = dy - dy.mean(axis=(0, 2, 3), keepdims=True)\n"),
}


@pytest.mark.parametrize("plant", PLANTS, ids=PLANTS)
def test_planted_mistakes_are_caught(monkeypatch, torch, rng, plant):
    """Each mistake, planted in a copy of the reference, fails the torch comparison or the
    gradient check above."""
    import inspect
    source = inspect.getsource(norm)
    right, wrong = PLANTS[plant]
    assert right in source
    namespace = {"__name__": "planted_norm", "__package__": "minifcn.ops.reference"}
    exec(compile(source.replace(right, wrong), norm.__file__, "exec"), namespace)
    for name in ("batch_norm2d_forward", "batch_norm2d_backward"):
        monkeypatch.setattr(norm, name, namespace[name])
    from minifcn.ops import dispatch
    monkeypatch.setitem(dispatch._references, "batch_norm2d.forward",
                        namespace["batch_norm2d_forward"])
    monkeypatch.setitem(dispatch._references, "batch_norm2d.backward",
                        namespace["batch_norm2d_backward"])
    with pytest.raises(AssertionError):
        for training, affine in ((True, True), (False, True)):
            test_batch_norm2d_matches_naive_and_torch(np, torch, rng, training, affine,
                                                      "reference")


X = np.zeros((2, 3, 4, 4))
C3 = np.ones(3)


@pytest.mark.parametrize("call, error, message", [
    (lambda: batch_norm2d_forward(X, C3, np.ones(2)), ValueError,
     r"running_var must have shape \(3,\) for x's 3 channels, got \(2,\)"),
    (lambda: batch_norm2d_forward(X, None, None), ValueError,
     "eval mode .* running_mean and running_var"),
    (lambda: batch_norm2d_forward(X, C3, None, training=True), ValueError,
     "running_mean and running_var must both"),
    (lambda: batch_norm2d_forward(X, C3, C3, momentum=1.5), ValueError,
     r"momentum must be in \[0, 1\], got 1.5"),
    (lambda: batch_norm2d_forward(X, C3, C3, eps=0), ValueError, "eps must be positive"),
    (lambda: batch_norm2d_forward(X, C3, C3, training=1), TypeError, "training must be True"),
    (lambda: batch_norm2d_forward(X[:1, :, :1, :1], None, None, training=True), ValueError,
     "more than one value per channel"),
    (lambda: batch_norm2d_forward(X, C3, C3, weight=C3.astype(np.float32)), TypeError,
     "weight has dtype float32 but x has float64"),
    (lambda: batch_norm2d_backward(np.ones((2, 3, 4, 5)),
                                   batch_norm2d_forward(X, C3, C3)[1]), ValueError,
     r"dy must have the forward output's shape \(2, 3, 4, 4\)"),
], ids=["var-shape", "eval-without-stats", "one-stat", "momentum", "eps", "training-int",
        "one-value", "weight-dtype", "dy-shape"])
def test_bad_input_is_named(call, error, message):
    with pytest.raises(error, match=message):
        call()
