r"""Where each pixel of a feature map sits in the input image: the crop offsets of FCN.

Every layer maps coordinates affinely. A convolution or pooling with kernel extent
``K = D(k-1)+1``, stride S and padding P centres its output pixel p on input coordinate
``pS - P + (K-1)/2``; read the other way, an input coordinate x lands at

.. math:: p = \frac{x + P - (K-1)/2}{S}  \qquad (\text{scale } 1/S,\ \text{offset } (P-(K-1)/2)/S),

and a transposed convolution does the reverse: ``p = Sx + (K-1)/2 - P``. ReLU, dropout,
scaling and BatchNorm (per pixel) leave coordinates alone. A path of layers composes these maps into one
``p = a x + b`` (as Caffe's ``coord_map`` does for the reference FCN nets).

Two feature maps with the same scale ``a`` are then aligned by a shift: pixel ``j`` of the
reference sits on pixel ``j + (b_big - b_ref)`` of the bigger map, so the bigger one is
cropped at offset ``b_big - b_ref``. That is how FCN gets 19 (FCN-32s), 5 and 27 (FCN-16s),
5, 9 and 31 (FCN-8s): they follow from conv1_1's padding of 100, the pools and the
``upscore`` kernels, and are not constants to remember.
"""
from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple


class CoordMap(NamedTuple):
    """``p = scale * x + offset``: input coordinate x to feature-map coordinate p."""
    scale: Fraction
    offset: Fraction

    def then(self, other: "CoordMap") -> "CoordMap":
        """The map of this path followed by ``other``: ``p2 = a2 (a1 x + b1) + b2``."""
        return CoordMap(self.scale * other.scale, other.scale * self.offset + other.offset)


IDENTITY = CoordMap(Fraction(1), Fraction(0))


def conv_map(kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> CoordMap:
    """A convolution or pooling along one axis."""
    extent = dilation * (kernel - 1) + 1
    return CoordMap(Fraction(1, stride), (padding - Fraction(extent - 1, 2)) / stride)


def conv_transpose_map(kernel: int, stride: int = 1, padding: int = 0,
                       dilation: int = 1) -> CoordMap:
    """A transposed convolution along one axis: the inverse of :func:`conv_map`."""
    extent = dilation * (kernel - 1) + 1
    return CoordMap(Fraction(stride), Fraction(extent - 1, 2) - padding)


def layer_map(module) -> CoordMap:
    """The coordinate map of one ``minifcn.nn`` layer (along the height axis)."""
    from ..nn import BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, MaxPool2d, ReLU

    if isinstance(module, ConvTranspose2d):
        o = module.options
        return conv_transpose_map(module.weight.shape[2], o["stride"][0], o["padding"][0],
                                  o["dilation"][0])
    if isinstance(module, Conv2d):
        o = module.options
        return conv_map(module.weight.shape[2], o["stride"][0], o["padding"][0],
                        o["dilation"][0])
    if isinstance(module, MaxPool2d):
        return conv_map(module.kernel_size[0], module.stride[0], module.padding[0])
    if isinstance(module, (ReLU, Dropout, BatchNorm2d)):
        return IDENTITY
    raise TypeError(f"no coordinate map is defined for {type(module).__name__}")


def path_map(modules) -> CoordMap:
    """Compose the maps of a path of layers, from the input to the last layer's output."""
    result = IDENTITY
    for module in modules:
        result = result.then(layer_map(module))
    return result


def crop_offset(big: CoordMap, reference: CoordMap, what: str = "feature map") -> int:
    """The offset at which the map ``big`` is cropped to align with ``reference``.

    Raises ``ValueError`` explaining why when no crop can align them: different scales
    (a resampling is missing), a negative offset (the map to crop is smaller than the
    reference on that side) or a fractional one (the grids interleave).
    """
    if big.scale != reference.scale:
        raise ValueError(f"cannot crop {what}: its scale {big.scale} (pixels per input pixel) "
                         f"differs from the reference's {reference.scale}; an upsampling or "
                         "pooling is missing on one of the two paths")
    offset = big.offset - reference.offset
    if offset < 0:
        raise ValueError(f"cannot crop {what}: it would need a negative offset {offset} (it "
                         "starts inside the reference, not before it); more padding "
                         "upstream, e.g. in conv1_1, would fix this")
    if offset.denominator != 1:
        raise ValueError(f"cannot crop {what}: the offset {offset} is not a whole number of "
                         "pixels, so the two pixel grids do not line up; change a kernel "
                         "size or padding on one path")
    return int(offset)
