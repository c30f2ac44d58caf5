"""The walks of torchvision's FCN-ResNet50 and DeepLabV3-ResNet50 for :func:`summarize`:
each model's ``forward``, with rows for arrays (see ``trace.py``).

The backbone: the stem, then every bottleneck as its residual path, its shortcut (x itself
or the ``downsample`` convolution) and their sum; the auxiliary head on layer3 (where the
model has one) and the head on layer4, each resized bilinearly to the input. ASPP's image
pooling branch averages the whole map to 1x1 and is broadcast back before the
concatenation. The walk takes the trace as its argument and imports nothing from it.
"""
from __future__ import annotations

from ..models.heads import ASPP, ASPPPooling


def walk_segmentation_resnet(m, t, image):
    b = m.backbone
    h = t.path([b.conv1, b.bn1, b.relu, b.maxpool], image)         # stride 4
    for stage in (b.layer1, b.layer2, b.layer3):
        h = _stage(t, stage, h)                                     # stride 8 from layer2
    layer3 = h
    out = _stage(t, b.layer4, layer3)
    if m.aux_classifier is not None:
        t.resize("aux_output", t.path(m.aux_classifier, layer3), like=image)
    layers = list(m.classifier)
    if isinstance(layers[0], ASPP):
        out, layers = _aspp(t, layers[0], out), layers[1:]
    t.resize("output", t.path(layers, out), like=image)


def _stage(t, stage, x):
    for block in stage:
        residual = t.path(block.residual(), x)
        shortcut = x if block.downsample is None else t.path(block.downsample, x)
        x = t.layer(block.relu3, t.add(f"{t.names[id(block)]}.add", residual, shortcut))
    return x


def _aspp(t, aspp, x):
    branches = []
    for branch in aspp.convs:
        if isinstance(branch, ASPPPooling):            # the image's mean, broadcast back
            layers = list(branch)
            pooled = t.path(layers[1:], t.global_pool(layers[0], x))
            branches.append(t.resize(f"{t.names[id(branch)]}.resize", pooled, like=x))
        else:
            branches.append(t.path(branch, x))
    return t.path(aspp.project, t.concat(t.names[id(aspp.concat)], *branches))
