r"""Global average pooling, ``adaptive_avg_pool2d`` to a 1x1 output, with its backward.

DeepLabV3's image-pooling branch averages each channel over the whole image, so that one
feature sees everything; ResNet's classifier does the same before its FC layer. Only the
1x1 output is offered (``torch.nn.functional.adaptive_avg_pool2d(x, 1)``); other sizes
average uneven windows and are not needed here.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate as _checks
from ..backend import array_module_of
from . import dispatch


class AdaptiveAvgPool2dCache(NamedTuple):
    x_shape: tuple          # (N, C, H, W)
    dtype: object


def adaptive_avg_pool2d_forward(x, output_size=1):
    r"""Average each (n, c) plane: like ``torch.nn.functional.adaptive_avg_pool2d(x, 1)``.

    Parameters
    ----------
    x : array (N, C, H, W), float32 or float64
    output_size : 1 or (1, 1), the only size offered

    Returns
    -------
    y : array (N, C, 1, 1)
    cache : AdaptiveAvgPool2dCache

    Notes
    -----
    .. math:: y[n, c, 0, 0] = \frac{1}{HW} \sum_{h, w} x[n, c, h, w]
    """
    _checks.image_batch("x", x)
    if output_size not in (1, (1, 1), [1, 1]) or isinstance(output_size, bool):
        raise ValueError(f"output_size must be 1 or (1, 1) (global average pooling, the only "
                         f"size offered), got {output_size!r}")
    call = dispatch.Call(dispatch.device_kind(x), x.dtype, tuple(x.shape), out=(1, 1))
    y = dispatch.run("adaptive_avg_pool2d.forward", call, x)
    return y, AdaptiveAvgPool2dCache(tuple(x.shape), x.dtype)


def adaptive_avg_pool2d_backward(dy, cache: AdaptiveAvgPool2dCache):
    r"""Gradient of :func:`adaptive_avg_pool2d_forward` with respect to x.

    Parameters
    ----------
    dy : array (N, C, 1, 1)
    cache : AdaptiveAvgPool2dCache

    Returns
    -------
    dx : array (N, C, H, W)

    Notes
    -----
    Every pixel enters its plane's mean with weight 1/(HW):

    .. math:: dx[n, c, h, w] = \frac{dy[n, c, 0, 0]}{HW}
    """
    _checks.cache_of(cache, AdaptiveAvgPool2dCache, "adaptive_avg_pool2d_forward")
    _checks.grad_shape(dy, cache.x_shape[:2] + (1, 1), cache.dtype)
    call = dispatch.Call(dispatch.device_kind(dy), dy.dtype, cache.x_shape, out=(1, 1))
    return dispatch.run("adaptive_avg_pool2d.backward", call, dy, cache.x_shape)
