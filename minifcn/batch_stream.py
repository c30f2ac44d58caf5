r"""The batch stream training draws from: seeded, endless, resumable.

:class:`BatchStream` visits a data set epoch by epoch in orders drawn from its generator;
its state (generator, epoch order, position) goes into checkpoints, so a resumed run draws
the batches an uninterrupted one would.
"""
from __future__ import annotations

import json

import numpy as np

from ._validate import positive_int
from .data.transforms import collate, normalize


def default_transform(image, label, rng):
    """``(H, W, 3)`` uint8 RGB, ``(H, W)`` label -> ``(3, H, W)`` float32 (ImageNet
    normalisation), label; draws nothing from ``rng``."""
    return normalize(image), label


class BatchStream:
    """An endless, seeded, resumable stream of ``(images, labels)`` batches.

    Each epoch visits the data set in an order drawn from ``rng``; every item goes through
    ``transform(image, label, rng)`` and each batch through
    :func:`minifcn.data.transforms.collate`. An epoch's last, short batch is dropped, so
    every batch holds ``batch_size`` items. The stream's whole state (generator, epoch
    order, position) is in :meth:`state_dict`, which checkpoints keep.

    Parameters
    ----------
    dataset : sequence of ``(image, label)`` (``len`` and ``[i]``), e.g. ``ShapesDataset``
    batch_size : int, at most ``len(dataset)``
    seed : int or numpy.random.Generator; shuffles, and feeds random transforms
    transform : callable ``(image, label, rng) -> (image (3, H, W) float, label (H, W))``;
        default :func:`default_transform`

    Yields
    ------
    images : ndarray (N, 3, H, W) float; labels : ndarray (N, H, W) int64
    """

    def __init__(self, dataset, batch_size: int, seed=0, transform=default_transform):
        self.dataset = dataset
        self.batch_size = positive_int("batch_size", batch_size)
        if self.batch_size > len(dataset):
            raise ValueError(f"batch_size must be at most the data set's size "
                             f"({len(dataset)}), got {batch_size}")
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.transform = transform
        self.order = np.zeros(0, dtype=np.int64)   # the current epoch's order
        self.position = 0                          # next index into ``order``

    def __iter__(self):
        return self

    def __next__(self):
        if self.position + self.batch_size > len(self.order):
            self.order = self.rng.permutation(len(self.dataset)).astype(np.int64)
            self.position = 0
        indices = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return collate([self.transform(*self.dataset[int(i)], self.rng) for i in indices])

    def state_dict(self) -> dict:
        return {"rng": np.array(json.dumps(self.rng.bit_generator.state)),
                "order": self.order.copy(), "position": np.int64(self.position)}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Restore a :meth:`state_dict`. The saved epoch order must be an order of this data
        set (ValueError otherwise); with ``strict=False`` an order that is not (the data set
        changed) is dropped and the next batch starts a new epoch."""
        rng = json.loads(str(np.asarray(state["rng"])[()]))
        order = np.asarray(state["order"])
        position = int(np.asarray(state["position"]))
        fits = (order.ndim == 1 and order.dtype.kind in "iu" and 0 <= position <= len(order)
                and (len(order) == 0 or np.array_equal(np.sort(order),
                                                       np.arange(len(self.dataset)))))
        if not fits and strict:
            raise ValueError(f"the saved data order ({order.size} items, position "
                             f"{position}) is not an order of this data set of "
                             f"{len(self.dataset)} items")
        self.rng.bit_generator.state = rng
        self.order = order.astype(np.int64) if fits else np.zeros(0, dtype=np.int64)
        self.position = position if fits else 0
