"""``UpsamplingBilinear2d``: bilinear resizing as a layer (no parameters)."""
from __future__ import annotations

from .._validate import boolean
from ..ops.upsample import (resize_options, upsample_bilinear2d_backward,
                            upsample_bilinear2d_forward)
from .module import Module


class UpsamplingBilinear2d(Module):
    """Bilinear upsampling (or downsampling) layer around :func:`upsample_bilinear2d_forward`.

    Parameters
    ----------
    size : int or (int, int), the output size; or None
    scale_factor : float or (float, float); or None. Exactly one of size and scale_factor.
    align_corners : bool, default False

    Like ``torch.nn.Upsample(size, scale_factor, mode="bilinear", align_corners=...)``.
    Note that ``torch.nn.UpsamplingBilinear2d`` always uses ``align_corners=True``; this
    layer defaults to False, ``F.interpolate``'s default and what FCN's bilinear
    transposed convolutions compute away from the border.
    """

    def __init__(self, size=None, scale_factor=None, align_corners=False):
        super().__init__()
        resize_options(size, scale_factor)            # fail here rather than at forward
        self.size, self.scale_factor = size, scale_factor
        self.align_corners = boolean("align_corners", align_corners)

    def forward(self, x):
        y, cache = upsample_bilinear2d_forward(x, self.size, self.scale_factor,
                                               self.align_corners)
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        return upsample_bilinear2d_backward(dy, cache)

    def extra_repr(self):
        given = (f"size={self.size!r}" if self.size is not None
                 else f"scale_factor={self.scale_factor!r}")
        return f"{given}, align_corners={self.align_corners}"
