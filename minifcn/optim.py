r"""Optimisers (``SGD``, ``Adam``) and learning-rate schedules (``LRScheduler``).

Both optimisers follow ``torch.optim`` step for step, so a training run can be checked
against PyTorch one to one. Parameters come as an iterable of ``Parameter`` or, as in
PyTorch, a list of *parameter groups*: dicts with ``"params"`` and any option to override
for that group. The reference FCN recipe, twice the learning rate and no weight decay for
biases, is two such groups; ``fcn_param_groups(model, lr, weight_decay)`` builds them::

    opt = SGD(fcn_param_groups(model, lr=1e-4, weight_decay=5e-4), lr=1e-4, momentum=0.99)
    sched = LRScheduler(opt, "poly", max_iter=10000)     # minifcn.lr_schedule
    for it in range(10000):
        model.zero_grad(); ...; model.backward(dy)
        opt.step(); sched.step()

Updates are written in place into ``Parameter.data`` (the same array, on its own device),
so NumPy and CuPy parameters are handled alike. Parameters with ``requires_grad=False``
or no gradient are left untouched. ``state_dict()`` is a flat dict of NumPy arrays and
plain numbers (``np.savez(path, **opt.state_dict())`` needs no pickle); optimiser state is
keyed by the parameter's position over all groups, in order.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import array_module_of, asnumpy, to_device
from .nn.module import Module, Parameter
from .lr_schedule import LRScheduler, constant_lr, poly_lr, step_lr  # noqa: F401 (re-export)


def _number(name: str, value, low: float = 0.0, high: float | None = None) -> float:
    """``value`` as a float in ``[low, high)``, or an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    ok = value >= low and (value < high if high is not None else math.isfinite(value))
    if not ok:
        where = f"in [{low:g}, {high:g})" if high is not None else f"a finite number >= {low:g}"
        raise ValueError(f"{name} must be {where}, got {value!r}")
    return value


def fcn_param_groups(model: Module, lr: float, weight_decay: float = 0.0,
                     bias_lr_mult: float = 2.0) -> list[dict]:
    """The reference FCN recipe as parameter groups: weights at ``lr`` with
    ``weight_decay``; biases (parameters named ``*bias``) at ``bias_lr_mult * lr`` and no
    weight decay. Empty groups are left out."""
    weights, biases = [], []
    for name, p in model.named_parameters():
        (biases if name.rsplit(".", 1)[-1] == "bias" else weights).append(p)
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay},
              {"params": biases, "lr": bias_lr_mult * lr, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


class Optimizer:
    """Base class: parameter groups, ``zero_grad``, ``state_dict`` / ``load_state_dict``.

    A subclass sets ``defaults`` (option -> validator bounds), ``buffers`` (names of its
    per-parameter state arrays) and implements ``_update(p, grad, state, group, xp)``.
    """

    buffers: tuple[str, ...] = ()
    counters: tuple[str, ...] = ()     # per-parameter integer state (Adam's step)

    def __init__(self, params, defaults: dict):
        if isinstance(params, (Parameter, dict)):
            raise TypeError("params must be an iterable of Parameters or of dicts, got a "
                            f"single {type(params).__name__}; wrap it in a list")
        groups = list(params)
        if not groups:
            raise ValueError("params is empty: the optimiser has nothing to update")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = {k: self._check(k, v) for k, v in defaults.items()}
        self.param_groups = [self._group(g, i) for i, g in enumerate(groups)]
        self._params = [p for g in self.param_groups for p in g["params"]]
        if len({id(p) for p in self._params}) != len(self._params):
            raise ValueError("params holds a Parameter more than once (in one group or two)")
        self.state: dict[int, dict] = {}

    def _check(self, name, value):
        raise NotImplementedError

    def _group(self, group, index: int) -> dict:
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"params[{index}] must be a dict with a 'params' key, like the "
                            f"others, got {type(group).__name__}")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"params[{index}] has unknown option(s) {sorted(unknown)}; "
                             f"{type(self).__name__} takes {sorted(self.defaults)}")
        plist = [group["params"]] if isinstance(group["params"], Parameter) else list(group["params"])
        for j, p in enumerate(plist):
            if not isinstance(p, Parameter):
                raise TypeError(f"params must hold minifcn.nn.Parameter objects, got "
                                f"{type(p).__name__} in group {index} at position {j}; "
                                "pass model.parameters()")
        out = dict(self.defaults)
        out.update({k: self._check(k, v) for k, v in group.items() if k != "params"})
        out["params"] = plist
        return out

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``grad`` becomes None)."""
        for p in self._params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that requires a gradient and has one, in place."""
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad and p.grad is not None:
                    xp = array_module_of(parameter=p.data, grad=p.grad)
                    _check_grad(p, index)
                    self._update(p, p.grad, self.state.setdefault(index, {}), group, xp)
                index += 1

    # --- saving and loading -------------------------------------------------------------
    def state_dict(self) -> dict:
        """Flat dict of NumPy arrays and numbers: ``groups.G.OPTION``, ``groups.G.params``
        (the parameters' positions), ``state.I.NAME`` (buffers, copies)."""
        out, start = {}, 0
        for g, group in enumerate(self.param_groups):
            for k in self.defaults:
                out[f"groups.{g}.{k}"] = group[k]
            out[f"groups.{g}.params"] = np.arange(start, start + len(group["params"]))
            start += len(group["params"])
        for i, state in sorted(self.state.items()):
            for name, value in state.items():
                out[f"state.{i}.{name}"] = (int(value) if name in self.counters
                                            else np.array(asnumpy(value), copy=True))
        return out

    def load_state_dict(self, state_dict) -> None:
        """Restore options and state saved by ``state_dict()`` (arrays go to each
        parameter's device and dtype). The groups must hold as many parameters as saved."""
        sd = dict(state_dict)
        groups = [dict(g) for g in self.param_groups]
        start = 0
        for g, group in enumerate(groups):
            want = np.arange(start, start + len(group["params"]))
            start += len(group["params"])
            got = np.asarray(self._pop(sd, f"groups.{g}.params"))
            if got.shape != want.shape or not np.array_equal(got, want):
                raise ValueError(f"state_dict does not match: group {g} holds parameters "
                                 f"{want.tolist()} here but {got.tolist()} in state_dict")
            for k in self.defaults:
                group[k] = self._check(k, self._plain(self._pop(sd, f"groups.{g}.{k}")))
        state = self._load_state(sd)
        self.param_groups, self.state = groups, state

    def _load_state(self, sd: dict) -> dict:
        state: dict[int, dict] = {}
        names = set(self.buffers) | set(self.counters)
        for key in list(sd):
            parts = key.split(".")
            if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit() \
                    or int(parts[1]) >= len(self._params) or parts[2] not in names:
                raise ValueError(f"state_dict has an unexpected key {key!r} for "
                                 f"{type(self).__name__} with {len(self._params)} parameters")
            i, name, value = int(parts[1]), parts[2], sd.pop(key)
            p = self._params[i]
            if name in self.counters:
                value = int(self._plain(value))
            elif tuple(np.shape(value)) != p.shape:
                raise ValueError(f"state_dict {key!r} has shape {tuple(np.shape(value))}, "
                                 f"but parameter {i} has shape {p.shape}")
            else:
                value = to_device(np.array(asnumpy(value), dtype=p.dtype), p.device)
            state.setdefault(i, {})[name] = value
        return state

    @staticmethod
    def _pop(sd: dict, key: str):
        if key not in sd:
            raise ValueError(f"state_dict is missing the key {key!r}")
        return sd.pop(key)

    @staticmethod
    def _plain(value):
        """A number back from an npz's 0-d array."""
        a = np.asarray(value)
        return a.item() if a.ndim == 0 else value

    def __repr__(self):
        lines = [f"  group {g}: {len(gr['params'])} parameters, "
                 + ", ".join(f"{k}={gr[k]:g}" for k in self.defaults)
                 for g, gr in enumerate(self.param_groups)]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def _check_grad(p: Parameter, index: int) -> None:
    """A gradient set by hand must match its parameter: no broadcast, no silent cast."""
    where = f"parameter {index} (counting over all groups, in order)"
    if tuple(p.grad.shape) != p.shape:
        raise ValueError(f"the grad of {where} has shape {tuple(p.grad.shape)}, but the "
                         f"parameter has shape {p.shape}")
    if p.grad.dtype != p.dtype:
        raise TypeError(f"the grad of {where} has dtype {p.grad.dtype}, but the parameter "
                        f"has {p.dtype}; cast the gradient")


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum and L2 weight decay, as ``torch.optim.SGD``
    (dampening 0, no Nesterov).

    Parameters
    ----------
    params : iterable of Parameter, or list of dicts (parameter groups)
    lr : float
        Learning rate, ``>= 0``.
    momentum : float
        ``mu`` in ``[0, 1)``; 0 is plain SGD.
    weight_decay : float
        ``lambda >= 0``: L2 penalty ``lambda/2 |p|^2`` added to the loss.

    Notes
    -----
    With :math:`g = \nabla L(p) + \lambda p`, each step is

    .. math:: b \leftarrow \mu b + g \quad (b = g \text{ on the first step}), \qquad
              p \leftarrow p - \eta\, b
    """

    buffers = ("momentum_buffer",)

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def _check(self, name, value):
        high = 1.0 if name == "momentum" else None
        return _number(name, value, 0.0, high)

    def _update(self, p, grad, state, group, xp):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        if group["momentum"]:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = xp.array(grad, copy=True)
            else:
                buf *= group["momentum"]
                buf += grad
            grad = buf
        p.data -= group["lr"] * grad


class Adam(Optimizer):
    r"""Adam with bias correction, as ``torch.optim.Adam`` (L2 weight decay added to the
    gradient, not decoupled; no AMSGrad).

    Parameters
    ----------
    params : iterable of Parameter, or list of dicts (parameter groups)
    lr : float
        Step size ``eta >= 0``.
    betas : (float, float)
        Decay rates ``(beta1, beta2)`` of the moment estimates, each in ``[0, 1)``.
    eps : float
        ``>= 0``, added to the denominator.
    weight_decay : float
        ``lambda >= 0``, added to the gradient as ``lambda p``.

    Notes
    -----
    With :math:`g = \nabla L(p) + \lambda p` and step count :math:`t`,

    .. math:: m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
              v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
              p \leftarrow p - \frac{\eta}{1-\beta_1^t}\,
              \frac{m}{\sqrt{v} / \sqrt{1-\beta_2^t} + \epsilon}
    """

    buffers = ("exp_avg", "exp_avg_sq")
    counters = ("step",)

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        super().__init__(params, {"lr": lr, "beta1": betas[0], "beta2": betas[1],
                                  "eps": eps, "weight_decay": weight_decay})

    def _check(self, name, value):
        high = 1.0 if name in ("beta1", "beta2") else None
        label = f"betas[{int(name[-1]) - 1}]" if name.startswith("beta") else name
        return _number(label, value, 0.0, high)

    def _update(self, p, grad, state, group, xp):
        beta1, beta2 = group["beta1"], group["beta2"]
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        if "step" not in state:
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        step_size = group["lr"] / (1 - beta1 ** t)
        denom = xp.sqrt(v) / math.sqrt(1 - beta2 ** t) + group["eps"]
        p.data -= step_size * (m / denom)
