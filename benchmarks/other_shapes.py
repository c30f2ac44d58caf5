"""A second shapes generator, written apart from ``minifcn.data.shapes`` and never trained on.

The demo trains on :class:`minifcn.data.ShapesDataset`. A model that learned *shapes* should
also segment discs, rectangles and triangles drawn some other way; one that learned that
generator's quirks (its colour model, its hard edges, its three background kinds) should
not. This module draws the same three classes by other means, for scoring only:

- shapes are drawn with Pillow's ``ImageDraw`` at 4x the size and reduced with a box
  filter, so edges are anti-aliased (the label map is drawn at 1x, nearest);
- a shape is filled with one colour or a linear blend of two, its colour drawn in HSV;
- rectangles may be long and thin (aspect 0.25-1), triangles are any three points whose
  smallest angle is at least 20 degrees;
- backgrounds are none of the training generator's kinds: blurred colour noise, concentric
  rings, bricks, or a scatter of thin strokes (clutter that is not a shape class);
- the image is JPEG-compressed at a quality drawn from 40-90.

Items are ``(image (H, W, 3) uint8, label (H, W) uint8)`` with the demo's class numbers
(0 background, 1 disc, 2 rectangle, 3 triangle); item ``i`` depends on ``(seed, i)`` only.
"""
from __future__ import annotations

import colorsys
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 4


class OtherShapes:
    """``n`` items of ``size`` ``(H, W)`` from the second generator (see the module)."""

    def __init__(self, n: int, size=(192, 192), seed: int = 0, n_shapes=(2, 6),
                 radius=(0.05, 0.16)):
        self.n, self.size, self.seed = n, tuple(size), seed
        self.n_shapes, self.radius = n_shapes, radius

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(f"index must be in [0, {self.n}), got {index}")
        rng = np.random.default_rng([self.seed, 7919, index])
        H, W = self.size
        S = SUPERSAMPLE
        canvas = Image.fromarray(_BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))](rng, H, W))
        canvas = canvas.resize((W * S, H * S), Image.NEAREST)
        label = Image.new("L", (W, H), 0)
        for _ in range(int(rng.integers(self.n_shapes[0], self.n_shapes[1] + 1))):
            cls, points = _shape(rng, H, W, self.radius)
            mask = Image.new("L", (W * S, H * S), 0)
            _draw(ImageDraw.Draw(mask), cls, [(x * S, y * S) for x, y in points], 255)
            canvas.paste(Image.fromarray(_fill(rng, H * S, W * S)), (0, 0), mask)
            _draw(ImageDraw.Draw(label), cls, points, cls)
        image = canvas.resize((W, H), Image.BOX)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(40, 91)))
        image = np.asarray(Image.open(buffer).convert("RGB"))
        return image, np.asarray(label, np.uint8)


def _shape(rng, H, W, radius):
    """A class and its outline: disc ``(x0, y0), (x1, y1)`` box, else polygon corners."""
    cls = int(rng.integers(1, 4))
    r = rng.uniform(*radius) * min(H, W)
    cy, cx = rng.uniform(0, H), rng.uniform(0, W)
    if cls == 1:
        return cls, [(cx - r, cy - r), (cx + r, cy + r)]
    if cls == 2:
        aspect = rng.uniform(0.25, 1.0)
        half_h = r * np.sqrt(np.pi / 4 / aspect)
        half_w, angle = half_h * aspect, rng.uniform(0, np.pi)
        c, s = np.cos(angle), np.sin(angle)
        corners = [(u, v) for u, v in ((-half_w, -half_h), (half_w, -half_h),
                                       (half_w, half_h), (-half_w, half_h))]
        return cls, [(cx + u * c - v * s, cy + u * s + v * c) for u, v in corners]
    while True:
        angles = np.sort(rng.uniform(0, 2 * np.pi, 3))
        reach = r * rng.uniform(1.0, 1.6, 3)
        points = [(cx + d * np.cos(a), cy + d * np.sin(a)) for a, d in zip(angles, reach)]
        if _smallest_angle(points) >= np.radians(20):
            return cls, points


def _smallest_angle(points) -> float:
    p = np.array(points)
    angles = []
    for i in range(3):
        a, b = p[(i + 1) % 3] - p[i], p[(i + 2) % 3] - p[i]
        cosine = a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9)
        angles.append(np.arccos(np.clip(cosine, -1, 1)))
    return float(min(angles))


def _draw(draw, cls, points, value) -> None:
    if cls == 1:
        draw.ellipse(points, fill=value)
    else:
        draw.polygon(points, fill=value)


def _colour(rng) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 1.0), rng.uniform(0.25, 1.0))
    return np.array(rgb) * 255


def _fill(rng, H, W) -> np.ndarray:
    """One colour, or a linear blend of two across a random direction."""
    a = _colour(rng)
    if rng.random() < 0.5:
        return np.broadcast_to(a.astype(np.uint8), (H, W, 3)).copy()
    b, angle = _colour(rng), rng.uniform(0, 2 * np.pi)
    t = (np.arange(H)[:, None] * np.sin(angle) + np.arange(W)[None, :] * np.cos(angle))
    t = (t - t.min()) / max(np.ptp(t), 1e-9)
    return (a + t[..., None] * (b - a)).astype(np.uint8)


def _blurred_noise(rng, H, W):
    small = rng.uniform(0, 255, (max(2, H // 16), max(2, W // 16), 3)).astype(np.uint8)
    image = Image.fromarray(small).resize((W, H), Image.BICUBIC)
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4))))


def _rings(rng, H, W):
    cy, cx, period = rng.uniform(-H, 2 * H), rng.uniform(-W, 2 * W), rng.uniform(6, 30)
    d = np.hypot(np.arange(H)[:, None] - cy, np.arange(W)[None, :] - cx)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * d / period)
    a, b = _colour(rng), _colour(rng)
    return (a + t[..., None] * (b - a)).astype(np.uint8)


def _bricks(rng, H, W):
    brick_h, brick_w = int(rng.integers(8, 24)), int(rng.integers(16, 48))
    mortar, brick = _colour(rng), _colour(rng)
    image = np.empty((H, W, 3))
    image[...] = brick
    for row in range(0, H, brick_h):
        image[row:row + 2] = mortar
        offset = (row // brick_h % 2) * brick_w // 2
        for col in range(offset % brick_w, W, brick_w):
            image[row:row + brick_h, col:col + 2] = mortar
    return image.astype(np.uint8)


def _strokes(rng, H, W):
    image = Image.new("RGB", (W, H), tuple(int(c) for c in _colour(rng)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(10, 40))):
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        dx, dy = rng.normal(0, 0.15 * W), rng.normal(0, 0.15 * H)
        draw.line([(x, y), (x + dx, y + dy)], fill=tuple(int(c) for c in _colour(rng)),
                  width=int(rng.integers(1, 4)))
    return np.asarray(image)


_BACKGROUNDS = (_blurred_noise, _rings, _bricks, _strokes)
