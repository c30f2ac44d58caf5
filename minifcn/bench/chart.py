"""A PNG bar chart of a benchmark run: minifcn beside torch, CPU beside GPU, per op or
network and phase, on a log time axis (ops span 0.01 ms to seconds).

matplotlib is optional (``pip install "minifcn[plot]"``) and imported only by
:func:`require_matplotlib` and :func:`draw_chart`, without pyplot (no GUI backend).
:func:`chart_panels` computes what is drawn and needs nothing.
"""
from __future__ import annotations

from typing import NamedTuple

from ..io import atomic_open

INSTALL_HINT = 'pip install "minifcn[plot]"'
SIDES = ("minifcn", "torch")
COLOURS = {("minifcn", "cpu"): "#1f77b4", ("torch", "cpu"): "#ff7f0e",
           ("minifcn", "cuda"): "#2ca02c", ("torch", "cuda"): "#d62728"}


class Panel(NamedTuple):
    """One group and phase: a bar per (side, device) series for each name, in ``unit``."""
    title: str
    unit: str                      # "ms" or "s"
    names: tuple
    series: dict                   # (side, device) -> [time per name, None where not measured]


def chart_panels(rows) -> list:
    """The panels to draw for ``rows``: one per group and phase, in the rows' order; a
    series per side and device that has any time in it."""
    panels = []
    groups = dict.fromkeys(row.group for row in rows)
    for group in groups:
        mine = [row for row in rows if row.group == group]
        names = tuple(dict.fromkeys(row.name for row in mine))
        devices = tuple(dict.fromkeys(row.device for row in mine))
        unit, scale = ("ms", 1e3) if group == "ops" else ("s", 1.0)
        for phase in mine[0].phases:
            series = {}
            for device in devices:
                by_name = {row.name: row for row in mine if row.device == device}
                for side in SIDES:
                    times = [None if name not in by_name or
                             by_name[name].seconds(phase, side) is None
                             else scale * by_name[name].seconds(phase, side) for name in names]
                    if any(t is not None for t in times):
                        series[(side, device)] = times
            panels.append(Panel(f"{group}: {phase.replace('_', '+')}", unit, names, series))
    return panels


def require_matplotlib():
    """Import matplotlib, or raise ImportError naming the extra that installs it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"matplotlib is not installed: {INSTALL_HINT}") from None
    return matplotlib


def draw_chart(rows, path, title: str = "") -> None:
    """Draw :func:`chart_panels` of ``rows``, two panels a line, into a PNG at ``path``
    (written atomically)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    panels = chart_panels(rows)
    columns = min(2, len(panels))
    lines = -(-len(panels) // columns)
    bars = max(len(p.names) * max(1, len(p.series)) for p in panels)
    figure = Figure(figsize=(6.5 * columns, lines * (1.5 + 0.22 * bars)), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        _draw_panel(ax, panel)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    with atomic_open(path) as f:
        figure.savefig(f, format="png", dpi=100)


def _draw_panel(ax, panel: Panel) -> None:
    """Horizontal grouped bars, one group per name (first at the top); a log time axis
    where the times span more than 20x."""
    count = max(1, len(panel.series))
    bar = 0.8 / count
    times = [t for series in panel.series.values() for t in series if t is not None]
    log = bool(times) and max(times) > 20 * min(times)
    for i, ((side, device), series) in enumerate(panel.series.items()):
        positions = [n + (i - (count - 1) / 2) * bar for n in range(len(panel.names))]
        kept = [(p, t) for p, t in zip(positions, series) if t is not None]
        ax.barh([p for p, _ in kept], [t for _, t in kept], height=bar, log=log,
                color=COLOURS.get((side, device)), label=f"{side} {device}")
    if log:
        from matplotlib.ticker import NullFormatter
        ax.xaxis.set_minor_formatter(NullFormatter())   # labels at the decades only
    ax.set_yticks(range(len(panel.names)), panel.names)
    ax.invert_yaxis()
    ax.set_xlabel(f"median time ({panel.unit}{', log scale' if log else ''})")
    ax.set_title(panel.title)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
