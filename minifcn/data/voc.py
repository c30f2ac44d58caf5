r"""The PASCAL VOC segmentation layout: class names, palette, and a reader.

A folder in the VOC layout holds::

    ROOT/ImageSets/Segmentation/<split>.txt   one image id a line
    ROOT/JPEGImages/<id>.jpg                  the images (any mode: converted to RGB)
    ROOT/SegmentationClass/<id>.png           palette (or greyscale) PNGs of class indices,
                                              255 = ignore (the border between objects)

so VOC2012, SBD converted to PNG, or the generated shapes set written to disk are read
unchanged. Every file problem raises :class:`DatasetError` naming the file; nothing is
skipped unless ``skip_bad=True`` is asked for (and then each skip is warned about).
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Sequence

import numpy as np
from PIL import ExifTags, Image, ImageOps

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
IGNORE_INDEX = 255
_LABEL_MODES = ("P", "L", "I", "I;16")


class DatasetError(ValueError):
    """A data file is missing, unreadable or inconsistent; the message names the file."""


def voc_palette() -> np.ndarray:
    r"""The standard VOC colour map: ``(256, 3)`` uint8, row ``c`` the RGB of label ``c``.

    Notes
    -----
    Bit ``j`` of each colour channel comes from one bit of ``c``, three bits at a time:
    for ``j = 0..7``, ``r |= bit(c, 3j) << (7 - j)``, ``g |= bit(c, 3j+1) << (7 - j)``,
    ``b |= bit(c, 3j+2) << (7 - j)``. Label 0 is black, 1 is (128, 0, 0), and the ignore
    label 255 is (224, 224, 192).
    """
    c = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for j in range(8):
        for channel in range(3):
            palette[:, channel] |= ((c >> (3 * j + channel)) & 1) << (7 - j)
    return palette.astype(np.uint8)


VOC_PALETTE = voc_palette()
VOC_PALETTE.setflags(write=False)


def read_image(path) -> np.ndarray:
    """Read any image Pillow opens as ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.

    Pillow's decompression-bomb guard stays on: an image declaring more than twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (about 179 million by default) raises
    :class:`DatasetError` naming the file, before any pixel is decoded.
    """
    with _open(path) as img:
        try:
            img = ImageOps.exif_transpose(img).convert("RGB")
            return np.asarray(img, dtype=np.uint8).copy()
        except (OSError, SyntaxError, ValueError) as err:
            raise DatasetError(f"cannot decode image {path}: {err}") from err


def image_size(path) -> tuple[int, int]:
    """``(H, W)`` of the image :func:`read_image` returns, EXIF orientation applied, read
    from the file's header: a JPEG's pixels are not decoded (a PNG's may be, to find its
    EXIF block)."""
    with _open(path) as img:
        try:
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        except (OSError, SyntaxError, ValueError) as err:
            raise DatasetError(f"cannot read image file {path}: {err}") from err
        width, height = img.size
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)  # turned


def read_label(path, n_class: int = len(VOC_CLASSES)) -> np.ndarray:
    """Read a palette or greyscale label PNG as ``(H, W)`` uint8 class indices.

    Values must lie in ``[0, n_class)`` or be 255 (ignore); anything else raises
    :class:`DatasetError` naming the file, the stray values, how many pixels hold them and
    where the first one is.
    """
    with _open(path) as img:
        if img.mode not in _LABEL_MODES:
            raise DatasetError(
                f"label {path} has mode {img.mode!r}; expected a palette ('P') or greyscale "
                "('L') image of class indices (an RGB colour image is not a label map)")
        try:
            label = np.asarray(ImageOps.exif_transpose(img))
        except (OSError, SyntaxError, ValueError) as err:
            raise DatasetError(f"cannot decode label {path}: {err}") from err
    valid = ((label >= 0) & (label < n_class)) | (label == IGNORE_INDEX)
    if not valid.all():
        stray = np.unique(label[~valid])
        more = f" (and {len(stray) - 10} more)" if len(stray) > 10 else ""
        row, column = np.argwhere(~valid)[0]
        count = int((~valid).sum())
        raise DatasetError(
            f"label {path} holds values {stray[:10].tolist()}{more} outside 0..{n_class - 1} "
            f"and {IGNORE_INDEX} (ignore), in {count} pixel{'s' * (count > 1)}, the first at "
            f"row {row}, column {column}")
    return label.astype(np.uint8)


def _open(path):
    """``Image.open`` whose failures name the file."""
    try:
        return Image.open(path)
    except FileNotFoundError as err:
        raise DatasetError(f"file not found: {path}") from err
    except Image.DecompressionBombError as err:
        raise DatasetError(f"refusing to open {path}: {err} (Pillow's decompression-bomb "
                           "limit, PIL.Image.MAX_IMAGE_PIXELS)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"cannot read image file {path}: {err}") from err


class VOCSegmentation:
    r"""A segmentation set in the PASCAL VOC layout, read with Pillow.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding ``JPEGImages/``, ``SegmentationClass/`` and ``ImageSets/``.
    split : str
        Name of the id list ``ImageSets/Segmentation/<split>.txt`` (train, val, ...).
    transform : callable, optional
        ``transform(image, label)`` applied to each item (see ``minifcn.data.transforms``).
    classes : sequence of str, optional
        Class names, index order; default :data:`VOC_CLASSES`.
    n_class : int, optional
        Number of classes where no names are given (e.g. 4 for the shapes set); names
        then default to ``class0, class1, ...`` (or the VOC names when it is 21).
    skip_bad : bool
        Check every item now and drop the ones that fail, with a warning each (default
        False: a bad file raises when its item is read).

    Items are ``(image, label)``: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 indices.
    """

    def __init__(self, root, split: str = "train", transform: Callable | None = None,
                 classes: Sequence[str] | None = None, n_class: int | None = None,
                 skip_bad: bool = False):
        self.root = os.fspath(root)
        self.split = split
        self.transform = transform
        self.classes = _class_names(classes, n_class)
        self.n_class = len(self.classes)
        self.ids = self._read_split()
        self.skipped: list[tuple[str, str]] = []
        if skip_bad:
            self._drop_bad()
        else:
            self._check_present()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image, label = self.read(self.ids[index])
        if self.transform is not None:
            return self.transform(image, label)
        return image, label

    def __repr__(self) -> str:
        return (f"VOCSegmentation(root={self.root!r}, split={self.split!r}, "
                f"{len(self)} images, {self.n_class} classes)")

    def image_path(self, image_id: str) -> str:
        return os.path.join(self.root, "JPEGImages", image_id + ".jpg")

    def label_path(self, image_id: str) -> str:
        return os.path.join(self.root, "SegmentationClass", image_id + ".png")

    def read(self, image_id: str):
        """Read one item by id, untransformed, checking that image and label agree."""
        image_file, label_file = self.image_path(image_id), self.label_path(image_id)
        image = read_image(image_file)
        label = read_label(label_file, self.n_class)
        if label.shape != image.shape[:2]:
            raise DatasetError(
                f"label {label_file} is {label.shape[1]}x{label.shape[0]} (WxH) but its "
                f"image {image_file} is {image.shape[1]}x{image.shape[0]}")
        return image, label

    def item_sizes(self) -> list[tuple[int, int]] | None:
        """Each item's ``(H, W)`` in index order, from the image files' headers (see
        :func:`image_size`), so a whole set is checked cheaply before training; None with a
        ``transform``, which may change them."""
        if self.transform is not None:
            return None
        return [image_size(self.image_path(image_id)) for image_id in self.ids]

    def _read_split(self) -> list[str]:
        if not isinstance(self.split, str) or not self.split or "/" in self.split \
                or os.sep in self.split:
            raise ValueError(f"split must be a plain name such as 'train', got {self.split!r}")
        if not os.path.isdir(self.root):
            raise DatasetError(f"dataset root not found: {self.root}")
        split_file = os.path.join(self.root, "ImageSets", "Segmentation", f"{self.split}.txt")
        if not os.path.isfile(split_file):
            raise DatasetError(f"split file not found: {split_file} (split={self.split!r})")
        try:
            with open(split_file, encoding="utf-8") as f:
                ids = [line.split()[0] for line in f if line.strip()]
        except UnicodeDecodeError as err:
            raise DatasetError(f"split file {split_file} is not UTF-8 text (byte "
                               f"{err.start}: {err.object[err.start:err.start + 1]!r}); it "
                               f"should list one image id per line") from None
        if not ids:
            raise DatasetError(f"split file {split_file} lists no image ids")
        return ids

    def _check_present(self) -> None:
        for image_id in self.ids:
            for path in (self.image_path(image_id), self.label_path(image_id)):
                if not os.path.isfile(path):
                    raise DatasetError(f"file not found: {path} (id {image_id!r} listed "
                                       f"in ImageSets/Segmentation/{self.split}.txt)")

    def _drop_bad(self) -> None:
        good = []
        for image_id in self.ids:
            try:
                self.read(image_id)
                good.append(image_id)
            except DatasetError as err:
                self.skipped.append((image_id, str(err)))
                warnings.warn(f"skipping {image_id!r}: {err}", stacklevel=3)
        self.ids = good


def _class_names(classes, n_class) -> tuple[str, ...]:
    if classes is None:
        if n_class is None or n_class == len(VOC_CLASSES):
            return VOC_CLASSES
        if not isinstance(n_class, int) or isinstance(n_class, bool) or not 1 <= n_class <= 255:
            raise ValueError(f"n_class must be an int in 1..255, got {n_class!r}")
        return tuple(f"class{i}" for i in range(n_class))
    classes = tuple(classes)
    if n_class is not None and n_class != len(classes):
        raise ValueError(f"n_class={n_class} disagrees with the {len(classes)} class names")
    if not 1 <= len(classes) <= 255:
        raise ValueError(f"classes must name 1..255 classes, got {len(classes)}")
    return classes
