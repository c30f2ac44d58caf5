"""The VGG16 convolutional trunk of FCN, with its forward and hand-written backward.

Five blocks of 3x3 convolutions (padding 1) with ReLU, each closed by a 2x2 stride-2 max
pooling in ceil mode; channels 64,64 / 128,128 / 256x3 / 512x3 / 512x3. FCN changes one
thing: conv1_1 pads by 100, so that even a 1x1 image leaves a feature map big enough for
the head's 7x7 fc6 and for every crop (see ``coord.py``).

The layers are attributes named as in the reference nets (``conv1_1`` ... ``conv5_3``,
``relu1_1``, ``pool1`` ...), so the parameter names are the reference's state-dict keys.
"""
from __future__ import annotations

import numpy as np

from ..nn import Conv2d, MaxPool2d, Module, ReLU

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
CONV1_1_PADDING = 100


def scaled(channels: int, width: float) -> int:
    """A channel count scaled by ``width`` (at least 1): width 1/16 turns 512 into 32."""
    return max(1, int(round(channels * width)))


def check_width(width) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise ValueError(f"width must be a number in (0, 1], got {width!r}")
    return float(width)


class VGG16Trunk(Module):
    """VGG16's convolutions and pools; ``forward`` returns pool3, pool4 and pool5.

    Parameters
    ----------
    width : float in (0, 1], scales every channel count (1.0 is VGG16 exactly)
    dtype : float32 or float64
    rng : numpy Generator or int seed for the initial weights
    init : "kaiming" (He-normal, for ReLU nets trained from scratch), "default" or "zeros"
    """

    def __init__(self, width=1.0, dtype=np.float32, rng=None, init="kaiming"):
        self.width = check_width(width)
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        in_channels = 3
        for b, block in enumerate(VGG16_BLOCKS, start=1):
            for i, channels in enumerate(block, start=1):
                out_channels = scaled(channels, width)
                padding = CONV1_1_PADDING if (b, i) == (1, 1) else 1
                setattr(self, f"conv{b}_{i}", Conv2d(in_channels, out_channels, 3,
                                                     padding=padding, dtype=dtype, rng=rng,
                                                     init=init))
                setattr(self, f"relu{b}_{i}", ReLU())
                in_channels = out_channels
            setattr(self, f"pool{b}", MaxPool2d(2, stride=2, ceil_mode=True))
        self.trunk_channels = in_channels

    def block(self, b: int) -> list:
        """The layers of block b (1..5) in order: conv, relu, ..., pool."""
        layers = []
        for i in range(1, len(VGG16_BLOCKS[b - 1]) + 1):
            layers += [getattr(self, f"conv{b}_{i}"), getattr(self, f"relu{b}_{i}")]
        return layers + [getattr(self, f"pool{b}")]

    def trunk_path(self, up_to_block: int) -> list:
        """All layers from the image to pool{up_to_block}, for coordinate maps and traces."""
        return [layer for b in range(1, up_to_block + 1) for layer in self.block(b)]

    def forward_trunk(self, x):
        """x (N, 3, H, W) -> pool3, pool4, pool5 (strides 8, 16, 32 from the padded image)."""
        pools = {}
        h = x
        for b in range(1, 6):
            for layer in self.block(b):
                h = layer(h)
            pools[b] = h
        return pools[3], pools[4], pools[5]

    def backward_trunk(self, dpool3, dpool4, dpool5):
        """The mirror of ``forward_trunk``: the skip gradients join at pool4 and pool3."""
        extra = {4: dpool4, 3: dpool3}
        dh = dpool5
        for b in range(5, 0, -1):
            if extra.get(b) is not None:
                dh = dh + extra[b]
            for layer in reversed(self.block(b)):
                dh = layer.backward(dh)
        return dh
