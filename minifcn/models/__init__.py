"""The networks: FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once on a VGG16 trunk,
torchvision's FCN-ResNet50 and DeepLabV3-ResNet50, and U-Net, each with explicit backward.

Two registries, because the two families are built from different options:

- :data:`ARCHITECTURES`, the VGG16 FCNs: ``(n_class, width, dropout, learn_upsampling,
  ...)``, initialised from VGG16 by :func:`from_vgg16`; what ``train``, ``summary`` and
  ``bench`` build.
- :data:`RESNET_MODELS`, torchvision's ResNet-50 segmenters: ``(n_class, aux, width,
  ...)``, with BatchNorm buffers in their state dicts.

:data:`MODELS` is both, for what only loads weights into a model (``convert``,
``model_from_weights``, ``predict``): :func:`build_model` builds any of them from a weight
file's metadata. (:class:`UNet`, whose output is smaller than its input, is in neither yet.)
"""
from .coord import CoordMap, conv_map, conv_transpose_map, crop_offset, layer_map, path_map
from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .pretrained import fcn8s_from_vgg16, fcn16s_from_vgg16, fcn32s_from_vgg16, from_vgg16
from .segmentation import RESNET_MODELS, DeepLabV3ResNet50, FCNResNet50
from .unet import UNet
from .vgg import VGG16Trunk

ARCHITECTURES = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s,
                 "fcn8s-atonce": FCN8sAtOnce}
MODELS = {**ARCHITECTURES, **RESNET_MODELS}


def build_model(arch, n_class, width, dtype, init="zeros", aux=None):
    """The model ``MODELS[arch]`` with the options a weight file records; ``aux`` (whether
    the auxiliary head is there) is read for the ResNet models only, where it must be given."""
    if arch in RESNET_MODELS:
        if aux is None:
            raise ValueError(f"{arch} needs aux (whether it has the auxiliary head)")
        return RESNET_MODELS[arch](n_class=n_class, aux=bool(aux), width=width, dtype=dtype,
                                   init=init)
    return MODELS[arch](n_class=n_class, width=width, dtype=dtype, init=init)


__all__ = ["FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "VGG16Trunk", "FCNResNet50",
           "DeepLabV3ResNet50", "UNet", "ARCHITECTURES", "RESNET_MODELS", "MODELS", "build_model",
           "CoordMap", "conv_map", "conv_transpose_map", "crop_offset", "layer_map",
           "path_map", "from_vgg16", "fcn8s_from_vgg16", "fcn16s_from_vgg16",
           "fcn32s_from_vgg16"]
