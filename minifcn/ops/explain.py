"""``explain``: which code computes an op for given shapes, and why.

>>> from minifcn.ops import explain
>>> report = explain("conv2d", (1, 256, 64, 64), (256, 256, 3, 3), padding=1)
>>> report.choices["conv2d.forward"]
'winograd'
>>> print(report)                                                 # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from .. import _validate as _checks
from . import dispatch
from .arguments import conv_geometry, pool_geometry, transpose_geometry

PIECES = {
    "conv2d": ("forward", "input_grad", "weight_grad"),
    "conv_transpose2d": ("forward", "backward"),
    "max_pool2d": ("forward", "backward"),
    "upsample_bilinear2d": ("forward", "backward"),
    "softmax_cross_entropy": ("forward", "backward"),
    "relu": ("forward", "backward"),
    "dropout": ("forward", "backward"),
    "crop": ("forward", "backward"),
    "batch_norm2d": ("forward", "backward"),
    "concat": ("forward", "backward"),
    "adaptive_avg_pool2d": ("forward", "backward"),
    "im2col": ("",),
    "col2im": ("",),
}


class Explanation:
    """For each piece of the op: the implementation that runs (``choices``), its rule, and
    the fast paths passed over. ``str()`` prints it as a small table."""

    def __init__(self, op: str, call: dispatch.Call, rows: list):
        self.op, self.call, self.rows = op, call, rows
        self.choices = {piece: name for piece, name, _, _ in rows}

    def __str__(self) -> str:
        c = self.call
        lines = [f"{self.op}: x {c.x_shape}" + (f", weight {c.w_shape}" if c.w_shape else "")
                 + f", {np.dtype(c.dtype).name} on {c.device}, algorithm "
                 f"{dispatch.get_algorithm()!r}"]
        for piece, name, rule, skipped in self.rows:
            lines.append(f"  {piece:<32} {name:<14} {rule}")
            for other, why in skipped:
                lines.append(f"  {'':<32} {'(not ' + other + ')':<14} needs: {why}")
        return "\n".join(lines)

    __repr__ = __str__


def explain(op: str, x_shape, weight_shape=None, *, kernel_size=None, stride=None, padding=0,
            output_padding=0, dilation=1, groups=1, ceil_mode=False, dtype="float32",
            device="cpu") -> Explanation:
    """Which implementation each piece of ``op`` runs for an input of ``x_shape`` (and a
    conv's ``weight_shape``, a pool's ``kernel_size``) under the current algorithm and
    workspace limit, and why: its rule, and the rules of the fast paths that did not apply.
    ``op`` is a public op's name without ``_forward``, e.g. ``"conv2d"``; options default
    as in the op (``stride`` 1, or the kernel size for ``max_pool2d``)."""
    if op not in PIECES:
        raise ValueError(f"op must be one of {', '.join(PIECES)}, got {op!r}")
    _checks.float_dtype("dtype", dtype)
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    call = _call(op, tuple(int(s) for s in x_shape), weight_shape, kernel_size, stride,
                 padding, output_padding, dilation, ceil_mode, np.dtype(dtype),
                 "cpu" if device == "cpu" else "cuda")
    if op == "conv2d":
        call = call._replace(groups=_checks.positive_int("groups", groups))
    rows = []
    for part in PIECES[op]:
        piece = f"{op}.{part}" if part else op
        path = dispatch.choose(piece, call)
        passed = dispatch.paths(piece)
        passed = passed[:passed.index(path)] if path is not None else passed
        skipped = [(p.name, p.rule) for p in passed]
        if path is None:
            why = ("the algorithm is 'reference'" if dispatch.get_algorithm() == "reference"
                   else "no fast path applies" if skipped else "the only implementation")
            rows.append((piece, "reference", why, skipped))
        else:
            rows.append((piece, path.name, path.rule, skipped))
    return Explanation(op, call, rows)


def _call(op, x_shape, w_shape, kernel_size, stride, padding, output_padding, dilation,
          ceil_mode, dtype, device) -> dispatch.Call:
    if stride is None and op != "max_pool2d":
        stride = 1
    if op in ("conv2d", "conv_transpose2d") and w_shape is None:
        raise ValueError(f"{op} needs weight_shape")
    if op == "conv2d":
        w_shape = tuple(int(s) for s in w_shape)
        _, stride, padding, dilation, out = conv_geometry(x_shape, w_shape[2:], stride,
                                                          padding, dilation)
        return dispatch.Call(device, dtype, x_shape, w_shape, w_shape[2:], stride, padding,
                             dilation, out)
    if op == "conv_transpose2d":
        w_shape = tuple(int(s) for s in w_shape)
        stride, padding, output_padding, dilation, y_shape = transpose_geometry(
            x_shape, w_shape, stride, padding, output_padding, dilation)
        return dispatch.Call(device, dtype, x_shape, w_shape, w_shape[2:], stride, padding,
                             dilation, y_shape[2:], output_padding)
    if op in ("max_pool2d", "im2col", "col2im"):
        if kernel_size is None:
            raise ValueError(f"{op} needs kernel_size")
        if op == "max_pool2d":
            kernel, stride, padding, out = pool_geometry(x_shape, kernel_size, stride,
                                                         padding, ceil_mode)
            dilation = (1, 1)
        else:
            kernel, stride, padding, dilation, out = conv_geometry(x_shape, kernel_size, stride,
                                                                   padding, dilation)
        return dispatch.Call(device, dtype, x_shape, (), kernel, stride, padding, dilation, out)
    return dispatch.Call(device, dtype, x_shape)
