"""``cupy.random`` emulated by ``numpy.random``: the same calls and signatures as CuPy's,
NumPy's streams of numbers (CuPy's own generators draw other numbers from the same seed)."""
from __future__ import annotations

import numpy

from . import names
from .convert import flat_inputs, to_device, to_numpy

SPEC = names.cls("cupy.random.Generator")


class Generator:
    """``cupy.random.Generator``: the methods CuPy's Generator has, drawn by NumPy's."""

    def __init__(self, bit_generator):
        self._g = numpy.random.Generator(bit_generator)

    def __getattr__(self, name):
        spec = SPEC.get(name)
        if spec is None or name.startswith("_") or not hasattr(self._g, name):
            raise AttributeError(f"'cupy.random.Generator' object has no attribute {name!r} "
                                 "(cupy emulation)")
        method = getattr(self._g, name)

        def call(*args, **kwargs):
            names.check_call("cupy.random.Generator", name, spec["params"], args, kwargs)
            where = f"cupy.random.Generator.{name}"
            result = method(*to_numpy(args, where), **to_numpy(kwargs, where))
            return to_device(result, flat_inputs(args, kwargs), where)
        return call


def default_rng(seed=None):
    if isinstance(seed, numpy.random.Generator):
        raise TypeError("cupy.random.default_rng takes a seed, not a numpy Generator")
    return Generator(numpy.random.PCG64(seed))
