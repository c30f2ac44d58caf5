r"""Spatial crop and its backward: how FCN aligns its skip connections.

FCN pads its input by 100 pixels, so each feature map is larger than the upsampled one it
is added to and shifted against it. Caffe's Crop layer (``axis: 2``) cuts the larger map
down to the smaller one's spatial size at a fixed offset: FCN-16s crops ``score_pool4`` at
offset 5 to ``upscore2``'s size, FCN-8s also crops ``score_pool3`` at offset 9, and the final
upscore is cropped at 19 (FCN-32s/16s/8s: 19, 27, 31) to the image's size.

The backward puts ``dy`` back where the crop came from and zeros everywhere else: the
cropped-away pixels did not reach the output.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate as _checks
from . import dispatch


class CropCache(NamedTuple):
    """What ``crop_backward`` needs: x's shape and dtype, and where the crop sat in x."""
    x_shape: tuple
    dtype: object
    offset: tuple
    size: tuple


def crop_forward(x, offset, size):
    r"""Crop ``x`` spatially: rows ``top .. top + h - 1``, columns ``left .. left + w - 1``.

    Parameters
    ----------
    x : array (N, C, H, W), float32 or float64
    offset : int or (int, int), ``(top, left)``, each at least 0; an int is both
    size : int or (int, int), ``(h, w)``, each at least 1; an int is both.
        ``top + h <= H`` and ``left + w <= W``.

    Returns
    -------
    y : array (N, C, h, w), a new C-contiguous array (not a view of x)
    cache : CropCache for :func:`crop_backward`

    Notes
    -----
    .. math::

        y[n, c, i, j] = x[n, c, \mathrm{top} + i, \mathrm{left} + j],
        \qquad 0 \le i < h,\; 0 \le j < w.

    In PyTorch this is ``x[:, :, top:top + h, left:left + w]``; ``docs/compatibility.md``
    lists the edge cases.
    """
    _checks.float_array("x", x, ndim=4, what=" (N, C, H, W)")
    top, left = _checks.pair("offset", offset, minimum=0)
    h, w = _checks.pair("size", size, minimum=1)
    H, W = x.shape[2:]
    if top + h > H or left + w > W:
        raise ValueError(f"the crop does not fit in x: offset {(top, left)} + size {(h, w)} "
                         f"= {(top + h, left + w)} exceeds x's spatial size {(H, W)} "
                         f"(x has shape {tuple(x.shape)}); reduce offset or size")
    call = dispatch.Call(dispatch.device_kind(x), x.dtype, tuple(x.shape))
    y = dispatch.run("crop.forward", call, x, (top, left), (h, w))
    return y, CropCache(tuple(x.shape), x.dtype, (top, left), (h, w))


def crop_backward(dy, cache: CropCache):
    r"""Gradient of :func:`crop_forward` with respect to x.

    Parameters
    ----------
    dy : array (N, C, h, w), the forward output's shape and dtype
    cache : CropCache from the forward

    Returns
    -------
    dx : array (N, C, H, W), dy padded back with zeros

    Notes
    -----
    .. math::

        dx[n, c, p, q] = \begin{cases}
            dy[n, c, p - \mathrm{top}, q - \mathrm{left}] & \text{inside the crop,} \\
            0 & \text{outside.}
        \end{cases}
    """
    _checks.cache_of(cache, CropCache, "crop_forward")
    N, C = cache.x_shape[:2]
    (top, left), (h, w) = cache.offset, cache.size
    _checks.grad_shape(dy, (N, C, h, w), cache.dtype)
    call = dispatch.Call(dispatch.device_kind(dy), dy.dtype, cache.x_shape)
    return dispatch.run("crop.backward", call, dy, cache.x_shape, (top, left), (h, w))
