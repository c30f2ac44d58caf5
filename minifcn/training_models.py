"""The network a training run builds, from its name and the options of its family.

What a resume needs to rebuild the same network goes into the run's configuration: the
name and width for all of them (``model``, ``width``), ``aux`` for the ResNet-50
segmenters, ``base`` and ``depth`` for U-Net. U-Net's sizes are checked before a run
starts, so that a size it cannot take is refused with its own message, not midway.
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


def check_unet_sizes(net, train_set, val_set=None, crop=None) -> None:
    """ValueError, U-Net's own message with the size's origin, where the crop (else the
    first training item) or the first validation item is a size ``net`` cannot take."""
    if crop is not None:
        crop = (crop, crop) if np.ndim(crop) == 0 else tuple(crop)
        sizes = [("the crop", crop)]
    else:
        sizes = [("the first training image", np.shape(train_set[0][1])[:2])]
    if val_set is not None and len(val_set):
        sizes.append(("the first validation image", np.shape(val_set[0][1])[:2]))
    for what, (height, width) in sizes:
        try:
            net.output_offset(int(height), int(width))
        except ValueError as err:
            raise ValueError(f"{err} ({what} is {height}x{width})") from None
