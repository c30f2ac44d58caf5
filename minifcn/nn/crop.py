"""``Crop``: the spatial crop that aligns FCN's skip connections (Caffe's Crop layer)."""
from __future__ import annotations

from .. import _validate as _checks
from ..ops.crop import crop_backward, crop_forward
from .module import Module


class Crop(Module):
    """Crop ``x`` at a fixed ``offset`` to the spatial size of another map, as FCN does::

        crop = Crop(5)
        score_pool4c = crop(score_pool4, upscore2)    # (N, K, h, w) with h, w = upscore2's
        d_score_pool4 = crop.backward(d_score_pool4c)

    Parameters
    ----------
    offset : int or (int, int), ``(top, left)``, each at least 0.

    ``forward(x, like)`` crops x (N, C, H, W) to ``(h, w)``, taken from ``like``: an array
    whose last two dimensions are (h, w), or an ``(h, w)`` pair (an int is both).
    ``backward(dy)`` returns dx only: ``like`` supplies a size, not values, and gets no
    gradient. To gradient-check the layer pass ``like`` as a pair, so that the checker has
    only x to check: ``check_module(Crop(5), x, (h, w))``. See
    :func:`minifcn.ops.crop_forward`.
    """

    def __init__(self, offset):
        super().__init__()
        self.offset = _checks.pair("offset", offset, minimum=0)

    def forward(self, x, like):
        y, cache = crop_forward(x, self.offset, _size_of(like))
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        return crop_backward(dy, cache)

    def extra_repr(self):
        return f"offset={self.offset}"


def _size_of(like):
    """(h, w) from an array's last two dimensions, or from an int or (h, w) pair."""
    if hasattr(like, "shape"):
        if len(like.shape) < 2:
            raise ValueError("like must be an array with at least 2 dimensions (its last two "
                             f"are the crop's (h, w)) or an (h, w) pair, got shape "
                             f"{tuple(like.shape)}")
        return tuple(int(n) for n in like.shape[-2:])
    try:
        return _checks.pair("like", like, minimum=1)
    except TypeError:
        raise TypeError(f"like must be an array or an (h, w) pair of ints, got {like!r}") \
            from None
