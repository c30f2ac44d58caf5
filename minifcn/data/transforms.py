r"""Transforms for segmentation pairs: normalisation, random flip and scale/crop, batching.

A training pipeline runs, per item, on ``(H, W, 3)`` uint8 RGB images and ``(H, W)``
labels: :func:`random_flip`, :func:`random_scale_crop`, then :func:`normalize` (to
``(3, H, W)`` float32); :func:`collate` then pads a list of items to one batch. The
geometric transforms move image and label together; labels are only ever resampled
nearest-neighbour, so no label value is invented. Randomness comes from an explicit
``numpy.random.Generator``.

Two normalisations:

- ``"reference"``: the FCN reference's Caffe preprocessing — RGB to BGR, subtract the
  per-channel mean ``REFERENCE_MEAN_BGR`` (0..255 scale, no scaling). Use it with the
  converted VGG16 weights, which were trained that way.
- ``"imagenet"``: the torchvision convention — scale to [0, 1], subtract ImageNet's
  mean ``IMAGENET_MEAN`` and divide by its std ``IMAGENET_STD`` (RGB order). Its values
  are about unit size, which suits training from scratch.

In both, the mean image maps to 0, so padding a normalised batch with 0 pads with the mean.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from PIL import Image

from minifcn._validate import pair

from .voc import IGNORE_INDEX

REFERENCE_MEAN_BGR = np.array([104.00699, 116.66877, 122.67892])
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
#: The reference mean as a uint8 RGB colour: what uint8 images are padded with.
MEAN_RGB_UINT8 = tuple(int(v) for v in np.round(REFERENCE_MEAN_BGR[::-1]))
MODES = ("reference", "imagenet")


def reference_preprocess(image) -> np.ndarray:
    r"""The FCN reference preprocessing: ``(H, W, 3)`` RGB -> ``(3, H, W)`` float32 BGR.

    Notes
    -----
    :math:`y_{c,h,w} = x_{h,w,2-c} - m_c` with :math:`m = (104.00699, 116.66877,
    122.67892)` the mean in BGR order; no scaling.
    """
    image = _rgb("image", image)
    x = image[:, :, ::-1].astype(np.float32)  # (H, W, 3) BGR
    x -= REFERENCE_MEAN_BGR.astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # (3, H, W)


def reference_deprocess(x) -> np.ndarray:
    """Invert :func:`reference_preprocess` for display: ``(3, H, W)`` -> ``(H, W, 3)`` uint8 RGB."""
    x = _chw("x", x)
    image = x.transpose(1, 2, 0) + REFERENCE_MEAN_BGR  # (H, W, 3) BGR
    return _to_uint8(image[:, :, ::-1])


def normalize(image, mode: str = "imagenet") -> np.ndarray:
    r"""Normalise ``(H, W, 3)`` uint8 RGB to ``(3, H, W)`` float32 (see the module notes).

    Parameters
    ----------
    image : ndarray, (H, W, 3) uint8
    mode : {"imagenet", "reference"}
        ``"imagenet"``: :math:`y_c = (x_c / 255 - \mu_c) / \sigma_c` in RGB order;
        ``"reference"``: :func:`reference_preprocess`.
    """
    if mode == "reference":
        return reference_preprocess(image)
    _mode(mode)
    image = _rgb("image", image)
    x = image.astype(np.float32) / np.float32(255)  # (H, W, 3)
    x = (x - IMAGENET_MEAN.astype(np.float32)) / IMAGENET_STD.astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # (3, H, W)


def denormalize(x, mode: str = "imagenet") -> np.ndarray:
    """Invert :func:`normalize` for display: ``(3, H, W)`` -> ``(H, W, 3)`` uint8 RGB."""
    if mode == "reference":
        return reference_deprocess(x)
    _mode(mode)
    x = _chw("x", x)
    image = (x.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN) * 255  # (H, W, 3)
    return _to_uint8(image)


def random_flip(image, label, rng: np.random.Generator, p: float = 0.5):
    """Mirror image and label left-right together, with probability ``p``."""
    image, label = _pair_arrays(image, label)
    _generator(rng)
    if rng.random() < p:
        image, label = image[:, ::-1], label[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def random_scale_crop(image, label, rng: np.random.Generator, scale=(0.5, 2.0), crop=None,
                      fill=MEAN_RGB_UINT8, ignore_index: int = IGNORE_INDEX):
    r"""Rescale by a random factor, then cut a random ``crop`` window (padding if needed).

    Parameters
    ----------
    image : ndarray, (H, W, 3) uint8
    label : ndarray, (H, W) integer
    rng : numpy.random.Generator
    scale : (float, float)
        The factor is drawn uniformly from this range; the image is resized bilinear,
        the label nearest-neighbour.
    crop : int or (int, int), optional
        Output size ``(CH, CW)``. Where the rescaled pair is smaller, it is padded at the
        bottom and right with ``fill`` (image) and ``ignore_index`` (label) first.
        None: no crop, only the rescale.

    Returns
    -------
    image : ndarray, (CH, CW, 3) uint8
    label : ndarray, (CH, CW), the label's dtype
    """
    image, label = _pair_arrays(image, label)
    _generator(rng)
    low, high = _scale_range(scale)
    factor = rng.uniform(low, high) if high > low else low
    image, label = _resize(image, label, factor)
    if crop is None:
        return image, label
    ch, cw = pair("crop", crop, minimum=1)
    image = _pad(image, ch, cw, np.asarray(fill, dtype=image.dtype))
    label = _pad(label, ch, cw, ignore_index)
    top = int(rng.integers(0, image.shape[0] - ch + 1))
    left = int(rng.integers(0, image.shape[1] - cw + 1))
    window = (slice(top, top + ch), slice(left, left + cw))
    return np.ascontiguousarray(image[window]), np.ascontiguousarray(label[window])


def collate(batch, pad_value_image: float = 0.0, ignore_index: int = IGNORE_INDEX):
    r"""Stack ``(image, label)`` items of different sizes into one padded batch.

    Parameters
    ----------
    batch : sequence of (ndarray (3, H_i, W_i) float, ndarray (H_i, W_i) integer)
        Normalised items (see :func:`normalize`), where 0 is the mean colour.
    pad_value_image : float
        Image padding (default 0: the mean after normalisation).
    ignore_index : int
        Label padding, ignored by the loss and the metrics.

    Returns
    -------
    images : ndarray, (N, 3, H, W), the items' float dtype; ``H, W`` the largest sizes
    labels : ndarray, (N, H, W) int64
    Items sit at the top-left; padding fills the bottom and right.
    """
    items = list(batch)
    if not items:
        raise ValueError("batch must hold at least one (image, label) item, got none")
    for i, item in enumerate(items):
        _check_item(i, item, channels=items[0][0].shape[0] if i else None)
    dtype = np.result_type(*[image.dtype for image, _ in items])
    h = max(image.shape[1] for image, _ in items)
    w = max(image.shape[2] for image, _ in items)
    images = np.full((len(items), items[0][0].shape[0], h, w), pad_value_image, dtype=dtype)
    labels = np.full((len(items), h, w), ignore_index, dtype=np.int64)  # (N, H, W)
    for i, (image, label) in enumerate(items):
        images[i, :, :image.shape[1], :image.shape[2]] = image
        labels[i, :label.shape[0], :label.shape[1]] = label
    return images, labels


def _resize(image, label, factor: float):
    h, w = label.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))  # Pillow: (W, H)
    if size == (w, h):
        return image, label
    image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    label = _resize_nearest(label, size)
    return image, label


def _resize_nearest(label, size):
    """Nearest-neighbour resize by index maps, for any integer dtype; ``size`` is (W, H)."""
    h, w = label.shape
    rows = np.minimum(((np.arange(size[1]) + 0.5) * h / size[1]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[0]) + 0.5) * w / size[0]).astype(np.int64), w - 1)
    return label[rows[:, None], cols[None, :]]  # (H', W')


def _pad(a, ch: int, cw: int, value):
    h, w = a.shape[:2]
    if h >= ch and w >= cw:
        return a
    out = np.empty((max(h, ch), max(w, cw)) + a.shape[2:], dtype=a.dtype)
    out[...] = value
    out[:h, :w] = a
    return out


def _rgb(name, image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 (0..255 RGB as read from a file; transform "
                        f"before normalize), got {image.dtype}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"{name} must have at least one row and column, got shape "
                         f"{image.shape}")
    return image


def _chw(name, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"{name} must be (3, H, W), got shape {x.shape}")
    return x


def _to_uint8(image) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _mode(mode) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _generator(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")


def _scale_range(scale):
    values = tuple(scale) if isinstance(scale, (tuple, list)) else ()
    if len(values) != 2 or not all(isinstance(s, numbers.Real) and not isinstance(s, bool)
                                   for s in values):
        raise TypeError(f"scale must be a pair of numbers (low, high), got {scale!r}")
    low, high = (float(s) for s in values)
    if not 0 < low <= high < math.inf:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high < inf, got {scale!r}")
    return low, high


def _pair_arrays(image, label):
    image, label = _rgb("image", image), np.asarray(label)
    _integer_labels("label", label)
    if label.ndim != 2 or label.shape != image.shape[:2]:
        raise ValueError(f"label must be (H, W) = {image.shape[:2]} like the image, "
                         f"got shape {label.shape}")
    return image, label


def _integer_labels(name, label) -> None:
    if label.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices (e.g. uint8 or int64), got "
                        f"dtype {label.dtype}")


def _check_item(i, item, channels) -> None:
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise TypeError(f"batch[{i}] must be an (image, label) pair, got "
                        f"{type(item).__name__}")
    image, label = item
    if getattr(image, "ndim", 0) != 3 or image.dtype.kind != "f":
        raise ValueError(f"batch[{i}] image must be a (C, H, W) float array (normalize it "
                         f"first), got {getattr(image, 'dtype', type(image).__name__)} "
                         f"shape {getattr(image, 'shape', None)}")
    if channels is not None and image.shape[0] != channels:
        raise ValueError(f"batch[{i}] image has {image.shape[0]} channels but batch[0] "
                         f"has {channels}")
    if tuple(np.shape(label)) != tuple(image.shape[1:]):
        raise ValueError(f"batch[{i}] label must be (H, W) = {tuple(image.shape[1:])}, "
                         f"got shape {tuple(np.shape(label))}")
    _integer_labels(f"batch[{i}] label", np.asarray(label))
