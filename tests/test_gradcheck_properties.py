"""Property tests of the gradient checker itself: correct layers pass, perturbed ones fail.

Hypothesis draws random layers with their hand-written backward (``random_layers.py``):
smooth elementwise maps around a sum of products of several inputs, a matrix multiply along
one axis, or a convolution (minifcn's conv2d pair), with shapes that include 0-d, 1-d and
size-1 axes. In float64 the checker must pass every one. A randomly perturbed backward (one
element scaled, offset, or swapped with another; a chain-rule term dropped; a gradient
transposed; the gradient of another input returned) by clearly more than the tolerance must
fail, naming exactly the perturbed tensor and, for one-element perturbations, the perturbed
element. The tolerance is the one the report states: a perturbation below it passes. The
checker never writes into the caller's arrays or ``dy``.
"""
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, event, given, strategies as st

from minifcn.backend import asnumpy, get_array_module
from random_layers import cases, total

ATOL, RTOL = 1e-7, 1e-5           # check_function's defaults
CLEAR = 30                        # "clearly wrong": 30 times the tolerance of the element
LINEAR_IN_DY = "backward is linear in dy: backward(2 dy) == 2 backward(dy)"
ZEROS = "backward of zeros is zeros"


# --- planted mistakes ---------------------------------------------------------------------

@dataclass
class Perturbation:
    """A mistake in gradient ``tensor``. ``where``: the flat element(s) for scale, offset
    and swap, the two axes for transpose, the dropped term, or the input whose gradient is
    returned instead; ``amount``: the factor or the offset."""
    kind: str
    tensor: int
    where: tuple
    amount: float = 0.0

    def apply(self, terms):
        grads = [total(ts) for ts in terms]
        j, g = self.tensor, grads[self.tensor]
        flat = g.reshape(-1)                                 # a view: g is C-contiguous
        if self.kind == "scale":
            flat[self.where[0]] *= self.amount
        elif self.kind == "offset":
            flat[self.where[0]] += self.amount
        elif self.kind == "swap":
            flat[list(self.where)] = flat[list(self.where[::-1])]
        elif self.kind == "drop":
            kept = terms[j][: self.where[0]] + terms[j][self.where[0] + 1:]
            grads[j] = total(kept) if kept else 0 * g
        elif self.kind == "transpose":
            grads[j] = get_array_module(g).swapaxes(g, *self.where)
        elif self.kind == "wrong-input":
            grads[j] = grads[self.where[0]]
        return tuple(grads)

    def backward(self, layer):
        return lambda dy, cache: self.apply(layer.terms(dy, cache))


def allowed(g, atol=ATOL, rtol=RTOL):
    return atol + rtol * np.abs(g)


def clear_elements(change, g):
    """Flat indices where a change of ``change`` (per element) is clearly over tolerance."""
    return np.flatnonzero(np.abs(change) > CLEAR * allowed(g).reshape(-1))


@st.composite
def one_element(draw, grads, kind):
    """(tensor, flat index, amount) for a scale or an offset clearly above tolerance."""
    if kind == "scale":
        amount = draw(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.5, 3.0]))
        changes = [(amount - 1) * g.reshape(-1) for g in grads]
    else:
        amount = draw(st.sampled_from([-1.0, 1.0])) * draw(st.floats(1e-3, 1.0))
        changes = [np.full(g.size, amount) for g in grads]
    where = [clear_elements(c, g) for c, g in zip(changes, grads)]
    tensors = [j for j, w in enumerate(where) if len(w)]
    assume(tensors)
    j = draw(st.sampled_from(tensors))
    return j, int(draw(st.sampled_from(where[j]))), amount


@st.composite
def perturbations(draw, grads, terms):
    kinds = ["scale", "offset", "drop"] + ["swap"] * any(g.size >= 2 for g in grads)
    kinds += ["transpose"] * any(g.ndim >= 2 for g in grads)
    kinds += ["wrong-input"] * (len(grads) >= 2)
    kind = draw(st.sampled_from(kinds))
    if kind in ("scale", "offset"):
        j, k, amount = draw(one_element(grads, kind))
        return Perturbation(kind, j, (k,), amount)
    if kind == "swap":
        j = draw(st.sampled_from([j for j, g in enumerate(grads) if g.size >= 2]))
        pair = st.lists(st.integers(0, grads[j].size - 1), min_size=2, max_size=2, unique=True)
        return Perturbation(kind, j, tuple(draw(pair)))
    if kind == "drop":
        j = draw(st.integers(0, len(grads) - 1))
        return Perturbation(kind, j, (draw(st.integers(0, len(terms[j]) - 1)),))
    if kind == "transpose":
        j = draw(st.sampled_from([j for j, g in enumerate(grads) if g.ndim >= 2]))
        axes = st.lists(st.integers(0, grads[j].ndim - 1), min_size=2, max_size=2, unique=True)
        return Perturbation(kind, j, tuple(sorted(draw(axes))))
    j = draw(st.integers(0, len(grads) - 1))
    return Perturbation(kind, j, (draw(st.sampled_from([i for i in range(len(grads))
                                                        if i != j])),))


def verdict(wrong, right):
    """'wrong' (clearly over tolerance somewhere), 'right' (far within it) or 'unclear'."""
    if wrong.shape != right.shape:
        return "wrong"
    ratio = np.abs(wrong - right) / allowed(right)
    return "wrong" if ratio.max() > CLEAR else "right" if ratio.max() < 0.01 else "unclear"


def clearly_wrong(case, perturbation, grads):
    """{name: the message its report row must carry} for the gradients the perturbation
    changes clearly ('' or, for a changed shape, the checker's shape message); rejects
    examples where a change is neither clear nor negligible."""
    _, cache = case.layer.forward(*case.inputs)
    planted = [asnumpy(g) for g in perturbation.apply(case.layer.terms(case.dy, cache))]
    verdicts = [verdict(w, r) for w, r in zip(planted, grads)]
    assume("unclear" not in verdicts and "wrong" in verdicts)
    return {n: "" if w.shape == r.shape else f"gradient has shape {w.shape}"
            for n, v, w, r in zip(case.layer.names, verdicts, planted, grads) if v == "wrong"}


# --- the properties -------------------------------------------------------------------------

@given(data=st.data(), mode=st.sampled_from(["full", "directional"]),
       max_elements=st.none() | st.integers(1, 6))
def test_correct_layers_pass(xp, data, mode, max_elements):
    case = data.draw(cases(xp))
    report = case.check(mode=mode, max_elements=max_elements)
    assert report.passed, str(report)
    assert [t.name for t in report.tensors] == case.layer.names
    for t, x in zip(report.tensors, case.inputs):
        full = x.size if max_elements is None else min(x.size, max_elements)
        assert t.n_checked == (1 if mode == "directional" else full)


@given(data=st.data())
def test_perturbed_backward_fails_and_names_the_tensor_and_element(xp, data):
    case = data.draw(cases(xp))
    grads = case.grads()
    _, cache = case.layer.forward(*case.inputs)
    perturbation = data.draw(perturbations(grads, case.layer.terms(case.dy, cache)))
    expected = clearly_wrong(case, perturbation, grads)
    event(f"{type(case.layer.core).__name__}: {perturbation.kind}")
    report = case.check(perturbation.backward(case.layer))
    assert not report.passed
    failed = [t.name for t in report.tensors if not t.passed]
    assert failed == list(expected), str(report)
    linear = perturbation.kind != "offset"      # an offset is not linear in dy
    assert [p.name for p in report.properties if not p.passed] == (
        [] if linear else [LINEAR_IN_DY, ZEROS]), str(report)
    for name, message in expected.items():
        assert message in report.tensor(name).message
        assert any(line.startswith(name + " ") and "FAIL" in line
                   for line in str(report).splitlines())
    if perturbation.kind in ("scale", "offset", "swap"):
        t = report.tensor(case.layer.names[perturbation.tensor])
        shape = grads[perturbation.tensor].shape
        elements = [tuple(int(i) for i in np.unravel_index(k, shape))
                    for k in perturbation.where]
        assert t.worst_index in elements and t.n_failed == len(elements), str(report)
        assert str(t.worst_index) in str(report)


@given(data=st.data(), atol=st.sampled_from([1e-7, 1e-6, 1e-4]),
       rtol=st.sampled_from([1e-5, 1e-4, 1e-3]), share=st.floats(0.2, 0.7) | st.floats(1.5, 20))
def test_tolerance_is_the_one_reported(data, atol, rtol, share):
    """One element is off by ``share`` times its tolerance (a scale: linear in dy): the
    check passes below 1 and fails above, at that element, by that amount."""
    case = data.draw(cases(np))
    grads = case.grads()
    tensors = [j for j, g in enumerate(grads) if np.abs(g).max(initial=0) > 1e-3]
    assume(tensors)
    j = data.draw(st.sampled_from(tensors))
    k = int(data.draw(st.sampled_from(np.flatnonzero(np.abs(grads[j]) > 1e-3))))
    g = grads[j].reshape(-1)[k]
    change = data.draw(st.sampled_from([-1.0, 1.0])) * share * allowed(g, atol, rtol)
    planted = Perturbation("scale", j, (k,), 1 + change / g)
    report = case.check(planted.backward(case.layer), atol=atol, rtol=rtol)
    assert (report.settings["atol"], report.settings["rtol"]) == (atol, rtol)
    assert report.passed == (share < 1), str(report)
    t = report.tensor(case.layer.names[j])
    assert t.worst_index == tuple(int(i) for i in np.unravel_index(k, grads[j].shape))
    assert t.analytic - t.numerical == pytest.approx(change, rel=0.02)
    assert t.n_failed == (share > 1)
    assert [x.name for x in report.tensors if not x.passed] == ([t.name] if share > 1 else [])


def relayout(x, layout, dtype):
    """x's values (cast to ``dtype``) in a C-ordered, Fortran-ordered or strided array."""
    xp = get_array_module(x)
    x = x.astype(dtype)
    if layout == "F" and x.ndim:          # asfortranarray would make a 0-d array 1-d
        return xp.asfortranarray(x)
    if layout == "strided" and x.ndim:
        wide = xp.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x.copy()


@given(data=st.data(), mode=st.sampled_from(["full", "directional"]), planted=st.booleans())
def test_checker_leaves_the_callers_arrays_alone(xp, data, mode, planted):
    case = data.draw(cases(xp))
    layouts = st.sampled_from(["C", "F", "strided"])
    dtypes = st.sampled_from([np.float64, np.float32])
    case.inputs = [relayout(x, data.draw(layouts), data.draw(dtypes)) for x in case.inputs]
    before = [(x.copy(), x.dtype, x.strides) for x in case.inputs]
    dy_before = case.dy.copy()
    backward = Perturbation("offset", 0, (0,), 0.5).backward(case.layer) if planted else None
    report = case.check(backward, mode=mode)
    assert report.passed is not planted, str(report)
    for x, (values, dtype, strides) in zip(case.inputs, before):
        assert (x.dtype, x.strides) == (dtype, strides)
        assert (asnumpy(x) == asnumpy(values)).all()
    assert (asnumpy(case.dy) == asnumpy(dy_before)).all()
