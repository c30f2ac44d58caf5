"""What every lesson shares: its output folder, PyTorch if installed, and Pillow pictures.

Not a lesson: the lessons import it (``from _common import ...``), which works when a lesson
runs as ``python examples/lessons/NN_name.py`` or opens as a notebook in this folder.
"""
import argparse
import os
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUT_VARIABLE = "MINIFCN_LESSON_OUT"     # a folder; each lesson writes into a subfolder "NN"
INK, PAPER, MARK = (30, 30, 30), (255, 255, 255), (214, 39, 40)


def output_dir(number: str) -> pathlib.Path:
    """The folder a lesson writes its PNGs into, created: ``--out DIR`` on the command line,
    else ``$MINIFCN_LESSON_OUT/NN``, else ``./lesson-output/NN``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--out")
    given, _ = parser.parse_known_args()          # a notebook kernel's own arguments pass
    if given.out:
        folder = pathlib.Path(given.out)
    else:
        folder = pathlib.Path(os.environ.get(OUT_VARIABLE) or "lesson-output") / number
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def import_torch():
    """PyTorch's module, or None (with a line saying so) when it is not installed."""
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: the comparisons with torch.nn.functional are skipped.")
        return None
    return torch


def font(size=14):
    return ImageFont.load_default(size=size)


def grid(a, title, fmt="{:g}", marks=None, cell=34, vmin=None, vmax=None):
    """A 2-D array as a table of numbers on grey cells (darker = larger), under a title;
    cells where the boolean ``marks`` is True get a red frame."""
    a = np.asarray(a, dtype=float)
    finite = a[np.isfinite(a)] if np.isfinite(a).any() else np.zeros(1)
    lo = finite.min() if vmin is None else vmin
    hi = finite.max() if vmax is None else vmax
    rows, cols = a.shape
    image = Image.new("RGB", (cols * cell + 2, rows * cell + 26), PAPER)
    draw = ImageDraw.Draw(image)
    draw.text((2, 2), title, font=font(14), fill=INK)
    for r in range(rows):
        for c in range(cols):
            v = a[r, c]
            t = 0.0 if not np.isfinite(v) or hi == lo else (v - lo) / (hi - lo)
            shade = int(245 - 150 * np.clip(t, 0, 1))
            box = (1 + c * cell, 24 + r * cell, c * cell + cell, 23 + r * cell + cell)
            draw.rectangle(box, fill=(shade, shade, shade), outline=(200, 200, 200))
            if marks is not None and marks[r, c]:
                draw.rectangle(box, outline=MARK, width=3)
            text = "-inf" if v == -np.inf else fmt.format(v)
            draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), text,
                      font=font(max(8, min(13, int(cell * 1.6 / max(len(text), 1))))),
                      fill=INK, anchor="mm")
    return image


def heat(a, title, zoom=None, vmin=None, vmax=None, side=256):
    """A 2-D array as a grey image (white = vmax), blown up to about ``side`` pixels."""
    a = np.asarray(a, dtype=float)
    lo = a.min() if vmin is None else vmin
    hi = a.max() if vmax is None else vmax
    zoom = zoom or max(side // max(a.shape), 1)
    grey = np.clip((a - lo) / ((hi - lo) or 1.0), 0, 1) * 255
    big = np.kron(grey, np.ones((zoom, zoom))).astype(np.uint8)        # nearest neighbour
    image = Image.new("RGB", (max(big.shape[1], 8 * len(title)), big.shape[0] + 24), PAPER)
    image.paste(Image.fromarray(big).convert("RGB"), (0, 24))
    ImageDraw.Draw(image).text((2, 2), title, font=font(14), fill=INK)
    return image


def row(*images, gap=16):
    """Images side by side, tops aligned."""
    width = sum(i.width for i in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, max(i.height for i in images)), PAPER)
    x = 0
    for i in images:
        out.paste(i, (x, 0))
        x += i.width + gap
    return out


def column(*images, gap=16):
    """Images one under another, left aligned."""
    height = sum(i.height for i in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (max(i.width for i in images), height), PAPER)
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height + gap
    return out


def save(image, folder, name):
    """Write ``image`` as ``folder/name`` and say so; returns the path."""
    path = pathlib.Path(folder) / name
    image.save(path)
    print(f"wrote {path}")
    return path


def max_diff(a, b):
    """max |a - b| as a Python float (0.0 for empty arrays)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max()) if a.size else 0.0
