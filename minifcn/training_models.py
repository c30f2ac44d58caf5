"""The network a training run builds, from its name and the options of its family.

What a resume needs to rebuild the same network goes into the run's configuration: the
name and width for all of them (``model``, ``width``), ``aux`` for the ResNet-50
segmenters, ``base`` and ``depth`` for U-Net. U-Net's sizes are checked before a run
starts (the crop, else every item, from the data set's ``item_sizes()``), so that a size
it cannot take is refused with its own message naming the item, not midway; an item of a
data set that cannot state its sizes is checked as it is read.
"""
from __future__ import annotations

import numpy as np


def build_network(model, n_class, *, width=1.0, init=None, dropout=0.5, seed=0, aux=True,
                  base=None, depth=4):
    """``(net, family)``: the network ``MODELS[model]``, initialised from ``seed`` (or the
    VGG16 FCNs from ``init``), and what the configuration records of its own options."""
    from .models import ARCHITECTURES, MODELS, RESNET_MODELS, from_vgg16
    from .models.vgg import scaled

    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    rng = np.random.default_rng([seed, 0])
    if model in ARCHITECTURES:
        if init is not None:
            return from_vgg16(ARCHITECTURES[model], init, n_class=n_class, dropout=dropout), {}
        return ARCHITECTURES[model](n_class=n_class, width=width, dropout=dropout, rng=rng), {}
    if init is not None:
        raise ValueError(f"init (VGG16 weights) starts the VGG16 FCNs "
                         f"({', '.join(ARCHITECTURES)}), not {model}")
    if dropout != 0.5:
        raise ValueError(f"dropout sets the VGG16 FCNs' drop6/drop7, not {model}'s (whose "
                         f"dropout rates are its own), got {dropout}")
    if model in RESNET_MODELS:
        net = RESNET_MODELS[model](n_class=n_class, aux=aux, width=width, rng=rng)
        return net, {"aux": bool(aux)}
    base = scaled(64, width) if base is None else base
    net = MODELS[model](n_class=n_class, base=base, depth=depth, rng=rng)
    return net, {"base": int(net.base), "depth": int(net.depth)}


def check_unet_sizes(net, train_set, val_set=None, crop=None, scale=(1.0, 1.0)):
    """Check the sizes U-Net ``net`` will see; return ``(train_items, val_items)``, the data
    sets to read from.

    The crop, else every training item, and every validation item: ValueError, U-Net's own
    message with what has the size (the item's index and id), where ``net`` cannot take
    one. Each item's sides are checked, which holds for any batch: ``collate`` pads a batch
    to its largest height and width, each some item's. Sizes come from the data set's
    ``item_sizes()`` (VOCSegmentation: the image headers, no pixel decoded); a data set
    without it has its first item checked here and is returned wrapped in
    :class:`UNetCheckedItems`, which checks each item as it is read. ``scale`` other than
    1 without a crop gives rescaled sizes, and is refused.
    """
    train_items = train_set
    if crop is not None:
        crop = (crop, crop) if np.ndim(crop) == 0 else tuple(crop)
        _refuse(net, [(None, crop)], "the crop", None)
    elif tuple(scale) != (1.0, 1.0):
        raise ValueError(f"scale {tuple(scale)} without a crop gives U-Net rescaled sizes, "
                         f"most of which it cannot take; give a crop (a size it takes) too")
    else:
        train_items = _checked(net, train_set, "training")
    val_items = val_set
    if val_set is not None and len(val_set):
        val_items = _checked(net, val_set, "validation")
    return train_items, val_items


class UNetCheckedItems:
    """A data set whose items are checked against U-Net's sizes as they are read: an item
    it cannot take stops training at the step it arrives (before anything of that step is
    written) with U-Net's message naming the item."""

    def __init__(self, dataset, net, role: str):
        self.dataset, self.net, self.role = dataset, net, role

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        item = self.dataset[index]
        _refuse(self.net, [(index, np.shape(item[1])[:2])], self.role, self.dataset)
        return item


def _checked(net, dataset, role):
    """``dataset`` with all its items' sizes checked, else its first checked and wrapped."""
    sizes = getattr(dataset, "item_sizes", None)
    sizes = sizes() if callable(sizes) else None
    if sizes is None:
        _refuse(net, [(0, np.shape(dataset[0][1])[:2])], role, dataset)
        return UNetCheckedItems(dataset, net, role)
    _refuse(net, enumerate(sizes), role, dataset)
    return dataset


def _refuse(net, sizes, role, dataset) -> None:
    """ValueError naming the first of ``(index, (height, width))`` that ``net`` cannot
    take (index None: ``role`` names it) and how many more there are."""
    bad = []
    for index, (height, width) in sizes:
        try:
            net.output_offset(int(height), int(width))
        except ValueError as err:
            bad.append((index, height, width, err))
    if not bad:
        return
    index, height, width, err = bad[0]
    ids = getattr(dataset, "ids", None)
    what = role if index is None else f"{role} item {index}" + (
        f" ({ids[index]!r})" if ids is not None else "")
    more = len(bad) - 1
    more = f"; and {more} more item{'s' * (more > 1)} of sizes it cannot take" if more else ""
    raise ValueError(f"{err} ({what} is {height}x{width}{more})")
