r"""2-D max pooling: each output is the maximum of one window, and remembers where it was.

The input is padded with :math:`-\infty` (padding never wins). A loop over the KH*KW kernel
offsets ``k = i*KW + j``, in row-major order, keeps a running maximum y and the offset
``argmax`` of its winner; for each offset, the element it reads in every window is one
strided slice of the padded input. The backward routes each dy to its window's winner.

PyTorch's rules, which the loop reproduces by construction: an element replaces the running
maximum when ``val > max or isnan(val)``, so ties go to the FIRST maximum, a NaN wins its
window (with several NaNs, the LAST one), and a window with nothing above -inf points at
its first element inside x (where the argmax starts), never at the padding.
"""
import numpy as np

from ...backend import get_array_module


def index_dtype(kernel):
    """The dtype of argmax: int8 holds every offset ``i*KW + j`` of a kernel up to 127 elements."""
    return np.dtype(np.int8) if kernel[0] * kernel[1] <= 127 else np.dtype(np.int32)


def _pad_after(size, out, kernel, stride, padding):
    """The -inf rows (columns) the bottom (right) needs for the last window to be in bounds."""
    return max((out - 1) * stride + kernel - size - padding, 0)


def max_pool2d_forward(x, kernel, stride, padding, out):
    r"""Max pooling of x (N, C, H, W) -> (y, argmax), each (N, C, OH, OW).

    .. math:: y[n, c, p, q] = \max_{i < KH,\ j < KW} x_{pad}[n, c, pS_H + i, qS_W + j],
              \qquad x_{pad} = -\infty \text{ outside } x

    and ``argmax[n, c, p, q] = i*KW + j`` of the winner (int8 or int32, see index_dtype).
    ``out = (OH, OW)`` comes from the caller (ceil mode only changes it: windows past the
    bottom/right edge read -inf).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW), (OH, OW) = kernel, stride, padding, out
    bottom, right = _pad_after(H, OH, KH, SH, PH), _pad_after(W, OW, KW, SW, PW)
    pads = ((0, 0), (0, 0), (PH, bottom), (PW, right))
    x_pad = xp.pad(x, pads, constant_values=-np.inf)         # (N, C, PH+H+bottom, PW+W+right)
    i0 = xp.maximum(PH - xp.arange(OH) * SH, 0)                     # (OH,) first row inside x
    j0 = xp.maximum(PW - xp.arange(OW) * SW, 0)                     # (OW,) first column inside x
    first = (i0[:, None] * KW + j0[None, :]).astype(index_dtype(kernel))    # (OH, OW)
    argmax = xp.broadcast_to(first, (N, C, OH, OW))                 # (N, C, OH, OW)
    y = xp.full((N, C, OH, OW), -np.inf, dtype=x.dtype)             # (N, C, OH, OW)
    for i in range(KH):
        for j in range(KW):
            window = x_pad[:, :, i:i + OH * SH:SH, j:j + OW * SW:SW]  # (N, C, OH, OW)
            wins = (window > y) | xp.isnan(window)                  # strict: ties keep the first
            y = xp.where(wins, window, y)
            argmax = xp.where(wins, argmax.dtype.type(i * KW + j), argmax)
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, kernel, stride, padding):
    r"""Gradient of max pooling: dy (N, C, OH, OW) -> dx (N, C, H, W).

    Each output depends on its winner alone, so dy goes there, summed over the windows
    (when they overlap) that chose the same pixel:

    .. math:: dx_{pad}[n, c, pS_H + i, qS_W + j] \mathrel{+}= dy[n, c, p, q]\,
              [\mathrm{argmax}[n, c, p, q] = i KW + j]
    """
    xp = get_array_module(dy)
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW) = kernel, stride, padding
    OH, OW = dy.shape[2:]
    bottom, right = _pad_after(H, OH, KH, SH, PH), _pad_after(W, OW, KW, SW, PW)
    dx_pad = xp.zeros((N, C, PH + H + bottom, PW + W + right), dtype=dy.dtype)
    for i in range(KH):
        for j in range(KW):
            routed = xp.where(argmax == i * KW + j, dy, dy.dtype.type(0))   # (N, C, OH, OW)
            dx_pad[:, :, i:i + OH * SH:SH, j:j + OW * SW:SW] += routed
    return xp.ascontiguousarray(dx_pad[:, :, PH:PH + H, PW:PW + W])  # (N, C, H, W)


def adaptive_avg_pool2d_forward(x):
    r"""Global average pooling: x (N, C, H, W) -> y (N, C, 1, 1), the mean of each plane.

    .. math:: y[n, c] = \frac{1}{HW} \sum_{h, w} x[n, c, h, w]
    """
    return x.mean(axis=(2, 3), keepdims=True)                     # (N, C, 1, 1)


def adaptive_avg_pool2d_backward(dy, x_shape):
    r"""Each pixel gets an equal share of its plane's gradient: dx = dy / (HW), broadcast.

    dy (N, C, 1, 1) -> dx (N, C, H, W).
    """
    xp = get_array_module(dy)
    H, W = x_shape[2:]
    return xp.broadcast_to(dy / (H * W), x_shape).copy()          # (N, C, H, W)
