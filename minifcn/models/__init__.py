"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once on a VGG16 trunk, with explicit backward."""
from .coord import CoordMap, conv_map, conv_transpose_map, crop_offset, layer_map, path_map
from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .pretrained import fcn8s_from_vgg16, fcn16s_from_vgg16, fcn32s_from_vgg16, from_vgg16
from .vgg import VGG16Trunk

ARCHITECTURES = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s,
                 "fcn8s-atonce": FCN8sAtOnce}

__all__ = ["FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "VGG16Trunk", "ARCHITECTURES",
           "CoordMap", "conv_map", "conv_transpose_map", "crop_offset", "layer_map",
           "path_map", "from_vgg16", "fcn8s_from_vgg16", "fcn16s_from_vgg16",
           "fcn32s_from_vgg16"]
