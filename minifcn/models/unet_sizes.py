r"""U-Net's sizes: which inputs it takes, what it returns, where its skips are cropped.

Every double convolution (two valid 3x3 convolutions) takes 4 pixels off a side length,
every 2x2 pool halves it and every 2x2 stride-2 transposed convolution doubles it. With
``S`` the input's height (or width: each on its own) and ``d`` the depth, level ``i`` of
the contracting path gets :math:`a_0 = S`, :math:`a_{i+1} = (a_i - 4) / 2`; the bottom
gives :math:`b = a_d - 4`; the expanding path gives :math:`o_d = b`,
:math:`o_i = 2 o_{i+1} - 4`, and the output is :math:`o_0`. In closed form

.. math:: S = 2^d (b + 8) - 4, \qquad o_0 = 2^d (b - 4) + 4 = S - (12 \cdot 2^d - 8)

(the paper: d = 4, S = 572, b = 28, output 388; the output is the input's centre, 92
pixels in from each side). A pool needs an even map, or it drops its last row: so S is
valid exactly when ``S + 4`` is a multiple of :math:`2^d`, and large enough that every map
keeps a pixel (b >= 3 at depth 1, b >= 4 deeper: then :math:`o_i = 2^{d-i}(b - 4) + 4`).

To segment an image of any size (the paper's overlap-tile strategy), its border is
mirrored outwards by the ``6 * 2**d - 4`` pixels the network eats on each side (92 at depth
4), and by a little more after the last row and column up to the next valid size; the
output, cropped to the image, then has one score per pixel (:func:`tile_padding`).

The skip of level ``i`` (the contracting path's map :math:`a_i - 4`) is cropped around its
centre to the upsampled map :math:`2 o_{i+1}`, at offset :math:`c_i = a_{i+1} - o_{i+1}`,
which does not depend on S: :math:`c_{d-1} = 4`, :math:`c_i = 2 c_{i+1} + 8` (4, 16, 40,
88 from the bottom up).
"""
from __future__ import annotations

from .. import _validate as _checks


def skip_offset(level: int, depth: int) -> int:
    """Where the skip of ``level`` (0: the top) is cropped: its top-left offset."""
    offset = 4
    for _ in range(depth - 1 - level):
        offset = 2 * offset + 8
    return offset


def min_bottom(depth: int) -> int:
    """The smallest bottom size b for which every map of the expanding path keeps a pixel."""
    return 3 if depth == 1 else 4


def input_size(bottom: int, depth: int) -> int:
    """The input size whose bottom map is ``bottom``: :math:`2^d (b + 8) - 4`."""
    return 2 ** depth * (bottom + 8) - 4


def output_size(size: int, depth: int, name: str = "size") -> int:
    """The output's side for an input side ``size``: :math:`S - (12 \\cdot 2^d - 8)`.

    Raises ValueError, naming the nearest valid sizes, where a pool would get an odd map or
    a map would vanish."""
    depth = _checks.positive_int("depth", depth)
    size = _checks.positive_int(name, size)
    a = size
    for level in range(depth):
        if a - 4 < 2 or (a - 4) % 2:
            what = (f"its level-{level} map would be {a - 4} pixels, odd before the 2x2 pool"
                    if a - 4 >= 2 else "its maps would vanish")
            raise ValueError(_invalid(name, size, depth, what))
        a = (a - 4) // 2
    if a - 4 < min_bottom(depth):
        raise ValueError(_invalid(name, size, depth, "its maps would vanish"))
    return size - (12 * 2 ** depth - 8)


def output_offset(size: int, depth: int, name: str = "size") -> int:
    r"""Where the output starts in an input side ``size``: half of what the network eats,
    :math:`6 \cdot 2^d - 4` (92 at depth 4); ValueError as :func:`output_size`."""
    return (size - output_size(size, depth, name)) // 2


def nearest_valid_sizes(size: int, depth: int) -> tuple:
    """The valid input sizes nearest ``size``: the one below (if any) and the one above."""
    bottom = max(min_bottom(depth), (size + 4) // 2 ** depth - 8)
    below = [input_size(b, depth) for b in (bottom, bottom - 1)
             if b >= min_bottom(depth) and input_size(b, depth) < size]
    above = input_size(bottom, depth)
    if above <= size:
        above = input_size(bottom + 1, depth)
    return tuple(below[:1]) + (above,)


def tile_padding(size: int, depth: int) -> tuple:
    """``(before, after)``: the pixels to mirror in before and after a side of ``size`` so
    that the padded side is valid and its output covers the ``size`` pixels, output pixel
    ``i`` over input pixel ``i`` (the output may run on past them)."""
    depth = _checks.positive_int("depth", depth)
    size = _checks.positive_int("size", size)
    before = 6 * 2 ** depth - 4                        # half of what the network eats
    needed = size + 2 * before                         # output >= size
    bottom = max(min_bottom(depth), -(-(needed + 4) // 2 ** depth) - 8)
    return before, input_size(bottom, depth) - size - before


def _invalid(name, size, depth, what) -> str:
    nearest = " or ".join(str(s) for s in nearest_valid_sizes(size, depth))
    return (f"UNet(depth={depth}) cannot take {name} {size}: {what}. It takes sizes S with "
            f"S + 4 a multiple of {2 ** depth} and S >= {input_size(min_bottom(depth), depth)}"
            f" (S = 2^depth * (b + 8) - 4); the nearest are {nearest}")
