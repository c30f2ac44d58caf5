"""Padded flat planes: the layout of :mod:`.grouped` and :mod:`.depthwise`.

A block of channels is copied into zeros of (Hp, Wp) and the output is computed "wide", each
output row R positions long of which the first OW are kept, so that every kernel tap reads
or writes the planes as one long strided slice (:class:`Planes`). Also the shared pieces of
those two paths: the output size, the taps that reach an image, views carved from one
scratch buffer, and blocks of channels under the workspace limit.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ... import memory
from .windows import window_slices


def out_size(x_shape, w_shape, stride, padding, dilation):
    """(OH, OW) of a convolution."""
    return tuple((x_shape[2 + a] + 2 * padding[a] - dilation[a] * (w_shape[2 + a] - 1) - 1)
                 // stride[a] + 1 for a in range(2))


def kernel_taps(x_hw, out_hw, kernel, stride, padding, dilation):
    """(i, j, (output rows, output cols), (input rows, input cols)) of every kernel tap that
    reaches the image: output p reads input ``p*S - P + i*D``."""
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            found = window_slices(x_hw, out_hw, stride, padding, dilation, i, j)
            if found is not None:
                (p, h), (q, w) = found
                yield i, j, (p, q), (h, w)


class Planes(NamedTuple):
    """A block of channels laid out flat so that every tap is one long strided slice.

    Each plane is copied into zeros of (Hp, Wp), Wp a multiple of SW. The output is computed
    "wide", R = SH*Wp/SW positions a row of which the first OW are the output's, so that wide
    position l of tap (i, j) reads flat position ``offsets[(i, j)] + SW*l``."""
    Hp: int
    Wp: int
    R: int                      # wide output row: (OH, R), columns OW: unused
    length: int                 # OH * R
    offsets: tuple              # i*DH*Wp + j*DW, in (i, j) order
    step: int                   # SW
    kernel: tuple               # (KH, KW)
    dilation: tuple             # (DH, DW)

    def tap(self, flat, t):
        """The (..., OH*R) view of flat planes (..., Hp*Wp) that tap t reads or writes."""
        o = self.offsets[t]
        return flat[..., o:o + self.step * (self.length - 1) + 1:self.step]

    def columns(self, planes):
        """im2col of padded planes (c, Hp, Wp) as a view (c, KH, KW, OH*R), no copy."""
        s = planes.strides[2]
        return as_strided(planes, (planes.shape[0],) + self.kernel + (self.length,),
                          (planes.strides[0], self.dilation[0] * self.Wp * s,
                           self.dilation[1] * s, self.step * s), writeable=False)


def flat_planes(x_hw, kernel, stride, padding, dilation, out) -> Planes:
    (H, W), (KH, KW), (SH, SW), (PH, PW), (DH, DW) = x_hw, kernel, stride, padding, dilation
    Wp = -(-(W + 2 * PW) // SW) * SW
    Hp = max(H + 2 * PH, DH * (KH - 1) + out[0] * SH) + 1          # the last tap's reach
    offsets = tuple(i * DH * Wp + j * DW for i in range(KH) for j in range(KW))
    return Planes(Hp, Wp, SH * Wp // SW, out[0] * SH * Wp // SW, offsets, SW, (KH, KW),
                  (DH, DW))


def carve(buf, *shapes):
    """Consecutive views of the scratch buffer ``buf`` (1-D), one per shape."""
    views, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        views.append(buf[start:start + size].reshape(shape))
        start += size
    return views


def channel_blocks(count, each, budget, what):
    """Blocks of channels (or groups), ``each`` bytes of scratch one, of about ``budget``
    bytes (or of one where one is larger), or None when one alone does not fit the workspace
    limit: each group then runs :mod:`.gemm`, which splits it further."""
    if not memory.fits(each):
        return None
    return memory.chunks(count, lambda k: k * each, what, budget=max(budget, each))
