"""The networks: FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once on a VGG16 trunk,
torchvision's FCN-ResNet50 and DeepLabV3-ResNet50, and U-Net, each with explicit backward.

Two registries, because the two families are built from different options:

- :data:`ARCHITECTURES`, the VGG16 FCNs: ``(n_class, width, dropout, learn_upsampling,
  ...)``, initialised from VGG16 by :func:`from_vgg16`; what ``train``, ``summary`` and
  ``bench`` build.
- :data:`RESNET_MODELS`, torchvision's ResNet-50 segmenters: ``(n_class, aux, width,
  ...)``, with BatchNorm buffers in their state dicts.

:data:`MODELS` is both and ``"unet"`` (:class:`UNet`: ``(n_class, in_channels, base,
depth)``), for what only loads weights into a model (``model_from_weights``, ``predict``,
``evaluate``): :func:`build_model` builds any of them with its family's options.
"""
import numpy as np

from .coord import CoordMap, conv_map, conv_transpose_map, crop_offset, layer_map, path_map
from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .pretrained import fcn8s_from_vgg16, fcn16s_from_vgg16, fcn32s_from_vgg16, from_vgg16
from .segmentation import RESNET_MODELS, DeepLabV3ResNet50, FCNResNet50
from .unet import UNet
from .vgg import VGG16Trunk

ARCHITECTURES = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s,
                 "fcn8s-atonce": FCN8sAtOnce}
MODELS = {**ARCHITECTURES, **RESNET_MODELS, "unet": UNet}


def build_model(arch, n_class, dtype=np.float32, init="zeros", **options):
    """``MODELS[arch]`` built with its family's options: ``width`` (the VGG16 FCNs),
    ``width`` and ``aux`` (the ResNet models), ``in_channels``, ``base`` and ``depth``
    (U-Net)."""
    return MODELS[arch](n_class=n_class, dtype=dtype, init=init, **options)


__all__ = ["FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "VGG16Trunk", "FCNResNet50",
           "DeepLabV3ResNet50", "UNet", "ARCHITECTURES", "RESNET_MODELS", "MODELS", "build_model",
           "CoordMap", "conv_map", "conv_transpose_map", "crop_offset", "layer_map",
           "path_map", "from_vgg16", "fcn8s_from_vgg16", "fcn16s_from_vgg16",
           "fcn32s_from_vgg16"]
