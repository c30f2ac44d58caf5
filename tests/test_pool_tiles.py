"""max_pool2d's fast path for tiling windows (``minifcn/ops/fast/pool_tiles.py``: kernel ==
stride, no padding, FCN's 2x2 pools): on divisible and ragged sizes, floor and ceil mode, it
equals the general loop (``fast/pool_strided.py``, the path taken without it) exactly (y,
the argmax offsets, dx), PyTorch and the naive loop, with ties, -inf and NaN inputs and
non-finite gradients; it is the path taken; it passes a gradient check."""
import itertools

import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.gradcheck import check_function
from minifcn.ops import dispatch, explain, max_pool2d_backward, max_pool2d_forward
from minifcn.ops.fast import pool_tiles

from helpers import rel_error
from reference import max_pool2d_backward_naive, max_pool2d_naive, pair

C = 3
KERNELS = [1, 2, 3, (2, 3), (3, 1)]
SIZES = [(1, (8, 6)), (2, (7, 9)), (1, (6, 7)), (2, (2, 5))]   # divisible, ragged, mixed
CASES = [(k, ceil, n, hw) for k, ceil, (n, hw) in itertools.product(KERNELS, (False, True), SIZES)
         if all(hw[a] >= pair(k)[a] for a in range(2))]
IDS = ["k{}x{}-{}-n{}-{}x{}".format(*pair(k), "ceil" if ceil else "floor", n, *hw)
       for k, ceil, n, hw in CASES]
grid = pytest.mark.parametrize("kernel, ceil_mode, n, hw", CASES, ids=IDS)


PIECES = {"forward": "max_pool2d.forward", "backward": "max_pool2d.backward"}


def _replace_tiles(monkeypatch, **fields):
    """Put a changed copy of the registered "tiles" path (``Path._replace(**fields)``) into
    the dispatcher's registry for the forward and the backward."""
    for piece in PIECES.values():
        paths = [p._replace(**fields) if p.name == "tiles" else p
                 for p in dispatch.paths(piece)]
        monkeypatch.setitem(dispatch._paths, piece, paths)


@pytest.fixture
def calls(monkeypatch):
    """How often the tiled forward and backward ran (the registered functions, counted)."""
    counts = dict.fromkeys(PIECES, 0)
    for part, piece in PIECES.items():
        path = next(p for p in dispatch.paths(piece) if p.name == "tiles")

        def counting(*args, _part=part, _run=path.run):
            counts[_part] += 1
            return _run(*args)

        paths = [p._replace(run=counting) if p.name == "tiles" else p
                 for p in dispatch.paths(piece)]
        monkeypatch.setitem(dispatch._paths, piece, paths)
    return counts


def _general_loop(monkeypatch):
    """The tiles' rule never holds: the pools run the path after it, the general loop."""
    _replace_tiles(monkeypatch, applies=lambda call: False)


def _run(xp, x, dy_of, kernel, ceil_mode):
    """y, the cache's argmax and dx as NumPy, and the dy used."""
    y, cache = max_pool2d_forward(xp.asarray(x), kernel, kernel, 0, ceil_mode)
    dy = dy_of(y.shape)
    dx = max_pool2d_backward(xp.asarray(dy), cache)
    return asnumpy(y), asnumpy(cache.argmax), asnumpy(dx), dy


def _chosen(xp, x, kernel, ceil_mode):
    """What runs for the forward and the backward, or None on the GPU (the CUDA kernels)."""
    if xp is not np:
        return None
    return set(explain("max_pool2d", x.shape, kernel_size=kernel, stride=kernel,
                       ceil_mode=ceil_mode, dtype=x.dtype.name).choices.values())


def _both_paths(xp, monkeypatch, x, dy_of, kernel, ceil_mode):
    assert _chosen(xp, x, kernel, ceil_mode) in (None, {"tiles"})
    fast = _run(xp, x, dy_of, kernel, ceil_mode)
    _general_loop(monkeypatch)
    assert _chosen(xp, x, kernel, ceil_mode) in (None, {"strided"})
    general = _run(xp, x, lambda shape: fast[3], kernel, ceil_mode)
    monkeypatch.undo()
    return fast, general


def _assert_same(fast, general):
    for name, f, g in zip(("y", "argmax", "dx"), fast, general):
        assert f.dtype == g.dtype and f.shape == g.shape, name
        np.testing.assert_array_equal(f, g, err_msg=name)        # NaNs in the same places


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@grid
def test_tiles_equal_general_loop_torch_and_naive(xp, torch, rng, monkeypatch, calls, kernel,
                                                   ceil_mode, n, hw, dtype):
    x = rng.permutation(np.linspace(-1, 1, n * C * hw[0] * hw[1])).reshape((n, C) + hw)
    x = x.astype(dtype)
    fast, general = _both_paths(xp, monkeypatch, x,
                                lambda s: rng.standard_normal(s).astype(dtype), kernel,
                                ceil_mode)
    if xp is np:
        assert calls == {"forward": 1, "backward": 1}, "the tiled path was not taken"
    _assert_same(fast, general)
    y, _, dx, dy = fast
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, kernel, kernel, ceil_mode=ceil_mode)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    assert rel_error(dx, tx.grad.numpy()) == 0
    want_y, winners = max_pool2d_naive(x, kernel, kernel, 0, ceil_mode)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(dx, max_pool2d_backward_naive(dy, winners, x.shape))


@pytest.mark.parametrize("kernel, ceil_mode, hw", [(2, True, (7, 9)), (2, False, (8, 6)),
                                                   (3, True, (7, 8)), ((2, 3), True, (5, 7))],
                         ids=["k2-ceil", "k2-floor", "k3-ceil", "k2x3-ceil"])
def test_ties_go_to_the_first_maximum(xp, torch, rng, monkeypatch, kernel, ceil_mode, hw):
    """Values from {0, 1, 2}: most windows hold tied maxima."""
    x = rng.integers(0, 3, (2, C) + hw).astype(np.float64)
    fast, general = _both_paths(xp, monkeypatch, x, rng.standard_normal, kernel, ceil_mode)
    _assert_same(fast, general)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, kernel, kernel, ceil_mode=ceil_mode)
    ty.backward(torch.from_numpy(fast[3]))
    np.testing.assert_array_equal(fast[2], tx.grad.numpy())


@pytest.mark.parametrize("kernel", [2, 3, (2, 3)], ids=["k2", "k3", "k2x3"])
def test_minus_infinity_and_nan_follow_the_general_loop_and_torch(xp, torch, rng, monkeypatch,
                                                                  kernel):
    """Windows of -inf point at their first pixel; a NaN wins its window, and of several
    NaNs the last does (PyTorch's ``val > max || isnan(val)``), also in cut windows."""
    x = rng.standard_normal((2, C, 7, 9))
    x[0, 0, :3, :4] = -np.inf
    x[0, 1, 0, 1] = x[0, 1, 1, 0] = x[1, 2, 6, 8] = x[1, 0, 2, 2] = np.nan
    x[1, 1, 4:6, 4:6] = np.nan
    fast, general = _both_paths(xp, monkeypatch, x, rng.standard_normal, kernel, True)
    _assert_same(fast, general)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, kernel, kernel, ceil_mode=True)
    ty.backward(torch.from_numpy(fast[3]))
    np.testing.assert_array_equal(fast[0], ty.detach().numpy())
    np.testing.assert_array_equal(fast[2], tx.grad.numpy())
    assert np.isnan(fast[0]).sum() >= 4


def test_non_finite_gradients_reach_only_the_winners(xp, rng, monkeypatch):
    """An inf or NaN in dy goes to its window's winner; the other pixels get exactly 0
    (``dy * hit`` would give NaN there), as in the general loop."""
    x = rng.standard_normal((1, C, 6, 7))
    dy = rng.standard_normal((1, C, 3, 4))
    dy[0, 0, 1, 1], dy[0, 1, 2, 3], dy[0, 2, 0, 0] = np.inf, np.nan, -np.inf
    fast, general = _both_paths(xp, monkeypatch, x, lambda shape: dy, 2, True)
    _assert_same(fast, general)
    assert np.isfinite(fast[2]).sum() == fast[2].size - 3


def test_kernel_over_127_elements_uses_int32_offsets(xp, torch, rng, monkeypatch):
    x = rng.standard_normal((1, 2, 25, 26))
    fast, general = _both_paths(xp, monkeypatch, x, rng.standard_normal, 12, True)
    _assert_same(fast, general)
    assert fast[1].dtype == np.int32
    np.testing.assert_array_equal(
        fast[0], torch.nn.functional.max_pool2d(torch.from_numpy(x), 12, ceil_mode=True).numpy())


@pytest.mark.parametrize("kernel, ceil_mode", [(2, True), (3, False), ((2, 3), True)],
                         ids=["k2-ceil", "k3-floor", "k2x3-ceil"])
def test_tiles_pass_gradcheck(xp, rng, calls, kernel, ceil_mode):
    x = rng.permutation(np.linspace(-1, 1, 2 * C * 7 * 8)).reshape(2, C, 7, 8)
    report = check_function(lambda x: max_pool2d_forward(x, kernel, kernel, 0, ceil_mode),
                            max_pool2d_backward, [xp.asarray(x)], max_elements=40)
    assert report.passed, str(report)
    if xp is np:
        assert calls["forward"] > 0 and calls["backward"] > 0


@pytest.mark.parametrize("kernel, stride, padding, tiled", [
    ((2, 2), (2, 2), (0, 0), True), ((3, 2), (3, 2), (0, 0), True),
    ((2, 2), (2, 2), (1, 1), False), ((3, 3), (2, 2), (0, 0), False),
    ((2, 2), (1, 1), (0, 0), False)])
def test_which_options_tile(kernel, stride, padding, tiled):
    call = dispatch.Call("cpu", np.dtype(np.float64), (2, C, 12, 12), kernel=kernel,
                         stride=stride, padding=padding, dilation=(1, 1))
    assert pool_tiles.applies(call) is tiled
    chosen = explain("max_pool2d", call.x_shape, kernel_size=kernel, stride=stride,
                     padding=padding, dtype="float64").choices
    assert chosen == dict.fromkeys(PIECES.values(), "tiles" if tiled else "strided")


CHUNKINGS = {"one-row": 1, "rows": 400, "planes": 1600, "all": 2 ** 20}


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("kernel, hw", [(2, (9, 12)), ((3, 2), (10, 7))], ids=["k2", "k3x2"])
def test_chunks_of_planes_and_rows_change_nothing(xp, rng, monkeypatch, kernel, hw, chunking):
    """The NumPy path de-interleaves x chunk by chunk (rows of one plane, or several whole
    planes): every chunking gives the general loop's results, ties and NaNs included."""
    x = rng.integers(0, 3, (2, C) + hw).astype(np.float64)
    x[1, 2, 3, 1] = np.nan
    monkeypatch.setattr(pool_tiles, "CHUNK_BYTES", CHUNKINGS[chunking])
    made = []
    chunks = pool_tiles._chunks
    monkeypatch.setattr(pool_tiles, "_chunks", lambda *a: made.append(chunks(*a)) or made[-1])
    fast = _run(xp, x, rng.standard_normal, kernel, True)
    monkeypatch.undo()
    _general_loop(monkeypatch)
    _assert_same(fast, _run(xp, x, lambda shape: fast[3], kernel, True))
    if xp is not np:
        return
    fh = hw[0] // pair(kernel)[0]
    assert len(made) == 2 and made[0] == made[1]                     # forward and backward
    planes = {p1 - p0 for p0, p1, _, _ in made[0]}
    rows = {r1 - r0 for _, _, r0, r1 in made[0]}
    want = {"one-row": ({1}, {1}), "rows": ({1}, {2, fh % 2 or 2}), "planes": (None, {fh}),
            "all": ({2 * C}, {fh})}[chunking]
    assert rows == want[1] and (want[0] is None or planes == want[0]), made[0]
    if chunking == "planes":
        assert max(planes) > 1 and len(made[0]) > 1
