r"""Bilinear upsampling, and the bilinear kernels FCN starts its transposed convolutions from.

Bilinear interpolation is separable: along each axis every output row is a blend of two
neighbouring input rows. So resizing along H and along W are two small matrices,
``A_h (OH, H)`` and ``A_w (OW, W)``, each with at most two non-zeros per row, and

.. math::

    y = A_h\, x\, A_w^T \quad\text{(per (n, c) plane)}, \qquad
    dx = A_h^T\, dy\, A_w .

Both passes are two GEMMs, deterministic (no scatter, no atomics), on NumPy or CuPy alike
(``reference/upsample.py``; there is no fast path). The matrices are built on the host with
NumPy (they are tiny) and moved to x's device.

FCN does not call an interpolation routine: its ``upscore`` layers are transposed
convolutions (kernel 2s, stride s) whose weight starts as :func:`bilinear_upsampling_weight`.
Away from the border that *is* bilinear upsampling by s (``align_corners=False``); see
:func:`bilinear_upsampling_weight` for exactly where the two differ.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .. import _validate as _checks
from ..backend import array_module_of
from . import dispatch
from .reference.upsample import linear_interpolation_matrix  # noqa: F401 (public here too)


class Upsample2dCache(NamedTuple):
    """What ``upsample_bilinear2d_backward`` needs: the two matrices and x's shape."""
    a_h: object          # (OH, H), x's dtype and device
    a_w: object          # (OW, W)
    x_shape: tuple       # (N, C, H, W)


def upsample_bilinear2d_forward(x, size=None, scale_factor=None, align_corners=False):
    r"""Bilinear resizing, like ``torch.nn.functional.interpolate(x, size, scale_factor,
    mode="bilinear", align_corners=align_corners)`` with its default
    ``recompute_scale_factor=None``.

    Parameters
    ----------
    x : array (N, C, H, W), float32 or float64
    size : int or (int, int), the output size (OH, OW); or None
    scale_factor : float or (float, float), or None. Exactly one of size and scale_factor.
        A scale s gives ``OH = floor(H * s)`` and source coordinates from ``1/s`` (not ``H/OH``).
    align_corners : bool; True maps the corner pixels' centres onto each other.

    Returns
    -------
    y : array (N, C, OH, OW), x's dtype and device
    cache : Upsample2dCache

    Notes
    -----
    .. math::

        y[n, c] = A_h\, x[n, c]\, A_w^T,

    where row o of ``A`` (one axis: input length L, output length O) is built from

    * the source coordinate: with ``align_corners``, ``src = o (L - 1)/(O - 1)`` (0 when
      O = 1; a given scale then only sets O); without, pixel centres are matched,
      ``src = max(r (o + 0.5) - 0.5, 0)`` with ``r = 1/s`` for a given scale s, else ``L/O``
      (clamped at 0: before the first centre the first pixel is repeated);
    * its two neighbours ``i0 = min(floor(src), L - 1)`` and ``i1 = min(i0 + 1, L - 1)``
      (past the last centre both are ``L - 1``: the last pixel is repeated);
    * their weights ``1 - t`` and ``t``, ``t = clip(src - i0, 0, 1)``, so each row sums to 1.

    An axis with O = L is copied (``A = I``), whatever the scale. Edge cases (scale_factor
    semantics, equal sizes, empty outputs) follow PyTorch; see ``docs/compatibility.md``.
    """
    _checks.image_batch("x", x)
    align_corners = _checks.boolean("align_corners", align_corners)
    out, scales = _output_size(x.shape[2], x.shape[3], size, scale_factor)
    call = dispatch.Call(dispatch.device_kind(x), x.dtype, tuple(x.shape), out=out)
    y, a_h, a_w = dispatch.run("upsample_bilinear2d.forward", call, x, out, align_corners,
                               scales)
    return y, Upsample2dCache(a_h, a_w, tuple(x.shape))


def upsample_bilinear2d_backward(dy, cache: Upsample2dCache):
    r"""Gradient of :func:`upsample_bilinear2d_forward` with respect to x.

    Parameters
    ----------
    dy : array (N, C, OH, OW)
    cache : Upsample2dCache from the forward

    Returns
    -------
    dx : array (N, C, H, W)

    Notes
    -----
    The forward is linear, ``y = A_h x A_w^T``, so its adjoint is

    .. math::

        dx[n, c] = A_h^T\, dy[n, c]\, A_w,

    each output pixel's gradient flowing back to its (up to four) source pixels with the
    interpolation weights, summed where sources are shared.
    """
    _checks.cache_of(cache, Upsample2dCache, "upsample_bilinear2d_forward")
    a_h, a_w, (N, C, H, W) = cache
    OH, OW = a_h.shape[0], a_w.shape[0]
    _checks.grad_shape(dy, (N, C, OH, OW), a_h.dtype)
    array_module_of(dy=dy, cache=a_h)
    call = dispatch.Call(dispatch.device_kind(dy), dy.dtype, (N, C, H, W), out=(OH, OW))
    return dispatch.run("upsample_bilinear2d.backward", call, dy, a_h, a_w)


def resize_options(size, scale_factor):
    """Validate exactly one of size and scale_factor; return ``(size, scales)`` as pairs,
    the one not given None."""
    if (size is None) == (scale_factor is None):
        raise ValueError(f"give exactly one of size and scale_factor, got size={size!r} and "
                         f"scale_factor={scale_factor!r}")
    if size is not None:
        return _checks.pair("size", size, minimum=1), None
    return None, _scale_pair(scale_factor)


def _output_size(H, W, size, scale_factor):
    """``((OH, OW), (scale_h, scale_w))``; the scales are None when the size was given."""
    size, scales = resize_options(size, scale_factor)
    if size is not None:
        return size, (None, None)
    out = (int(math.floor(H * scales[0])), int(math.floor(W * scales[1])))
    if min(out) < 1:
        raise ValueError(f"scale_factor={scale_factor!r} turns the {H}x{W} input into an "
                         f"empty {out[0]}x{out[1]} output; the output must be at least 1x1")
    return out, scales


def _scale_pair(scale_factor):
    values = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
    if len(values) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                   for v in values):
        raise TypeError(f"scale_factor must be a number or a pair of numbers, "
                        f"got {scale_factor!r}")
    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"scale_factor must be positive and finite, got {scale_factor!r}")
    return values


# --- FCN's bilinear kernels -------------------------------------------------------------------

def bilinear_kernel(kernel_size: int) -> np.ndarray:
    r"""The ``(k, k)`` float64 bilinear (tent) kernel FCN initialises its upscores with.

    ``factor = (k + 1) // 2``, ``center = factor - 1`` for odd k, ``factor - 0.5`` for even k:

    .. math::

        K[i, j] = \Big(1 - \frac{|i - center|}{factor}\Big)
                  \Big(1 - \frac{|j - center|}{factor}\Big).

    >>> bilinear_kernel(4)[0]
    array([0.0625, 0.1875, 0.1875, 0.0625])
    """
    k = _checks.positive_int("kernel_size", kernel_size)
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    tent = 1 - np.abs(np.arange(k) - center) / factor                  # (k,)
    return np.outer(tent, tent)                                        # (k, k)


def bilinear_upsampling_weight(channels: int, kernel_size: int, dtype=np.float32) -> np.ndarray:
    r"""A ``(C, C, k, k)`` transposed-convolution weight that upsamples each channel on its own:
    :func:`bilinear_kernel` on the diagonal ``W[c, c]``, zeros elsewhere (a NumPy array).

    With ``k = 2s``, stride s and padding ``s // 2`` (s even), the transposed convolution
    is ``align_corners=False`` bilinear upsampling by s everywhere except the ``s / 2`` rows
    at the top and bottom and the ``s / 2`` columns at the left and right. Input pixel h
    puts weight ``1 - |src - h|`` on output o, ``src = (o + 0.5)/s - 0.5``: the same tent
    that interpolation uses. Within s/2 of the border ``src`` falls outside
    ``[0, H - 1]``: interpolation clamps (it repeats the border pixel, weight 1), while the
    transposed convolution's missing neighbour is a zero, so it returns
    ``(1 - |src - h|) x[h]``, darker towards the edge. Padding ``s // 2`` is the same as
    computing the full ``(H + 1)s`` output with padding 0 and cropping ``s / 2`` from each
    side.

    >>> from minifcn.ops import conv_transpose2d_forward
    >>> x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    >>> w = bilinear_upsampling_weight(1, 4, dtype=np.float64)
    >>> by_conv, _ = conv_transpose2d_forward(x, w, stride=2, padding=1)      # (1, 1, 8, 8)
    >>> by_interp, _ = upsample_bilinear2d_forward(x, scale_factor=2)
    >>> bool(np.allclose(by_conv[..., 1:-1, 1:-1], by_interp[..., 1:-1, 1:-1]))
    True
    >>> bool(np.allclose(by_conv[..., 0, 1:-1], by_interp[..., 0, 1:-1]))     # 0.75 x
    False
    """
    channels = _checks.positive_int("channels", channels)
    dtype = np.dtype(dtype)
    if dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    k = bilinear_kernel(kernel_size)
    weight = np.zeros((channels, channels) + k.shape, dtype=dtype)     # (C, C, k, k)
    weight[np.arange(channels), np.arange(channels)] = k
    return weight
