"""The stride-phase path of conv_transpose2d (``minifcn/ops/fast/phases.py``): on a grid of
the options it covers (k = s, 2s-1, 2s, 2s+1; padding; output_padding; odd sizes; N > 1; C_in
!= C_out) forward and backward equal the col2im path (the path taken without it: conv2d's
pieces, col2im for the forward) and PyTorch; it is the path taken; it passes a gradient
check; it chunks under a workspace limit."""
import math

import numpy as np
import pytest

from minifcn import memory
from minifcn.backend import asnumpy
from minifcn.gradcheck import check_function
from minifcn.ops import (conv_transpose2d_backward, conv_transpose2d_forward, dispatch,
                         explain)
from minifcn.ops.fast import gemm, phases

from helpers import rel_error
from reference import conv_transpose2d_naive, pair

C_IN, C_OUT = 3, 2


def _grid():
    """(kernel, stride, padding, output_padding, n, (H, W)), with the kernel at least the
    stride: phases of one tap (k = s) or two and three of unequal length (k = 2s +- 1)."""
    cases = []
    draw = np.random.default_rng(3)
    for s in (2, 3, (2, 3)):
        sh, sw = pair(s)
        kernels = {(sh, sw), (2 * sh - 1, 2 * sw - 1), (2 * sh, 2 * sw), (2 * sh + 1, 2 * sw + 1),
                   (2 * sh, sw + 1)}
        for k in sorted(kernels):
            for p in (0, 1, sh):
                for op in sorted({0, min(sh, sw) - 1}):
                    n = 1 + int(draw.integers(2))
                    hw = [(5, 6), (4, 7), (7, 5)][draw.integers(3)]
                    if all((hw[a] - 1) * pair(s)[a] - 2 * p + k[a] + op >= 1 for a in range(2)):
                        cases.append((k, s, p, op, n, hw))
    cases.append(((16, 16), 8, 0, 0, 1, (3, 4)))                     # upscore8's geometry
    cases.append(((4, 4), 2, 0, 0, 2, (6, 5)))                       # upscore2's
    return cases


CASES = _grid()
IDS = ["k{}x{}-s{}-p{}-op{}-n{}-{}x{}".format(*c[0], c[1], *c[2:5], *c[5]).replace(" ", "")
       for c in CASES]
grid = pytest.mark.parametrize("kernel, stride, padding, output_padding, n, hw", CASES, ids=IDS)


def _problem(rng, kernel, n, hw, dtype=np.float64):
    x = rng.standard_normal((n, C_IN) + hw).astype(dtype)
    w = rng.standard_normal((C_IN, C_OUT) + pair(kernel)).astype(dtype)
    b = rng.standard_normal(C_OUT).astype(dtype)
    return x, w, b


def _run(xp, x, w, b, dy, options):
    y, cache = conv_transpose2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), **options)
    grads = conv_transpose2d_backward(xp.asarray(dy), cache)
    return [asnumpy(a) for a in (y,) + tuple(grads)]


@pytest.fixture
def calls(monkeypatch):
    """How often the phase path's forward and backward ran."""
    counts = {"forward": 0, "backward": 0}
    for name in counts:
        original = getattr(phases, name)

        def counting(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(phases, name, counting)
    return counts


PIECES = ("conv_transpose2d.forward", "conv_transpose2d.backward")


def _col2im_path(monkeypatch):
    """The phases' rule never holds: the path after them runs (conv2d's pieces)."""
    for piece in PIECES:
        paths = [p._replace(applies=lambda call: False) if p.name == "phases" else p
                 for p in dispatch.paths(piece)]
        monkeypatch.setitem(dispatch._paths, piece, paths)


def _chosen(x_shape, w_shape, **options):
    """The implementations explain names for the forward and the backward."""
    return set(explain("conv_transpose2d", x_shape, w_shape, **options).choices.values())


def test_grid_covers_cut_and_missing_blocks():
    """Some cases have phase blocks cut by the output's border (grid rows or columns that
    land outside y: padding, k < 2s), some leave output pixels that no grid block reaches
    (output_padding: y starts from zeros there), some neither (FCN's upscore layers)."""
    kinds = set()
    for kernel, stride, padding, output_padding, _, hw in CASES:
        s = pair(stride)
        out = [(hw[a] - 1) * s[a] - 2 * padding + kernel[a] + output_padding for a in range(2)]
        grid = phases._grid((1, 1) + hw, (1, 1) + kernel, s, pair(padding), out)
        cut = any(p.stop - p.start < grid.size[0] or q.stop - q.start < grid.size[1]
                  for _, ((p, _), (q, _)) in phases._phase_slices(grid, 0, grid.size))
        missing = any(padding + out[a] > grid.size[a] * s[a] for a in range(2))
        kinds.add((cut, missing))
    assert {(True, False), (False, True), (False, False)} <= kinds, kinds


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)],
                         ids=["float64", "float32"])
@grid
def test_phases_equal_col2im_path_and_torch(xp, torch, rng, monkeypatch, calls, kernel, stride,
                                            padding, output_padding, n, hw, dtype, tol):
    x, w, b = _problem(rng, kernel, n, hw, dtype)
    options = dict(stride=stride, padding=padding, output_padding=output_padding)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, **options)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    got = _run(xp, x, w, b, dy, options)
    assert calls == {"forward": 1, "backward": 1}, "the phase path was not taken"
    _col2im_path(monkeypatch)
    assert _chosen(x.shape, w.shape, dtype=x.dtype.name, device="cpu" if xp is np else "cuda",
                   **options) == {"conv2d pieces"}
    old = _run(xp, x, w, b, dy, options)
    assert calls == {"forward": 1, "backward": 1}, "the phase path ran again"
    theirs = [ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()]
    for name, g, o, t in zip(("y", "dx", "dweight", "dbias"), got, old, theirs):
        assert g.dtype == dtype and g.shape == t.shape, name
        assert rel_error(g, o) < tol, f"{name} vs col2im path: {rel_error(g, o):.1e}"
        assert rel_error(g, t) < tol, f"{name} vs torch: {rel_error(g, t):.1e}"


@pytest.mark.parametrize("kernel, stride, padding, output_padding, n, hw", CASES[::7])
def test_phases_forward_matches_naive_loop(xp, rng, kernel, stride, padding, output_padding,
                                           n, hw):
    x, w, b = _problem(rng, kernel, n, hw)
    y, _ = conv_transpose2d_forward(*(xp.asarray(a) for a in (x, w, b)), stride=stride,
                                    padding=padding, output_padding=output_padding)
    want = conv_transpose2d_naive(x, w, b, stride, padding, output_padding)
    assert rel_error(y, want) < 1e-12


@pytest.mark.parametrize("kernel, stride, padding, output_padding",
                         [(4, 2, 1, 0), (3, 2, 0, 1), (5, 2, 2, 1), ((3, 4), (3, 2), (1, 2), 1),
                          (6, 3, 0, 0)],
                         ids=["k4-s2-p1", "k3-s2-op1", "k5-s2-p2-op1", "k3x4-s3x2", "k6-s3"])
def test_phases_pass_gradcheck(xp, rng, calls, kernel, stride, padding, output_padding):
    x = xp.asarray(rng.standard_normal((2, C_IN, 4, 3)))
    w = xp.asarray(rng.standard_normal((C_IN, C_OUT) + pair(kernel)))
    b = xp.asarray(rng.standard_normal(C_OUT))
    options = dict(stride=stride, padding=padding, output_padding=output_padding)
    report = check_function(lambda x, w, b: conv_transpose2d_forward(x, w, b, **options),
                            conv_transpose2d_backward, [x, w, b], max_elements=40)
    assert report.passed, str(report)
    assert calls["forward"] > 0 and calls["backward"] > 0


@pytest.mark.parametrize("kernel, stride, dilation, taken", [
    ((16, 16), (8, 8), (1, 1), True), ((4, 4), (2, 2), (1, 1), True),
    ((3, 3), (3, 3), (1, 1), True), ((3, 4), (1, 2), (1, 1), True),
    ((3, 3), (1, 1), (1, 1), False),                 # stride 1: a plain correlation already
    ((4, 4), (2, 2), (2, 1), False),                 # dilation
    ((3, 2), (2, 3), (1, 1), False)])                # a kernel smaller than its stride
def test_which_options_take_the_phases(kernel, stride, dilation, taken):
    x_shape, w_shape = (1, C_IN, 5, 6), (C_IN, C_OUT) + kernel
    call = dispatch.Call("cpu", np.dtype(np.float64), x_shape, w_shape, kernel, stride,
                         (0, 0), dilation)
    assert phases.applies(call) is taken
    chosen = _chosen(x_shape, w_shape, stride=stride, dilation=dilation, dtype="float64")
    assert chosen == {"phases" if taken else "conv2d pieces"}


@pytest.mark.parametrize("rows", [1, 2, None], ids=["row", "rows2", "image"])
@pytest.mark.parametrize("kernel, stride, padding, output_padding, n",
                         [(16, 8, 0, 0, 1), (5, 2, 1, 1, 3), ((4, 3), (2, 3), (1, 0), 0, 2)],
                         ids=["k16-s8", "k5-s2-p1-op1-n3", "k4x3-s2x3"])
def test_chunked_phases_equal_unchunked(xp, rng, monkeypatch, kernel, stride, padding,
                                        output_padding, n, rows):
    """A limit that lets the largest chunk hold ``rows`` rows of the phase grid (None: one
    image): same results, no workspace buffer above it, and some plan of several chunks."""
    x, w, b = _problem(rng, kernel, n, (5, 4))
    options = dict(stride=stride, padding=padding, output_padding=output_padding)
    y, _ = conv_transpose2d_forward(x, w, b, **options)
    dy = rng.standard_normal(y.shape)
    made, allocated = [], []                                         # (conv, cost, chunks)
    plan, allocate = gemm.plan, memory._allocate
    for module in (gemm, phases):                                    # phases imports plan
        monkeypatch.setattr(module, "plan", lambda conv, cost: made.append(
            (conv, cost, plan(conv, cost))) or made[-1][2])
    want = _run(xp, x, w, b, dy, options)
    limit = max(cost(1, rows or conv.out[0]) for conv, cost, _ in made)
    made.clear()
    monkeypatch.setattr(memory, "_allocate", lambda xp_, shape, dtype, what="": (
        allocated.append(math.prod(shape) * np.dtype(dtype).itemsize) or
        allocate(xp_, shape, dtype, what)))
    with memory.limited(limit):
        got = _run(xp, x, w, b, dy, options)
    for name, g, v in zip(("y", "dx", "dweight", "dbias"), got, want):
        assert rel_error(g, v) < 1e-12, f"{name}: {rel_error(g, v):.1e}"
    assert max(allocated, default=0) <= limit
    chunks = [c for _, _, c in made]
    assert len(chunks) == 2                                          # forward and backward
    if rows is None and n == 1:
        assert all(len(c) == 1 for c in chunks)
    else:
        assert any(len(c) > 1 for c in chunks), "the limit made no chunks"


def test_float32_stays_float32(xp, rng, calls):
    x, w, b = _problem(rng, (4, 4), 2, (5, 6), np.float32)
    y, dx, dw, db = _run(xp, x, w, b, rng.standard_normal((2, C_OUT, 12, 14)).astype(np.float32),
                         dict(stride=2, padding=0))
    assert {a.dtype for a in (y, dx, dw, db)} == {np.dtype(np.float32)}
    assert calls == {"forward": 1, "backward": 1}
