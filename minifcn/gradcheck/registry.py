"""The ops that ``minifcn gradcheck NAME`` knows, each with a small, seeded test case.

An entry says which command-line options the op takes (name -> type: ``int``, ``float``,
or ``bool`` for a flag) and how to build ``(forward, backward, inputs)`` from them;
``presets`` are the configurations that ``minifcn gradcheck all`` runs. The command line
offers the union of all entries' options as ``--name`` flags (``output_padding`` becomes
``--output-padding``). A layer registers itself like this::

    @register("max_pool2d", options={"kernel": int, "stride": int, "ceil_mode": bool},
              presets=({}, {"stride": 1}))
    def _max_pool2d_case(rng, kernel=2, stride=2, ceil_mode=False):
        x = rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7) / 10.0   # no ties
        return max_pool2d_forward, max_pool2d_backward, [x, kernel, stride, 0, ceil_mode]
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ops import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                   conv_transpose2d_forward)


@dataclass(frozen=True)
class OpEntry:
    name: str
    build: object            # build(rng, **options) -> (forward, backward, inputs)
    options: dict            # option name -> type (int, float or bool) the op accepts
    presets: tuple           # option dicts that `gradcheck all` runs


_REGISTRY: dict[str, OpEntry] = {}


def register(name: str, options=None, presets=({},)):
    """Decorator adding a case builder under ``name``."""
    def decorate(build):
        _REGISTRY[name] = OpEntry(name, build, dict(options or {}), tuple(presets))
        return build
    return decorate


def all_options() -> dict:
    """Every option any registered op takes, name -> type (for the command line)."""
    merged = {}
    for op in _REGISTRY.values():
        merged.update(op.options)
    return merged


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
        flag = lambda option: "--" + option.replace("_", "-")
        raise ValueError(f"op {name} does not take {', '.join(map(flag, unknown))}; "
                         f"it takes {', '.join(map(flag, op.options)) or 'no options'}")
    return op.build(rng, **given)


@register("conv2d", options=dict(kernel=int, stride=int, padding=int, dilation=int),
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


@register("conv_transpose2d",
          options=dict(kernel=int, stride=int, padding=int, output_padding=int, dilation=int),
          presets=({}, {"kernel": 4, "stride": 2, "padding": 1}, {"stride": 2, "output_padding": 1},
                   {"kernel": 3, "stride": 1, "output_padding": 1, "dilation": 2}))
def _conv_transpose2d_case(rng, kernel=3, stride=1, padding=0, output_padding=0, dilation=1):
    x = rng.standard_normal((2, 3, 4, 5))
    weight = rng.standard_normal((3, 2, kernel, kernel))
    bias = rng.standard_normal(2)
    return (conv_transpose2d_forward, conv_transpose2d_backward,
            [x, weight, bias, stride, padding, output_padding, dilation])
