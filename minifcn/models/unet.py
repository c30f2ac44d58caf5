r"""U-Net (Ronneberger, Fischer and Brox, 2015) as in the paper, with backward written out.

The contracting path repeats, level by level, two valid (unpadded) 3x3 convolutions with
ReLU and a 2x2 max pool of stride 2; the channels double at every level, from ``base`` to
``2**depth * base`` at the bottom. The expanding path goes back up: a 2x2 transposed
convolution of stride 2 doubles the size and halves the channels, the contracting path's
map of that level is cropped around its centre to the same size and concatenated before it
(copy and crop: ``[skip, upsampled]`` along the channels), and two valid 3x3 convolutions
with ReLU follow. A 1x1 convolution gives the class scores.

Sizes (``unet_sizes.py``): an input side ``S`` is valid when ``S + 4`` is a multiple of
``2**depth`` (every pooled map even) and ``S >= 2**depth * (b_min + 8) - 4``; the output
side is ``S - (12 * 2**depth - 8)``, the input's centre (572 -> 388 at depth 4). Other
sizes raise a ValueError naming the nearest valid ones.

Names: ``encoder.I.0`` and ``encoder.I.2`` are level I's convolutions (I = depth: the
bottom), ``up.I`` the transposed convolution into level I, ``decoder.I.0``/``decoder.I.2``
its convolutions, ``head`` the 1x1 scores.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as _checks
from ..nn import Concat, Conv2d, ConvTranspose2d, Crop, MaxPool2d, Module, ModuleList, ReLU
from ..nn import Sequential
from .unet_sizes import output_offset, output_size, skip_offset, tile_padding


def _double_conv(in_channels, out_channels, options):
    """Two valid 3x3 convolutions with ReLU: each takes 2 pixels off every side."""
    return Sequential(Conv2d(in_channels, out_channels, 3, **options), ReLU(),
                      Conv2d(out_channels, out_channels, 3, **options), ReLU())


class UNet(Module):
    """U-Net: ``x (N, in_channels, S_H, S_W) -> scores (N, n_class, S_H - m, S_W - m)``
    with ``m = 12 * 2**depth - 8`` (184 at depth 4: 572 -> 388).

    Parameters
    ----------
    n_class : int
    in_channels : int (3: RGB; the paper's microscopy images have 1)
    base : int, the first level's channels (the paper's 64)
    depth : int, the number of pools (the paper's 4)
    dtype, rng, init : as for :class:`minifcn.nn.Conv2d` (default ``"kaiming"``, the paper's
        Gaussian with std ``sqrt(2 / fan_in)`` up to its uniform shape)
    """

    arch = "unet"

    def __init__(self, n_class, in_channels=3, base=64, depth=4, dtype=np.float32, rng=None,
                 init="kaiming"):
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.n_class = _checks.positive_int("n_class", n_class)
        self.in_channels = _checks.positive_int("in_channels", in_channels)
        self.base = _checks.positive_int("base", base)
        self.depth = _checks.positive_int("depth", depth)
        options = dict(dtype=dtype, rng=rng, init=init)
        widths = [base * 2 ** level for level in range(depth + 1)]       # channels per level
        self.encoder = ModuleList([_double_conv(c_in, c, options) for c_in, c in
                                   zip([in_channels] + widths[:-1], widths)])
        self.pool = ModuleList([MaxPool2d(2) for _ in range(depth)])
        self.up = ModuleList([ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2,
                                              **options) for level in range(depth)])
        self.crop = ModuleList([Crop(skip_offset(level, depth)) for level in range(depth)])
        self.concat = ModuleList([Concat() for _ in range(depth)])
        self.decoder = ModuleList([_double_conv(2 * widths[level], widths[level], options)
                                   for level in range(depth)])
        self.head = Conv2d(base, n_class, 1, **options)

    def forward(self, x):
        _checks.image_batch("x", x, what=" (N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"UNet(in_channels={self.in_channels}) takes x of shape (N, "
                             f"{self.in_channels}, H, W), got {tuple(x.shape)}")
        output_size(x.shape[2], self.depth, "height")
        output_size(x.shape[3], self.depth, "width")
        skips, h = [], x
        for level in range(self.depth):
            h = self.encoder[level](h)                    # (N, base 2^level, a - 4, a - 4)
            skips.append(h)
            h = self.pool[level](h)                       # (N, base 2^level, a', a')
        h = self.encoder[self.depth](h)                   # (N, base 2^depth, b, b)
        for level in reversed(range(self.depth)):
            up = self.up[level](h)                        # (N, base 2^level, 2o, 2o)
            skip = self.crop[level](skips[level], up)     # (N, base 2^level, 2o, 2o)
            h = self.decoder[level](self.concat[level](skip, up))   # (N, base 2^level, o', o')
        return self.head(h)                               # (N, n_class, o_0, o_0)

    def backward(self, dy):
        """dy (N, n_class, ...) -> dx; every parameter's gradient accumulated."""
        dh = self.head.backward(dy)
        dskips = []
        for level in range(self.depth):                   # the expanding path, top down
            dskip, dup = self.concat[level].backward(self.decoder[level].backward(dh))
            dskips.append(self.crop[level].backward(dskip))   # zeros outside the crop
            dh = self.up[level].backward(dup)
        dh = self.encoder[self.depth].backward(dh)
        for level in reversed(range(self.depth)):         # the contracting path, bottom up
            dh = self.encoder[level].backward(self.pool[level].backward(dh) + dskips[level])
        return dh

    def output_offset(self, height, width):
        """``(top, left)``: where the output of a ``height x width`` input lies in it (its
        centre; the labels a loss compares the output with are cropped there). ValueError,
        naming the nearest valid sizes, for a size the network cannot take."""
        return (output_offset(height, self.depth, "height"),
                output_offset(width, self.depth, "width"))

    def tile_padding(self, height, width):
        """``((top, bottom), (left, right))``: how far to mirror an image's border so that
        the output, cropped to ``height x width``, scores each of its pixels (the paper's
        overlap-tile); see :func:`~minifcn.models.unet_sizes.tile_padding`."""
        return tile_padding(height, self.depth), tile_padding(width, self.depth)

    @staticmethod
    def options_from_state(state) -> dict:
        """``in_channels``, ``base`` and ``depth`` as a state dict's arrays tell them (the
        first convolution's weight and the number of ``up.I`` layers); ValueError where it
        has no ``encoder.0.0.weight``."""
        first = state.get("encoder.0.0.weight")
        if first is None or np.ndim(first) != 4:
            raise ValueError("no 4-D encoder.0.0.weight, the first convolution of a U-Net")
        depth = sum(1 for k in state if k.startswith("up.") and k.endswith(".weight"))
        return {"in_channels": int(np.shape(first)[1]), "base": int(np.shape(first)[0]),
                "depth": depth}

    def extra_repr(self):
        return (f"n_class={self.n_class}, in_channels={self.in_channels}, base={self.base}, "
                f"depth={self.depth}")
