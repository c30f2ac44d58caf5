r"""Bilinear resizing: two small matrices, one per axis.

Bilinear interpolation is separable: along one axis every output row is a blend of two
neighbouring input rows. So resizing is ``A_h (OH, H)`` along H and ``A_w (OW, W)`` along W,
each with at most two non-zeros per row, and per (n, c) plane

.. math:: y = A_h\, x\, A_w^T, \qquad dx = A_h^T\, dy\, A_w .

The matrices hold all of PyTorch's ``interpolate(mode="bilinear")`` semantics; they are
built on the host with NumPy (they are tiny) and moved to x's device in x's dtype.
"""
import numpy as np

from ...backend import get_array_module


def linear_interpolation_matrix(in_size, out_size, align_corners=False, scale_factor=None):
    r"""The ``(out_size, in_size)`` float64 NumPy matrix of 1-D linear interpolation.

    Row o holds weights ``1 - t`` and ``t`` on the two neighbours ``i0, i1`` of o's source
    coordinate, so each row sums to 1:

    * ``align_corners``: ``src = o (L - 1)/(O - 1)`` (0 when O = 1);
    * otherwise pixel centres match: ``src = max(r (o + 0.5) - 0.5, 0)``, ``r = 1/s`` for a
      given scale s (as PyTorch's ``recompute_scale_factor=None``), else ``L/O``;
    * ``i0 = min(floor(src), L - 1)``, ``i1 = min(i0 + 1, L - 1)``, ``t = clip(src - i0, 0, 1)``.

    Equal sizes give the identity (a copy), whatever the scale, as in PyTorch.
    """
    if out_size == in_size:
        return np.eye(in_size)
    o = np.arange(out_size, dtype=np.float64)
    if align_corners:
        ratio = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = ratio * o
    else:
        ratio = 1.0 / scale_factor if scale_factor else in_size / out_size
        src = np.maximum(ratio * (o + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    t = np.clip(src - i0, 0.0, 1.0)
    a = np.zeros((out_size, in_size))
    np.add.at(a, (np.arange(out_size), i0), 1.0 - t)   # i0 == i1 at the clamped border
    np.add.at(a, (np.arange(out_size), i1), t)
    return a


def upsample_bilinear2d_forward(x, out, align_corners, scales):
    r"""Bilinear resizing of x (N, C, H, W) to ``out = (OH, OW)`` -> (y, A_h, A_w).

    .. math:: y[n, c] = A_h\, x[n, c]\, A_w^T

    ``scales = (scale_h, scale_w)``, each the user's scale factor or None (size given).
    """
    xp = get_array_module(x)
    H, W = x.shape[2:]
    OH, OW = out
    a_h = xp.asarray(linear_interpolation_matrix(H, OH, align_corners, scales[0]), dtype=x.dtype)
    a_w = xp.asarray(linear_interpolation_matrix(W, OW, align_corners, scales[1]), dtype=x.dtype)
    y = a_h @ x @ a_w.T          # (OH, H) @ (N, C, H, W) @ (W, OW) -> (N, C, OH, OW)
    return y, a_h, a_w


def upsample_bilinear2d_backward(dy, a_h, a_w):
    r"""Gradient of bilinear resizing: dy (N, C, OH, OW) -> dx (N, C, H, W).

    The forward is linear, so its gradient is its transpose:

    .. math:: dx[n, c] = A_h^T\, dy[n, c]\, A_w
    """
    return a_h.T @ dy @ a_w      # (H, OH) @ (N, C, OH, OW) @ (OW, W) -> (N, C, H, W)
