"""The workspace limit and pool: chunked convolutions equal unchunked ones, no buffer above the
limit is ever allocated, the limit's parser and environment variable, the errors, and the
pool's promise that scratch is never shared with a live user or an output."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import minifcn
from minifcn import memory
from minifcn.backend import asnumpy
from minifcn.gradcheck import check_function
from minifcn.ops import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                         conv_transpose2d_forward)
from minifcn.ops.arguments import conv_geometry
from minifcn.ops.fast import gemm, phases

from helpers import rel_error


@pytest.fixture(autouse=True)
def fresh_workspace():
    """Every test starts with no limit and an empty pool; the limit is restored after."""
    previous = memory.get_workspace_limit()             # e.g. from MINIFCN_WORKSPACE_LIMIT
    memory.set_workspace_limit(None)
    memory.clear()
    yield
    memory.set_workspace_limit(previous)
    memory.clear()


@pytest.fixture
def allocations(monkeypatch):
    """The byte size of every workspace buffer allocated while the test runs."""
    sizes = []
    allocate = memory._allocate

    def recording(xp, shape, dtype, what="workspace"):
        sizes.append(math.prod(shape) * np.dtype(dtype).itemsize)
        return allocate(xp, shape, dtype, what)

    monkeypatch.setattr(memory, "_allocate", recording)
    return sizes


def _record_plans(monkeypatch, made, entry):
    """Wrap ``gemm.plan`` where the fast paths call it (the chunked GEMMs, and the stride
    phases, which import it by name) so that ``made`` receives ``entry(conv, cost, chunks)``
    for every plan."""
    plan = gemm.plan

    def recording(conv, cost):
        chunks = plan(conv, cost)
        made.append(entry(conv, cost, chunks))
        return chunks

    for module in (gemm, phases):
        monkeypatch.setattr(module, "plan", recording)
    return made


@pytest.fixture
def plans(monkeypatch):
    """Every chunk plan the conv helpers make: lists of (n0, n1, r0, r1)."""
    return _record_plans(monkeypatch, [], lambda conv, cost, chunks: chunks)


@pytest.fixture
def costs(monkeypatch):
    """Every chunk plan with what it was made from, ``(conv, cost, chunks)``, as the conv
    helpers (and the stride-phase path of conv_transpose2d) hand them to ``gemm.plan``."""
    return _record_plans(monkeypatch, [], lambda conv, cost, chunks: (conv, cost, chunks))


def _row_limit(xp, image_shape, w_shape, options, rows, dtype=np.float64):
    """The workspace limit that lets a chunk hold ``rows`` output rows of one image."""
    _, stride, padding, dilation, _ = conv_geometry(image_shape, w_shape[2:], *options)
    conv = gemm.conv_shape(xp, image_shape, w_shape, stride, padding, dilation,
                           np.dtype(dtype), "test")
    return max(64, conv.col_bytes(1, rows), conv.rows_bytes(1, rows))


# --- Chunked == unchunked ------------------------------------------------------------------

CONV_CASES = [  # kernel, stride, padding, dilation, n, (H, W)
    (3, 1, 1, 1, 1, (13, 14)), (3, 2, 3, 2, 3, (13, 14)), (7, 3, 3, 1, 2, (13, 14)),
    (1, 2, 1, 1, 3, (9, 8)), (1, 1, 0, 1, 2, (9, 8)), (2, 3, 0, 2, 1, (13, 14)),
    (5, 1, 4, 1, 2, (11, 7)), ((3, 2), (2, 1), (1, 2), (1, 2), 2, (12, 13))]
CONV_IDS = ["k{}-s{}-p{}-d{}-n{}-{}x{}".format(*c[:5], *c[5]).replace(" ", "")
            for c in CONV_CASES]
CHUNKINGS = {"row": 1, "rows3": 3, "image": None}     # rows per chunk; None = whole images


def _conv2d_problem(rng, case, dtype=np.float64):
    kernel, stride, padding, dilation, n, hw = case
    kh, kw = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    x = rng.standard_normal((n, 3) + hw).astype(dtype)
    w = rng.standard_normal((4, 3, kh, kw)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation)


def _conv2d_run(xp, x, w, b, options, dy_rng):
    y, cache = conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), **options)
    dy = xp.asarray(dy_rng.standard_normal(y.shape).astype(x.dtype))
    return (y,) + tuple(conv2d_backward(dy, cache))


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_chunked_conv2d_equals_unchunked(xp, rng, allocations, plans, case, chunking):
    x, w, b, options = _conv2d_problem(rng, case)
    want = _conv2d_run(xp, x, w, b, options, np.random.default_rng(1))
    out_h = conv_geometry(x.shape, w.shape[2:], *options.values())[4][0]
    rows = CHUNKINGS[chunking] or out_h
    limit = _row_limit(xp, x.shape, w.shape, options.values(), rows)
    allocations.clear(), plans.clear()
    with memory.limited(limit):
        got = _conv2d_run(xp, x, w, b, options, np.random.default_rng(1))
    for name, g, v in zip(("y", "dx", "dweight", "dbias"), got, want):
        assert g.dtype == np.float64 and g.shape == v.shape
        assert rel_error(g, v) < 1e-12, f"{name}: {rel_error(g, v):.1e}"
    assert max(allocations, default=0) <= limit, f"{max(allocations)} > {limit}"
    if case[:3] == (1, 1, 0):          # 1x1: image by image, x its own im2col (no plan made)
        assert not plans
        return
    _assert_chunked(plans, chunking, x.shape[0])


def _assert_chunked(plans, chunking, n):
    """Some plan has several chunks, except whole-image chunks of one image (one chunk)."""
    if chunking == "image" and n == 1:
        assert all(len(p) == 1 for p in plans)
    else:
        assert any(len(p) > 1 for p in plans), "the limit did not make any chunks"


TRANSPOSE_CASES = [  # kernel, stride, padding, output_padding, dilation, n
    (3, 1, 1, 0, 1, 1), (4, 2, 1, 0, 1, 2), (3, 2, 0, 1, 1, 3), (16, 8, 4, 0, 1, 1),
    (3, 3, 2, 2, 1, 2), (2, 1, 0, 1, 2, 1), ((3, 2), (2, 3), (1, 0), (1, 2), (1, 1), 2)]
TRANSPOSE_IDS = ["k{}-s{}-p{}-op{}-d{}-n{}".format(*c).replace(" ", "") for c in TRANSPOSE_CASES]


def _transpose_run(xp, x, w, b, options, dy_rng):
    y, cache = conv_transpose2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), **options)
    dy = xp.asarray(dy_rng.standard_normal(y.shape).astype(x.dtype))
    return (y,) + tuple(conv_transpose2d_backward(dy, cache))


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=TRANSPOSE_IDS)
def test_chunked_conv_transpose2d_equals_unchunked(xp, rng, allocations, costs, case, chunking):
    """The limit lets the largest plan's chunk hold ``rows`` rows of one image: the col2im
    path (stride 1, dilation, kernel < stride) and the stride-phase path plan different rows
    (y's or the phase grid's and x's), so the limit is taken from the plans themselves."""
    kernel, stride, padding, output_padding, dilation, n = case
    kh, kw = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    x = rng.standard_normal((n, 3, 6, 5))
    w = rng.standard_normal((3, 2, kh, kw))
    b = rng.standard_normal(2)
    options = dict(stride=stride, padding=padding, output_padding=output_padding,
                   dilation=dilation)
    want = _transpose_run(xp, x, w, b, options, np.random.default_rng(1))
    limit = max(max(64, cost(1, min(CHUNKINGS[chunking] or conv.out[0], conv.out[0])))
                for conv, cost, _ in costs)
    allocations.clear(), costs.clear()
    with memory.limited(limit):
        got = _transpose_run(xp, x, w, b, options, np.random.default_rng(1))
    for name, g, v in zip(("y", "dx", "dweight", "dbias"), got, want):
        assert rel_error(g, v) < 1e-12, f"{name}: {rel_error(g, v):.1e}"
    assert max(allocations, default=0) <= limit, f"{max(allocations)} > {limit}"
    _assert_chunked([chunks for _, _, chunks in costs], chunking, n)


def test_chunked_float32_stays_float32_and_close(xp, rng):
    x, w, b, options = _conv2d_problem(rng, CONV_CASES[1], np.float32)
    want = _conv2d_run(xp, x, w, b, options, np.random.default_rng(1))
    with memory.limited(_row_limit(xp, x.shape, w.shape, options.values(), 1, np.float32)):
        got = _conv2d_run(xp, x, w, b, options, np.random.default_rng(1))
    for g, v in zip(got, want):
        assert g.dtype == np.float32
        assert rel_error(g, v) < 1e-5   # dweight sums per-chunk float32 partials


def test_no_buffer_above_the_limit_without_the_pool(xp, rng, allocations):
    x = xp.asarray(rng.standard_normal((2, 8, 30, 31)).astype(np.float32))
    w = xp.asarray(rng.standard_normal((16, 8, 3, 3)).astype(np.float32))
    full = 8 * 9 * 30 * 31 * 4                                # one image's im2col
    limit = full // 5
    with memory.pooling(scratch=False), memory.limited(limit):
        y, cache = conv2d_forward(x, w, padding=1)
        conv2d_backward(xp.ones_like(y), cache)
        yt, cache = conv_transpose2d_forward(x, xp.asarray(np.ones((8, 4, 4, 4), np.float32)),
                                             stride=2, padding=1)
        conv_transpose2d_backward(xp.ones_like(yt), cache)
    assert len(allocations) > 20                              # fresh buffers for every chunk
    assert max(allocations) <= limit


# --- Errors --------------------------------------------------------------------------------

def test_one_row_above_the_limit_raises_naming_the_sizes(xp, rng):
    x = xp.asarray(rng.standard_normal((1, 64, 20, 50)).astype(np.float32))
    w = xp.asarray(rng.standard_normal((32, 64, 3, 3)).astype(np.float32))
    row = 64 * 9 * 50 * 4                                     # CKK * OW * itemsize
    with memory.limited(row - 1), pytest.raises(minifcn.WorkspaceLimitError) as caught:
        conv2d_forward(x, w, padding=1)
    message = str(caught.value)
    assert isinstance(caught.value, MemoryError)
    assert caught.value.needed == row and caught.value.limit == row - 1
    for text in ("conv2d forward", "(32, 64, 3, 3)", "(1, 64, 20, 50)", f"{row} bytes",
                 f"{row - 1} bytes", "single output row", "set_workspace_limit"):
        assert text in message, f"{text!r} not in {message!r}"
    with memory.limited(row):                              # exactly one row fits
        conv2d_forward(x, w, padding=1)


def test_machine_short_of_memory_advises_a_limit(monkeypatch, rng):
    monkeypatch.setattr(memory, "_available_memory", lambda: 50 * 2 ** 20)
    x = rng.standard_normal((1, 64, 200, 200)).astype(np.float32)   # im2col: 88 MiB
    w = rng.standard_normal((8, 64, 3, 3)).astype(np.float32)
    with pytest.raises(memory.WorkspaceMemoryError, match=r"set_workspace_limit\('256MiB'\)"):
        conv2d_forward(x, w, padding=1)
    with memory.limited("16MiB"):                          # chunks fit: no error
        y, _ = conv2d_forward(x, w, padding=1)
    assert y.shape == (1, 8, 200, 200)


def test_allocation_failure_is_reraised_with_advice():
    class NoMemory:
        @staticmethod
        def empty(shape, dtype):
            raise MemoryError("Unable to allocate 5 TiB")
    with pytest.raises(memory.WorkspaceMemoryError, match="MINIFCN_WORKSPACE_LIMIT"):
        memory._allocate(NoMemory, (10,), np.float32, "im2col")


# --- The limit's parser, setter and environment variable -----------------------------------

@pytest.mark.parametrize("value, expected", [
    (4096, 4096), ("4096", 4096), ("256MiB", 256 * 2 ** 20), ("1.5GB", 1_500_000_000),
    (" 2 kib ", 2048), ("1GB", 10 ** 9), ("0.5GiB", 2 ** 29), (".5KB", 500), ("3b", 3),
    (None, None), ("none", None), ("Unlimited", None), (np.int64(10), 10)])
def test_parse_size(value, expected):
    assert memory.parse_size(value) == expected


@pytest.mark.parametrize("value", ["abc", "12XB", "-5MB", "", "1.5.GB", "0", "0.1B", "MiB"])
def test_parse_size_rejects_bad_strings_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"^limit must"):
        minifcn.set_workspace_limit(value)


@pytest.mark.parametrize("value", [1.5e9, True, [256]])
def test_parse_size_rejects_other_types(value):
    with pytest.raises(TypeError, match=r"^limit must be an int"):
        minifcn.set_workspace_limit(value)


def test_set_get_and_scoped_limit():
    minifcn.set_workspace_limit("1MiB")
    assert minifcn.get_workspace_limit() == 2 ** 20
    with memory.limited(1000):
        assert minifcn.get_workspace_limit() == 1000
    assert minifcn.get_workspace_limit() == 2 ** 20
    minifcn.set_workspace_limit(None)
    assert minifcn.get_workspace_limit() is None


def _import_minifcn_with(value, code="print(minifcn.get_workspace_limit())"):
    env = dict(os.environ, MINIFCN_WORKSPACE_LIMIT=value)
    code = "import minifcn; " + code
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_environment_variable_is_read_at_import():
    assert _import_minifcn_with("256MiB").stdout.strip() == str(256 * 2 ** 20)
    assert _import_minifcn_with("").stdout.strip() == str(memory.DEFAULT_LIMIT)
    assert _import_minifcn_with("none").stdout.strip() == "None"
    assert memory.DEFAULT_LIMIT == 64 * 2 ** 20
    bad = _import_minifcn_with("lots")
    assert bad.returncode != 0 and "MINIFCN_WORKSPACE_LIMIT must be" in bad.stderr
    assert "Traceback" not in _import_minifcn_with("lots", "print('imported')").stderr
    reset = _import_minifcn_with("lots", "minifcn.set_workspace_limit('1MiB'); "
                                         "print(minifcn.get_workspace_limit())")
    assert reset.stdout.strip() == str(2 ** 20)


# --- The pool --------------------------------------------------------------------------------

def test_pool_never_lends_one_buffer_twice_and_reuses_returned_ones():
    with memory.scratch(np, (100, 10), np.float32):
        pass                                                   # one free buffer now
    with memory.scratch(np, (100, 10), np.float32) as a, \
            memory.scratch(np, (100, 10), np.float32) as b:
        assert not np.may_share_memory(a, b)
        a[...], b[...] = 1, 2
        assert (a == 1).all()
        kept = a.__array_interface__["data"][0]
    with memory.scratch(np, (10, 10), np.float64) as c:     # a smaller request, any dtype
        assert memory.in_scratch(c)
        assert c.__array_interface__["data"][0] in (kept, b.__array_interface__["data"][0])
    assert memory.stats()["scratch"]["lent"] == 0 and memory.stats()["scratch"]["hits"] == 2


def test_buffer_returns_to_the_pool_when_the_block_raises():
    with pytest.raises(RuntimeError), memory.scratch(np, (1000,), np.float32):
        raise RuntimeError("inside")
    assert memory.stats()["scratch"] == dict(free_buffers=1, free_bytes=4000, lent=0, hits=0,
                                             misses=1)


def test_pool_stays_bounded():
    for n in range(1, 40):                                     # growing, then shrinking sizes
        with memory.scratch(np, (n * 1000 % 37 + 1, 1000), np.float32):
            pass
        stats = memory.stats()["scratch"]
        assert stats["free_buffers"] <= memory.MAX_SCRATCH_BUFFERS
        assert stats["free_bytes"] <= memory.scratch_pool_limit()
    minifcn.set_workspace_limit(10_000)                        # pool limit: 3 x 10 kB
    assert memory.stats()["scratch"]["free_bytes"] <= 30_000
    memory.clear()
    assert memory.stats()["scratch"]["free_buffers"] == 0


def _all_outputs(xp, rng, limit):
    x = xp.asarray(rng.standard_normal((2, 3, 10, 11)))
    w = xp.asarray(rng.standard_normal((4, 3, 3, 3)))
    b = xp.asarray(rng.standard_normal(4))
    with memory.limited(limit):
        y, cache = conv2d_forward(x, w, b, padding=1)
        grads = conv2d_backward(xp.ones_like(y), cache)
        yt, cache_t = conv_transpose2d_forward(x, w.transpose(1, 0, 2, 3).copy(), stride=2)
        grads_t = conv_transpose2d_backward(xp.ones_like(yt), cache_t)
    return [y, *grads, yt, *grads_t[:2], *cache, *cache_t]


@pytest.mark.parametrize("limit", [None, 5000], ids=["unlimited", "chunked"])
def test_outputs_never_alias_pooled_memory(xp, rng, limit):
    first = _all_outputs(xp, rng, limit)
    kept = [asnumpy(a).copy() for a in first if hasattr(a, "shape")]
    for a in first:
        assert not memory.in_scratch(a), "an output lives in pooled memory"
    _all_outputs(xp, np.random.default_rng(7), limit)          # reuses every pooled buffer
    for a, k in zip([a for a in first if hasattr(a, "shape")], kept):
        np.testing.assert_array_equal(asnumpy(a), k)


def test_pool_switch_changes_nothing_but_allocation(rng, allocations):
    outputs = _all_outputs(np, rng, None)
    with memory.pooling(scratch=False):
        before = memory.stats()["scratch"]
        again = _all_outputs(np, np.random.default_rng(20261121), None)
        assert memory.stats()["scratch"] == before                     # the pool was not used
    for a, b in zip(outputs, again):
        if hasattr(a, "shape"):
            np.testing.assert_array_equal(a, b)


# --- Gradient checks of the chunked layers --------------------------------------------------

@pytest.mark.parametrize("options", [dict(stride=1, padding=1, dilation=1),
                                     dict(stride=2, padding=2, dilation=2)], ids=["s1", "s2d2"])
def test_chunked_conv2d_passes_gradcheck(xp, rng, options):
    x = xp.asarray(rng.standard_normal((2, 2, 7, 6)))
    w = xp.asarray(rng.standard_normal((3, 2, 3, 3)))
    b = xp.asarray(rng.standard_normal(3))
    limit = _row_limit(xp, x.shape, w.shape, options.values(), 1)
    with memory.limited(limit):
        report = check_function(lambda x, w, b: conv2d_forward(x, w, b, **options),
                                conv2d_backward, [x, w, b], max_elements=40)
    assert report.passed, str(report)


def test_chunked_conv_transpose2d_passes_gradcheck(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 2, 4, 5)))
    w = xp.asarray(rng.standard_normal((2, 3, 4, 4)))
    b = xp.asarray(rng.standard_normal(3))
    options = dict(stride=2, padding=1)
    limit = _row_limit(xp, (2, 3, 8, 10), w.shape, (2, 1, 1), 1)
    with memory.limited(limit):
        report = check_function(lambda x, w, b: conv_transpose2d_forward(x, w, b, **options),
                                conv_transpose2d_backward, [x, w, b], max_elements=40)
    assert report.passed, str(report)
