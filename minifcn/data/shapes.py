r"""A generated segmentation set: discs, rectangles and triangles on a textured background.

:class:`ShapesDataset` makes each image on the fly from ``(seed, index)`` alone, so item
``i`` is the same whatever order items are read in, on any machine with the same NumPy. A
sample is an RGB ``uint8`` image ``(H, W, 3)`` and a label map ``uint8`` ``(H, W)``:

- 0 background, of one of the kinds in ``backgrounds``: ``"gradient"`` (a smooth colour
  gradient plus a few low-frequency colour blobs), ``"flat"`` (one colour) or ``"texture"``
  (two colours mixed by stripes, checks or smooth value noise, at a random scale and angle);
- 1 disc, 2 rectangle (rotated by a random angle), 3 triangle (irregular, never a sliver),
  ``n_shapes`` of them, of random class, size, position and colour. Later shapes occlude
  earlier ones and the label map follows the occlusion;
- a fraction ``empty_fraction`` of the images hold no shape at all.

Every class draws its colour from the same distribution (uniform RGB, redrawn while too
close to what it covers), its area from the same distribution (a disc, a rectangle and a
triangle of one ``size`` draw have about the same area), and carries the same mild shading
ramp; per-pixel Gaussian noise covers everything (its strength drawn per image when
``noise`` is a range). So neither colour nor size tells the class, and a textured background
is no cue either: a model has to learn shape.

:func:`write_voc` writes such a set in the PASCAL VOC layout, so it feeds the VOC reader::

    root/JPEGImages/shapes_000000.jpg
    root/SegmentationClass/shapes_000000.png     palette ('P') PNG, VOC colours
    root/ImageSets/Segmentation/train.txt        one id a line
"""
from __future__ import annotations

import io
import operator
import os
import secrets
from typing import NamedTuple

import numpy as np

from .._validate import pair
from .voc import VOC_PALETTE

CLASS_NAMES = ("background", "disc", "rectangle", "triangle")


PALETTE = VOC_PALETTE[:len(CLASS_NAMES)].copy()   # (4, 3): black, maroon, green, olive


class Shape(NamedTuple):
    """One painted shape. ``geometry`` in pixels, ``y`` down, ``x`` right.

    - disc: ``(cy, cx, radius)``
    - rectangle: ``(cy, cx, half_height, half_width, angle)``, angle in radians
    - triangle: ``(y0, x0, y1, x1, y2, x2)``
    """

    label: int          # 1 disc, 2 rectangle, 3 triangle
    geometry: tuple
    colour: tuple       # RGB in [0, 255]
    shading: tuple      # (dy, dx): relative brightness change per pixel from the centre


def shape_mask(shape: Shape, size) -> np.ndarray:
    """The pixels a shape covers: a bool ``(H, W)`` mask, from coordinate grids."""
    yy, xx = _grid(*size)
    g = shape.geometry
    if shape.label == 1:
        cy, cx, radius = g
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    if shape.label == 2:
        cy, cx, half_h, half_w, angle = g
        dy, dx = yy - cy, xx - cx
        v = dy * np.cos(angle) - dx * np.sin(angle)     # along the rotated height
        u = dy * np.sin(angle) + dx * np.cos(angle)     # along the rotated width
        return (np.abs(v) <= half_h) & (np.abs(u) <= half_w)
    if shape.label == 3:
        ys, xs = g[0::2], g[1::2]
        sides = [(xs[j] - xs[i]) * (yy - ys[i]) - (ys[j] - ys[i]) * (xx - xs[i])
                 for i, j in ((0, 1), (1, 2), (2, 0))]    # signed side of each edge
        return ((sides[0] >= 0) & (sides[1] >= 0) & (sides[2] >= 0)) | \
               ((sides[0] <= 0) & (sides[1] <= 0) & (sides[2] <= 0))
    raise ValueError(f"shape.label must be 1, 2 or 3, got {shape.label!r}")


def compose(background: np.ndarray, shapes) -> tuple[np.ndarray, np.ndarray]:
    r"""Paint ``shapes`` in order over ``background``; later ones occlude earlier ones.

    Returns the float32 image ``(H, W, 3)`` (no noise, not clipped) and the uint8 label map
    ``(H, W)``: each pixel holds the label of the last shape covering it, else 0.
    """
    image = np.array(background, np.float32)            # (H, W, 3), a copy
    label = np.zeros(image.shape[:2], np.uint8)
    for shape in shapes:
        _paint(image, label, shape, shape_mask(shape, image.shape[:2]))
    return image, label


def _paint(image: np.ndarray, label: np.ndarray, shape: Shape, mask: np.ndarray) -> None:
    """Paint one shape into ``image`` and ``label`` in place, with its shading ramp."""
    if not mask.any():
        return
    yy, xx = _grid(*mask.shape)
    ys, xs = yy[mask], xx[mask]                          # (M,) each
    ramp = 1 + shape.shading[0] * (ys - ys.mean()) + shape.shading[1] * (xs - xs.mean())
    image[mask] = ramp[:, None] * np.asarray(shape.colour, np.float32)   # (M, 3)
    label[mask] = shape.label


class ShapesDataset:
    r"""Generated images of discs, rectangles and triangles with their label maps.

    Parameters
    ----------
    n : int
        Number of items.
    size : int or (int, int)
        Image size ``(H, W)``, each at least 16.
    n_shapes : (int, int)
        Least and most shapes in an image that has any (inclusive), at least 1.
    empty_fraction : float
        Probability that an image holds no shape, in ``[0, 1]``.
    seed : int
        Non-negative; item ``i`` comes from ``numpy.random.default_rng([seed, i])``.
    scale : (float, float)
        Least and most shape "radius" as a fraction of ``min(H, W)``; a disc has this
        radius and the other classes the same area.
    noise : float or (float, float)
        Standard deviation of the per-pixel Gaussian noise, in grey levels; a range
        ``(least, most)`` draws it per image.
    backgrounds : tuple of str
        The background kinds to draw from, each image one of them with equal chance:
        ``"gradient"``, ``"flat"``, ``"texture"`` (see the module docstring).
    min_contrast : float
        A shape's colour is redrawn (up to 8 times, keeping the best) while closer than this
        (Euclidean, RGB) to the mean colour of what it covers.

    Examples
    --------
    >>> data = ShapesDataset(100, size=(96, 96), seed=0)
    >>> image, label = data[0]          # (96, 96, 3) uint8 RGB, (96, 96) uint8 in {0..3}
    """

    n_class = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    palette = PALETTE

    def __init__(self, n, size=(96, 96), n_shapes=(1, 4), empty_fraction=0.1, seed=0, *,
                 scale=(0.07, 0.18), noise=8.0, min_contrast=80.0,
                 backgrounds=("gradient",)):
        self.n = _count("n", n)
        self.size = pair("size", size, minimum=16)
        self.n_shapes = _int_range("n_shapes", n_shapes, minimum=1)
        self.empty_fraction = _number("empty_fraction", empty_fraction, 0.0, 1.0)
        self.seed = _count("seed", seed)
        self.scale = _float_range("scale", scale, 0.01, 1.0)
        self.noise = (_float_range("noise", noise, 0.0, 255.0)
                      if isinstance(noise, (tuple, list)) else _number("noise", noise, 0.0, 255.0))
        self.backgrounds = _kinds("backgrounds", backgrounds)
        self.min_contrast = _number("min_contrast", min_contrast, 0.0, 442.0)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (f"ShapesDataset(n={self.n}, size={self.size}, n_shapes={self.n_shapes}, "
                f"empty_fraction={self.empty_fraction}, seed={self.seed}, scale={self.scale}, "
                f"noise={self.noise}, min_contrast={self.min_contrast}, "
                f"backgrounds={self.backgrounds})")

    def __getitem__(self, index) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 (H, W, 3) RGB, label uint8 (H, W))`` of item ``index``."""
        image, label, _ = self._generate(self._check_index(index))
        return image, label

    def scene(self, index) -> tuple[Shape, ...]:
        """The shapes of item ``index``, in painting order (its recipe, for inspection)."""
        return self._generate(self._check_index(index))[2]

    def _check_index(self, index) -> int:
        index = operator.index(index)
        if not 0 <= index < self.n:
            raise IndexError(f"index must be in [0, {self.n}), got {index}")
        return index

    def _generate(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        H, W = self.size
        kind = self.backgrounds[int(rng.integers(len(self.backgrounds)))] \
            if len(self.backgrounds) > 1 else self.backgrounds[0]
        image = _BACKGROUNDS[kind](rng, H, W)                # (H, W, 3) float32
        label = np.zeros((H, W), np.uint8)
        n_shapes = 0 if rng.random() < self.empty_fraction else int(
            rng.integers(self.n_shapes[0], self.n_shapes[1] + 1))
        shapes = []
        for _ in range(n_shapes):
            shape, mask = self._sample_shape(rng, image)
            _paint(image, label, shape, mask)
            shapes.append(shape)
        noise = rng.uniform(*self.noise) if isinstance(self.noise, tuple) else self.noise
        image += noise * rng.standard_normal(image.shape, dtype=np.float32)
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        return image, label, tuple(shapes)

    def _sample_shape(self, rng, image: np.ndarray) -> tuple[Shape, np.ndarray]:
        """Class, geometry and shading, then a colour that stands out from what it covers."""
        H, W = self.size
        label = int(rng.integers(1, 4))
        radius = rng.uniform(*self.scale) * min(H, W)
        margin = 0.5 * radius
        cy = rng.uniform(min(margin, H / 2), max(H - 1 - margin, H / 2))
        cx = rng.uniform(min(margin, W / 2), max(W - 1 - margin, W / 2))
        geometry = _GEOMETRY[label](rng, cy, cx, radius)
        shading = tuple(rng.uniform(-0.2, 0.2, 2) / radius)
        mask = shape_mask(Shape(label, geometry, (0, 0, 0), (0, 0)), self.size)
        covered = image[mask]                                 # (M, 3)
        under = covered.mean(axis=0) if len(covered) else image.mean(axis=(0, 1))
        best, best_distance = None, -1.0
        for _ in range(8):
            colour = rng.uniform(0, 255, 3)
            distance = float(np.linalg.norm(colour - under))
            if distance > best_distance:
                best, best_distance = colour, distance
            if distance >= self.min_contrast:
                break
        return Shape(label, geometry, tuple(float(c) for c in best), shading), mask

    def write_voc(self, root, split="train", indices=None, *, prefix="shapes",
                  palette=None, quality=95) -> list[str]:
        r"""Write items in the PASCAL VOC layout under ``root``; return their ids.

        Writes ``JPEGImages/<id>.jpg`` (quality ``quality``, no chroma subsampling),
        ``SegmentationClass/<id>.png`` (palette PNG, ``palette`` or the VOC colours) and
        ``ImageSets/Segmentation/<split>.txt`` (replaced). Ids are ``<prefix>_<index:06d>``.
        Each file is written to a temporary name and renamed into place.
        """
        from PIL import Image

        if not isinstance(split, str) or not split or os.sep in split or "/" in split:
            raise ValueError(f"split must be a plain name such as 'train', got {split!r}")
        flat_palette = _palette_bytes(palette)
        folders = {key: os.path.join(os.fspath(root), *parts) for key, parts in (
            ("jpg", ("JPEGImages",)), ("png", ("SegmentationClass",)),
            ("txt", ("ImageSets", "Segmentation")))}
        for folder in folders.values():
            os.makedirs(folder, exist_ok=True)
        ids = []
        for index in (range(self.n) if indices is None else indices):
            image, label = self[index]
            name = f"{prefix}_{operator.index(index):06d}"
            segmentation = Image.fromarray(label, mode="P")
            segmentation.putpalette(flat_palette)
            _save(os.path.join(folders["jpg"], name + ".jpg"), Image.fromarray(image, "RGB"),
                  format="JPEG", quality=quality, subsampling=0)
            _save(os.path.join(folders["png"], name + ".png"), segmentation, format="PNG")
            ids.append(name)
        text = "".join(f"{name}\n" for name in ids).encode()
        _replace(os.path.join(folders["txt"], f"{split}.txt"), text)
        return ids


def write_voc(root, splits=None, *, prefix="shapes", palette=None, quality=95,
              **options) -> dict[str, list[str]]:
    r"""Write a shapes set in the VOC layout, one ``ImageSets`` list per split.

    ``splits`` maps a split name to its number of images (default ``{"train": 200,
    "val": 50}``). One :class:`ShapesDataset` of the total length (``options`` go to it:
    ``size``, ``seed``, ...) is cut into consecutive runs, so splits never share an image.
    Returns ``{split: ids}``.
    """
    splits = {"train": 200, "val": 50} if splits is None else dict(splits)
    counts = {split: _count(f"splits[{split!r}]", count) for split, count in splits.items()}
    dataset = ShapesDataset(sum(counts.values()), **options)
    written, start = {}, 0
    for split, count in counts.items():
        written[split] = dataset.write_voc(root, split, range(start, start + count),
                                           prefix=prefix, palette=palette, quality=quality)
        start += count
    return written


# --- sampling --------------------------------------------------------------------------------

def _background(rng, H: int, W: int) -> np.ndarray:
    """A smooth gradient between two near colours plus low-frequency blobs, ``(H, W, 3)``.

    Both parts are separable in y and x, so they are built from 1-D profiles.
    """
    y, x = np.arange(H, dtype=np.float32), np.arange(W, dtype=np.float32)
    start = rng.uniform(0, 255, 3).astype(np.float32)
    step = rng.uniform(-70, 70, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = (y * np.sin(angle))[:, None] + (x * np.cos(angle))[None, :]     # (H, W)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)             # in [0, 1]
    k = int(rng.integers(2, 6))                                          # blobs
    cy, cx = rng.uniform(0, H, k), rng.uniform(0, W, k)
    width = rng.uniform(0.1, 0.3, k) * min(H, W)
    amplitude = rng.uniform(-50, 50, (k, 3)).astype(np.float32)
    spread = 2 * width[:, None] ** 2
    gy = np.exp(-(y - cy[:, None]) ** 2 / spread).astype(np.float32)     # (k, H)
    gx = np.exp(-(x - cx[:, None]) ** 2 / spread).astype(np.float32)     # (k, W)
    blobs = (gy.T[:, None, :] * gx.T[None, :, :]) @ amplitude           # (H, W, k) @ (k, 3)
    return start + t[..., None] * step + blobs


def _flat(rng, H: int, W: int) -> np.ndarray:
    """One colour, ``(H, W, 3)``."""
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    return np.broadcast_to(colour, (H, W, 3)).copy()


def _texture(rng, H: int, W: int) -> np.ndarray:
    """Two colours mixed by a pattern ``p`` in [0, 1]: ``c0 + p (c1 - c0)``, ``(H, W, 3)``.

    The pattern is stripes (a sinusoid across a random direction), checks (squares on axes
    turned by a random angle) or value noise (random values on a coarse grid, interpolated
    bilinearly); its period is 4 pixels to a quarter of the image.
    """
    c0 = rng.uniform(0, 255, 3).astype(np.float32)
    c1 = np.clip(c0 + rng.uniform(-90, 90, 3), 0, 255).astype(np.float32)
    period = rng.uniform(4, max(4.0, min(H, W) / 4))
    kind = int(rng.integers(3))
    y, x = np.arange(H, dtype=np.float32), np.arange(W, dtype=np.float32)
    if kind < 2:
        angle = rng.uniform(0, np.pi)
        u = (y * np.cos(angle))[:, None] + (x * np.sin(angle))[None, :]     # (H, W)
        if kind == 0:                                                       # stripes
            pattern = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
        else:                                                               # checks
            v = (x * np.cos(angle))[None, :] - (y * np.sin(angle))[:, None]
            pattern = (np.floor(u / period) + np.floor(v / period)) % 2
    else:                                                                   # value noise
        grid = rng.uniform(0, 1, (int(H / period) + 2, int(W / period) + 2)).astype(np.float32)
        pattern = _interpolation(H, period) @ grid @ _interpolation(W, period).T
    return c0 + pattern.astype(np.float32)[..., None] * (c1 - c0)


def _interpolation(n: int, period: float) -> np.ndarray:
    """``(n, m)``: row ``i`` interpolates linearly between grid points ``period`` apart."""
    t = np.arange(n, dtype=np.float32) / period                 # position in grid cells
    m = int(n / period) + 2
    left = np.floor(t).astype(int)
    matrix = np.zeros((n, m), np.float32)
    matrix[np.arange(n), left] = 1 - (t - left)
    matrix[np.arange(n), left + 1] = t - left
    return matrix


def _disc(rng, cy, cx, radius):
    return (cy, cx, radius)


def _rectangle(rng, cy, cx, radius):
    aspect = rng.uniform(0.45, 1.0)
    half_h = radius * np.sqrt(np.pi / 4 / aspect)                   # area 4 hh hw = pi r^2
    return (cy, cx, half_h, half_h * aspect, rng.uniform(0, np.pi))


def _triangle(rng, cy, cx, radius):
    reach = radius * np.sqrt(np.pi / (3 * np.sqrt(3) / 4))          # equilateral: pi r^2
    angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3   # gaps stay < pi:
    angles = angles + rng.uniform(-0.35, 0.35, 3)                      # the centre is inside
    reaches = reach * rng.uniform(0.86, 1.18, 3)                     # mean area pi r^2
    return tuple(float(v) for a, r in zip(angles, reaches)
                 for v in (cy - r * np.cos(a), cx + r * np.sin(a)))


_GEOMETRY = {1: _disc, 2: _rectangle, 3: _triangle}
_BACKGROUNDS = {"gradient": _background, "flat": _flat, "texture": _texture}
_GRIDS: dict = {}


def _grid(H: int, W: int):
    """Pixel-centre coordinate grids ``(yy, xx)``, each ``(H, W)`` float32, cached."""
    if (H, W) not in _GRIDS:
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        _GRIDS[(H, W)] = (yy, xx)
    return _GRIDS[(H, W)]


# --- writing ---------------------------------------------------------------------------------

def _palette_bytes(palette) -> list[int]:
    """A flat 768-entry palette list for Pillow, from ``(K, 3)`` colours (default VOC)."""
    colours = VOC_PALETTE if palette is None else np.asarray(palette)
    if colours.ndim == 1 and colours.size % 3 == 0:
        colours = colours.reshape(-1, 3)                                # a flat list
    if colours.ndim != 2 or colours.shape[1] != 3 or not \
            len(CLASS_NAMES) <= len(colours) <= 256:
        raise ValueError("palette must be 4 to 256 RGB colours, shape (K, 3), "
                         f"got shape {np.shape(palette)}")
    flat = np.zeros((256, 3), np.uint8)
    flat[:len(colours)] = colours
    return flat.ravel().tolist()


def _save(path: str, image, **options) -> None:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    _replace(path, buffer.getvalue())


def _replace(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it onto ``path``."""
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


# --- argument checks -------------------------------------------------------------------------

def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return int(value)


def _int_range(name: str, value, minimum: int) -> tuple[int, int]:
    low, high = pair(name, value, minimum=minimum)
    if low > high:
        raise ValueError(f"{name} must be (least, most) with least <= most, got {value!r}")
    return low, high


def _number(name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def _kinds(name: str, value) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value or \
            any(kind not in _BACKGROUNDS for kind in value):
        raise ValueError(f"{name} must be a non-empty tuple of {sorted(_BACKGROUNDS)}, "
                         f"got {value!r}")
    return tuple(value)


def _float_range(name: str, value, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (least, most), got {value!r}")
    least, most = (_number(name, v, low, high) for v in value)
    if least > most:
        raise ValueError(f"{name} must be (least, most) with least <= most, got {value!r}")
    return least, most
