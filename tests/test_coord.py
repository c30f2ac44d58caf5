"""minifcn.models.coord: the coordinate maps of layers, their composition, and the crop
offsets FCN derives from them (worked by hand on small examples and for FCN-32s's 19)."""
from fractions import Fraction

import pytest

from minifcn.models import (CoordMap, conv_map, conv_transpose_map, crop_offset, layer_map,
                            path_map)
from minifcn.nn import Conv2d, ConvTranspose2d, Crop, MaxPool2d, ReLU


def test_conv_map_and_conv_transpose_map_by_hand():
    # conv 3x3 padding 1: output pixel p is centred on input p; unpadded: on p + 1,
    # so input x lands on p = x - 1
    assert conv_map(3, 1, 1) == CoordMap(Fraction(1), Fraction(0))
    assert conv_map(3) == CoordMap(Fraction(1), Fraction(-1))
    # 2x2 stride-2 pool: output p covers inputs 2p, 2p+1, centred on 2p + 1/2
    pool = conv_map(2, 2)
    assert pool == CoordMap(Fraction(1, 2), Fraction(-1, 4))
    assert pool.scale * Fraction(1, 2) + pool.offset == 0     # input 1/2 -> output 0
    # dilation 2 makes a 3-tap kernel span 5 pixels
    assert conv_map(3, 1, 0, dilation=2) == CoordMap(Fraction(1), Fraction(-2))
    # transposed conv kernel 4 stride 2 padding 1: input q lands on 2q + 1/2
    assert conv_transpose_map(4, 2, 1) == CoordMap(Fraction(2), Fraction(1, 2))
    # pool then that upsampling: back on the input grid, unshifted
    assert pool.then(conv_transpose_map(4, 2, 1)) == CoordMap(Fraction(1), Fraction(0))
    # unpadded conv, pool, unpadded transposed conv: (1, -1) -> (1/2, -3/4) -> (1, 0)
    path = conv_map(3).then(pool)
    assert path == CoordMap(Fraction(1, 2), Fraction(-3, 4))
    assert path.then(conv_transpose_map(4, 2)) == CoordMap(Fraction(1), Fraction(0))


@pytest.mark.parametrize("kernel, stride, padding, dilation",
                         [(3, 1, 1, 1), (7, 1, 0, 1), (4, 2, 1, 1), (64, 32, 0, 1),
                          (3, 2, 2, 3)])
def test_conv_transpose_map_inverts_conv_map(kernel, stride, padding, dilation):
    there = conv_map(kernel, stride, padding, dilation)
    back = conv_transpose_map(kernel, stride, padding, dilation)
    assert there.then(back) == CoordMap(Fraction(1), Fraction(0))
    assert back.then(there) == CoordMap(Fraction(1), Fraction(0))


def test_fcn32s_offset_19_by_hand():
    # conv1_1 (pad 100) shifts by 99; each block's 3x3 convs are centred; each pool maps
    # x -> (x - 1/2) / 2: after pool5 p = x/32 + 2.609375; fc6 (7x7, no padding) -3;
    # upscore (64, stride 32) q -> 32 q + 31.5, so x -> x + 32 * (2.609375 - 3) + 31.5.
    trunk = [conv_map(3, 1, 100), conv_map(3, 1, 1), conv_map(2, 2)]
    for convs in (2, 3, 3, 3):
        trunk += [conv_map(3, 1, 1)] * convs + [conv_map(2, 2)]
    m = CoordMap(Fraction(1), Fraction(0))
    for step in trunk:
        m = m.then(step)
    assert m == CoordMap(Fraction(1, 32), Fraction(2609375, 1000000))
    m = m.then(conv_map(7)).then(conv_map(1)).then(conv_map(1)).then(conv_transpose_map(64, 32))
    assert m == CoordMap(Fraction(1), Fraction(19))
    assert crop_offset(m, CoordMap(Fraction(1), Fraction(0))) == 19


def test_layer_map_reads_the_layers():
    assert layer_map(Conv2d(3, 2, 3, padding=100)) == CoordMap(Fraction(1), Fraction(99))
    assert layer_map(MaxPool2d(2, 2, ceil_mode=True)) == conv_map(2, 2)
    assert layer_map(ConvTranspose2d(2, 2, 64, stride=32, bias=False)) == \
        CoordMap(Fraction(32), Fraction(63, 2))
    assert layer_map(ReLU()) == CoordMap(Fraction(1), Fraction(0))
    assert path_map([Conv2d(3, 2, 3), ReLU(), MaxPool2d(2)]) == conv_map(3).then(conv_map(2, 2))
    with pytest.raises(TypeError, match="no coordinate map is defined for Crop"):
        layer_map(Crop(1))


@pytest.mark.parametrize("big, match", [
    (CoordMap(Fraction(1, 2), Fraction(3)),
     r"cannot crop skip: its scale 1/2 .* differs from the reference's 1; an upsampling or "
     "pooling is missing"),
    (CoordMap(Fraction(1), Fraction(2)),
     r"cannot crop skip: it would need a negative offset -1 .* more padding upstream"),
    (CoordMap(Fraction(1), Fraction(7, 2)),
     r"cannot crop skip: the offset 1/2 is not a whole number of pixels, so the two pixel "
     "grids do not line up"),
], ids=["scale", "negative", "fractional"])
def test_crop_offset_says_why_no_crop_exists(big, match):
    reference = CoordMap(Fraction(1), Fraction(3))
    with pytest.raises(ValueError, match=match):
        crop_offset(big, reference, "skip")


def test_crop_offset_of_aligned_maps():
    assert crop_offset(CoordMap(Fraction(1, 8), Fraction(5)),
                       CoordMap(Fraction(1, 8), Fraction(5))) == 0
    assert crop_offset(CoordMap(Fraction(2), Fraction(17, 2)),
                       CoordMap(Fraction(2), Fraction(-1, 2))) == 9
