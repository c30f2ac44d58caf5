r"""The op cases of each network ``minifcn bench ops --net`` offers: FCN-8s's
(``cases.py``), torchvision's FCN-ResNet50 and DeepLabV3-ResNet50, and the paper's U-Net.

Each network's table maps an op name to the row of its summary
(:func:`minifcn.summary.summarize_arch`) whose layer it times, and the builder that makes
the case; the shapes are the rows', so they follow the ``--size`` and ``--width`` given.
Names are the model's own (``backbone.`` dropped), short ones for the heads::

    cases = op_cases("deeplabv3_resnet50", (520, 520))          # the default ops
    cases["aspp.rate24"].shape                                  # '2048->256 3x3 p24 d24 65->65'

The ResNets' default set times each kind of layer once: the stem (7x7 stride-2 conv, its
BatchNorm in training mode, ReLU, max pool), a stride-2 3x3, the dilated 3x3s (d2 in
layer3, d4 in layer4), a bottleneck's 1x1 reduce and expand, the head (FCN's 3x3
2048->512; ASPP's rate-12/24/36 convolutions, image pooling and concatenation), the x8
bilinear upsampling and the loss. ``all`` adds layer1's narrow 1x1s, the strided 1x1
shortcut, the undilated 3x3, layer4's first (d2) 3x3, a wide BatchNorm and the heads' other
layers (FCN's dropout and scores; ASPP's 1x1 branch and projection, the 3x3 after it and
the scores). U-Net's: the top level's valid 3x3s, ReLU and pool, the bottom's 3x3, the top's 2x2
transposed convolution, crop and concatenation, and the loss; ``all`` adds the bottom
level's expanding path and the 1x1 scores.
"""
from __future__ import annotations

from typing import NamedTuple

from .cases import DEFAULT_OPS, FCN8S, build_cases


class OpSet(NamedTuple):
    """A network's op cases: its title, its default input size, every op (name -> summary
    row, builder) in the network's order, and the ops timed by default."""
    title: str
    size: tuple
    table: dict
    default: tuple

    @property
    def ops(self) -> tuple:
        return tuple(self.table)


def _rows(prefix, *names):
    """Ops named as their rows without ``prefix``: ``{name: (prefix + name, builder)}``."""
    return {name: (prefix + name, kind) for name, kind in names}


_BACKBONE = _rows(
    "backbone.", ("conv1", "conv"), ("bn1", "batch_norm"), ("relu", "relu"), ("maxpool", "pool"),
    ("layer1.0.conv3", "conv"), ("layer1.1.conv1", "conv"), ("layer2.0.conv2", "conv"),
    ("layer2.0.downsample.0", "conv"), ("layer3.0.conv2", "conv"), ("layer3.1.conv2", "conv"),
    ("layer4.0.conv2", "conv"), ("layer4.1.conv1", "conv"), ("layer4.1.conv2", "conv"),
    ("layer4.1.conv3", "conv"), ("layer4.1.bn3", "batch_norm"))
_BACKBONE_DEFAULT = ("conv1", "bn1", "relu", "maxpool", "layer2.0.conv2", "layer3.1.conv2",
                     "layer4.1.conv1", "layer4.1.conv2", "layer4.1.conv3")
_OUTPUT = {"upsample": ("output", "bilinear"), "loss": ("output", "loss")}

FCN_RESNET50 = OpSet("FCN-ResNet50", (520, 520), {
    **_BACKBONE, "head.conv": ("classifier.0", "conv"), "head.drop": ("classifier.3", "dropout"),
    "score": ("classifier.4", "conv"), **_OUTPUT},
    _BACKBONE_DEFAULT + ("head.conv", "upsample", "loss"))

DEEPLABV3_RESNET50 = OpSet("DeepLabV3-ResNet50", (520, 520), {
    **_BACKBONE, "aspp.1x1": ("classifier.0.convs.0.0", "conv"),
    **{f"aspp.rate{rate}": (f"classifier.0.convs.{k}.0", "conv")
       for k, rate in enumerate((12, 24, 36), 1)},
    "aspp.pool": ("classifier.0.convs.4.0", "global_pool"),
    "aspp.concat": ("classifier.0.concat", "concat"),
    "aspp.project": ("classifier.0.project.0", "conv"), "head.conv": ("classifier.1", "conv"),
    "score": ("classifier.4", "conv"), **_OUTPUT},
    _BACKBONE_DEFAULT + ("aspp.rate12", "aspp.rate24", "aspp.rate36", "aspp.pool",
                         "aspp.concat", "upsample", "loss"))

UNET = OpSet("U-Net", (572, 572), {
    **_rows("", ("encoder.0.0", "conv"), ("encoder.0.1", "relu"), ("encoder.0.2", "conv"),
            ("pool.0", "pool"), ("encoder.4.2", "conv"), ("up.3", "upscore"),
            ("crop.3", "crop"), ("concat.3", "concat"), ("decoder.3.0", "conv"),
            ("up.0", "upscore"), ("crop.0", "crop"), ("concat.0", "concat"),
            ("decoder.0.0", "conv"), ("head", "conv")), "loss": ("head", "loss")},
    ("encoder.0.0", "encoder.0.1", "encoder.0.2", "pool.0", "encoder.4.2", "up.0", "crop.0",
     "concat.0", "decoder.0.0", "loss"))

#: ``--net``: the networks whose layers ``minifcn bench ops`` times.
NETS = {"fcn8s": OpSet("FCN-8s", (500, 500), FCN8S, DEFAULT_OPS),
        "fcn_resnet50": FCN_RESNET50, "deeplabv3_resnet50": DEEPLABV3_RESNET50, "unet": UNET}


def op_cases(net: str, size=None, width: float = 1.0, n_class: int = 21, names=None) -> dict:
    """``{name: Case}`` for ``names`` (default: the net's default ops) of network ``net``
    (a key of :data:`NETS`) at its shapes for a batch of one ``size = (H, W)`` image
    (default: the net's size), in the order of ``names``. ValueError for an unknown net or
    op, or a size or width the network cannot take."""
    if net not in NETS:
        raise ValueError(f"net must be one of {', '.join(NETS)}, got {net!r}")
    ops = NETS[net]
    return build_cases(net, ops.table, ops.size if size is None else size, width, n_class,
                       ops.default if names is None else names)


def describe(net: str) -> str:
    """The net's ops in its order, those not timed by default in brackets."""
    ops, words, extra = NETS[net], [], []
    for name in ops.ops + ("",):
        if name and name not in ops.default:
            extra.append(name)
            continue
        if extra:
            words.append("[" + " ".join(extra) + "]")
            extra = []
        words.append(name)
    return " ".join(words).strip()
