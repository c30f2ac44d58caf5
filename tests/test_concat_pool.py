"""Channel concatenation and global average pooling: against naive loops and torch in
float64 (forward and autograd backward), finite differences, errors that name the argument,
and a planted wrong split caught."""
import numpy as np
import pytest

from minifcn.gradcheck import check_function
from minifcn.ops import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                         concat_backward, concat_forward)
from minifcn.ops.reference import concat as ref_concat

from helpers import rel_error
from reference import concat_naive, global_avg_pool_naive

CHANNELS = (2, 1, 3)


def check_concat(xp, torch, rng):
    arrays = [rng.standard_normal((2, c, 4, 3)) for c in CHANNELS]
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    ty = torch.cat(tensors, dim=1)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    y, cache = concat_forward([xp.asarray(a) for a in arrays])
    assert rel_error(y, concat_naive(arrays)) == 0 and rel_error(y, ty.detach().numpy()) == 0
    grads = concat_backward(xp.asarray(dy), cache)
    assert len(grads) == len(arrays)
    for got, t in zip(grads, tensors):
        assert got.flags.c_contiguous and rel_error(got, t.grad.numpy()) == 0


def test_concat_matches_naive_and_torch(xp, torch, rng):
    check_concat(xp, torch, rng)


def test_a_wrong_split_is_caught(torch, rng, monkeypatch):
    def split_off_by_one(dy, channels):                  # planted: each slice starts one late
        starts = np.cumsum((1,) + tuple(channels))
        return tuple(np.ascontiguousarray(dy[:, s - 1 + (k > 0):s - 1 + (k > 0) + c])
                     for k, (s, c) in enumerate(zip(starts, channels)))
    from minifcn.ops import dispatch
    monkeypatch.setitem(dispatch._references, "concat.backward", split_off_by_one)
    with pytest.raises(AssertionError):
        check_concat(np, torch, rng)


def test_global_average_pool_matches_naive_and_torch(xp, torch, rng):
    x = rng.standard_normal((2, 3, 5, 4))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, 1)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    y, cache = adaptive_avg_pool2d_forward(xp.asarray(x))
    assert rel_error(y, global_avg_pool_naive(x)) < 1e-12
    assert rel_error(y, ty.detach().numpy()) < 1e-12
    assert rel_error(adaptive_avg_pool2d_backward(xp.asarray(dy), cache), tx.grad.numpy()) < 1e-12


def test_gradcheck(rng):
    arrays = [rng.standard_normal((1, c, 3, 2)) for c in CHANNELS]
    assert check_function(lambda *a: concat_forward(list(a)), concat_backward, arrays,
                          names=["a", "b", "c"]).passed
    assert check_function(adaptive_avg_pool2d_forward,
                          lambda dy, c: adaptive_avg_pool2d_backward(dy, c),
                          [rng.standard_normal((2, 3, 4, 5))]).passed


@pytest.mark.parametrize("call, error, message", [
    (lambda: concat_forward([]), TypeError, "arrays must be a non-empty list"),
    (lambda: concat_forward(np.zeros((1, 2, 3, 3))), TypeError, "got ndarray"),
    (lambda: concat_forward([np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 4))]), ValueError,
     r"arrays\[1\] \(1, 2, 3, 4\)"),
    (lambda: concat_forward([np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3))]), ValueError,
     r"arrays\[1\] must be 4-D"),
    (lambda: concat_forward([np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 3), np.float32)]),
     TypeError, r"arrays\[1\] has dtype float32"),
    (lambda: adaptive_avg_pool2d_forward(np.zeros((1, 2, 3, 3)), 2), ValueError,
     "output_size must be 1 or"),
    (lambda: adaptive_avg_pool2d_backward(np.zeros((1, 2, 3, 3)),
                                          adaptive_avg_pool2d_forward(np.zeros((1, 2, 3, 3)))[1]),
     ValueError, r"dy must have the forward output's shape \(1, 2, 1, 1\)"),
], ids=["empty", "bare-array", "sizes", "ndim", "dtype", "pool-size", "pool-dy"])
def test_bad_input_is_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_reference_split_is_fresh_memory(rng):
    dy = rng.standard_normal((2, 6, 3, 3))
    parts = ref_concat.concat_backward(dy, CHANNELS)
    assert all(not np.shares_memory(p, dy) for p in parts)
