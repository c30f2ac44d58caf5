"""FCN-ResNet50 and DeepLabV3-ResNet50 in plain torch.nn, laid out as torchvision lays them
out (same module names, so the same state-dict keys), with a ``width`` that scales every
channel count as minifcn's ``width`` does: what ``minifcn bench`` times beside minifcn's,
and what the tests compare minifcn with (torchvision itself is not a dependency: its wheel
pulls a CUDA torch). ``Segmenter.forward`` returns ``(out, aux)``. Needs torch."""
import torch
from torch import nn
from torch.nn import functional as F


def scaled(channels, width):
    return max(1, int(round(channels * width)))


class Bottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.downsample = downsample

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class Backbone(nn.Module):
    """ResNet-50 with the strides of layer3 and layer4 replaced by dilation 2 and 4."""

    def __init__(self, width):
        super().__init__()
        stem = scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        inplanes, dilation = stem, 1
        for k, (planes, blocks, stride, dilate) in enumerate(
                ((64, 3, 1, False), (128, 4, 2, False), (256, 6, 2, True), (512, 3, 2, True))):
            planes, before = scaled(planes, width), dilation
            if dilate:
                dilation, stride = dilation * stride, 1
            down = None
            if stride != 1 or inplanes != 4 * planes:
                down = nn.Sequential(nn.Conv2d(inplanes, 4 * planes, 1, stride, bias=False),
                                     nn.BatchNorm2d(4 * planes))
            blocks_ = [Bottleneck(inplanes, planes, stride, before, down)]
            blocks_ += [Bottleneck(4 * planes, planes, 1, dilation, None)
                        for _ in range(blocks - 1)]
            setattr(self, f"layer{k + 1}", nn.Sequential(*blocks_))
            inplanes = 4 * planes
        self.channels = inplanes

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        layer3 = self.layer3(self.layer2(self.layer1(h)))
        return self.layer4(layer3), layer3


def fcn_head(channels, n_class):
    inner = channels // 4
    return nn.Sequential(nn.Conv2d(channels, inner, 3, padding=1, bias=False),
                         nn.BatchNorm2d(inner), nn.ReLU(), nn.Dropout(0.1),
                         nn.Conv2d(inner, n_class, 1))


class ImagePooling(nn.Sequential):
    def __init__(self, channels, out):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, out, 1, bias=False),
                         nn.BatchNorm2d(out), nn.ReLU())

    def forward(self, x):
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)


class ASPP(nn.Module):
    def __init__(self, channels, out, rates=(12, 24, 36)):
        super().__init__()
        branches = [nn.Sequential(nn.Conv2d(channels, out, 1, bias=False), nn.BatchNorm2d(out),
                                  nn.ReLU())]
        branches += [nn.Sequential(nn.Conv2d(channels, out, 3, padding=r, dilation=r,
                                             bias=False), nn.BatchNorm2d(out), nn.ReLU())
                     for r in rates]
        branches.append(ImagePooling(channels, out))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(5 * out, out, 1, bias=False),
                                     nn.BatchNorm2d(out), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x):
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


def deeplab_head(channels, n_class, inner):
    return nn.Sequential(ASPP(channels, inner), nn.Conv2d(inner, inner, 3, padding=1, bias=False),
                         nn.BatchNorm2d(inner), nn.ReLU(), nn.Conv2d(inner, n_class, 1))


class Segmenter(nn.Module):
    """``kind`` "fcn" or "deeplabv3"; forward returns (out, aux) at the input's size."""

    def __init__(self, kind, n_class=21, width=1.0, aux=True):
        super().__init__()
        self.backbone = Backbone(width)
        c = self.backbone.channels
        self.classifier = (fcn_head(c, n_class) if kind == "fcn"
                           else deeplab_head(c, n_class, scaled(256, width)))
        self.aux_classifier = fcn_head(c // 2, n_class) if aux else None

    def forward(self, x):
        size = x.shape[-2:]
        out, layer3 = self.backbone(x)
        aux = (_resize(self.aux_classifier(layer3), size) if self.aux_classifier is not None
               else None)
        return _resize(self.classifier(out), size), aux


def _resize(h, size):
    return F.interpolate(h, size=size, mode="bilinear", align_corners=False)


ARCHITECTURES = {"fcn_resnet50": "fcn", "deeplabv3_resnet50": "deeplabv3"}   # Segmenter kinds
