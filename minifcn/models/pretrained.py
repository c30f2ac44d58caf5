"""FCNs initialised the paper's way: the trunk and fc6/fc7 from ImageNet-trained VGG16.

The user brings the weights (no download here): a torchvision VGG16 state dict converted
with ``minifcn convert vgg16.pth vgg16.npz``, or a dict of arrays. fc6 and fc7 become
convolutions (``classifier.0`` reshaped to ``(4096, 512, 7, 7)``); score layers start at
zero and the upscore layers bilinear, as in the reference.
"""
from __future__ import annotations

import os

import numpy as np

from .fcn import FCN8s, FCN16s, FCN32s


def from_vgg16(cls, vgg_weights, n_class=21, learn_upsampling=False, dropout=0.5,
               dtype=np.float32):
    """Build ``cls`` with trunk, fc6 and fc7 taken from VGG16 weights.

    Parameters
    ----------
    cls : FCN32s, FCN16s, FCN8s or FCN8sAtOnce
    vgg_weights : path of a ``.npz`` written by ``minifcn convert``, or a dict of arrays
        (torchvision names ``features.N.*``/``classifier.N.*`` or minifcn names ``conv1_1.*``
        ... ``fc7.*``)

    The width is read off the weights (conv1_1's channels / 64): 1.0 for VGG16 itself.
    """
    from ..convert import vgg16_to_fcn_state
    from ..io import read_weights

    if isinstance(vgg_weights, (str, os.PathLike)):
        vgg_weights = read_weights(vgg_weights).arrays
    state = vgg16_to_fcn_state(vgg_weights)
    width = state["conv1_1.weight"].shape[0] / 64
    model = cls(n_class=n_class, width=width, learn_upsampling=learn_upsampling,
                dropout=dropout, dtype=dtype, init="zeros")
    model.load_state_dict(state, strict=False)
    return model


def fcn32s_from_vgg16(vgg_weights, **options):
    """:func:`from_vgg16` for FCN-32s."""
    return from_vgg16(FCN32s, vgg_weights, **options)


def fcn16s_from_vgg16(vgg_weights, **options):
    """:func:`from_vgg16` for FCN-16s."""
    return from_vgg16(FCN16s, vgg_weights, **options)


def fcn8s_from_vgg16(vgg_weights, **options):
    """:func:`from_vgg16` for FCN-8s."""
    return from_vgg16(FCN8s, vgg_weights, **options)
