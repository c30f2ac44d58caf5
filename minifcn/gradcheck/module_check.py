"""``check_module``: the gradient check of a ``Module`` and of every parameter it learns."""
from __future__ import annotations

import copy

import numpy as np

from ..backend import get_array_module
from .checker import check_function
from .properties import _difference
from .report import PropertyResult


def check_module(module, *inputs, grad_output=None, eps=1e-6, atol=1e-7, rtol=1e-5,
                 mode="full", max_elements=None, seed=0, dtype=np.float64,
                 raise_on_failure=False):
    """Check ``module.backward`` for its input gradient(s) and every parameter's ``.grad``.

    The module is deep-copied and cast to ``dtype`` (float64 by default), so the original is
    untouched. Tensors in the report are named ``input`` (``input0``, ``input1``, ... for
    several inputs) and by the parameters' dotted names. Parameters with
    ``requires_grad=False`` are not checked, but must not receive a gradient. Besides the
    checks of :func:`check_function`, the module must *accumulate*: two backward calls
    without ``zero_grad`` leave twice the gradient in ``.grad``. Other options as in
    :func:`check_function`.
    """
    missing = [name for name in ("forward", "backward", "named_parameters", "zero_grad", "to")
               if not callable(getattr(module, name, None))]
    if missing:
        raise TypeError(f"module must be a minifcn.nn.Module (it lacks {', '.join(missing)}), "
                        f"got {type(module).__name__}; check a functional pair with "
                        f"check_function(forward, backward, inputs)")
    module = copy.deepcopy(module)
    if dtype is not None:
        module.to(dtype=dtype)
    adapter = _FunctionalModule(module, len(inputs))
    names = (["input"] if len(inputs) == 1 else [f"input{i}" for i in range(len(inputs))])
    names += [name for name, _ in adapter.params]
    report = check_function(adapter.forward, adapter.backward,
                            list(inputs) + [p.data for _, p in adapter.params],
                            grad_output=grad_output, eps=eps, atol=atol, rtol=rtol, mode=mode,
                            max_elements=max_elements, seed=seed, dtype=dtype, names=names,
                            title=type(module).__name__)
    report.properties += adapter.module_properties()
    return report.raise_if_failed() if raise_on_failure else report


class _FunctionalModule:
    """A module seen as a functional pair over (inputs..., learnable parameters...)."""

    def __init__(self, module, n_inputs):
        self.module, self.n_inputs = module, n_inputs
        self.params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.frozen = [(n, p) for n, p in module.named_parameters() if not p.requires_grad]
        self.last = None

    def _load(self, arrays):
        for (_, p), a in zip(self.params, arrays[self.n_inputs:]):
            p.data = a
        return arrays[: self.n_inputs]

    def forward(self, *arrays):
        y = self.module.forward(*self._load(arrays))
        return y, arrays            # the "cache" is the point itself: backward replays it

    def backward(self, dy, arrays):
        # The checker calls forward at perturbed points between backward calls, so replay the
        # forward at the cached point first: the module's own cache then belongs to it.
        inputs = self._load(arrays)
        if self.last is None:   # the checker's first call has the real dy; later: 2 dy, zeros
            self.last = (inputs, _copy(dy))
        self.module.forward(*inputs)
        self.module.zero_grad()
        dx = self.module.backward(dy)
        dx = tuple(dx) if isinstance(dx, (tuple, list)) else (dx,)
        dx += (None,) * (self.n_inputs - len(dx))
        return dx + tuple(p.grad for _, p in self.params)

    def module_properties(self):
        """Checks of the Module contract: accumulation into .grad, frozen parameters."""
        if self.last is None:
            return []
        inputs, dy = self.last
        self.module.forward(*inputs)
        self.module.zero_grad()
        self.module.backward(dy)
        once = {n: _copy(p.grad) for n, p in self.params}
        self.module.backward(dy)
        gained = [n for n, p in self.frozen if p.grad is not None]
        return [PropertyResult("parameter gradients accumulate over backward calls",
                               *_accumulation_problem(self.params, once)),
                PropertyResult("frozen parameters (requires_grad=False) get no gradient",
                               not gained, ", ".join(gained))]


def _accumulation_problem(params, once):
    """(passed, detail) for grads that should now hold twice their single-call value."""
    for name, p in params:
        if once[name] is None or p.grad is None:
            return False, f"{name}: backward left .grad None"
        detail = _difference(name, p.grad, 2 * once[name], 1e-12)
        if detail:
            return False, detail + " after two backward calls"
    return True, ""


def _copy(a):
    return None if a is None else get_array_module(a).array(a, copy=True)
