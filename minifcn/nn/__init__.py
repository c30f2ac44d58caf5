"""Stateful layers: ``Parameter``, ``Module`` and one class per op."""
from .conv import Conv2d
from .module import Module, Parameter

__all__ = ["Parameter", "Module", "Conv2d"]
