"""A model's structure without its weights: summaries of full-width nets in milliseconds."""
from __future__ import annotations

import numpy as np

from .trace import LayerRow, summarize


#: What ``minifcn summary`` walks: the VGG16 FCNs, the paper's U-Net and torchvision's
#: segmentation ResNets.
SUMMARY_ARCHS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce", "unet", "fcn_resnet50",
                 "deeplabv3_resnet50")


def skeleton(arch: str, n_class=21, width=1.0, learn_upsampling=False, dtype=np.float32):
    """``minifcn.models.MODELS[arch]`` built with ``init="zeros"``, for summaries: U-Net as
    the paper's (depth 4, ``base`` 64 scaled by ``width``), the ResNet models with their
    auxiliary head (``learn_upsampling`` applies to the VGG16 FCNs only).

    Large zero arrays are mapped by the OS without being touched, so even FCN-8s at width 1
    (134M weights) is built in milliseconds and costs no memory until written; the
    structure is the model's own, so a summary of it cannot drift from the model.
    """
    from ..models import ARCHITECTURES, RESNET_MODELS, UNet
    from ..models.vgg import check_width, scaled

    if arch not in SUMMARY_ARCHS:
        raise ValueError(f"arch must be one of {', '.join(SUMMARY_ARCHS)}, got {arch!r}")
    if arch == "unet":
        return UNet(n_class, base=scaled(64, check_width(width)), depth=4, dtype=dtype,
                    init="zeros")
    if arch in RESNET_MODELS:
        return RESNET_MODELS[arch](n_class=n_class, width=width, dtype=dtype, init="zeros")
    return ARCHITECTURES[arch](n_class=n_class, width=width, learn_upsampling=learn_upsampling,
                               dtype=dtype, init="zeros")


def summarize_arch(arch: str, input_hw, batch=1, **model_options) -> list[LayerRow]:
    """:func:`summarize` of ``skeleton(arch, **model_options)``: instant at any width."""
    return summarize(skeleton(arch, **model_options), input_hw, batch)
