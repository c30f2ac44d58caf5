"""The terminal tables of ``minifcn bench``: a header per section (machine, torch, timing),
a row per op or network, and footers that say how to read them. Functions return lines."""
from __future__ import annotations

from .machine import clock_name, header_lines
from .net_cases import NETS
from .network import ARCHS
from .table import format_cell, format_sig, table_head, table_row

ABBREVIATIONS = {"forward": "fwd", "backward": "bwd", "forward_backward": "f+b",
                 "step": "step"}


def columns(section) -> tuple:
    """``(title, width)`` of the section's table: names, then per phase minifcn's time and,
    with torch, torch's and the ratio, then rates (ops) or peak memory (networks). The ops'
    name and shape columns are as wide as the section's longest (``Section.labels``)."""
    times = []
    unit = "ms" if section.group == "ops" else "s"
    for phase in section.phases:
        times.append((f"{ABBREVIATIONS[phase]} {unit}", 8))
        if section.torch is not None:
            times += [("torch", 8), ("ratio", 5)]
    if section.group == "ops":
        rates = [(f"{ABBREVIATIONS[p]} GF/s", 8) for p in section.phases]
        names, shapes = zip(*section.labels) if section.labels else ((), ())
        return (("op", max((9, *map(len, names)))), ("shape", max((26, *map(len, shapes)))),
                *times, *rates, ("fwd MB", 7), ("fwd GB/s", 8), ("IQR", 4))
    peak = [("peak GB", 8)] + ([("torch", 8), ("ratio", 5)] if section.torch is not None else [])
    step = ABBREVIATIONS[section.phases[-1]]
    names = max(len(arch) for arch in ARCHS)         # deeplabv3_resnet50 fits its column
    return (("net", names), ("input", 20), *times, *peak, (f"{step} GF/s", 9))


def section_head(section, plan) -> list:
    """The ``#`` header (date, machine, BLAS, torch, GPU, timing) and the table's titles."""
    h, w = plan.size
    if section.group == "ops":
        inputs = (f"{NETS[plan.net].title} layer shapes for a {h}x{w} image, width "
                  f"{plan.width:g}, batch 1, {plan.dtype}, device {section.device}")
    else:
        inputs = (f"{h}x{w} image, width {plan.width:g}, batch {plan.batch}, {plan.dtype}, "
                  f"device {section.device}; each side in its own process")
    lines = header_lines(repeat=section.repeat, warmup=section.warmup, inputs=inputs,
                         torch=section.torch, torch_note=section.torch_note, xp=section.xp,
                         min_time=section.min_time)
    return ["", *lines, *table_head(columns(section))]


def format_row(section, row) -> str:
    """One row under :func:`columns`."""
    cells = [row.name, row.shape]
    seconds = format_sig if row.group == "ops" else (lambda s: format_cell(s, ".2f"))
    scale = 1e3 if row.group == "ops" else 1.0
    for phase in row.phases:
        mine, theirs = row.seconds(phase), row.seconds(phase, "torch")
        cells.append(seconds(scale * mine))
        if section.torch is not None:
            cells += [seconds(None if theirs is None else scale * theirs),
                      format_cell(row.ratio(phase), ".2f")]
    if row.group == "ops":
        cells += [format_sig(row.gflops(p)) for p in row.phases]
        moved = row.bytes.get("forward")
        cells += [format_sig(None if moved is None else moved / 1e6),
                  format_sig(row.gbps("forward")), f"{100 * row.spread:.0f}%"]
    else:
        kind = "rss" if row.device == "cpu" else "gpu"
        peaks = {side: (row.peak.get(side) or {}).get(kind) for side in ("minifcn", "torch")}
        cells.append(format_cell(_gb(peaks["minifcn"]), ".2f"))
        if section.torch is not None:
            cells += [format_cell(_gb(peaks["torch"]), ".2f"),
                      format_cell(row.peak_ratio(kind), ".2f")]
        cells.append(format_sig(row.gflops(row.phases[-1])))
    return table_row(cells, columns(section))


def _gb(value):
    return None if value is None else value / 2**30


def section_foot(finished, rows) -> list:
    """How to read the section's table, the noise line, and how far torch's results were."""
    section = finished.section
    if section.group == "ops":
        lines = ["times in ms, medians; ratio = minifcn / torch (above 1: minifcn is slower); "
                 "bwd = backward alone, on one forward's cache / graph",
                 "GF/s = minifcn's FLOPs / median (multiply-add = 2; a backward twice the "
                 "forward's; a direct convolution's count, so effective rates where a 3x3 "
                 "conv runs by Winograd); fwd MB = bytes the forward reads and writes "
                 "(inputs + output; crop: the kept block twice), fwd GB/s = fwd MB / fwd "
                 "median",
                 "IQR = the widest interquartile range of the row's timings, in % of its "
                 "median"]
    else:
        memory = "peak RSS of each side's process" if section.device == "cpu" else \
            "the most GPU memory each side's allocator held"
        lines = [f"times in s, medians; step = forward + softmax cross-entropy + backward; "
                 f"ratio = minifcn / torch; peak GB = {memory} (GiB)",
                 f"step GF/s = 3 x the forward's FLOPs (minifcn summary, direct "
                 f"convolutions) / minifcn's step median; timed with the "
                 f"{clock_name(section.xp)}"]
    lines.append(finished.other_load)
    if any(row.error for row in rows):
        lines.append(check_line(rows))
    return lines


def check_line(rows) -> str:
    """The worst differences from torch of the rows' forward outputs and gradients, and
    where they were."""
    checked = [row for row in rows if row.error]
    worst = {what: max(checked, key=lambda row: row.error[what])
             for what in ("forward", "backward")}
    return ("check: forward outputs agree with torch to max|diff|/max|y| <= "
            f"{worst['forward'].error['forward']:.1e} ({worst['forward'].name}), gradients "
            f"to <= {worst['backward'].error['backward']:.1e} ({worst['backward'].name}); "
            "dropout where both kept a value")
