r"""The segmentation heads of torchvision's FCN-ResNet50 and DeepLabV3-ResNet50.

``FCNHead``: a 3x3 convolution to a quarter of the channels, BatchNorm, ReLU, dropout 0.1
and a 1x1 convolution to class scores. ``DeepLabHead``: atrous spatial pyramid pooling
(``ASPP``: a 1x1 convolution, three 3x3 convolutions dilated 12, 24 and 36, and the
image's average, each with BatchNorm and ReLU, concatenated and projected back by a 1x1
convolution with dropout 0.5), then a 3x3 convolution, BatchNorm, ReLU and the 1x1 score.
Names follow torchvision's: ``0.convs.1.0.weight``, ``0.project.0.weight``, ``4.bias``.
"""
from __future__ import annotations

import numpy as np

from ..nn import (AdaptiveAvgPool2d, BatchNorm2d, Concat, Conv2d, Dropout, Module, ModuleList,
                  ReLU, Sequential)
from ..ops import upsample_bilinear2d_backward, upsample_bilinear2d_forward

ASPP_RATES = (12, 24, 36)


def _conv_bn_relu(in_channels, out_channels, kernel, dilation, options):
    """Conv (no bias), BatchNorm, ReLU: ``.0.weight``, ``.1.running_mean``, ..."""
    return Sequential(Conv2d(in_channels, out_channels, kernel, padding=dilation * (kernel // 2),
                             dilation=dilation, bias=False, **options),
                      BatchNorm2d(out_channels, dtype=options["dtype"]), ReLU())


class FCNHead(Sequential):
    """conv 3x3 (C -> C/4), BatchNorm, ReLU, Dropout(0.1), conv 1x1 (C/4 -> n_class)."""

    def __init__(self, in_channels, n_class, dtype=np.float32, rng=None, init="kaiming"):
        inner = max(1, in_channels // 4)
        options = dict(dtype=dtype, rng=rng, init=init)
        super().__init__(Conv2d(in_channels, inner, 3, padding=1, bias=False, **options),
                         BatchNorm2d(inner, dtype=dtype), ReLU(), Dropout(0.1, rng=rng),
                         Conv2d(inner, n_class, 1, **options))


class ASPPPooling(Sequential):
    """The image-level branch: average over the image, conv 1x1, BatchNorm, ReLU, then
    bilinear back to the input's size (from 1x1, a broadcast)."""

    def __init__(self, in_channels, out_channels, options):
        super().__init__(AdaptiveAvgPool2d(1),
                         Conv2d(in_channels, out_channels, 1, bias=False, **options),
                         BatchNorm2d(out_channels, dtype=options["dtype"]), ReLU())

    def forward(self, x):
        pooled = super().forward(x)                               # (N, C_out, 1, 1)
        y, cache = upsample_bilinear2d_forward(pooled, size=tuple(x.shape[2:]))
        self.save_for_backward(cache)
        return y                                                  # (N, C_out, H, W)

    def backward(self, dy):
        cache, = self.saved()
        return super().backward(upsample_bilinear2d_backward(dy, cache))


class ASPP(Module):
    """Five parallel branches of ``out_channels`` each, concatenated, projected by
    conv 1x1 + BatchNorm + ReLU + Dropout(0.5) to ``out_channels``."""

    def __init__(self, in_channels, rates=ASPP_RATES, out_channels=256, dtype=np.float32,
                 rng=None, init="kaiming"):
        options = dict(dtype=dtype, rng=rng, init=init)
        branches = [_conv_bn_relu(in_channels, out_channels, 1, 1, options)]
        branches += [_conv_bn_relu(in_channels, out_channels, 3, rate, options)
                     for rate in rates]
        branches.append(ASPPPooling(in_channels, out_channels, options))
        self.convs = ModuleList(branches)
        self.concat = Concat()
        self.project = Sequential(
            Conv2d(len(branches) * out_channels, out_channels, 1, bias=False, **options),
            BatchNorm2d(out_channels, dtype=dtype), ReLU(), Dropout(0.5, rng=rng))

    def forward(self, x):
        joined = self.concat(*(branch(x) for branch in self.convs))   # (N, 5 C_out, H, W)
        return self.project(joined)                               # (N, C_out, H, W)

    def backward(self, dy):
        dbranches = self.concat.backward(self.project.backward(dy))
        dx = None
        for branch, d in zip(self.convs, dbranches):              # x feeds every branch
            g = branch.backward(d)
            dx = g if dx is None else dx + g
        return dx


class DeepLabHead(Sequential):
    """ASPP, conv 3x3 (no bias), BatchNorm, ReLU, conv 1x1 to class scores."""

    def __init__(self, in_channels, n_class, channels=256, dtype=np.float32, rng=None,
                 init="kaiming"):
        options = dict(dtype=dtype, rng=rng, init=init)
        super().__init__(ASPP(in_channels, ASPP_RATES, channels, **options),
                         Conv2d(channels, channels, 3, padding=1, bias=False, **options),
                         BatchNorm2d(channels, dtype=dtype), ReLU(),
                         Conv2d(channels, n_class, 1, **options))
