"""Stateful layers: ``Parameter``, ``Module``, ``Sequential`` and one class per op."""
from .container import Sequential
from .conv import Conv2d, ConvTranspose2d
from .module import Module, Parameter

__all__ = ["Parameter", "Module", "Sequential", "Conv2d", "ConvTranspose2d"]
