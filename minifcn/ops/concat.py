r"""Channel concatenation, ``concat`` (``torch.cat(arrays, dim=1)``), and its backward.

U-Net joins each decoder stage with the cropped encoder features of the same scale; ASPP
joins its five branches before the 1x1 projection. The backward splits dy back into the
inputs' channel ranges (``reference/concat.py``).
"""
from __future__ import annotations

from typing import NamedTuple

from .. import _validate as _checks
from ..backend import array_module_of
from . import dispatch


class ConcatCache(NamedTuple):
    channels: tuple         # C_k of each input
    shape: tuple            # y's shape (N, sum C_k, H, W)
    dtype: object


def concat_forward(arrays):
    r"""Concatenate (N, C_k, H, W) arrays along the channels: ``torch.cat(arrays, dim=1)``.

    Parameters
    ----------
    arrays : list or tuple of arrays (N, C_k, H, W), one dtype and device, equal N, H, W

    Returns
    -------
    y : array (N, sum C_k, H, W)
    cache : ConcatCache

    Notes
    -----
    .. math:: y[n, c_k + c] = x_k[n, c], \qquad c_k = \sum_{j < k} C_j
    """
    if not isinstance(arrays, (list, tuple)) or not arrays:
        raise TypeError(f"arrays must be a non-empty list or tuple of (N, C, H, W) arrays, "
                        f"got {type(arrays).__name__}"
                        + (" (empty)" if isinstance(arrays, (list, tuple)) else ""))
    for k, a in enumerate(arrays):
        _checks.image_batch(f"arrays[{k}]", a)
    first = arrays[0]
    array_module_of(**{f"arrays[{k}]": a for k, a in enumerate(arrays)})
    _checks.same_dtype("arrays[0]", first, **{f"arrays[{k}]": a for k, a in enumerate(arrays)})
    for k, a in enumerate(arrays):
        if (a.shape[0],) + tuple(a.shape[2:]) != (first.shape[0],) + tuple(first.shape[2:]):
            raise ValueError(f"arrays must agree in N, H and W (only C may differ): arrays[0] "
                             f"has shape {tuple(first.shape)}, arrays[{k}] {tuple(a.shape)}")
    channels = tuple(int(a.shape[1]) for a in arrays)
    call = dispatch.Call(dispatch.device_kind(first), first.dtype, tuple(first.shape))
    y = dispatch.run("concat.forward", call, list(arrays))
    return y, ConcatCache(channels, tuple(y.shape), y.dtype)


def concat_backward(dy, cache: ConcatCache):
    r"""Gradients of :func:`concat_forward`: a tuple with one (N, C_k, H, W) array per input.

    Notes
    -----
    Each input's channels were copied into y unchanged, so each gets its slice of dy:

    .. math:: dx_k[n, c] = dy[n, c_k + c]
    """
    _checks.cache_of(cache, ConcatCache, "concat_forward")
    _checks.grad_shape(dy, cache.shape, cache.dtype)
    call = dispatch.Call(dispatch.device_kind(dy), dy.dtype, cache.shape)
    return dispatch.run("concat.backward", call, dy, cache.channels)
