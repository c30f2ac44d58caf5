"""The ops that ``minifcn gradcheck NAME`` knows, each with a small, seeded test case.

An entry says which command-line options the op takes and how to build
``(forward, backward, inputs)`` from them; ``presets`` are the configurations that
``minifcn gradcheck all`` runs. Later layers register themselves here the same way::

    @register("max_pool2d", options=("kernel", "stride", "padding"), presets=[{}, {"stride": 1}])
    def _max_pool2d_case(rng, kernel=2, stride=2, padding=0):
        x = rng.standard_normal((2, 3, 8, 8))
        return max_pool2d_forward, max_pool2d_backward, [x, kernel, stride, padding]
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ops import conv2d_backward, conv2d_forward


@dataclass(frozen=True)
class OpEntry:
    name: str
    build: object            # build(rng, **options) -> (forward, backward, inputs)
    options: tuple           # option names the op accepts (kernel, stride, ...)
    presets: tuple           # option dicts that `gradcheck all` runs


_REGISTRY: dict[str, OpEntry] = {}


def register(name: str, options=(), presets=({},)):
    """Decorator adding a case builder under ``name``."""
    def decorate(build):
        _REGISTRY[name] = OpEntry(name, build, tuple(options), tuple(presets))
        return build
    return decorate


def registered() -> list[str]:
    return sorted(_REGISTRY)


def entry(name: str) -> OpEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown op {name!r}; registered ops: {', '.join(registered())}")
    return _REGISTRY[name]


def build_case(name: str, rng, **options):
    """``(forward, backward, inputs)`` for op ``name``; options it does not take are an error."""
    op = entry(name)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(op.options))
    if unknown:
        raise ValueError(f"op {name} does not take {', '.join('--' + u for u in unknown)}; "
                         f"it takes {', '.join('--' + o for o in op.options) or 'no options'}")
    return op.build(rng, **given)


@register("conv2d", options=("kernel", "stride", "padding", "dilation"),
          presets=({}, {"kernel": 1, "padding": 0}, {"stride": 2, "dilation": 2},
                   {"kernel": 2, "stride": 3, "padding": 0}))
def _conv2d_case(rng, kernel=3, stride=1, padding=1, dilation=1):
    # Smallest input with a 3x3 output at least, and one odd and one even side.
    extent = dilation * (kernel - 1) + 1
    h = max(extent - 2 * padding + 2 * stride, 1) + 1
    x = rng.standard_normal((2, 3, h, h + 1))
    weight = rng.standard_normal((4, 3, kernel, kernel))
    bias = rng.standard_normal(4)
    return conv2d_forward, conv2d_backward, [x, weight, bias, stride, padding, dilation]
