r"""torchvision's FCN-ResNet50 and DeepLabV3-ResNet50, with backward written out by hand.

Both are a dilated ResNet-50 (output stride 8, ``resnet.py``), a head on layer4's features
(``heads.py``) and bilinear upsampling (``align_corners=False``) of its scores to the input
size; with ``aux=True`` an ``FCNHead`` on layer3's features gives the auxiliary scores that
torchvision's training recipe adds to the loss with weight 0.5. ``forward`` returns the
main scores and keeps the auxiliary ones in ``aux_output``; ``backward(dy, daux=None)``
takes the gradient of each. State-dict keys equal torchvision's (``backbone.layer1.0.conv1
.weight``, ``classifier.0.convs.0.0.weight``, ``aux_classifier.4.bias``, ...), so its
weights load strictly once converted.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as _checks
from ..nn import Module
from ..ops import upsample_bilinear2d_backward, upsample_bilinear2d_forward
from .heads import DeepLabHead, FCNHead
from .resnet import ResNet50Backbone


class _SegmentationResNet50(Module):
    """What both share. Parameters: n_class (21: PASCAL VOC), aux (the auxiliary head),
    width (scales every channel; 1.0 is torchvision's network), dtype, rng, init."""

    arch = ""

    def __init__(self, n_class=21, aux=True, width=1.0, dtype=np.float32, rng=None,
                 init="kaiming"):
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.n_class = _checks.positive_int("n_class", n_class)
        self.aux = bool(aux)
        self.backbone = ResNet50Backbone(width, (False, True, True), dtype, rng, init)
        self.width = self.backbone.width
        self.classifier = self._head(self.backbone.channels, dtype, rng, init)
        self.aux_classifier = (FCNHead(self.backbone.aux_channels, n_class, dtype, rng, init)
                               if aux else None)
        self.aux_output = None

    def _head(self, channels, dtype, rng, init):
        raise NotImplementedError

    def forward(self, x):
        _checks.image_batch("x", x, what=" (N, 3, H, W)")
        if x.shape[1] != 3:
            raise ValueError(f"{self.arch} takes RGB images (N, 3, H, W), got x of shape "
                             f"{tuple(x.shape)}")
        size = tuple(x.shape[2:])
        out, layer3 = self.backbone(x)                            # (N, 2048, H/8, W/8)
        y, cache = upsample_bilinear2d_forward(self.classifier(out), size=size)
        aux_cache = None
        if self.aux_classifier is not None:
            self.aux_output, aux_cache = upsample_bilinear2d_forward(
                self.aux_classifier(layer3), size=size)           # (N, n_class, H, W)
        self.save_for_backward(cache, aux_cache)
        return y                                                  # (N, n_class, H, W)

    def backward(self, dy, daux=None):
        """dy: gradient of the main scores; daux: of ``aux_output`` (or None) -> dx."""
        cache, aux_cache = self.saved()
        dout = self.classifier.backward(upsample_bilinear2d_backward(dy, cache))
        dlayer3 = None
        if daux is not None:
            if aux_cache is None:
                raise ValueError(f"daux was given but {self.arch} has no auxiliary head "
                                 "(built with aux=False)")
            dlayer3 = self.aux_classifier.backward(upsample_bilinear2d_backward(daux, aux_cache))
        return self.backbone.backward(dout, dlayer3)

    def extra_repr(self):
        return (f"n_class={self.n_class}, aux={self.aux}, "
                f"width={self.width}")


class FCNResNet50(_SegmentationResNet50):
    """torchvision's ``fcn_resnet50``: ``FCNHead(2048)`` on the dilated ResNet-50."""

    arch = "fcn_resnet50"

    def _head(self, channels, dtype, rng, init):
        return FCNHead(channels, self.n_class, dtype, rng, init)


class DeepLabV3ResNet50(_SegmentationResNet50):
    """torchvision's ``deeplabv3_resnet50``: ASPP (rates 12, 24, 36 and image pooling) and
    its head on the dilated ResNet-50."""

    arch = "deeplabv3_resnet50"

    def _head(self, channels, dtype, rng, init):
        inner = max(1, int(round(256 * self.backbone.width)))
        return DeepLabHead(channels, self.n_class, inner, dtype, rng, init)


#: The registry of this family (``minifcn.models.RESNET_MODELS``), by torchvision's names.
RESNET_MODELS = {"fcn_resnet50": FCNResNet50, "deeplabv3_resnet50": DeepLabV3ResNet50}
