r"""A PyTorch U-Net's state dict, checked for minifcn.

torchvision has no U-Net, so there is no one layout that PyTorch U-Nets share; minifcn reads
the one its own :class:`~minifcn.models.UNet` has (``encoder.L.0`` and ``encoder.L.2`` the
two valid 3x3 convolutions of level L, ``up.L`` the 2x2 transposed convolutions,
``decoder.L.0`` and ``decoder.L.2`` the expanding path's pairs, ``head`` the 1x1 score
layer), which a PyTorch U-Net built of ``nn.Sequential(conv, ReLU, conv, ReLU)`` levels in
``nn.ModuleList``\ s of those names saves as it is. Converting is recognising the layout,
reading the options from the arrays and checking every key and shape against the model
those options build:

- ``in_channels`` and ``base`` are the first convolution's input channels and filters,
  ``depth`` the number of ``up.L`` layers (:meth:`UNet.options_from_state`), ``n_class``
  the score layer's filters;
- every key of ``UNet(n_class, in_channels, base, depth)``, no other, each of its shape, all
  float arrays.

How the images were normalised in training is not in the arrays: the file records no
``preprocess``, and ``predict`` and ``evaluate`` take ``--preprocess``.
"""
from __future__ import annotations

import numpy as np

from .convert_resnet import state_problems
from .models.unet import UNet

FIRST = "encoder.0.0.weight"
SCORE = "head.weight"


def is_unet_layout(state) -> bool:
    """Whether ``state`` has a U-Net's first convolution (``encoder.0.0.weight``)."""
    return FIRST in state


def unet_metadata(state) -> dict:
    """``n_class``, ``in_channels``, ``base``, ``depth`` and ``width`` (the base over 64) as
    the arrays tell them; n_class None without a score layer."""
    options = UNet.options_from_state(state)
    score = state.get(SCORE)
    n_class = int(np.shape(score)[0]) if score is not None and np.ndim(score) == 4 else None
    return {"n_class": n_class, **options, "width": options["base"] / 64}


def unet_problems(state, metadata) -> list:
    """What keeps ``state`` from loading strictly into the U-Net ``metadata`` describes."""
    if metadata["n_class"] is None:
        return [f"no 4-D score layer {SCORE}"]
    if metadata["depth"] < 1:
        return ["no up.L transposed convolutions (a U-Net has at least one level)"]
    model = UNet(metadata["n_class"], in_channels=metadata["in_channels"],
                 base=metadata["base"], depth=metadata["depth"], init="zeros")
    return state_problems(state, model)
