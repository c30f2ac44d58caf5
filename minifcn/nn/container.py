"""``ModuleList``: numbered modules an owner runs its own way; ``Sequential``: a ModuleList
applied one after another, and its backward in reverse."""
from __future__ import annotations

from .module import Module


class ModuleList(Module):
    """Modules named ``"0"``, ``"1"``, ... as in ``torch.nn.ModuleList``, so their parameters
    are ``"0.weight"``, ...; it has no forward of its own (its owner decides how they run).
    Index it, iterate it, and take ``len()``."""

    entry = "ModuleList entry"          # how an error names a module given to it

    def __init__(self, modules=()):
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"{self.entry} {i} must be a Module, "
                                f"got {type(module).__name__}")
            setattr(self, str(i), module)

    def _layers(self):
        return [module for _, module in self.named_children()]

    def __getitem__(self, index):
        return self._layers()[index]

    def __len__(self):
        return len(self._layers())

    def __iter__(self):
        return iter(self._layers())


class Sequential(ModuleList):
    """``Sequential(m0, m1, ...)``: forward runs m0, m1, ...; backward runs them in reverse.

    Children are named ``"0"``, ``"1"``, ... so parameters get names like ``"0.weight"``, as
    in PyTorch. Index it (``seq[0]``), iterate it, and take ``len(seq)``.
    """

    entry = "Sequential argument"

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for module in self._layers():
            x = module(x)
        return x

    def backward(self, dy):
        for module in reversed(self._layers()):
            dy = module.backward(dy)
        return dy
