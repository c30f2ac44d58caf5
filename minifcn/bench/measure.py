"""Time one op case (:mod:`minifcn.bench.cases`) forward and backward, minifcn and torch on
the same inputs in the same process, and say how far their results differ.

Phases, each a callable timed on its own:

* ``forward``: minifcn's ``name_forward`` (which always returns its cache); torch's
  functional on inputs that require grad (so that it, too, records what its backward needs);
* ``backward``: minifcn's ``name_backward(dy, cache)`` on one forward's cache; torch's
  ``torch.autograd.grad(y, inputs, dy, retain_graph=True)`` on one forward's graph;
* ``forward_backward``: a fresh forward, then its backward.
"""
from __future__ import annotations

import functools
import time

import numpy as np

from ..backend import import_cupy, to_device
from .cases import SEED, Case
from .compare import difference, torch_wait
from .results import Row
from .timing import SETTLE, time_call
from .work import nbytes

PHASES = ("forward", "backward", "forward_backward")


def make_timer(*, repeat: int, warmup: int, xp=np, min_time: float = 0.0,
               pause: float = 0.0):
    """``timer(fn) -> Timing``: :func:`~minifcn.bench.timing.time_call` with these settings
    (on CuPy ``xp``, CUDA events)."""
    return functools.partial(time_call, repeat=repeat, warmup=warmup, xp=xp, pause=pause,
                             min_time=min_time)


def minifcn_calls(case: Case, arrays, dy, cache, mask_rng) -> dict:
    """``{phase: callable}``; ``backward`` runs on ``cache``."""
    def forward():
        return case.forward(mask_rng, **arrays)

    def backward():
        return case.backward(dy, cache)

    def forward_backward():
        return case.backward(dy, forward()[1])

    return {"forward": forward, "backward": backward, "forward_backward": forward_backward}


def torch_calls(torch, case: Case, arrays, dy, device: str):
    """``{phase: callable}`` on torch tensors holding ``arrays``' values, and the output
    of the forward whose graph ``backward`` runs on."""
    t = {name: torch.from_numpy(a).to(device) for name, a in arrays.items()}
    t.update({name: t[name].clone().requires_grad_() for name in case.wrt})
    wrt = [t[name] for name in case.wrt]
    dy = torch.from_numpy(dy).to(device)
    F, wait = torch.nn.functional, torch_wait(torch, device)
    graph = case.torch_forward(F, **t)                 # kept: backward() runs on it

    def forward():
        y = case.torch_forward(F, **t)
        wait()
        return y

    def backward():   # no .grad accumulation; the graph is kept for the next call
        grads = torch.autograd.grad(graph, wrt, dy, retain_graph=True)
        wait()
        return grads

    def forward_backward():
        grads = torch.autograd.grad(case.torch_forward(F, **t), wrt, dy)
        wait()
        return grads

    calls = {"forward": forward, "backward": backward, "forward_backward": forward_backward}
    return calls, graph.detach()


def grads_of(result) -> tuple:
    """A backward's gradients as a tuple, without the Nones of inputs that get none."""
    result = result if isinstance(result, tuple) else (result,)
    return tuple(g for g in result if g is not None)


def measure_case(case: Case, timer, *, phases=("forward", "backward"), device: str = "cpu",
                 dtype="float32", torch=None, rng=None, group: str = "ops",
                 settle: float = SETTLE) -> Row:
    """Time ``phases`` of ``case`` with ``timer`` (see :func:`make_timer`) on ``device``,
    and torch's twin where ``torch`` is given (the module, set up for ``device``).

    With torch, each side's timings start after ``settle`` seconds of sleep, so that the
    other library's thread pool has stopped spinning (see ``SETTLE``).

    Inputs are drawn from ``rng`` (default: seeded with ``SEED``) in ``dtype``; torch gets
    the same values. The row's ``error`` holds how far torch's forward output and gradients
    are from minifcn's (dropout: where both kept a value).
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(SEED) if rng is None else rng
    arrays = case.inputs(rng, dtype)                   # NumPy, shared with torch
    on_device = {name: to_device(a, device) for name, a in arrays.items()}
    xp = np if device == "cpu" else import_cupy()
    mask_rng = xp.random.default_rng(SEED)             # dropout draws on the array's device
    y, cache = case.forward(mask_rng, **on_device)
    dy = (np.ones((), dtype) if y.ndim == 0                       # a loss: dL/dL = 1
          else rng.standard_normal(y.shape, np.float32).astype(dtype))
    dy_on_device = to_device(dy, device)
    grads = grads_of(case.backward(dy_on_device, cache))
    calls = minifcn_calls(case, on_device, dy_on_device, cache, mask_rng)
    pause = functools.partial(time.sleep, settle if torch is not None else 0.0)
    pause()
    mine = {phase: timer(calls[phase]) for phase in phases}
    theirs = error = None
    if torch is not None:
        theirs, error = _torch_side(torch, case, arrays, dy, device, timer, phases, pause,
                                    (y,) + grads)
    flops = case.flops(on_device, y)                   # a backward does twice the GEMMs
    flops = {"forward": flops, "backward": None if flops is None else 2 * flops}
    moved = {"forward": case.moved(on_device, y),  # reads dy and the inputs, writes grads
             "backward": nbytes(dy_on_device, *on_device.values(), *grads)}
    return Row(group, device, case.name, case.shape, mine, theirs,
               _for_phases(flops, phases), _for_phases(moved, phases), error=error)


def _torch_side(torch, case, arrays, dy, device, timer, phases, pause, results):
    """torch's ``{phase: Timing}``, and how far its forward output and gradients are from
    minifcn's ``results`` (y, then the gradients)."""
    calls, y = torch_calls(torch, case, arrays, dy, device)
    pause()
    timings = {phase: timer(calls[phase]) for phase in phases}
    error = {"forward": difference(results[0], y, case.random),
             "backward": max(difference(g, want, case.random)
                             for g, want in zip(results[1:], calls["backward"]()))}
    return timings, error


def _for_phases(amounts: dict, phases) -> dict:
    """``amounts`` of the forward and the backward, with forward_backward their sum, for
    ``phases``; None (not defined) stays None."""
    forward, backward = amounts["forward"], amounts["backward"]
    both = None if forward is None or backward is None else forward + backward
    return {phase: {**amounts, "forward_backward": both}[phase] for phase in phases}
