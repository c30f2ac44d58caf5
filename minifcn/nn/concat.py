"""``Concat``: channel concatenation as a layer; its backward returns one gradient per input."""
from __future__ import annotations

from ..ops.concat import concat_backward, concat_forward
from .module import Module


class Concat(Module):
    """``Concat()(a, b, ...)`` is ``torch.cat([a, b, ...], dim=1)``; ``backward(dy)``
    returns the tuple ``(da, db, ...)``, dy split into the inputs' channel ranges."""

    def forward(self, *arrays):
        y, cache = concat_forward(list(arrays))
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        return concat_backward(dy, cache)
