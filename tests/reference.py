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


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, f, oh, ow] = b[f] + sum_{c,i,j} W[f, c, i, j] x_pad[n, g*C/G + c, oh*SH + i*DH,
    ow*SW + j*DW], where filter f belongs to group g = f // (F/G).

    x (N, C, H, W), weight (F, C/G, KH, KW), bias (F,) or None -> y (N, F, OH, OW).
    """
    N, C, H, W = x.shape
    F, Cg = weight.shape[:2]
    assert Cg * groups == C and F % groups == 0, (x.shape, weight.shape, groups)
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
                for f in range(F):
                    g = f // (F // groups)                                # f's group
                    y[n, f, oh, ow] = (weight[f] * window[g * Cg:(g + 1) * Cg]).sum()
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


def conv_transpose2d_naive(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                           dilation=1):
    """y[n, :, h*SH - PH + i*DH, w*SW - PW + j*DW] += x[n, c, h, w] W[c, :, i, j]: every input
    pixel scatters a weighted copy of the kernel; terms outside the output are dropped.

    x (N, C_in, H, W), weight (C_in, C_out, KH, KW), bias (C_out,) or None.
    """
    N, C_in, H, W = x.shape
    C_out, KH, KW = weight.shape[1:]
    (SH, SW), (PH, PW), (OPH, OPW), (DH, DW) = (pair(v) for v in (stride, padding,
                                                                  output_padding, dilation))
    OH = (H - 1) * SH - 2 * PH + DH * (KH - 1) + OPH + 1
    OW = (W - 1) * SW - 2 * PW + DW * (KW - 1) + OPW + 1
    y = np.zeros((N, C_out, OH, OW), dtype=x.dtype)
    for n in range(N):
        for h in range(H):
            for w in range(W):
                for i in range(KH):
                    for j in range(KW):
                        oh, ow = h * SH - PH + i * DH, w * SW - PW + j * DW
                        if 0 <= oh < OH and 0 <= ow < OW:
                            y[n, :, oh, ow] += x[n, :, h, w] @ weight[:, :, i, j]   # (C_out,)
    if bias is not None:
        y += bias.reshape(1, C_out, 1, 1)
    return y


# --- Max pooling -----------------------------------------------------------------------------

def pool_window_starts(size, kernel, stride, padding, ceil_mode):
    """Where each pooling window starts along one axis, in padded coordinates.

    Floor mode: every window that fits inside the padded input. Ceil mode: windows are added
    while the one before had not yet reached the end of the padded input, and each must
    start before the right padding (PyTorch's rule, stated as a loop)."""
    starts, s = [], 0
    while True:
        if ceil_mode:
            ok = s - stride + kernel < size + 2 * padding and s < size + padding
        else:
            ok = s + kernel <= size + 2 * padding
        if not ok:
            return starts
        starts.append(s)
        s += stride


def max_pool2d_naive(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """y[n, c, oh, ow] = max of x over the window's pixels inside x (the padding is -inf).

    Returns ``(y, winners)``: winners[n, c, oh, ow] is the flat index ``h*W + w`` of the
    winning pixel (torch's ``return_indices``): the first in row-major window order that
    beats the running maximum, which starts at -inf; a NaN always wins.
    """
    N, C, H, W = x.shape
    (KH, KW) = pair(kernel_size)
    (SH, SW) = pair(kernel_size if stride is None else stride)
    (PH, PW) = pair(padding)
    rows = pool_window_starts(H, KH, SH, PH, ceil_mode)
    cols = pool_window_starts(W, KW, SW, PW, ceil_mode)
    y = np.empty((N, C, len(rows), len(cols)), dtype=x.dtype)
    winners = np.empty((N, C, len(rows), len(cols)), dtype=np.int64)
    for n in range(N):
        for oh, top in enumerate(rows):
            for ow, left in enumerate(cols):
                best = np.full(C, -np.inf, dtype=x.dtype)
                index = np.full(C, -1)
                for h in range(top - PH, top - PH + KH):
                    for w in range(left - PW, left - PW + KW):
                        if not (0 <= h < H and 0 <= w < W):
                            continue                          # padding: -inf never wins
                        if (index < 0).any():
                            index[index < 0] = h * W + w      # first pixel inside the window
                        v = x[n, :, h, w]
                        win = (v > best) | np.isnan(v)
                        best = np.where(win, v, best)
                        index = np.where(win, h * W + w, index)
                y[n, :, oh, ow] = best
                winners[n, :, oh, ow] = index
    return y, winners


def max_pool2d_backward_naive(dy, winners, x_shape):
    """dx: each dy[n, c, oh, ow] added onto the pixel that won its window."""
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H * W), dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for o, index in enumerate(winners[n, c].ravel()):
                dx[n, c, index] += dy[n, c].ravel()[o]
    return dx.reshape(x_shape)


# --- Batch normalisation, channel concatenation, global average pooling ------------------------

def batch_norm2d_naive(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """Per channel, statistics summed one value at a time; returns y and the running mean and
    variance after the call (new arrays; None when none were given).

    training: mean and biased variance of the channel's N*H*W values normalise it; the
    running estimates move by ``momentum`` towards the mean and the unbiased variance.
    eval: the running estimates normalise it.
    """
    N, C, H, W = x.shape
    M = N * H * W
    y = np.zeros_like(x)
    new_mean = None if running_mean is None else running_mean.copy()
    new_var = None if running_var is None else running_var.copy()
    for c in range(C):
        values = [x[n, c, h, w] for n in range(N) for h in range(H) for w in range(W)]
        if training:
            mean = sum(values) / M
            squares = sum((v - mean) ** 2 for v in values)
            var = squares / M                                      # biased: normalises
            if new_mean is not None:
                new_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean
                new_var[c] = (1 - momentum) * running_var[c] + momentum * squares / (M - 1)
        else:
            mean, var = running_mean[c], running_var[c]
        gamma = 1.0 if weight is None else weight[c]
        beta = 0.0 if bias is None else bias[c]
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    y[n, c, h, w] = gamma * (x[n, c, h, w] - mean) / np.sqrt(var + eps) + beta
    return y, new_mean, new_var


def concat_naive(arrays):
    """y[n, offset_k + c] = arrays[k][n, c], channel by channel."""
    N, _, H, W = arrays[0].shape
    y = np.zeros((N, sum(a.shape[1] for a in arrays), H, W), dtype=arrays[0].dtype)
    channel = 0
    for a in arrays:
        for c in range(a.shape[1]):
            y[:, channel] = a[:, c]
            channel += 1
    return y


def global_avg_pool_naive(x):
    """y[n, c, 0, 0] = the sum of plane (n, c), one pixel at a time, over H*W."""
    N, C, H, W = x.shape
    y = np.zeros((N, C, 1, 1), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            y[n, c, 0, 0] = sum(x[n, c, h, w] for h in range(H) for w in range(W)) / (H * W)
    return y
