r"""Figures drawn with Pillow alone: training curves from the log, and segmentation panels.

>>> training_curves(read_log("run/log.csv"), "run/curves.png", target=0.8)   # doctest: +SKIP
>>> segmentation_panels(image, label, palette=ShapesDataset.palette,          # doctest: +SKIP
...                     class_names=ShapesDataset.class_names, path="panels.png")
>>> overlay_with_legend(image, label, palette=VOC_PALETTE,                     # doctest: +SKIP
...                     class_names=VOC_CLASSES).save("overlay.png")

Pillow only (no matplotlib): ``PIL.ImageDraw`` and Pillow's scalable built-in font; ticks
at :math:`\{1, 2, 5\} \times 10^k`. The layouts are public (:func:`curves_layout`,
:func:`panel_boxes`) so that tests and callers can find each panel's pixels. PNGs are
written atomically (:func:`minifcn.io.atomic_open`). Nothing in this module prints.
"""
from __future__ import annotations

import csv
import functools
import math
import numbers
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .io import atomic_open
from .inference import _palette, colorize, label_map, overlay

INK, GREY, GRID, PAPER = (40, 40, 40), (120, 120, 120), (228, 228, 228), (255, 255, 255)
LOSS_COLOUR, IOU_COLOUR = (31, 119, 180), (214, 39, 40)
MASK_PALETTE = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)   # outside, inside the mask
CURVES_SIZE = (1000, 420)
MARGIN, CAPTION, GAP, SWATCH = 12, 30, 12, 16
LEGEND_ROW, LEGEND_ENTRIES = 24, 12    # a legend row's height; most classes one overlay lists


class Box(NamedTuple):
    """A rectangle in pixels: ``figure[top:bottom, left:right]`` (right, bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int


class Axis(NamedTuple):
    """Axis limits, tick values and scale; :meth:`unit` maps values to ``[0, 1]``."""

    lo: float
    hi: float
    ticks: tuple
    log: bool = False

    def unit(self, values):
        f = np.log10 if self.log else np.asarray
        return (f(values) - f(self.lo)) / (f(self.hi) - f(self.lo))


# --- training curves --------------------------------------------------------------------

def read_log(path) -> list[dict]:
    """Read a training log (``log.csv``) into dicts of floats; an empty cell becomes NaN."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{key: _number(row, key, i) for key in row if key is not None}
            for i, row in enumerate(rows)]


def training_curves(rows, path=None, *, title=None, target=None, size=CURVES_SIZE):
    """Draw training loss and validation mean IoU against iteration; returns the RGB image.

    ``rows`` are log rows (``minifcn.train.LOG_FIELDS``), values numbers or strings (as
    from ``csv.DictReader``); empty, missing or non-finite values are skipped, so rows
    without validation add only to the loss. Left panel: the loss on a log axis (linear
    from 0 if a loss is not positive); right: mean IoU on ``[0, 1]`` with a dashed guide at
    ``target`` where given, or "no validation yet". ``title`` goes above both; ``path``
    (optional) receives the PNG, atomically; :func:`curves_layout` gives the plot areas.
    """
    if isinstance(rows, (str, bytes, dict)) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"rows must be a list of dicts (log rows), got {type(rows).__name__}")
    it, loss, iou = (np.array([_number(r, key, i) for i, r in enumerate(rows)], float)
                     for key in ("iteration", "loss", "mean_iou"))   # (rows,) each, NaN gaps
    has_loss, has_iou = np.isfinite(it) & np.isfinite(loss), np.isfinite(it) & np.isfinite(iou)
    if not has_loss.any():
        raise ValueError(f"rows must hold a row with a finite iteration and loss; none of "
                         f"the {len(rows)} rows does")
    if target is not None and not 0.0 <= float(target) <= 1.0:
        raise ValueError(f"target must be a mean IoU in [0, 1] or None, got {target!r}")
    figure, boxes = Image.new("RGB", tuple(size), PAPER), curves_layout(size, title)
    draw = ImageDraw.Draw(figure)
    if title:
        draw.text((size[0] / 2, 22), str(title), font=_font(20), fill=INK, anchor="mm")
    x = linear_axis(0.0, float(it[has_loss | has_iou].max()))
    it_loss, loss = it[has_loss], loss[has_loss]
    log = bool((loss > 0).all())
    y = log_axis(loss.min(), loss.max()) if log else linear_axis(0.0, float(loss.max()))
    _axes(figure, boxes["loss"], x, y, "training loss", "loss (log scale)" if log else "loss")
    _curve(draw, boxes["loss"], x, y, it_loss, loss, LOSS_COLOUR, marker=False)
    box, y = boxes["mean_iou"], linear_axis(0.0, 1.0)
    _axes(figure, box, x, y, "validation mean IoU", "mean IoU")
    if target is not None:
        _dashed(draw, box, _pixels(box, x, y, [x.lo], [float(target)])[0][1], target)
    if has_iou.any():
        _curve(draw, box, x, y, it[has_iou], np.clip(iou[has_iou], 0, 1), IOU_COLOUR, True)
    else:
        draw.text(((box.left + box.right) / 2, (box.top + box.bottom) / 2),
                  "no validation yet", font=_font(18), fill=GREY, anchor="mm")
    if path is not None:
        _save(figure, path)
    return figure


def curves_layout(size=CURVES_SIZE, title=None) -> dict:
    """The plot areas of :func:`training_curves`: ``{"loss": Box, "mean_iou": Box}``."""
    width, height = size
    top, half = (40 if title else 0) + 44, width // 2
    return {name: Box(i * half + 78, top, (i + 1) * half - 24, height - 62)
            for i, name in enumerate(("loss", "mean_iou"))}


def linear_axis(lo: float, hi: float, n: int = 6) -> Axis:
    """Limits widened to multiples of a nice step giving at most about ``n`` intervals."""
    hi = hi if hi > lo else lo + 1.0
    raw = (hi - lo) / n
    step = min(m * 10.0 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)
               if m * 10.0 ** math.floor(math.log10(raw)) >= raw * (1 - 1e-9))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = tuple(_clean(k * step) for k in range(first, last + 1))        # (intervals + 1,)
    return Axis(ticks[0], ticks[-1], ticks)


def log_axis(lo: float, hi: float) -> Axis:
    """Log-scale limits at the nearest 1-2-5 values around ``[lo, hi]`` (``lo > 0``)."""
    kmin, kmax = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
    nice = [_clean(m * 10.0 ** k) for k in range(kmin, kmax + 1) for m in (1, 2, 5)]
    first = max(i for i, v in enumerate(nice) if v <= lo * (1 + 1e-9))
    last = min(i for i, v in enumerate(nice) if v >= hi * (1 - 1e-9))
    first, last = (first - 1, last + 1) if first == last else (first, last)
    ticks = nice[first:last + 1]
    if len(ticks) > 8:                                  # many decades: label the powers of 10
        ticks = [v for v in ticks if f"{v:e}".startswith("1")]
    return Axis(nice[first], nice[last], tuple(ticks), log=True)


def _axes(figure, box, x, y, title, ylabel):
    """Grid, frame, tick labels, the panel title and both axis titles."""
    draw, font = ImageDraw.Draw(figure), _font(14)
    for t in y.ticks:
        row = _pixels(box, x, y, [x.lo], [t])[0][1]
        draw.line([(box.left, row), (box.right - 1, row)], fill=GRID)
        draw.text((box.left - 6, row), f"{t:g}", font=font, fill=INK, anchor="rm")
    for t in x.ticks:
        col = _pixels(box, x, y, [t], [y.lo])[0][0]
        draw.line([(col, box.top), (col, box.bottom - 1)], fill=GRID)
        draw.text((col, box.bottom + 6), f"{t:g}", font=font, fill=INK, anchor="mt")
    draw.rectangle([box.left, box.top, box.right - 1, box.bottom - 1], outline=INK)
    middle = (box.left + box.right) / 2
    draw.text((middle, box.top - 12), title, font=_font(18), fill=INK, anchor="md")
    draw.text((middle, box.bottom + 30), "iteration", font=_font(15), fill=INK, anchor="mt")
    text = Image.new("L", (int(_font(15).getlength(ylabel)) + 4, 20), 0)
    ImageDraw.Draw(text).text((2, 10), ylabel, font=_font(15), fill=255, anchor="lm")
    text = text.rotate(90, expand=True)                                   # reads bottom-up
    corner = (box.left - 72, (box.top + box.bottom - text.height) // 2)
    figure.paste(Image.new("RGB", text.size, INK), corner, mask=text)


def _curve(draw, box, x, y, xs, ys, colour, marker):
    """A line through the points, in iteration order; dots at the points if ``marker``."""
    order = np.argsort(xs, kind="stable")
    points = _pixels(box, x, y, xs[order], ys[order])
    if len(points) > 1:
        draw.line(points, fill=colour, width=2, joint="curve")
    for px, py in points if marker or len(points) == 1 else ():
        draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)


def _dashed(draw, box, row, target):
    for left in range(box.left + 1, box.right - 1, 14):
        draw.line([(left, row), (min(left + 8, box.right - 2), row)], fill=GREY, width=2)
    draw.text((box.left + 8, row - 4), f"target {target:g}", font=_font(13), fill=GREY,
              anchor="ld")


def _pixels(box, x, y, xs, ys) -> list:
    """Data to pixel centres: x to the right, y up, both axes spanning the box."""
    cols = box.left + x.unit(np.asarray(xs, float)) * (box.right - 1 - box.left)
    rows = box.bottom - 1 - y.unit(np.asarray(ys, float)) * (box.bottom - 1 - box.top)
    return [(round(float(c)), round(float(r))) for c, r in zip(cols, rows)]


# --- segmentation panels ----------------------------------------------------------------

def segmentation_panels(image, label, *, palette, class_names, highlight=None, truth=None,
                        path=None):
    r"""Show a prediction three ways, side by side, over a legend of the classes present.

    Panels: [``ground truth`` if ``truth`` is given |] ``prediction`` (``label`` in the
    ``palette``) | ``overlay`` (:func:`minifcn.inference.overlay`) | ``predicted <name>``
    (the pixels predicted as class ``highlight``, white over the darkened image). Each panel is the image enlarged by an
    integer nearest-neighbour factor (:func:`panel_boxes`). Returns the RGB image and
    writes it as a PNG to ``path`` (atomically) where given.

    Parameters
    ----------
    image : ndarray, (H, W, 3) uint8 RGB
    label, truth : ndarray, (H, W) integer
        Predicted and (optional) true class indices; ``palette[c]`` is the colour of class
        ``c`` (``(P, 3)`` uint8) and ``class_names[c]`` the name of a predicted class.
    highlight : int, optional
        The masked class. Default: the most frequent class but 0 (background) in ``label``,
        else 0.
    """
    image, label, truth, palette, names = _check_maps(image, label, truth, palette,
                                                      class_names)
    highlight = _highlight(highlight, label, len(names))
    mask = (label == highlight).astype(np.uint8)                          # (H, W) in {0, 1}
    panels = [("prediction", colorize(label, palette)),
              ("overlay", overlay(image, label, palette)),
              (f"predicted {names[highlight]}",
               overlay(image, mask, MASK_PALETTE, alpha=0.6))]
    if truth is not None:
        panels.insert(0, ("ground truth", colorize(truth, palette)))
    scale, boxes = panel_boxes(image.shape, len(panels))
    present = np.unique(label) if truth is None else np.union1d(label, truth)
    entries = [(_name(names, int(c)), palette[int(c)]) for c in present]
    width = boxes[-1].right + MARGIN
    legend = _legend_places(entries, width)
    height = boxes[0].bottom + 10 + (legend[-1][1] + 1) * LEGEND_ROW + MARGIN
    figure, font = Image.new("RGB", (width, height), PAPER), _font(18)
    draw = ImageDraw.Draw(figure)
    for (caption, picture), box in zip(panels, boxes):
        big = picture.repeat(scale, axis=0).repeat(scale, axis=1)          # (sH, sW, 3)
        figure.paste(Image.fromarray(big), box[:2])
        draw.text(((box.left + box.right) / 2, box.top - 8), caption, font=font, fill=INK,
                  anchor="md")
    _draw_legend(draw, legend, boxes[0].bottom + 10)
    if path is not None:
        _save(figure, path)
    return figure


def panel_boxes(shape, n_panels: int, min_side: int = 256) -> tuple:
    """``(scale, [Box, ...])``: the integer upscale factor (the longer side reaches at least
    ``min_side`` pixels) and the boxes of ``n_panels`` panels of an ``(H, W)`` image."""
    height, width = shape[:2]
    scale = max(1, math.ceil(min_side / max(height, width)))
    w, h, top = width * scale, height * scale, MARGIN + CAPTION
    return scale, [Box(MARGIN + i * (w + GAP), top, MARGIN + i * (w + GAP) + w, top + h)
                   for i in range(n_panels)]


def _check_maps(image, label, truth, palette, class_names):
    image, palette = np.asarray(image), _palette(palette)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or not image.size:
        raise ValueError(f"image must be a non-empty (H, W, 3) uint8 RGB array, got "
                         f"{image.dtype} array of shape {image.shape}")
    names = [str(name) for name in class_names]
    maps = {"label": label, "truth": truth}
    for name, value in ((k, v) for k, v in maps.items() if v is not None):
        value = maps[name] = label_map(name, value)
        if value.shape != image.shape[:2]:
            raise ValueError(f"{name} must be (H, W) = {image.shape[:2]} like image, got "
                             f"shape {value.shape}")
        if int(value.max()) >= len(palette):
            raise ValueError(f"{name} holds class {int(value.max())} but palette has only "
                             f"{len(palette)} colours")
    if int(maps["label"].max()) >= len(names):
        raise ValueError(f"label holds class {int(maps['label'].max())} but class_names has "
                         f"only {len(names)} names")
    return image, maps["label"], maps["truth"], palette, names


def _highlight(highlight, label, n_class) -> int:
    if highlight is None:
        counts = np.bincount(label.ravel(), minlength=n_class)            # (K,)
        counts[0] = 0
        return int(counts.argmax()) if counts.any() else 0
    if isinstance(highlight, bool) or not isinstance(highlight, (int, np.integer)) \
            or not 0 <= highlight < n_class:
        raise ValueError(f"highlight must be a class index in [0, {n_class}), got "
                         f"{highlight!r}")
    return int(highlight)


def overlay_with_legend(image, label, *, palette, class_names, alpha=0.5,
                        max_entries=LEGEND_ENTRIES):
    """:func:`minifcn.inference.overlay` with a legend strip below: a swatch and the name of
    each class in ``label``, largest share first, at most ``max_entries`` of them (then
    "+N more"), wrapped to the image's width (widened where one entry is wider). Returns
    the RGB PIL image; ``palette`` and ``class_names`` as for :func:`segmentation_panels`.
    """
    if isinstance(max_entries, bool) or not isinstance(max_entries, numbers.Integral) \
            or max_entries < 1:
        raise ValueError(f"max_entries must be an integer >= 1, got {max_entries!r}")
    image, label, _, palette, names = _check_maps(image, label, None, palette, class_names)
    picture = Image.fromarray(overlay(image, label, palette, alpha))
    counts = np.bincount(label.ravel(), minlength=len(names))             # (K,)
    present = sorted(np.flatnonzero(counts), key=lambda k: (-counts[k], k))
    entries = [(names[c], palette[c]) for c in present[:max_entries]]
    if len(present) > max_entries:
        entries.append((f"+{len(present) - max_entries} more", None))
    width = max([picture.width] + [_extent(text) + 2 * MARGIN for text, _ in entries])
    places = _legend_places(entries, width)
    rows = places[-1][1] + 1                                  # a label has a class at least
    figure = Image.new("RGB", (width, picture.height + 10 + rows * LEGEND_ROW + 4), PAPER)
    figure.paste(picture, (0, 0))
    _draw_legend(ImageDraw.Draw(figure), places, picture.height + 10)
    return figure


def _legend_places(entries, width) -> list:
    """``[(left, row, text, colour), ...]``: where each ``(text, colour)`` entry goes,
    wrapped to ``width``."""
    places, left, row = [], MARGIN, 0
    for text, colour in entries:
        extent = _extent(text)
        if left > MARGIN and left + extent > width - MARGIN:
            left, row = MARGIN, row + 1
        places.append((left, row, text, colour))
        left += extent
    return places


def _extent(text) -> int:
    """The width of one legend entry: swatch, gap, name and the space after it."""
    return SWATCH + 6 + math.ceil(_font(15).getlength(text)) + 18


def _draw_legend(draw, places, top) -> None:
    """Swatches (outlined in grey) and names at ``places``, rows from ``top`` down; an
    entry without a colour is its text alone."""
    for left, row, text, colour in places:
        y = top + row * LEGEND_ROW
        if colour is not None:
            draw.rectangle([left, y, left + SWATCH, y + SWATCH],
                           fill=tuple(int(v) for v in colour), outline=GREY)
        draw.text((left + SWATCH + 6 if colour is not None else left, y + SWATCH / 2),
                  text, font=_font(15), fill=INK, anchor="lm")


# --- small helpers ----------------------------------------------------------------------

def _number(row, key, i) -> float:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"rows[{i}][{key!r}] must be a number or empty, got "
                         f"{value!r}") from None


def _name(names, c) -> str:
    return names[c] if c < len(names) else f"class {c}"


def _clean(value: float) -> float:
    return float(f"{value:.12g}")                  # 0.30000000000000004 -> 0.3


@functools.lru_cache(maxsize=None)
def _font(size: int):
    return ImageFont.load_default(size=size)


def _save(figure, path) -> None:
    with atomic_open(path) as f:
        figure.save(f, format="PNG")
