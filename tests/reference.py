"""Naive loop references for the fast kernels, readable top to bottom.

Each function follows its defining formula with plain Python loops over output pixels and
kernel offsets (vectorised over channels only). They share no code with ``minifcn.ops``, so
a test that compares the two checks the fast path against an independent statement of the
math. NumPy arrays only; slow, but fine for the small shapes the tests use.
"""
import numpy as np


def pair(value):
    """An int or an (h, w) pair as an (h, w) tuple."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def output_size(size, kernel, stride, padding, dilation):
    """How many window positions fit along one axis of the padded input."""
    span = dilation * (kernel - 1) + 1            # extent of the dilated kernel
    return (size + 2 * padding - span) // stride + 1


def zero_pad(x, ph, pw):
    """x (N, C, H, W) with ph zero rows above and below, pw zero columns left and right."""
    N, C, H, W = x.shape
    x_pad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    x_pad[:, :, ph:ph + H, pw:pw + W] = x
    return x_pad


def _geometry(x_shape, kernel_size, stride, padding, dilation):
    N, C, H, W = x_shape
    (KH, KW), (SH, SW) = pair(kernel_size), pair(stride)
    (PH, PW), (DH, DW) = pair(padding), pair(dilation)
    OH = output_size(H, KH, SH, PH, DH)
    OW = output_size(W, KW, SW, PW, DW)
    return (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW)


def im2col_naive(x, kernel_size, stride=1, padding=0, dilation=1):
    """col[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*SH + i*DH, ow*SW + j*DW].

    Returns the (C*KH*KW, N*OH*OW) matrix, rows ordered (c, i, j), columns (n, oh, ow).
    """
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = _geometry(
        x.shape, kernel_size, stride, padding, dilation)
    x_pad = zero_pad(x, PH, PW)
    col = np.zeros((C * KH * KW, N * OH * OW), dtype=x.dtype)
    channels = np.arange(C)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                column = (n * OH + oh) * OW + ow
                for i in range(KH):
                    for j in range(KW):
                        rows = (channels * KH + i) * KW + j
                        col[rows, column] = x_pad[n, :, oh * SH + i * DH, ow * SW + j * DW]
    return col


def col2im_naive(col, x_shape, kernel_size, stride=1, padding=0, dilation=1):
    """The adjoint of im2col_naive: add every column entry back onto the pixel it came from.

    Entries that came from the zero padding are dropped.
    """
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = _geometry(
        x_shape, kernel_size, stride, padding, dilation)
    assert col.shape == (C * KH * KW, N * OH * OW), col.shape
    x_pad = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
    channels = np.arange(C)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                column = (n * OH + oh) * OW + ow
                for i in range(KH):
                    for j in range(KW):
                        rows = (channels * KH + i) * KW + j
                        x_pad[n, :, oh * SH + i * DH, ow * SW + j * DW] += col[rows, column]
    return x_pad[:, :, PH:PH + H, PW:PW + W].copy()


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """y[n, f, oh, ow] = b[f] + sum_{c,i,j} W[f, c, i, j] x_pad[n, c, oh*SH + i*DH, ow*SW + j*DW].

    x (N, C, H, W), weight (F, C, KH, KW), bias (F,) or None -> y (N, F, OH, OW).
    """
    N, C, H, W = x.shape
    F = weight.shape[0]
    (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = _geometry(
        x.shape, weight.shape[2:], stride, padding, dilation)
    x_pad = zero_pad(x, PH, PW)
    y = np.zeros((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                top, left = oh * SH, ow * SW
                window = x_pad[n, :, top:top + DH * (KH - 1) + 1:DH,
                               left:left + DW * (KW - 1) + 1:DW]          # (C, KH, KW)
                y[n, :, oh, ow] = (weight * window).sum(axis=(1, 2, 3))   # (F,)
    if bias is not None:
        y += bias.reshape(1, F, 1, 1)
    return y


# --- The option grid the fast kernels are compared on --------------------------------------

GRID_IMAGE_HW = (13, 14)   # odd and even; a 7x7 kernel with dilation 2 (extent 13) still fits

# A few cases whose height and width options differ, to catch a swapped (h, w) pair.
_ASYMMETRIC = [((3, 2), (1, 2), (0, 1), (2, 1), 2),
               ((2, 5), (3, 1), (2, 0), (1, 3), 2),
               ((1, 3), (2, 2), (1, 2), (1, 1), 1)]


def _label(letter, value):
    return letter + ("x".join(map(str, value)) if isinstance(value, tuple) else str(value))


def window_grid():
    """``(cases, ids)``: every (kernel, stride, padding, dilation, N) of the shared test grid,
    kernel 1, 2, 3, 7 x stride 1, 2, 3 x padding 0, 1, 3 x dilation 1, 2 x N 1, 3, plus a
    few asymmetric cases; ids read like ``k3-s2-p1-d2-n3``."""
    cases = [(k, s, p, d, n) for k in (1, 2, 3, 7) for s in (1, 2, 3) for p in (0, 1, 3)
             for d in (1, 2) for n in (1, 3)] + _ASYMMETRIC
    ids = ["-".join(_label(letter, v) for letter, v in zip("kspdn", case)) for case in cases]
    return cases, ids
