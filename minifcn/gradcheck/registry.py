"""The ops that ``minifcn gradcheck NAME`` knows, each with a small, seeded test case.

An entry says which command-line options the op takes (name -> type: ``int``, ``float``,
``str``, or ``bool`` for a flag) and how to build ``(forward, backward, inputs)`` from them;
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

import inspect
from dataclasses import dataclass

from ..backend import get_array_module
from ..ops import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                   conv_transpose2d_forward)
from ..ops import upsample_bilinear2d_backward, upsample_bilinear2d_forward
from ..ops import max_pool2d_backward, max_pool2d_forward
from ..ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from ..ops import (crop_backward, crop_forward, dropout_backward, dropout_forward,
                   relu_backward, relu_forward)


@dataclass(frozen=True)
class OpEntry:
    name: str
    build: object            # build(rng, **options) -> (forward, backward, inputs)
    options: dict            # option name -> type (int, float, str or bool) the op accepts
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


# What each option is, for ``minifcn gradcheck --help`` (which adds the ops that take it).
DESCRIPTIONS = {
    "kernel": "kernel size K, a square KxK window",
    "stride": "step between windows, max_pool2d's default the kernel size",
    "padding": "rows and columns of padding on each side",
    "dilation": "spacing between kernel taps",
    "output_padding": "extra rows and columns on the output's bottom and right",
    "size": "output height and width",
    "scale_factor": "output size over input size, 2 where neither it nor --size is given",
    "align_corners": "a flag: corner pixels' centres align",
    "reduction": "how the pixel losses combine: mean, sum or none",
    "weighted": "a flag: random class weights",
    "p": "probability that dropout zeroes an element",
    "offset": "rows and columns cut from the top and the left",
    "ceil_mode": "a flag: round the output size up, keeping a partial last window",
}


def option_help(option: str) -> str:
    """One line for ``--help``: what the option is and which ops take it."""
    takers = [name for name in registered() if option in _REGISTRY[name].options]
    return f"{DESCRIPTIONS.get(option, option)}; for {', '.join(takers)}"


def options_table() -> list[str]:
    """One line per op: the options it takes, each with its default in brackets."""
    width = max(map(len, _REGISTRY))
    return [f"{name.ljust(width)}  " + (" ".join(
        f"--{option.replace('_', '-')} [{_default(_REGISTRY[name].build, option)}]"
        for option in _REGISTRY[name].options) or "(no options)") for name in registered()]


def _default(build, option) -> str:
    value = inspect.signature(build).parameters[option].default
    if value is None or isinstance(value, bool):
        return {None: "none", False: "off", True: "on"}[value]
    return str(value)


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

    def forward(x, weight, bias):          # the options are keyword-only
        return conv_transpose2d_forward(x, weight, bias, stride=stride, padding=padding,
                                        output_padding=output_padding, dilation=dilation)

    return forward, conv_transpose2d_backward, [x, weight, bias]


@register("upsample_bilinear2d", options=dict(size=int, scale_factor=float, align_corners=bool),
          presets=({}, {"align_corners": True}, {"scale_factor": 0.6},
                   {"scale_factor": 1.5, "align_corners": True}, {"size": 4}))
def _upsample_bilinear2d_case(rng, size=None, scale_factor=None, align_corners=False):
    if size is None and scale_factor is None:
        scale_factor = 2.0
    x = rng.standard_normal((2, 3, 5, 6))
    return (upsample_bilinear2d_forward, upsample_bilinear2d_backward,
            [x, size, scale_factor, align_corners])


# reduction is a string option (argparse passes it through; the forward rejects unknown ones).
@register("softmax_cross_entropy", options=dict(reduction=str, weighted=bool),
          presets=({}, {"weighted": True}, {"reduction": "sum"},
                   {"reduction": "none", "weighted": True}))
def _softmax_cross_entropy_case(rng, reduction="mean", weighted=False):
    logits = rng.standard_normal((2, 4, 3, 5))
    target = rng.integers(0, 4, (2, 3, 5))
    target[rng.random(target.shape) < 0.2] = 255                # some void pixels
    class_weight = rng.uniform(0.5, 2.0, 4) if weighted else None

    def softmax_cross_entropy(logits, target):
        # the class weight is a constant here, not a checked input: match logits' dtype/device
        weight = (None if class_weight is None
                  else get_array_module(logits).asarray(class_weight, dtype=logits.dtype))
        return softmax_cross_entropy_forward(logits, target, weight, 255, reduction)

    return softmax_cross_entropy, softmax_cross_entropy_backward, [logits, target]


@register("relu")
def _relu_case(rng):
    # |x| >= 0.1: central differences with a small eps never straddle the kink at 0
    magnitude = rng.uniform(0.1, 2.0, (2, 3, 5, 6))
    x = magnitude * rng.choice([-1.0, 1.0], magnitude.shape)
    return relu_forward, relu_backward, [x]


# The int seed among the inputs makes every forward call draw the same mask: a fixed,
# deterministic function of x, which is what finite differences need.
@register("dropout", options=dict(p=float), presets=({}, {"p": 0.2}))
def _dropout_case(rng, p=0.5):
    x = rng.standard_normal((2, 3, 5, 6))
    seed = int(rng.integers(2**31))
    return dropout_forward, dropout_backward, [x, p, True, seed]


@register("crop", options=dict(offset=int), presets=({}, {"offset": 0}))
def _crop_case(rng, offset=5):
    # FCN's score_pool4 crop has offset 5; the input always fits the (5, 4) crop
    x = rng.standard_normal((2, 3, offset + 7, offset + 8))
    return crop_forward, crop_backward, [x, offset, (5, 4)]


# A shuffled linspace has no ties, and its values lie 2/335 apart, so an eps-sized step never
# changes a window's winner (max pooling's kinks). 7x8 gives ceil mode a partial window.
@register("max_pool2d", options=dict(kernel=int, stride=int, padding=int, ceil_mode=bool),
          presets=({}, {"ceil_mode": True}, {"kernel": 3, "stride": 1, "padding": 1},
                   {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True},
                   {"kernel": 2, "stride": 3, "padding": 1, "ceil_mode": True}))
def _max_pool2d_case(rng, kernel=2, stride=None, padding=0, ceil_mode=False):
    x = rng.permutation(2 * 3 * 7 * 8).reshape(2, 3, 7, 8) / 167.5 - 1.0   # on [-1, 1]
    return max_pool2d_forward, max_pool2d_backward, [x, kernel, stride, padding, ceil_mode]
