"""``format_summary``: the rows of :func:`~minifcn.summary.summarize` as a printable table."""
from __future__ import annotations

from fractions import Fraction

from .trace import totals

_HEADER = ("layer", "type", "from", "output NxCxHxW", "params", "FLOPs", "im2col", "RF",
           "scale", "offset")
_RIGHT = {"params", "FLOPs", "im2col", "RF", "offset"}          # right-aligned columns


def format_summary(rows, title: str | None = None) -> str:
    """The rows as an aligned table, with the totals and the crop offsets below it.

    ``from`` is blank where a layer reads the row above it; ``scale`` and ``offset`` are
    the coordinate map (the jump between outputs is 1/scale input pixels).
    """
    lines = [title] if title else []
    cells = [_HEADER] + [_cells(row, previous) for previous, row in zip([None] + rows, rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_HEADER))]
    for c in cells:
        lines.append("  ".join(text.rjust(n) if head in _RIGHT else text.ljust(n)
                               for text, n, head in zip(c, widths, _HEADER)).rstrip())
    return "\n".join(lines + [""] + _footer(rows))


def _cells(row, previous) -> tuple:
    follows = previous is not None and row.inputs == (previous.name,)
    inputs = row.inputs if len(row.inputs) <= 2 else (row.inputs[0], f"{len(row.inputs) - 1} more")
    source = "" if follows else (" to " if row.kind == "crop" else " + ").join(inputs)
    params = f"{row.params:,}" if row.params else f"{row.frozen:,}*" if row.frozen else ""
    return (row.name, f"{_KINDS.get(row.kind, row.kind)} {row.detail}".strip(), source,
            "x".join(str(n) for n in row.shape), params, _units(row.flops, 1000, _COUNT),
            _units(row.workspace, 1024, _BYTES), str(row.rf), str(row.coord.scale),
            _decimal(row.coord.offset))


def _footer(rows) -> list:
    t = totals(rows)
    first = next(row for row in rows if row.kind == "conv")
    crops = ", ".join(f"{row.inputs[0]} {row.offset[0]}" for row in rows if row.kind == "crop")
    return [
        f"total: {t.params + t.frozen:,} parameters "
        f"({_units(t.params + t.frozen, 1000, _COUNT, 4)}): {t.params:,} learnable, "
        f"{t.frozen:,} frozen (*: requires_grad=False)",
        f"       {_units(t.flops, 1000, _FLOP)} forward; largest im2col workspace "
        f"{_units(t.workspace, 1024, _BYTES)} ({t.workspace_layer})",
    ] + ([
        f"crop offsets derived from coordinate maps: {crops}",
        (f"  {first.name}'s padding ({first.detail}) shifts" if " p" in first.detail
         else "  unpadded (valid) convolutions shift") + " every map against the image: input "
        "pixel x lands on",
        "  pixel scale*x + offset, and a crop at the difference of two offsets aligns maps of "
        "one scale.",
    ] if crops else [
        "coordinates: input pixel x lands on pixel scale*x + offset of each map.",
    ]) + [
        "FLOPs: multiply-add = 2; relu, sum, scale 1 and max pool KH*KW-1 per output element; "
        "crops and concatenations 0" + ("; bn 2, bilinear resize 7 per output element, "
                                        "average pool 1 per input element."
                                        if any(r.kind == "bn" for r in rows) else "."),
    ]


_KINDS = {"conv_transpose": "convT"}
_COUNT = ("", "K", "M", "G", "T", "P")
_FLOP = tuple(f" {prefix}FLOP" for prefix in _COUNT)
_BYTES = (" B", " KiB", " MiB", " GiB", " TiB")


def _units(value, base, units, significant=3) -> str:
    """``significant`` digits (at least the integer part): 1.05 GiB, 363 GFLOP, 134.5M."""
    if not value:
        return ""
    i = 0
    while value >= base and i < len(units) - 1:
        value, i = value / base, i + 1
    digits = 0 if i == 0 else max(0, significant - len(str(int(value))))
    return f"{value:.{digits}f}{units[i]}"


def _decimal(q: Fraction) -> str:
    """Exact: 99, 5.71875, -0.390625 (a decimal when it terminates, else a fraction)."""
    d = q.denominator
    for prime in (2, 5):
        while d % prime == 0:
            d //= prime
    return f"{float(q):.15g}" if d == 1 else str(q)
