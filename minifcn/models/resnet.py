r"""ResNet-50 as the segmentation backbone of torchvision's FCN and DeepLabV3, with backward.

A ``Bottleneck`` squeezes the channels with a 1x1 convolution, filters with a 3x3 (which
carries the block's stride or dilation), expands them 4x with another 1x1, and adds the
block's input back: ``y = relu(F(x) + shortcut(x))``, the shortcut being x itself or, where
the shape changes, a strided 1x1 convolution and BatchNorm (``downsample``). Its backward is
the forward read upwards; the sum sends its gradient to both branches, which meet again at x.

The backbone is the stem (7x7 stride-2 conv, BatchNorm, ReLU, 3x3 stride-2 max pool) and
four stages of 3, 4, 6 and 3 bottlenecks. For segmentation, torchvision replaces the stride
of the last two stages with dilation (``replace_stride_with_dilation=[False, True, True]``):
the output stride stays 8 and the receptive field grows all the same. Names follow
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer3.0.downsample.0``, ...).
"""
from __future__ import annotations

import numpy as np

from ..nn import BatchNorm2d, Conv2d, MaxPool2d, Module, ReLU, Sequential
from .vgg import check_width, scaled

EXPANSION = 4                     # a bottleneck's output has 4x its inner channels
STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))     # (inner channels, blocks) per stage


class Bottleneck(Module):
    """torchvision's ResNet-50 block (v1.5: the stride sits on the 3x3 convolution).

    Parameters
    ----------
    inplanes : int, input channels
    planes : int, inner channels; the output has ``4 * planes``
    stride, dilation : of the 3x3 convolution (padding = dilation keeps the size at stride 1)
    downsample : Module or None, the shortcut where the shape changes
    dtype, rng, init : as for :class:`minifcn.nn.Conv2d`
    """

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None,
                 dtype=np.float32, rng=None, init="kaiming"):
        conv = dict(bias=False, dtype=dtype, rng=rng, init=init)
        self.conv1 = Conv2d(inplanes, planes, 1, **conv)
        self.bn1 = BatchNorm2d(planes, dtype=dtype)
        self.conv2 = Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                            dilation=dilation, **conv)
        self.bn2 = BatchNorm2d(planes, dtype=dtype)
        self.conv3 = Conv2d(planes, planes * EXPANSION, 1, **conv)
        self.bn3 = BatchNorm2d(planes * EXPANSION, dtype=dtype)
        self.downsample = downsample
        self.relu1, self.relu2, self.relu3 = ReLU(), ReLU(), ReLU()

    def residual(self):
        return [self.conv1, self.bn1, self.relu1, self.conv2, self.bn2, self.relu2,
                self.conv3, self.bn3]

    def forward(self, x):
        h = x
        for layer in self.residual():
            h = layer(h)                                          # (N, 4 planes, H/S, W/S)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu3(h + shortcut)

    def backward(self, dy):
        dsum = self.relu3.backward(dy)                            # to both summands
        dh = dsum
        for layer in reversed(self.residual()):
            dh = layer.backward(dh)
        dshortcut = dsum if self.downsample is None else self.downsample.backward(dsum)
        return dh + dshortcut


class ResNet50Backbone(Module):
    """ResNet-50 without its classifier: x (N, 3, H, W) -> layer4's features, and layer3's
    (``forward`` returns both, for the auxiliary head).

    Parameters
    ----------
    width : float in (0, 1], scales every channel count (1.0: torchvision's network)
    replace_stride_with_dilation : three bools, for layer2, layer3 and layer4
    dtype, rng, init : as for :class:`minifcn.nn.Conv2d`
    """

    def __init__(self, width=1.0, replace_stride_with_dilation=(False, True, True),
                 dtype=np.float32, rng=None, init="kaiming"):
        self.width = check_width(width)
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        stem = scaled(64, self.width)
        self.conv1 = Conv2d(3, stem, 7, stride=2, padding=3, bias=False, dtype=dtype, rng=rng,
                            init=init)
        self.bn1 = BatchNorm2d(stem, dtype=dtype)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(3, 2, 1)
        inplanes, dilation = stem, 1
        dilate = (False,) + tuple(bool(d) for d in replace_stride_with_dilation)
        for k, ((planes, blocks), stage_dilates) in enumerate(zip(STAGES, dilate)):
            stride = 1 if k == 0 else 2
            first_dilation = dilation
            if stage_dilates:
                dilation, stride = dilation * stride, 1
            planes = scaled(planes, self.width)
            setattr(self, f"layer{k + 1}", self._stage(inplanes, planes, blocks, stride,
                                                       first_dilation, dilation, dtype, rng,
                                                       init))
            inplanes = planes * EXPANSION
        self.channels = inplanes                                  # layer4's (2048 at width 1)
        self.aux_channels = inplanes // 2                         # layer3's (1024)

    @staticmethod
    def _stage(inplanes, planes, blocks, stride, first_dilation, dilation, dtype, rng, init):
        """``blocks`` bottlenecks; the first changes the shape (and has the shortcut conv)
        and keeps the previous dilation, as torchvision's ``_make_layer`` does."""
        downsample = None
        if stride != 1 or inplanes != planes * EXPANSION:
            downsample = Sequential(
                Conv2d(inplanes, planes * EXPANSION, 1, stride=stride, bias=False, dtype=dtype,
                       rng=rng, init=init),
                BatchNorm2d(planes * EXPANSION, dtype=dtype))
        block = dict(dtype=dtype, rng=rng, init=init)
        layers = [Bottleneck(inplanes, planes, stride, first_dilation, downsample, **block)]
        layers += [Bottleneck(planes * EXPANSION, planes, 1, dilation, **block)
                   for _ in range(blocks - 1)]
        return Sequential(*layers)

    def forward(self, x):
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))     # (N, 64, H/4, W/4)
        h = self.layer2(self.layer1(h))                           # (N, 512, H/8, W/8)
        layer3 = self.layer3(h)                                   # (N, 1024, H/8, W/8)
        return self.layer4(layer3), layer3                        # (N, 2048, H/8, W/8)

    def backward(self, dout, daux=None):
        """Gradients of layer4's output and (or None) layer3's -> dx."""
        dlayer3 = self.layer4.backward(dout)
        if daux is not None:
            dlayer3 = dlayer3 + daux
        dh = self.layer1.backward(self.layer2.backward(self.layer3.backward(dlayer3)))
        return self.conv1.backward(self.bn1.backward(self.relu.backward(
            self.maxpool.backward(dh))))
