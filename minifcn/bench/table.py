"""Plain-text tables: cells, ratios, rows under titles."""
from __future__ import annotations


def format_cell(value, spec: str = ".1f") -> str:
    """``value`` formatted with ``spec``, or ``"-"`` for None (a figure not measured)."""
    return "-" if value is None else format(value, spec)


def format_sig(value) -> str:
    """A figure (a time in ms, a rate) with about three significant digits, or ``"-"`` for
    None."""
    spec = ".1f" if value is None or value >= 10 else ".2f" if value >= 1 else ".3f"
    return format_cell(value, spec)


def format_ratio(numerator, denominator, spec: str = ".2f") -> str:
    """``numerator / denominator`` formatted, or ``"-"`` when either is None."""
    if numerator is None or denominator is None:
        return "-"
    return format(numerator / denominator, spec)


def table_row(cells, columns, left: int = 2) -> str:
    """One line of a table: ``cells`` (strings) under ``columns`` (``(title, width)`` pairs),
    two spaces apart, the first ``left`` aligned left (names), the others right (figures)."""
    return "  ".join(f"{cell:<{width}}" if i < left else f"{cell:>{width}}"
                     for i, (cell, (_, width)) in enumerate(zip(cells, columns)))


def table_head(columns, left: int = 2) -> list:
    """The titles line of ``columns`` and a rule of dashes as long."""
    titles = table_row([title for title, _ in columns], columns, left)
    return [titles, "-" * len(titles)]
