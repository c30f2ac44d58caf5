"""Structural checks every correct backward passes, whatever the layer.

A backward computes ``J^T dy``: a linear map of ``dy`` fixed by the forward's cache. So
``backward(2 dy) == 2 backward(dy)`` and ``backward(0) == 0`` hold exactly up to rounding
(scaling by 2 is exact in floating point); a backward that reads stale or mutated state
gives a different answer the second time; and neither pass may write into its arguments.
"""
from __future__ import annotations

import numpy as np

from ..backend import asnumpy, get_array_module
from .report import PropertyResult


def check_properties(run, snapshots, y, dy, cache, grads) -> list[PropertyResult]:
    """Run the structural checks of one ``_Run`` whose analytic ``grads`` are known.

    ``snapshots`` are copies of the inputs taken before and after the first forward; the
    first backward has already run.
    """
    before_forward, after_forward = snapshots
    xp = get_array_module(dy)
    dy_given = xp.array(dy, copy=True)
    repeated = run.grads(dy_given, cache)
    doubled = run.grads(2 * dy, cache)
    zeroed = run.grads(xp.zeros_like(dy), cache)
    y_again = run.output()[0]
    checked = [i for i in run.wrt if _comparable(grads[i], run.inputs[i])]
    tol = 16 * float(np.finfo(y.dtype).eps)

    def compare(title, got_of, want_of):
        for i in checked:
            scale = float(asnumpy(abs(grads[i])).max(initial=0.0))
            detail = _difference(run.names[i], got_of(i), want_of(i), tol, scale)
            if detail:
                return PropertyResult(title, False, detail)
        return PropertyResult(title, True)

    return [
        compare("backward is linear in dy: backward(2 dy) == 2 backward(dy)",
                lambda i: doubled[i], lambda i: 2 * grads[i]),
        compare("backward of zeros is zeros",
                lambda i: zeroed[i], lambda i: get_array_module(grads[i]).zeros_like(grads[i])),
        compare("backward run twice gives the same result",
                lambda i: repeated[i], lambda i: grads[i]),
        _same("forward run twice gives the same output (no hidden randomness)", "y",
              y_again, y, tol, hint=" (dropout or another random layer in training mode? "
                                    "call module.eval() or fix its random mask)"),
        _unchanged("forward leaves its inputs unchanged", run.names, after_forward,
                   before_forward),
        _unchanged("backward leaves dy and the forward's inputs unchanged",
                   ["dy"] + run.names, [dy_given] + run.inputs, [dy] + after_forward),
    ]


def _comparable(grad, x) -> bool:
    return grad is not None and hasattr(grad, "shape") and tuple(grad.shape) == tuple(x.shape)


def _difference(name, got, want, tol, scale=None) -> str:
    """'' when ``got`` matches ``want`` to ``tol`` relative to ``scale`` (default: want's
    largest magnitude); else a sentence naming the worst element."""
    if got is None or not hasattr(got, "shape") or tuple(got.shape) != tuple(want.shape):
        return f"{name}: the second call returned {_describe(got)}"
    got, want = asnumpy(got).astype(np.float64), asnumpy(want).astype(np.float64)
    both_nan = np.isnan(got) & np.isnan(want)
    error = np.where(both_nan, 0.0, np.abs(got - want))
    error = np.where(np.isnan(error), np.inf, error)
    if scale is None:
        scale = float(np.abs(want).max(initial=0.0))
    if error.size == 0 or error.max() <= tol * scale:
        return ""
    worst = tuple(int(v) for v in np.unravel_index(int(np.argmax(error)), error.shape))
    return (f"{name} differs by {error[worst]:.3e} at {worst} "
            f"(got {got[worst]:.6e}, expected {want[worst]:.6e})")


def _describe(a) -> str:
    if a is None:
        return "None"
    return f"shape {tuple(a.shape)}" if hasattr(a, "shape") else type(a).__name__


def _same(title, name, got, want, tol, hint="") -> PropertyResult:
    detail = _difference(name, got, want, tol)
    return PropertyResult(title, not detail, detail + hint if detail else "")


def _unchanged(title, names, arrays, before) -> PropertyResult:
    for name, now, then in zip(names, arrays, before):
        if hasattr(now, "shape"):
            diff = _difference(name, now, then, 0.0)
            if diff:
                return PropertyResult(title, False, diff.replace(" differs", " was modified"))
    return PropertyResult(title, True)
