"""The gradient checker: compare a hand-written backward with finite differences.

``check_function(forward, backward, inputs)`` checks a functional pair;
``check_module(module, *inputs)`` checks a ``Module``'s input gradient and the gradient of
every parameter that requires one. Both return a :class:`GradcheckReport` whose table names
each tensor's worst element (the one furthest past its tolerance) and the values there.

Beyond the element-wise comparison the checker tests what every correct backward obeys:
it is linear in ``dy`` (``backward(2 dy) == 2 backward(dy)``, ``backward(0) == 0``), it
gives the same result when run twice, it returns gradients shaped and typed like its
inputs, and neither pass modifies its arguments.

Kinks. At a point where the function has no derivative (ReLU at 0, a max-pool tie, abs at
0, a clip at its bound) the central difference is the average of two one-sided slopes, and a
correct backward fails there, as in every finite-difference checker. The two forward calls
of each difference and the unperturbed output also give those one-sided slopes; where they
differ by far more than the tolerance (:mod:`.kinks`), the element is counted as sitting at a
kink, and the report says how many failures do and whether the backward equals one side.
The pass/fail rule does not change.
"""
from __future__ import annotations

import inspect
import math
import numbers
import warnings

import numpy as np

from ..backend import device_of, get_array_module, to_device
from .kinks import kink_mask, matched_slope
from .numerical import differences_at, directional_differences
from .properties import check_properties
from .report import GradcheckReport, TensorResult

MODES = ("full", "directional")


class GradcheckPrecisionWarning(UserWarning):
    """A check in float32: finite differences there are accurate to about 1e-3 only."""


def check_function(forward, backward, inputs, *, grad_output=None, eps=1e-6, atol=1e-7,
                   rtol=1e-5, mode="full", max_elements=None, seed=0, dtype=np.float64,
                   names=None, wrt=None, title=None, raise_on_failure=False):
    """Check ``backward`` against central differences of ``forward``.

    Parameters
    ----------
    forward : callable ``forward(*inputs) -> (y, cache)``
    backward : callable ``backward(dy, cache) -> grads``, one entry per input (None for an
        input without a gradient, such as integer targets); a bare array for one input.
    inputs : sequence of arrays (NumPy or CuPy), Python values or None, passed positionally.
    grad_output : the ``dy`` to use; default random normal, drawn from ``seed``.
    eps, atol, rtol : finite-difference step; an element passes when
        ``|analytic - numerical| <= atol + rtol * |numerical|``. A failure at a kink (ReLU
        at 0, a max-pool tie; in directional mode, a direction crossing one) is reported as
        such, with both one-sided slopes: see :mod:`minifcn.gradcheck.kinks`.
    mode : ``"full"`` perturbs every element (or ``max_elements`` sampled ones) of every
        checked tensor; ``"directional"`` compares one random directional derivative
        ``<grad, u>`` per tensor: two forward calls each, so whole networks check in seconds.
    max_elements : in full mode, check at most this many (randomly chosen) elements per tensor.
    seed : seeds ``dy``, directions and sampled elements, so a report can be reproduced.
    dtype : float inputs are copied and cast to this dtype (float64 by default); float32 or
        None (keep the inputs' dtype) is allowed but warns.
    names : names for the report; default: forward's parameter names.
    wrt : indices of the inputs to check; default every float array.
    raise_on_failure : raise :class:`GradcheckError` with the report when a check fails.
    """
    _check_settings(forward, backward, inputs, mode, max_elements, eps, atol, rtol, dtype)
    inputs = [_promote(a, dtype) for a in inputs]
    names = list(names) if names is not None else _input_names(forward, len(inputs))
    if len(names) != len(inputs):
        raise ValueError(f"names has {len(names)} entries but there are {len(inputs)} inputs")
    if wrt is None:
        wrt = [i for i, a in enumerate(inputs) if _is_float_array(a)]
    for i in wrt:
        if not (0 <= i < len(inputs) and _is_float_array(inputs[i])):
            what = repr(inputs[i]) if 0 <= i < len(inputs) else "out of range"
            raise ValueError(f"wrt index {i} must point at a float array input, got {what}")
    run = _Run(forward, backward, inputs, names, list(wrt), eps, atol, rtol, seed)
    report = run.check(grad_output, mode, max_elements, title or _title(forward))
    report.settings.update(dtype=run.dtype_name(), mode=mode, seed=seed)
    return report.raise_if_failed() if raise_on_failure else report


def _check_settings(forward, backward, inputs, mode, max_elements, eps, atol, rtol, dtype):
    """The arguments of check_function that are not the layer's own."""
    for name, f in (("forward", forward), ("backward", backward)):
        if not callable(f):
            raise TypeError(f"{name} must be callable, got {type(f).__name__}")
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"inputs must be a list or tuple of forward's arguments, got "
                        f"{type(inputs).__name__} (wrap a single array: [x])")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if max_elements is not None and not (_is_int(max_elements) and max_elements >= 1):
        raise ValueError(f"max_elements must be a positive int or None, got {max_elements!r}")
    for name, value, low in (("eps", eps, 0.0), ("atol", atol, None), ("rtol", rtol, None)):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value) and (value > 0 if low is not None else value >= 0)
        if not ok:
            what = "positive" if low is not None else "at least 0"
            raise ValueError(f"{name} must be a finite number, {what}, got {value!r}")
    if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float64 (the default), float32 or None, got "
                        f"{np.dtype(dtype)}")


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _promote(a, dtype):
    if not _is_float_array(a):
        return a
    target = a.dtype if dtype is None else np.dtype(dtype)
    if target == np.float32:
        warnings.warn("gradient check in float32: finite differences are only accurate to "
                      "about 1e-3 there; prefer float64, or use eps=1e-3, rtol=1e-2",
                      GradcheckPrecisionWarning, stacklevel=3)
    # order="C": the numerical gradient perturbs x through a flat view (x.reshape(-1))
    return get_array_module(a).array(a, dtype=target, copy=True, order="C")


def _is_float_array(a) -> bool:
    return hasattr(a, "dtype") and hasattr(a, "shape") and a.dtype.kind == "f"


def _input_names(forward, count):
    try:
        params = [p.name for p in inspect.signature(forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"input{i}" for i in range(count)]


def _title(forward):
    name = getattr(forward, "__name__", type(forward).__name__)
    return name[: -len("_forward")] if name.endswith("_forward") else name


class _Run:
    """One check: the inputs, the analytic gradients at them, and the comparisons."""

    def __init__(self, forward, backward, inputs, names, wrt, eps, atol, rtol, seed):
        self.forward, self.backward = forward, backward
        self.inputs, self.names, self.wrt = inputs, names, wrt
        self.eps, self.atol, self.rtol = eps, atol, rtol
        self.rng = np.random.default_rng(seed)

    def dtype_name(self):
        dtypes = {str(self.inputs[i].dtype) for i in self.wrt if _is_float_array(self.inputs[i])}
        return "/".join(sorted(dtypes)) or "none"

    def output(self, inputs=None):
        result = self.forward(*(self.inputs if inputs is None else inputs))
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError("forward must return a pair (y, cache), got "
                            f"{type(result).__name__}")
        return result

    def grads(self, dy, cache):
        grads = self.backward(dy, cache)
        grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
        grads = tuple(_copy_if_array(g) for g in grads)   # backward may reuse its buffers
        while len(grads) > len(self.inputs) and grads[-1] is None:
            grads = grads[:-1]              # e.g. dbias=None when bias was left to its default
        if len(grads) < len(self.inputs):   # trailing inputs without gradients may be omitted
            grads += (None,) * (len(self.inputs) - len(grads))
        return grads

    def random_like(self, a):
        values = np.asarray(self.rng.standard_normal(a.shape), dtype=a.dtype)  # 0-d too
        return to_device(values, device_of(a))

    def check(self, grad_output, mode, max_elements, title):
        report = GradcheckReport(title, dict(eps=self.eps, atol=self.atol, rtol=self.rtol))
        before = [_copy_if_array(a) for a in self.inputs]
        y, cache = self.output()
        if not hasattr(y, "shape"):
            raise TypeError(f"forward must return an array y, got {type(y).__name__}")
        y = _copy_if_array(y)   # forward may reuse its output buffer on the next call
        after_forward = [_copy_if_array(a) for a in self.inputs]
        if grad_output is None:
            dy = self.random_like(y)
        else:
            dy = get_array_module(y).array(to_device(grad_output, device_of(y)), dtype=y.dtype)
        if tuple(dy.shape) != tuple(y.shape):
            raise ValueError(f"grad_output has shape {tuple(dy.shape)} but forward returned "
                             f"shape {tuple(y.shape)}")
        grads = self.grads(_copy_if_array(dy), cache)
        if len(grads) > len(self.inputs):
            raise ValueError(f"backward returned {len(grads)} gradients for "
                             f"{len(self.inputs)} inputs ({', '.join(self.names)})")
        report.properties = check_properties(self, (before, after_forward), y, dy, cache, grads)
        for i in self.wrt:
            report.tensors.append(self.compare(i, grads[i], y, dy, mode, max_elements))
        return report

    def compare(self, i, grad, y0, dy, mode, max_elements):
        """The TensorResult of input i; ``y0`` (the unperturbed output) gives each
        difference its two one-sided slopes, which tell kinks from errors."""
        x, name = self.inputs[i], self.names[i]
        problem = _gradient_problem(grad, x)
        if problem:
            return TensorResult(name, tuple(x.shape), False, message=problem)
        if x.size == 0:
            return TensorResult(name, tuple(x.shape), True, message="empty: nothing to check")
        f = lambda _: self.output()[0]   # x is perturbed in place inside self.inputs
        if mode == "directional":
            u = self.random_like(x)
            u /= float(get_array_module(u).linalg.norm(u)) or 1.0
            diff = directional_differences(f, x, u, dy, self.eps, y0)
            analytic = np.array([float(get_array_module(x).vdot(grad, u))])
            result = self.verdict(name, x, diff, analytic, None)
            if not result.passed:
                result.message = "rerun with mode='full' to find the wrong elements"
            return result
        index = np.arange(x.size)
        if max_elements is not None and x.size > max_elements:
            index = np.sort(self.rng.choice(x.size, int(max_elements), replace=False))
        diff = differences_at(f, x, dy, self.eps, index, y0)
        analytic = np.asarray(to_device(grad, "cpu"), dtype=np.float64).reshape(-1)[index]
        return self.verdict(name, x, diff, analytic, index)

    def verdict(self, name, x, diff, analytic, index):
        numerical = diff.central
        error = np.abs(analytic - numerical)
        allowed = self.atol + self.rtol * np.abs(numerical)
        # the worst element is the one furthest past its tolerance (NaN counts as worst);
        # 0/0 (atol=0 at a zero gradient, matched exactly) is no excess at all
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(error == 0, 0.0, error / allowed)
        worst = int(np.argmax(ratio))
        scale = np.maximum(np.abs(analytic), np.abs(numerical))
        significant = scale > self.atol
        rel = float(np.max(error[significant] / scale[significant])) if significant.any() else 0.0
        failed = ~(error <= allowed)                              # NaN counts as failed
        n_failed = int(np.count_nonzero(failed))
        where = None if index is None else tuple(int(v) for v in np.unravel_index(index[worst],
                                                                                  x.shape))
        result = TensorResult(name, tuple(x.shape), n_failed == 0, len(numerical), int(x.size),
                              float(error.max()), rel, where, float(analytic[worst]),
                              float(numerical[worst]), n_failed=n_failed,
                              tolerance_ratio=float(ratio[worst]))
        return self.kinks(result, diff, analytic, failed, worst)

    def kinks(self, result, diff, analytic, failed, worst):
        """``result`` with what the one-sided slopes say: how many failures sit at kinks,
        and at the worst element the two slopes and which one the analytic value equals."""
        at_kink = kink_mask(diff.right, diff.left, diff.noise, self.atol, self.rtol)
        result.n_kinks = int(np.count_nonzero(at_kink))
        result.n_failed_at_kinks = int(np.count_nonzero(at_kink & failed))
        result.left_slope, result.right_slope = float(diff.left[worst]), float(diff.right[worst])
        result.worst_at_kink = bool(at_kink[worst])
        if result.worst_at_kink:
            result.matched_slope = matched_slope(float(analytic[worst]), result.right_slope,
                                                 result.left_slope, float(diff.noise[worst]),
                                                 self.atol, self.rtol)
        return result


def _copy_if_array(a):
    return get_array_module(a).array(a, copy=True) if hasattr(a, "shape") else a


def _gradient_problem(grad, x) -> str:
    """Why ``grad`` cannot be the gradient of ``x`` at all, or ''."""
    if grad is None:
        return "backward returned None"
    if not hasattr(grad, "shape"):
        return f"backward returned a {type(grad).__name__}, not an array"
    if tuple(grad.shape) != tuple(x.shape):
        return f"gradient has shape {tuple(grad.shape)}, input has {tuple(x.shape)}"
    if grad.dtype != x.dtype:
        return f"gradient is {grad.dtype} but the input is {x.dtype} (a silent cast)"
    if device_of(grad) != device_of(x):
        return f"gradient is on {device_of(grad)} but the input is on {device_of(x)}"
    return ""
