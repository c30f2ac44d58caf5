"""The result pool: a block comes back only when no array can read it, recycled results are
correct (zeros are zeros, a training step gives the same numbers with and without the pool),
and the pool stays bounded. The liveness check is shown failing when its count is planted off
by one."""
import gc
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from minifcn import memory
from minifcn.models import FCN8s
from minifcn.nn import Parameter
from minifcn.ops import (conv2d_backward, conv2d_forward, max_pool2d_backward, max_pool2d_forward,
                         relu_backward, relu_forward, softmax_cross_entropy_backward,
                         softmax_cross_entropy_forward)
from minifcn.memory import result as result_array

SHAPE = (512, 1024)                  # 2 MiB in float32: above memory.SMALLEST_RESULT


@pytest.fixture(autouse=True)
def empty_pool():
    previous = memory.result_pool_limit()
    memory.clear()
    with memory.pooling(results=True):
        yield
    memory.set_result_pool_limit(previous)
    memory.clear()


def new(shape=SHAPE, dtype=np.float32, zeros=False):
    return result_array(np, shape, dtype, "a test result", zeros=zeros)


def address(a) -> int:
    """Where a's memory starts (holding a.base itself would keep its block in use)."""
    return a.__array_interface__["data"][0]


def test_a_freed_result_is_recycled():
    a = new()
    where = address(a)
    assert memory.in_results(a)
    del a
    b = new()
    assert address(b) == where
    assert memory.stats()["results"]["hits"] == 1


def test_no_block_is_handed_out_while_a_view_of_it_lives():
    a = new()
    a[...] = 7
    row = a[3]                                     # a view: it keeps the block
    del a
    b = new()
    b[...] = -1
    assert not np.shares_memory(row, b)
    assert (row == 7).all()


@pytest.mark.parametrize("keep", ["transpose", "reshape", "memoryview", "slice_of_slice"])
def test_every_kind_of_reference_keeps_the_block(keep):
    a = new()
    a[...] = 3
    held = {"transpose": lambda: a.T, "reshape": lambda: a.reshape(-1),
            "memoryview": lambda: memoryview(a), "slice_of_slice": lambda: a[1:][::2, 5:]}[keep]()
    del a
    gc.collect()
    b = new()
    b[...] = -1
    assert (np.asarray(held) == 3).all()


def test_torch_from_numpy_keeps_the_block():
    torch = pytest.importorskip("torch")
    a = new()
    a[...] = 5
    t = torch.from_numpy(a)
    del a
    b = new()
    b[...] = -1
    assert bool((t == 5).all())


def test_the_liveness_check_fails_when_planted_off_by_one(monkeypatch):
    """With the count of an unreferenced block planted one too high, a block with one live
    view counts as free and is handed out again: the check above would catch it."""
    monkeypatch.setattr(memory._result_pool, "_unreferenced", memory._result_pool._unreferenced + 1)
    a = new()
    row = a[0]
    del a
    b = new()
    assert np.shares_memory(row, b)


def test_recycled_zeros_are_zeros():
    a = new()
    a[...] = np.nan
    del a
    b = new(zeros=True)
    assert memory.stats()["results"]["hits"] == 1
    assert not b.any()


def test_a_block_serves_only_requests_of_about_its_size():
    a = new((1024, 1024))                          # 4 MiB
    where = address(a)
    del a
    small = new((512, 1024))                       # half: a new block, not the 4 MiB one
    assert address(small) != where
    near = new((1000, 1024))                       # within 1/8: the 4 MiB block
    assert address(near) == where


def test_a_miss_drops_the_free_blocks_too_small_for_it():
    a, b = new((256, 1024)), new((384, 1024))      # 1 and 1.5 MiB
    del a, b
    assert memory.stats()["results"]["free_blocks"] == 2
    big = new((1024, 1024))
    stats = memory.stats()["results"]
    assert (stats["blocks"], stats["free_blocks"]) == (1, 0)
    del big


def test_small_results_and_a_disabled_pool_bypass_it():
    assert not memory.in_results(new((4, 4)))
    with memory.pooling(results=False):
        assert not memory.in_results(new())
    assert memory.in_results(new())


def test_limit_bounds_the_free_bytes_and_zero_keeps_none():
    arrays = [new((256 + 64 * i, 1024)) for i in range(4)]
    del arrays
    assert memory.stats()["results"]["free_blocks"] == 4
    memory.set_result_pool_limit("3MiB")
    assert memory.stats()["results"]["free_bytes"] <= 3 * 2 ** 20
    memory.set_result_pool_limit(0)
    assert memory.stats()["results"]["free_bytes"] == 0
    with pytest.raises(ValueError, match="^limit"):
        memory.set_result_pool_limit("lots")


def test_environment_variable_turns_recycling_off():
    code = ("import numpy as np; from minifcn import memory; "
            "from minifcn.memory import result as result_array; "
            "print(memory.in_results(result_array(np, (512, 1024), np.float32, 'x')))")
    env = dict(os.environ, MINIFCN_RESULT_POOL="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_threads_never_share_a_live_block():
    errors = []

    def work(value):
        for _ in range(50):
            a = new()
            a[...] = value
            if not (a == value).all():
                errors.append(value)
            del a

    def check():
        live = [new() for _ in range(3)]
        for i, a in enumerate(live):
            a[...] = 100 + i
        for _ in range(30):
            b = new()
            b[...] = -5
            del b
        if any(not (a == 100 + i).all() for i, a in enumerate(live)):
            errors.append("live")

    threads = [threading.Thread(target=work, args=(v,)) for v in range(3)]
    threads.append(threading.Thread(target=check))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_ops_results_come_from_the_pool(rng):
    x = rng.standard_normal((1, 16, 128, 128)).astype(np.float32)   # 1 MiB
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    y, conv_cache = conv2d_forward(x, w, None, padding=1)
    r, relu_cache = relu_forward(y)
    p, pool_cache = max_pool2d_forward(r, 2, 2)
    dr = max_pool2d_backward(rng.standard_normal(p.shape).astype(np.float32), pool_cache)
    dy = relu_backward(dr, relu_cache)
    dx, _, _ = conv2d_backward(dy, conv_cache)
    for a in (y, r, dr, dy, dx):
        assert memory.in_results(a)


def _training_numbers(model, x, target):
    model.zero_grad()
    scores = model(x)
    loss, cache = softmax_cross_entropy_forward(scores, target)
    model.backward(softmax_cross_entropy_backward(1.0, cache)[0])
    return [scores.copy(), np.asarray(loss)] + [p.grad.copy() for p in model.parameters()
                                               if p.grad is not None]


def test_training_steps_give_the_same_numbers_with_and_without_the_pool(rng, monkeypatch):
    monkeypatch.setattr(memory, "SMALLEST_RESULT", 4096)   # every map of this small net a block
    x = rng.standard_normal((2, 3, 96, 96)).astype(np.float32)
    target = rng.integers(0, 5, (2, 96, 96))
    model = FCN8s(n_class=5, width=1 / 16, rng=0, dropout=0.0)
    with memory.pooling(results=False):
        expected = _training_numbers(model, x, target)
    for _ in range(3):                                   # later steps on recycled blocks
        got = _training_numbers(model, x, target)
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(e, g)
    assert memory.stats()["results"]["hits"] > 0


def test_accumulate_copies_unless_handed_over():
    p = Parameter(np.zeros(3, np.float32))
    g = np.ones(3, np.float32)
    p.accumulate(g)
    assert p.grad is not g and not np.shares_memory(p.grad, g)
    p.grad = None
    p.accumulate(g, copy=False)
    assert p.grad is g
    p.accumulate(g, copy=False)                  # a second gradient adds into a new array
    assert p.grad is not g and (p.grad == 2).all() and (g == 1).all()
