r"""im2col and col2im: a convolution as one matrix product.

A convolution slides a ``C x KH x KW`` window over the zero-padded input. ``im2col`` copies
every window into one column of a matrix, so that the convolution with an ``(F, C, KH, KW)``
weight is a single GEMM, ``W.reshape(F, C*KH*KW) @ col``, the whole batch in its columns.
``col2im`` is its adjoint: every column entry is added back onto the pixel it came from, so
overlapping windows sum. It is the input gradient of a convolution.

Both loop over the KH*KW kernel offsets only: for offset (i, j), the (n, p, q) entries of
row (c, i, j) are one strided slice of the padded input.
"""
from ...backend import get_array_module


def output_size(size, kernel, stride, padding, dilation):
    """How many window positions fit along one axis: ``(size + 2P - D(K-1) - 1) // S + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kernel, stride, padding, dilation):
    r"""Unfold the sliding windows of x into the columns of a matrix.

    x (N, C, H, W) -> col (C*KH*KW, N*OH*OW), rows ordered (c, i, j), columns (n, p, q):

    .. math:: col[(c, i, j), (n, p, q)] = x_{pad}[n, c, pS_H + iD_H, qS_W + jD_W]

    with :math:`x_{pad}` x padded with P zeros on each side.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel, stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
    x_pad = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))        # (N, C, H+2PH, W+2PW)
    col = xp.zeros((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            rows = slice(i * DH, i * DH + OH * SH, SH)                  # pS_H + iD_H, p < OH
            cols = slice(j * DW, j * DW + OW * SW, SW)                  # qS_W + jD_W, q < OW
            window = x_pad[:, :, rows, cols]                            # (N, C, OH, OW)
            col[:, i, j] = window.transpose(1, 0, 2, 3)                 # (C, N, OH, OW)
    return col.reshape(C * KH * KW, N * OH * OW)                        # (C*KH*KW, N*OH*OW)


def col2im(col, x_shape, kernel, stride, padding, dilation):
    r"""Fold columns back onto an image, summing where windows overlap: im2col's adjoint.

    col (C*KH*KW, N*OH*OW) -> x (N, C, H, W), C-contiguous, such that
    :math:`\langle \mathrm{im2col}(z), col \rangle = \langle z, \mathrm{col2im}(col) \rangle`
    for every z:

    .. math:: x_{pad}[n, c, pS_H + iD_H, qS_W + jD_W] \mathrel{+}= col[(c, i, j), (n, p, q)]

    then the padding is cut off (what landed there came from zeros, and has no pixel).
    """
    xp = get_array_module(col)
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel, stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
    col = col.reshape(C, KH, KW, N, OH, OW)                             # (C, KH, KW, N, OH, OW)
    x_pad = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)   # (N, C, H+2PH, W+2PW)
    for i in range(KH):
        for j in range(KW):
            rows = slice(i * DH, i * DH + OH * SH, SH)
            cols = slice(j * DW, j * DW + OW * SW, SW)
            x_pad[:, :, rows, cols] += col[:, i, j].transpose(1, 0, 2, 3)   # (N, C, OH, OW)
    return xp.ascontiguousarray(x_pad[:, :, PH:PH + H, PW:PW + W])      # (N, C, H, W)
