"""Property-based parity of conv2d and conv_transpose2d with PyTorch (hypothesis).

Two properties per op:

* *agreement*: hypothesis draws valid shapes and options (batch 1-3, channels 1-5 in and
  out, kernel 1-5 per axis, stride 1-4, padding 0-3, dilation 1-3, output_padding below the
  stride or the dilation, bias or not, each option an int or an (h, w) tuple) and an input
  size per axis of at most 20, drawn as the smallest size the options allow plus a slack that
  is 0-2 about half the time, so that the kernel only just fits. Forward, and backward with a
  random dy, must equal ``torch.nn.functional`` (autograd) in float64 to 1e-10 relative;
* *rejection*: the options come from wider ranges that hold what PyTorch rejects (stride and
  dilation below 1, negative padding and output_padding, output_padding at least the stride
  and the dilation, kernels larger than the padded input, transposed outputs padded away).
  Where torch raises, minifcn raises a ValueError whose message starts with the name of an
  offending argument; where torch accepts, minifcn accepts and agrees.

Every draw runs under the default workspace limit or under the smallest limit that lets the
op run, so that the GEMMs work in chunks of one output row. Example counts come from the
hypothesis profile (``tests/conftest.py``).
"""
import re
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from minifcn import memory
from minifcn.ops import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                         conv_transpose2d_forward)

from helpers import rel_error

TOL = 1e-10
MAX_SIZE = 20
LIMITS = ("default", "one row")      # workspace limits: DEFAULT_LIMIT, or the smallest that runs
OPS = {"conv2d": (conv2d_forward, conv2d_backward),
       "conv_transpose2d": (conv_transpose2d_forward, conv_transpose2d_backward)}


class Problem(NamedTuple):
    """One draw: the shapes, the options as passed (ints or tuples), a workspace limit."""
    x_shape: tuple
    w_shape: tuple
    bias: bool
    options: dict
    limit: str                       # one of LIMITS
    seed: int


# --- Strategies ---------------------------------------------------------------------------------

def _option(draw, lo, hi):
    """An option as passed (an int, or an (h, w) tuple) and as an (h, w) pair.

    ``hi`` is an int or a per-axis pair of upper bounds (an int must respect both)."""
    hi = hi if isinstance(hi, tuple) else (hi, hi)
    if draw(st.booleans()):
        value = draw(st.integers(lo, min(hi)))
        return value, (value, value)
    value = tuple(draw(st.integers(lo, hi[a])) for a in range(2))
    return value, value


def _dilation(draw):
    """Dilation 1 half the time (the stride-phase path of conv_transpose2d needs it), else
    1-3 as an int or a tuple."""
    return (1, (1, 1)) if draw(st.booleans()) else _option(draw, 1, 3)


def _just_fits(draw, smallest):
    """A size from ``smallest`` (clamped to [1, MAX_SIZE]) to MAX_SIZE, within 2 of it about
    half the time: the kernel only just fits."""
    smallest = min(max(1, smallest), MAX_SIZE)
    room = MAX_SIZE - smallest
    return smallest + draw(st.integers(0, min(2, room)) | st.integers(0, room))


def _problem(draw, x_hw, w_channels, kernel, options):
    n = draw(st.integers(1, 3))
    c_in, c_out = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    w_shape = (w_channels(c_in, c_out)) + tuple(kernel)
    return Problem((n, c_in) + tuple(x_hw), w_shape, draw(st.booleans()), options,
                   draw(st.sampled_from(LIMITS)), draw(st.integers(0, 2 ** 32 - 1)))


def _conv2d_channels(c_in, c_out):
    return (c_out, c_in)             # weight (F, C, KH, KW)


def _transposed_channels(c_in, c_out):
    return (c_in, c_out)             # weight (C_in, C_out, KH, KW)


def _smallest_conv2d_input(k, p, d):
    """The smallest input length with at least one output for a conv2d: D(K-1) + 1 - 2P."""
    return d * (k - 1) + 1 - 2 * p


def _smallest_transposed_input(k, s, p, op, d):
    """The smallest input length H with ``(H-1)S - 2P + D(K-1) + op + 1 >= 1``."""
    return 1 + max(0, -(-(2 * p - d * (k - 1) - op) // s))


@st.composite
def conv2d_problems(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    (stride, _), (padding, p), (dilation, d) = (_option(draw, 1, 4), _option(draw, 0, 3),
                                                _dilation(draw))
    hw = [_just_fits(draw, _smallest_conv2d_input(kernel[a], p[a], d[a]))
          for a in range(2)]
    options = dict(stride=stride, padding=padding, dilation=dilation)
    return _problem(draw, hw, _conv2d_channels, kernel, options)


@st.composite
def conv_transpose2d_problems(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    (stride, s), (padding, p), (dilation, d) = (_option(draw, 1, 4), _option(draw, 0, 3),
                                                _dilation(draw))
    output_padding, op = _option(draw, 0, tuple(max(s[a], d[a]) - 1 for a in range(2)))
    hw = [_just_fits(draw, _smallest_transposed_input(kernel[a], s[a], p[a], op[a], d[a]))
          for a in range(2)]
    options = dict(stride=stride, padding=padding, output_padding=output_padding,
                   dilation=dilation)
    return _problem(draw, hw, _transposed_channels, kernel, options)


def _near(draw, smallest):
    """Any size in [1, 12], or one within 2 of ``smallest``: both sides of the boundary."""
    return draw(st.integers(1, 12) | st.integers(max(1, smallest - 2), max(1, smallest + 2)))


def _wide_option(draw, broken, lo, hi, wide):
    """As :func:`_option` unless ``broken``: then, per axis, just outside [lo, hi]
    (``lo - 1`` or ``hi + 1``) or anywhere in the ``wide`` range."""
    if not broken:
        return _option(draw, lo, hi)
    hi = hi if isinstance(hi, tuple) else (hi, hi)
    outside = lambda h: st.just(lo - 1) | st.just(h + 1) | st.integers(*wide)
    if draw(st.booleans()):
        value = draw(outside(min(hi)))
        return value, (value, value)
    value = tuple(draw(outside(h)) for h in hi)
    return value, value


def _broken(draw, names):
    """Which options to draw from outside their ranges: none (a quarter of the time or
    more), one (the last one, the subtlest, twice as often as the others), or all."""
    choice = draw(st.sampled_from((None,) * (len(names) // 2) + names + names[-1:] + ("all",)))
    return {name: choice in (name, "all") for name in names}


@st.composite
def wide_conv2d_problems(draw):
    kernel = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    broken = _broken(draw, ("stride", "padding", "dilation"))
    (stride, _), (padding, p), (dilation, d) = (
        _wide_option(draw, broken["stride"], 1, 4, (-1, 5)),
        _wide_option(draw, broken["padding"], 0, 6, (-2, 6)),
        _wide_option(draw, broken["dilation"], 1, 4, (-1, 4)))
    hw = [_near(draw, _smallest_conv2d_input(kernel[a], p[a], d[a])) for a in range(2)]
    options = dict(stride=stride, padding=padding, dilation=dilation)
    return _problem(draw, hw, _conv2d_channels, kernel, options)


@st.composite
def wide_conv_transpose2d_problems(draw):
    kernel = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    broken = _broken(draw, ("stride", "padding", "dilation", "output_padding"))
    (stride, s), (padding, p), (dilation, d) = (
        _wide_option(draw, broken["stride"], 1, 4, (-1, 5)),
        _wide_option(draw, broken["padding"], 0, 6, (-2, 6)),
        _wide_option(draw, broken["dilation"], 1, 3, (-1, 4)))
    below = tuple(max(s[a], d[a], 1) - 1 for a in range(2))     # the largest torch accepts
    output_padding, op = _wide_option(draw, broken["output_padding"], 0, below,
                                      (-1, max(below) + 2))
    hw = [_near(draw, _smallest_transposed_input(kernel[a], max(s[a], 1), p[a], op[a], d[a]))
          for a in range(2)]
    options = dict(stride=stride, padding=padding, output_padding=output_padding,
                   dilation=dilation)
    return _problem(draw, hw, _transposed_channels, kernel, options)


# --- PyTorch's rules, as this file understands them ------------------------------------------

def _pairs(options):
    return {name: value if isinstance(value, tuple) else (value, value)
            for name, value in options.items()}


def _out_of_range(o):
    """The arguments outside their own ranges (torch checks these before any shape)."""
    minimum = dict(stride=1, padding=0, output_padding=0, dilation=1)
    bad = {name for name, v in o.items() if min(v) < minimum[name]}
    if "output_padding" in o and not bad & {"stride", "dilation", "output_padding"}:
        if any(o["output_padding"][a] >= max(o["stride"][a], o["dilation"][a]) for a in range(2)):
            bad.add("output_padding")
    return bad


def _offending(name, problem):
    """The names of the arguments torch rejects this problem for (empty when it accepts):
    an option out of range, else ``kernel`` (conv2d: the dilated kernel is larger than the
    padded input) or ``padding`` (conv_transpose2d: the padding leaves no output)."""
    o = _pairs(problem.options)
    bad = _out_of_range(o)
    if bad:
        return bad
    hw, k = problem.x_shape[2:], problem.w_shape[2:]
    if name == "conv2d":
        small = [hw[a] < _smallest_conv2d_input(k[a], o["padding"][a], o["dilation"][a])
                 for a in range(2)]
        return {"kernel"} if any(small) else set()
    small = [hw[a] < _smallest_transposed_input(k[a], o["stride"][a], o["padding"][a],
                                                o["output_padding"][a], o["dilation"][a])
             for a in range(2)]
    return {"padding"} if any(small) else set()


def _at_smallest(name, problem):
    """Whether the input is one row or column from being too small (the kernel just fits)."""
    smaller = problem._replace(x_shape=problem.x_shape[:2] + (problem.x_shape[2] - 1,
                                                               problem.x_shape[3]))
    narrower = problem._replace(x_shape=problem.x_shape[:3] + (problem.x_shape[3] - 1,))
    return bool(_offending(name, smaller) or _offending(name, narrower))


# --- The comparison -----------------------------------------------------------------------------

def _torch_forward(torch, name, problem, rng):
    """The NumPy inputs, torch's output and its leaf tensors (raises where torch rejects)."""
    x = rng.standard_normal(problem.x_shape)
    w = rng.standard_normal(problem.w_shape)
    c_out = problem.w_shape[0] if name == "conv2d" else problem.w_shape[1]
    b = rng.standard_normal(c_out) if problem.bias else None
    leaves = [None if a is None else torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = getattr(torch.nn.functional, name)(*leaves, **problem.options)
    return (x, w, b), y, leaves


def _assert_agrees(xp, torch, name, problem, torch_result, rng):
    """minifcn's forward and backward (under the problem's workspace limit) equal torch's."""
    arrays, ty, leaves = torch_result
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    y, grads = _run_minifcn(xp, name, problem, arrays, dy)
    if not problem.bias:
        assert grads[2] is None, "dbias without a bias"
    compared = [("y", y, ty)] + [(label, got, leaf.grad) for label, got, leaf
                                 in zip(("dx", "dweight", "dbias"), grads, leaves)
                                 if leaf is not None]
    for label, got, want in compared:
        assert got.dtype == np.float64, f"{label} is {got.dtype}"
        error = rel_error(got, want.detach().numpy())
        assert error < TOL, f"{label}: relative error {error:.2e}"


def _run_minifcn(xp, name, problem, arrays, dy):
    """Forward and backward under the default workspace limit, or under the smallest limit
    that lets them run (``WorkspaceLimitError.needed``: one output row per chunk)."""
    forward, backward = OPS[name]
    limit = memory.DEFAULT_LIMIT if problem.limit == "default" else 1
    while True:
        try:
            with memory.limited(limit):
                y, cache = forward(*[None if a is None else xp.asarray(a) for a in arrays],
                                   **problem.options)
                return y, backward(xp.asarray(dy), cache)
        except memory.WorkspaceLimitError as err:
            assert problem.limit != "default" and err.needed > limit, str(err)
            limit = err.needed


def _run_agreement(xp, torch, name, problem):
    event(f"workspace limit: {problem.limit}")
    if _at_smallest(name, problem):
        event("an axis at the smallest input size")
    rng = np.random.default_rng(problem.seed)
    _assert_agrees(xp, torch, name, problem, _torch_forward(torch, name, problem, rng), rng)


def _run_rejection(xp, torch, name, problem):
    """Torch rejects -> minifcn raises a ValueError starting with an offending argument's name;
    torch accepts -> minifcn agrees with it."""
    rng = np.random.default_rng(problem.seed)
    offending = _offending(name, problem)
    try:
        result = _torch_forward(torch, name, problem, rng)
    except RuntimeError as err:
        event(f"torch rejects ({', '.join(sorted(offending))})")
        assert offending, f"torch rejects for a reason this file does not model: {err}"
        _assert_rejects(xp, name, problem, offending)
        return
    event("torch accepts")
    assert not offending, f"torch accepts what this file expects it to reject for {offending}"
    _assert_agrees(xp, torch, name, problem, result, rng)


def _assert_rejects(xp, name, problem, offending):
    x = xp.zeros(problem.x_shape)
    w = xp.zeros(problem.w_shape)
    c_out = problem.w_shape[0] if name == "conv2d" else problem.w_shape[1]
    b = xp.zeros(c_out) if problem.bias else None
    try:
        OPS[name][0](x, w, b, **problem.options)
    except ValueError as err:
        assert re.match(rf"({'|'.join(offending)})\b", str(err)), \
            f"the message should start with one of {sorted(offending)}: {err}"
        return
    raise AssertionError(f"minifcn accepts what torch rejects (for {sorted(offending)})")


# --- The properties -----------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _torch_on_one_thread(torch):
    """These tensors are tiny: torch's thread pool only costs here (and much more on a busy
    machine), so this module runs torch on one thread and restores the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@given(problem=conv2d_problems())
def test_conv2d_agrees_with_torch(xp, torch, problem):
    _run_agreement(xp, torch, "conv2d", problem)


@given(problem=conv_transpose2d_problems())
def test_conv_transpose2d_agrees_with_torch(xp, torch, problem):
    _run_agreement(xp, torch, "conv_transpose2d", problem)


@given(problem=wide_conv2d_problems())
def test_conv2d_rejects_what_torch_rejects(xp, torch, problem):
    _run_rejection(xp, torch, "conv2d", problem)


@given(problem=wide_conv_transpose2d_problems())
def test_conv_transpose2d_rejects_what_torch_rejects(xp, torch, problem):
    _run_rejection(xp, torch, "conv_transpose2d", problem)
