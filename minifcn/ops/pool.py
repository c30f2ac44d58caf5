r"""2-D max pooling with its backward: each output is the maximum of one window.

The forward slides a ``KH x KW`` window with stride S over the input padded with P rows and
columns of :math:`-\infty` on each side (padding can never win a maximum), keeps each
window's maximum and remembers *where* it was: the row-major kernel offset
``k = i*KW + j`` of the winning element. The backward needs nothing else: each output
gradient flows to that one input pixel, and pixels that won no window get zero.

Ties go to the first maximum in row-major window order and a NaN wins its window. These and
the other edge cases (ceil mode, padding, empty batches) follow PyTorch; see
``docs/compatibility.md``.

``reference/pool.py`` keeps one running maximum and its offset, looping over the ``KH*KW``
kernel offsets, each a strided slice covering all outputs at once. The fast paths compute
the same bit for bit: without the padded copy (``fast/pool_strided.py``), by pairwise
reduction where the windows tile the input (``fast/pool_tiles.py``: FCN's 2x2 stride-2
pools), and on CuPy one CUDA thread per output forward and one per input pixel backward,
gathering from the windows that contain it (``fast/cuda.py``: no atomics, deterministic).
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate as _checks
from ..backend import array_module_of, get_array_module
from . import dispatch
from .arguments import max_pool2d_output_size, pool_geometry  # noqa: F401 (public here too)
from .reference.pool import index_dtype


class MaxPool2dCache(NamedTuple):
    """What ``max_pool2d_backward`` needs: the winners' offsets, not the input."""
    argmax: object          # (N, C, OH, OW) int8 or int32: i*KW + j of each window's maximum
    x_shape: tuple          # (N, C, H, W)
    dtype: object           # x's dtype, which dy must match
    kernel: tuple
    stride: tuple
    padding: tuple


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    r"""2-D max pooling, like ``torch.nn.functional.max_pool2d`` (no dilation).

    Parameters
    ----------
    x : array (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int, (int, int) or None (the default: stride = kernel_size)
    padding : int or (int, int), at most half the kernel size; padding is :math:`-\infty`.
    ceil_mode : bool; round the output size up instead of down (see
        :func:`max_pool2d_output_size`). FCN's VGG trunk pools 2x2, stride 2, ceil mode.

    Returns
    -------
    y : array (N, C, OH, OW) in x's dtype, ``OH = max_pool2d_output_size(H, KH, SH, PH,
        ceil_mode)`` (floor or ceil of ``(H + 2P - KH) / SH``, plus one); same for OW.
    cache : MaxPool2dCache for :func:`max_pool2d_backward`; it holds an index array of y's
        size (int8 for kernels up to 127 elements), not x.

    Notes
    -----
    .. math::

        y[n, c, p, q] = \max_{0 \le i < KH,\; 0 \le j < KW}
                        x_{pad}[n, c, pS_H + i, qS_W + j],
        \qquad x_{pad} = -\infty \text{ outside } x,

    and ``argmax[n, c, p, q]`` is the offset ``i*KW + j`` of the first maximum in row-major
    order ``(i, j)`` (a NaN counts as a maximum).
    """
    _checks.image_batch("x", x)
    kernel, stride, padding, out = pool_geometry(x.shape, kernel_size, stride, padding,
                                                 ceil_mode)
    if x.shape[0] == 0:                                  # an empty batch, as in PyTorch
        xp = get_array_module(x)
        shape = tuple(x.shape[:2]) + tuple(out)
        y, argmax = xp.empty(shape, dtype=x.dtype), xp.empty(shape, dtype=index_dtype(kernel))
    else:
        call = _call(x, x.shape, kernel, stride, padding, out)
        y, argmax = dispatch.run("max_pool2d.forward", call, x, kernel, stride, padding, out)
    return y, MaxPool2dCache(argmax, tuple(x.shape), x.dtype, kernel, stride, padding)


def max_pool2d_backward(dy, cache: MaxPool2dCache):
    r"""Gradient of :func:`max_pool2d_forward` with respect to x.

    Parameters
    ----------
    dy : array (N, C, OH, OW), the gradient of the loss with respect to y
    cache : MaxPool2dCache from the forward

    Returns
    -------
    dx : array (N, C, H, W), a bare array: x is the only differentiable input.

    Notes
    -----
    Each output depends on its window's winner alone, so its gradient is routed there:

    .. math::

        dx[n, c, h, w] = \sum_{(p, q):\ \mathrm{argmax}[n, c, p, q] = (h + P_H - pS_H)KW
                         + (w + P_W - qS_W)} dy[n, c, p, q],

    a sum over the windows that contain ``(h, w)`` and chose it (several can when the stride
    is smaller than the kernel). A tied window sends its whole gradient to its argmax.
    """
    _checks.cache_of(cache, MaxPool2dCache, "max_pool2d_forward")
    out_shape = tuple(cache.x_shape[:2]) + tuple(cache.argmax.shape[2:])
    _checks.grad_shape(dy, out_shape, cache.dtype)
    array_module_of(dy=dy, cache=cache.argmax)
    if dy.shape[0] == 0:
        return get_array_module(dy).zeros(cache.x_shape, dtype=dy.dtype)
    call = _call(dy, cache.x_shape, cache.kernel, cache.stride, cache.padding,
                 cache.argmax.shape[2:])
    return dispatch.run("max_pool2d.backward", call, dy, cache.argmax, cache.x_shape,
                        cache.kernel, cache.stride, cache.padding)


def _call(like, x_shape, kernel, stride, padding, out) -> dispatch.Call:
    return dispatch.Call(dispatch.device_kind(like), like.dtype, tuple(x_shape), (), kernel,
                         stride, padding, (1, 1), tuple(out))
