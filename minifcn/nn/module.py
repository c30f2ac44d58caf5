"""``Parameter`` and ``Module``: the thin stateful layer over the functional ops.

A module's parameters and submodules are whatever ``Parameter`` and ``Module`` objects it
holds as attributes, found in the order they were assigned, so a user's own layer is a
short subclass::

    class Scale(Module):
        def __init__(self, n):
            super().__init__()
            self.gain = Parameter(numpy.ones(n, dtype=numpy.float32))

        def forward(self, x):
            self.save_for_backward(x)
            return x * self.gain.data[:, None, None]

        def backward(self, dy):
            x, = self.saved()
            self.gain.accumulate((dy * x).sum(axis=(0, 2, 3)))
            return dy * self.gain.data[:, None, None]

``backward(dy)`` returns the input gradient and *adds* each parameter's gradient to
``Parameter.grad``, so gradients of several backward calls sum until ``zero_grad()``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..backend import asnumpy, device_of, get_array_module, parse_device, to_device
from .._validate import FLOAT_DTYPES, float_array


class Parameter:
    """A learnable array: ``.data``, its gradient ``.grad`` (None until a backward) and
    ``.requires_grad`` (False freezes it: no gradient is accumulated, optimisers skip it)."""

    def __init__(self, data, requires_grad: bool = True):
        if not hasattr(data, "dtype"):
            data = np.asarray(data)
        float_array("data", data)
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)

    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    device = property(lambda self: device_of(self.data))

    def accumulate(self, grad, copy: bool = True) -> None:
        """Add ``grad`` to ``.grad`` (a no-op when ``requires_grad`` is False).

        The first gradient after ``zero_grad()`` is copied, so that ``.grad`` never shares
        memory with an array the caller keeps. ``copy=False`` hands ``grad`` over instead:
        ``.grad`` becomes that very array, and the caller must not write to it afterwards.
        The built-in layers hand over the fresh gradients their ops return (fc6's weight
        gradient is 411 MB: a copy of it cost 0.26-1.1 s per FCN-8s step on the project's
        machine).
        """
        if not self.requires_grad or grad is None:
            return
        if tuple(grad.shape) != self.shape:
            raise ValueError(f"gradient of shape {tuple(grad.shape)} does not match the "
                             f"parameter's shape {self.shape}")
        if self.grad is None:
            self.grad = grad.copy() if copy else grad
        else:
            self.grad = self.grad + grad

    def __repr__(self):
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, device={self.device}{frozen})"


class Buffer:
    """State a module saves and loads but does not learn (``.data``): BatchNorm's running
    mean and variance, and its ``num_batches_tracked`` counter (an int64 0-d array, as in
    PyTorch). No gradient, no optimiser; ``module.to(dtype=...)`` casts float buffers only."""

    def __init__(self, data):
        if not hasattr(data, "dtype"):
            data = np.asarray(data)
        self.data = data

    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    device = property(lambda self: device_of(self.data))

    def __repr__(self):
        return f"Buffer(shape={self.shape}, dtype={self.dtype}, device={self.device})"


class Module:
    """Base class of every layer: ``forward``, ``backward``, parameters, modes, devices."""

    training = True
    _cache = None

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} must define backward()")

    def __call__(self, *inputs):
        return self.forward(*inputs)

    # --- the forward -> backward hand-over ----------------------------------------------
    def save_for_backward(self, *values) -> None:
        """Keep what ``backward`` needs from the latest ``forward``."""
        self._cache = values

    def saved(self):
        """What the latest ``forward`` saved; a clear error if forward has not run."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward() was called before forward(): "
                               "run the forward pass first, it saves what backward needs")
        return self._cache

    # --- parameters and submodules ------------------------------------------------------
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = ""):
        """Yield ``(dotted name, Parameter)`` for this module and its submodules, each once."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = ""):
        """Yield ``(dotted name, Buffer)`` for this module and its submodules."""
        for module_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Buffer):
                    yield (f"{module_name}.{name}" if module_name else name), value

    def named_state(self):
        """Parameters and buffers by dotted name, module by module, each module's
        parameters before its buffers: the order of PyTorch's ``state_dict``."""
        seen = set()
        for module_name, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, (Parameter, Buffer)) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def zero_grad(self) -> None:
        """Forget accumulated gradients (``grad`` becomes None)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True):
        for _, module in self.named_modules():
            module.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device: str | None = None, dtype=None):
        """Move every parameter to ``device`` and/or cast it to a float ``dtype``; returns self."""
        if dtype is not None and np.dtype(dtype) not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        if device is not None:
            parse_device(device)    # a bad device string fails even without parameters
        for p in self.parameters() + [b for _, b in self.named_buffers()]:
            for attr in ("data", "grad"):
                a = getattr(p, attr, None)
                if a is None:
                    continue
                if device is not None:
                    a = to_device(a, device)
                if dtype is not None and a.dtype.kind == "f":
                    a = a.astype(dtype, copy=False)
                setattr(p, attr, a)
        return self

    # --- saving and loading -------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, object]":
        """Parameter and buffer name -> array (the arrays themselves, not copies)."""
        return OrderedDict((name, p.data) for name, p in self.named_state())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays into the parameters and buffers, keeping each one's device and dtype.

        Raises ``ValueError`` listing the wrongly shaped keys and, when ``strict``, the
        missing and unexpected keys (the first four of each kind, and how many more).
        Returns ``(missing, unexpected)`` name lists.
        """
        params = dict(self.named_state())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        wrong = [f"{k}: expected shape {params[k].shape}, got {tuple(np.shape(v))}"
                 for k, v in state_dict.items()
                 if k in params and tuple(np.shape(v)) != params[k].shape]
        problems = _first_few([f"wrong shape for {w}" for w in wrong])
        if strict:
            problems += _first_few([f"missing key {k!r}" for k in missing])
            problems += _first_few([f"unexpected key {k!r}" for k in unexpected])
        if problems:
            raise ValueError(f"cannot load state_dict into {type(self).__name__}: "
                             + "; ".join(problems))
        # Convert everything, then assign: a failed cast or copy leaves every parameter as it was.
        new = {}
        for name, p in params.items():
            if name in state_dict:
                value = to_device(asnumpy(state_dict[name]), p.device)
                new[name] = get_array_module(p.data).array(value, dtype=p.dtype, copy=True)
        for name, value in new.items():
            params[name].data = value
        return missing, unexpected

    def __repr__(self):
        children = [f"  ({name}): " + repr(child).replace("\n", "\n  ")
                    for name, child in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + (")" if not children else "\n" + "\n".join(children) + "\n)")

    def extra_repr(self) -> str:
        return ""


def _first_few(problems, n: int = 4):
    """The first ``n`` problems of one kind, and how many more there are."""
    return problems[:n] + ([f"and {len(problems) - n} more"] if len(problems) > n else [])
