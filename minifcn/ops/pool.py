r"""2-D max pooling with its backward: each output is the maximum of one window.

The forward slides a ``KH x KW`` window with stride S over the input padded with P rows and
columns of :math:`-\infty` on each side (padding can never win a maximum), keeps each
window's maximum and remembers *where* it was: the row-major kernel offset
``k = i*KW + j`` of the winning element. The backward needs nothing else: each output
gradient flows to that one input pixel, and pixels that won no window get zero.

Ties go to the first maximum in row-major window order, exactly as PyTorch does (its CPU
and CUDA kernels both update on ``val > maxval || isnan(val)``); a NaN in a window wins
it, so NaNs propagate instead of being silently dropped.

Both paths keep one running maximum and its offset, never a ``KH*KW``-times larger copy of
the input: NumPy loops over the ``KH*KW`` kernel offsets, each a strided slice covering all
outputs at once; CuPy runs one CUDA thread per output forward, and backward one thread per
input pixel that *gathers* from the outputs whose windows contain it (no atomics, so the
result is deterministic and, summed in the same order, equal to the NumPy one).

When the windows tile the input (kernel == stride, no padding: FCN's 2x2 stride-2 pools),
NumPy takes a shorter road, ``_pool_tiles.py``, with the same results bit for bit.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import array_module_of, get_array_module
from ..memory import result as result_array
from .. import _validate as _checks


class MaxPool2dCache(NamedTuple):
    """What ``max_pool2d_backward`` needs: the winners' offsets, not the input."""
    argmax: object          # (N, C, OH, OW) int8 or int32: i*KW + j of each window's maximum
    x_shape: tuple          # (N, C, H, W)
    dtype: object           # x's dtype, which dy must match
    kernel: tuple
    stride: tuple
    padding: tuple


def max_pool2d_output_size(size: int, kernel: int, stride: int | None = None,
                           padding: int = 0, ceil_mode: bool = False) -> int:
    r"""Output length of a max pooling along one axis, by PyTorch's rule.

    ``floor((size + 2P - K) / S) + 1`` in floor mode; in ceil mode the division rounds up,
    ``ceil((size + 2P - K) / S) + 1``, so a partial window at the end (reaching into the
    right padding or beyond it, where everything counts as :math:`-\infty`) gets an output
    too, *unless* that last window would start in the right padding, i.e.
    ``(out - 1)S >= size + P``: then it is dropped. With ``P <= K/2`` every remaining window
    covers at least one input pixel.

    >>> [max_pool2d_output_size(s, 2, 2, ceil_mode=True) for s in (698, 349, 175, 88, 44)]
    [349, 175, 88, 44, 22]
    >>> max_pool2d_output_size(4, 2, 3, padding=1, ceil_mode=True)   # 3rd window would start at 6
    2
    """
    size = _checks.int_at_least("size", size, 0)
    kernel = _checks.int_at_least("kernel", kernel, 1)
    stride = kernel if stride is None else _checks.int_at_least("stride", stride, 1)
    padding = _checks.int_at_least("padding", padding, 0)
    span = size + 2 * padding - kernel
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


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
    order ``(i, j)`` (a NaN counts as a maximum), as in PyTorch.
    """
    _checks.image_batch("x", x)
    kernel, stride, padding, out = _pool_geometry(x.shape, kernel_size, stride, padding,
                                                  ceil_mode)
    if x.shape[0] == 0:                                  # an empty batch, as in PyTorch
        y, argmax = _empty_batch(x, kernel, out)
    elif get_array_module(x) is np:
        from . import _pool_tiles
        tiled = _pool_tiles.applies(kernel, stride, padding)
        y, argmax = (_pool_tiles.forward if tiled else _forward_cpu)(x, kernel, stride, padding,
                                                                     out)
    else:
        from ._cuda import max_pool2d_forward_gpu
        y, argmax = max_pool2d_forward_gpu(x, kernel, stride, padding, out,
                                           _index_dtype(kernel))
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
    is smaller than the kernel). Ties were broken towards the first maximum in row-major
    window order, as PyTorch breaks them, so the whole gradient goes to that one element.
    """
    _checks.cache_of(cache, MaxPool2dCache, "max_pool2d_forward")
    out_shape = tuple(cache.x_shape[:2]) + tuple(cache.argmax.shape[2:])
    _checks.grad_shape(dy, out_shape, cache.dtype)
    array_module_of(dy=dy, cache=cache.argmax)
    geometry = (cache.kernel, cache.stride, cache.padding)
    if dy.shape[0] == 0:
        return get_array_module(dy).zeros(cache.x_shape, dtype=dy.dtype)
    if get_array_module(dy) is np:
        from . import _pool_tiles
        backward = _pool_tiles.backward if _pool_tiles.applies(*geometry) else _backward_cpu
        return backward(dy, cache.argmax, cache.x_shape, *geometry)
    from ._cuda import max_pool2d_backward_gpu
    return max_pool2d_backward_gpu(dy, cache.argmax, cache.x_shape, *geometry)


# --- Arguments ---------------------------------------------------------------------------------

def pool_options(kernel_size, stride, padding, ceil_mode):
    """Validate the options as PyTorch does; return ``kernel, stride, padding`` as pairs and
    ``ceil_mode`` as a bool. Shared with ``nn.MaxPool2d``, which checks at construction."""
    kernel = _checks.pair("kernel_size", kernel_size, minimum=1)
    stride = kernel if stride is None else _checks.pair("stride", stride, minimum=1)
    padding = _checks.pair("padding", padding, minimum=0)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r} (the signature is "
                        "max_pool2d_forward(x, kernel_size, stride, padding, ceil_mode))")
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"padding must be at most half the kernel size "
                         f"({kernel[0] // 2}, {kernel[1] // 2}) for kernel_size {kernel}, "
                         f"got {padding}")
    return kernel, stride, padding, bool(ceil_mode)


def _pool_geometry(x_shape, kernel_size, stride, padding, ceil_mode):
    """Validate as PyTorch does; return ``(kh, kw), (sh, sw), (ph, pw), (oh, ow)``."""
    kernel, stride, padding, ceil_mode = pool_options(kernel_size, stride, padding, ceil_mode)
    out = tuple(max_pool2d_output_size(x_shape[2 + a], kernel[a], stride[a], padding[a],
                                       ceil_mode) for a in range(2))
    if min(out) < 1:
        raise ValueError(f"output size {out[0]}x{out[1]} is too small: kernel_size {kernel} is "
                         f"larger than the padded input ({x_shape[2] + 2 * padding[0]}x"
                         f"{x_shape[3] + 2 * padding[1]} from input {x_shape[2]}x{x_shape[3]} "
                         f"and padding {padding})")
    return kernel, stride, padding, out


def _empty_batch(x, kernel, out):
    """y and argmax (0, C, OH, OW) for an empty batch (the kernels assume N >= 1)."""
    xp = get_array_module(x)
    shape = tuple(x.shape[:2]) + tuple(out)
    return xp.empty(shape, dtype=x.dtype), xp.empty(shape, dtype=_index_dtype(kernel))


def _index_dtype(kernel):
    """The smallest integer type that holds every kernel offset ``i*KW + j``."""
    return np.dtype(np.int8) if kernel[0] * kernel[1] <= 127 else np.dtype(np.int32)


# --- NumPy: a loop over the KH*KW kernel offsets, each a strided slice ------------------------

def _offset_slices(i, j, x_shape, stride, padding, out):
    """For kernel offset (i, j): the block of outputs whose window puts (i, j) inside x, and
    the strided slice of x those outputs read there. Outputs outside the block would read
    the -inf padding, which never wins, so they are skipped instead of padded."""
    H, W = x_shape[2:]
    (p0, p1), rows = _axis_slices(i, H, stride[0], padding[0], out[0])
    (q0, q1), cols = _axis_slices(j, W, stride[1], padding[1], out[1])
    return (Ellipsis, slice(p0, p1), slice(q0, q1)), (Ellipsis, rows, cols)


def _axis_slices(offset, size, stride, padding, out):
    """Outputs ``p`` in ``[p0, p1)`` read input index ``p*stride - padding + offset`` in
    ``[0, size)``; return ``(p0, p1)`` and the slice of those input indices."""
    first = padding - offset                       # p*stride >= first
    p0 = max(0, -(-first // stride))               # ceil(first / stride), at least 0
    p1 = min(out, (size - 1 + padding - offset) // stride + 1)
    if p1 <= p0:          # no output reads x at this offset: an empty slice, whose stop
        return (p0, p0), slice(0, 0)      # below would be negative and wrap around
    start = p0 * stride - padding + offset
    return (p0, p1), slice(start, start + (p1 - p0 - 1) * stride + 1, stride)


def _first_inside(kernel, stride, padding, out):
    """The offset ``i*KW + j`` of each window's first element inside x (top-left, where the
    window overlaps the padding): the argmax when nothing in the window beats -inf."""
    i0 = np.maximum(padding[0] - np.arange(out[0]) * stride[0], 0)    # (OH,)
    j0 = np.maximum(padding[1] - np.arange(out[1]) * stride[1], 0)    # (OW,)
    return i0[:, None] * kernel[1] + j0[None, :]                      # (OH, OW)


def _forward_cpu(x, kernel, stride, padding, out):
    N, C = x.shape[:2]
    y = result_array(np, (N, C) + out, x.dtype, "max_pool2d forward")  # (N, C, OH, OW)
    y.fill(-np.inf)
    argmax = result_array(np, (N, C) + out, _index_dtype(kernel), "max_pool2d forward (argmax)")
    argmax[...] = _first_inside(kernel, stride, padding, out)
    # The offsets k = i*KW + j are visited in increasing order, so a window's argmax only
    # ever moves up to the current k: max(argmax, k * wins) updates it without a masked copy.
    for k, outputs, inputs in _offsets(x.shape, kernel, stride, padding, out):
        best, candidate = y[outputs], x[inputs]                        # (N, C, oh, ow) views
        wins = candidate > best                                        # strict: first max wins
        np.maximum(argmax[outputs], wins * argmax.dtype.type(k), out=argmax[outputs])
        np.maximum(best, candidate, out=best)
    if np.isnan(y).any():
        _nan_argmax(x, argmax, kernel, stride, padding, out)
    return y, argmax


def _nan_argmax(x, argmax, kernel, stride, padding, out):
    """PyTorch's ``val > maxval || isnan(val)``: a window holding NaNs points at its last
    NaN (``>`` alone stops moving once the running maximum is NaN)."""
    for k, outputs, inputs in _offsets(x.shape, kernel, stride, padding, out):
        wins = np.isnan(x[inputs])
        np.maximum(argmax[outputs], wins * argmax.dtype.type(k), out=argmax[outputs])


def _backward_cpu(dy, argmax, x_shape, kernel, stride, padding):
    """Scatter dy onto the winners, offset by offset: in each strided slice every input
    pixel appears once, so ``+=`` is exact, and the order of k is fixed: deterministic."""
    out = tuple(argmax.shape[2:])
    overlapping = stride[0] < kernel[0] or stride[1] < kernel[1]
    dx = result_array(np, x_shape, dy.dtype, "max_pool2d backward", zeros=True)  # (N, C, H, W)
    for k, outputs, inputs in _offsets(x_shape, kernel, stride, padding, out):
        routed = np.where(argmax[outputs] == k, dy[outputs], dy.dtype.type(0))
        if overlapping:
            dx[inputs] += routed                                      # (N, C, oh, ow)
        else:
            dx[inputs] = routed           # windows are disjoint: each pixel is written once
    return dx


def _offsets(x_shape, kernel, stride, padding, out):
    """Yield ``(k, outputs, inputs)`` for each kernel offset in row-major order."""
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            yield (i * kernel[1] + j,) + _offset_slices(i, j, x_shape, stride, padding, out)
