"""``ReLU`` and ``Dropout``: parameter-free layers around ``ops.activation``."""
from __future__ import annotations

from ..ops.activation import (as_generator, check_dropout_p, dropout_backward, dropout_forward,
                              relu_backward, relu_forward)
from .module import Module


class ReLU(Module):
    """``y = max(x, 0)``, like ``torch.nn.ReLU`` (never in place). See
    :func:`minifcn.ops.relu_forward`."""

    def forward(self, x):
        y, cache = relu_forward(x)
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        return relu_backward(dy, cache)


class Dropout(Module):
    """Element-wise inverted dropout, like ``torch.nn.Dropout``: in training mode each
    element is zeroed with probability ``p`` and the rest are scaled by ``1/(1-p)``; in
    ``eval()`` mode it is the identity. See :func:`minifcn.ops.dropout_forward`.

    Parameters
    ----------
    p : float in [0, 1), the probability of zeroing an element (default 0.5, as in FCN).
    rng : int seed, ``numpy.random.Generator`` or None (fresh entropy); for CuPy inputs a
        ``cupy.random.Generator`` draws the mask on the GPU. An int seeds a new Generator
        here, at construction: every forward then draws a fresh mask from it, and two
        layers built with the same seed draw the same sequence of masks.

    Attributes
    ----------
    rng : what each forward passes to ``dropout_forward`` as its ``rng``. Reseed the layer
        with ``layer.rng = numpy.random.default_rng(0)``. Assigning an *int* instead,
        ``layer.rng = 0``, fixes the mask: ``dropout_forward`` then builds a new generator
        from that seed at every call, so every forward draws the same mask.

    Notes
    -----
    **Gradient-checking dropout.** A checker calls the forward many times and expects the
    same function every time, but a training-mode dropout draws a new mask at each call;
    ``check_module`` then reports that the forward is not repeatable ("no hidden
    randomness") and the gradients disagree. Fix the mask first::

        layer = Dropout(0.5)
        layer.rng = 0                         # an int: the same mask at every forward
        check_module(layer, x).passed         # True

    or check the functional pair with an int seed among its inputs::

        check_function(dropout_forward, dropout_backward, [x, 0.5, True, 0])

    In ``eval()`` mode the layer is the identity and checks as it is.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_dropout_p(p)
        self.rng = as_generator(rng)

    def forward(self, x):
        y, cache = dropout_forward(x, self.p, self.training, self.rng)
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        return dropout_backward(dy, cache)

    def extra_repr(self):
        return f"p={self.p}"
