r"""What a label map holds, class by class: each class's share of the pixels, its mean
confidence, one class's mask, and a class named by name or index.

>>> class_shares(label, VOC_CLASSES)                          # doctest: +SKIP
[('background', 0.679), ('dog', 0.321)]
>>> class_confidences(label, confidence, VOC_CLASSES)         # doctest: +SKIP
[(0, 'background', 0.679, 0.981), (12, 'dog', 0.321, 0.9535)]

Label maps are ``(H, W)`` integer class indices (:func:`minifcn.inference.predict`); the
confidence is each pixel's softmax probability of its class
(:func:`minifcn.inference.predict_with_confidence`). Nothing here prints.
"""
from __future__ import annotations

import numpy as np

from .backend import asnumpy


def class_shares(label, class_names) -> list:
    """The classes present in ``label`` with their share of its pixels, largest first.

    Returns ``[(name, fraction), ...]`` (fractions sum to 1; ties in class order), e.g.
    ``[("background", 0.679), ("dog", 0.321)]``.
    """
    label, names = label_map("label", label), list(class_names)
    if label.size == 0:
        return []
    if int(label.max()) >= len(names):
        raise ValueError(f"label holds class {int(label.max())} but class_names has only "
                         f"{len(names)} names")
    counts = np.bincount(label.ravel(), minlength=len(names))         # (K,)
    order = sorted(np.flatnonzero(counts), key=lambda k: (-counts[k], k))
    return [(names[k], float(counts[k] / label.size)) for k in order]


def class_confidences(label, confidence, class_names) -> list:
    """The classes present in ``label``, largest share first (as :func:`class_shares`),
    each with the mean of ``confidence`` over its pixels: ``[(index, name, share, mean
    confidence), ...]``, e.g. ``[(0, "background", 0.679, 0.981), (12, "dog", 0.321,
    0.9535)]``, which ``minifcn predict`` prints as ``dog(12): 95.35``."""
    label, names = label_map("label", label), list(class_names)
    confidence = np.asarray(asnumpy(confidence), dtype=np.float64)
    if confidence.shape != label.shape:
        raise ValueError(f"confidence must be (H, W) = {label.shape} like the label, got "
                         f"{confidence.shape}")
    index = {name: k for k, name in enumerate(names)}
    counts = np.bincount(label.ravel(), minlength=len(names))           # (K,)
    sums = np.bincount(label.ravel(), weights=confidence.ravel(), minlength=len(names))
    return [(index[name], name, share, float(sums[index[name]] / counts[index[name]]))
            for name, share in class_shares(label, names)]


def class_mask(label, cls, class_names) -> np.ndarray:
    """One class's mask: ``(H, W)`` uint8, 255 where ``label`` is class ``cls`` (a name of
    ``class_names`` or an index), 0 elsewhere."""
    label, names = label_map("label", label), list(class_names)
    return np.where(label == class_index(cls, names), 255, 0).astype(np.uint8)


def class_index(cls, class_names) -> int:
    """The index of class ``cls``: a name of ``class_names``, or an index (int or digits)."""
    names = list(class_names)
    if isinstance(cls, str) and cls in names:
        return names.index(cls)
    text = str(cls)
    if not isinstance(cls, bool) and text.isdigit() and int(text) < len(names):
        return int(text)
    raise ValueError(f"no class {cls!r}: expected a name ({', '.join(names)}) or an index "
                     f"0..{len(names) - 1}")


def label_map(name, label) -> np.ndarray:
    """``label`` on the host, checked: an ``(H, W)`` integer map of indices >= 0."""
    label = asnumpy(label)
    if label.ndim != 2 or label.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an (H, W) integer label map, got {label.dtype} "
                         f"array of shape {label.shape}")
    if label.size and int(label.min()) < 0:
        raise ValueError(f"{name} must hold class indices >= 0, got {int(label.min())}")
    return label
