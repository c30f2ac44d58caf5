r"""Element-wise layers: ReLU and (inverted, Caffe-style) dropout.

Both are diagonal maps, so each backward is one element-wise product of ``dy`` with what
the forward cached: a boolean mask (1 byte per element), never a float array. Both accept
arrays of any shape and return new arrays: an output never aliases the input, so a caller
may write into ``y`` or ``dx`` as into any op's output.

FCN puts a ReLU after every convolution of the VGG trunk and an element-wise dropout
(p = 0.5, Caffe's Dropout layer) after ``fc6`` and ``fc7``. Edge cases (NaN, p = 1, the
identity's copy, channel-wise ports) follow PyTorch except where ``docs/compatibility.md``
says otherwise.
"""
from __future__ import annotations

import numbers
import sys
from typing import NamedTuple

import numpy as np

from .. import _validate as _checks
from ..backend import array_module_of, device_of, to_device
from . import dispatch


class ReLUCache(NamedTuple):
    """What ``relu_backward`` needs: where x was positive (bool, x's shape), and x's dtype."""
    mask: object
    dtype: object


class DropoutCache(NamedTuple):
    """What ``dropout_backward`` needs: the kept elements (bool, x's shape; None when the
    forward was the identity), the scale ``1/(1-p)`` (1.0 for the identity), x's shape and
    dtype (to check ``dy``)."""
    mask: object
    scale: float
    shape: tuple
    dtype: object


# --- ReLU ----------------------------------------------------------------------------------

def relu_forward(x):
    r"""Rectified linear unit, like ``torch.nn.functional.relu``.

    Parameters
    ----------
    x : array of any shape, float32 or float64 (NumPy or CuPy)

    Returns
    -------
    y : array, x's shape, dtype and device (a new array)
    cache : ReLUCache for :func:`relu_backward`

    Notes
    -----
    .. math::

        y_i = \max(x_i, 0)

    NaN stays NaN. The cache is the boolean mask ``x > 0`` (1 byte per element), not y, so
    a caller writing into y cannot corrupt the backward.
    """
    _checks.float_array("x", x)
    y, mask = dispatch.run("relu.forward", _call(x), x)
    return y, ReLUCache(mask, x.dtype)


def relu_backward(dy, cache: ReLUCache):
    r"""Gradient of :func:`relu_forward` with respect to x.

    Parameters
    ----------
    dy : array, the forward output's shape and dtype
    cache : ReLUCache from the forward

    Returns
    -------
    dx : array, x's shape and dtype

    Notes
    -----
    .. math::

        dx_i = dy_i \cdot \mathbb{1}[x_i > 0]

    so the gradient is 0 at ``x_i = 0`` (where ReLU has no derivative) and at a NaN
    ``x_i``; ``docs/compatibility.md`` compares this with PyTorch.
    """
    _checks.cache_of(cache, ReLUCache, "relu_forward")
    _checks.grad_shape(dy, cache.mask.shape, cache.dtype)
    array_module_of(dy=dy, x=cache.mask)
    return dispatch.run("relu.backward", _call(dy), dy, cache.mask)


def _call(x) -> dispatch.Call:
    return dispatch.Call(dispatch.device_kind(x), x.dtype, tuple(x.shape))


# --- Dropout -------------------------------------------------------------------------------

def dropout_forward(x, p=0.5, training=True, rng=None):
    r"""Element-wise inverted dropout, like ``torch.nn.functional.dropout`` and Caffe's
    Dropout layer (the one FCN uses after ``fc6`` and ``fc7``).

    Parameters
    ----------
    x : array of any shape, float32 or float64 (NumPy or CuPy)
    p : float in [0, 1), the probability that an element is zeroed (``p = 1`` is refused).
    training : bool. False gives the identity (no mask is drawn or stored), as does p = 0.
    rng : where the mask comes from:

        * an int seed: a fresh ``numpy.random.default_rng(seed)`` at every call, so **the
          same seed gives the same mask at every call** -- what a gradient check needs;
        * a ``numpy.random.Generator``: drawn from it (it advances: a new mask each call);
        * None: fresh OS entropy;
        * for CuPy x, a ``cupy.random.Generator`` (``cupy.random.default_rng(seed)``):
          drawn on the GPU.

        Seeds and NumPy generators draw float32 uniforms on the host, so a seed gives the
        same mask for NumPy and CuPy inputs and for float32 and float64; a CuPy generator
        (no host draw, no transfer) is its own stream, a different mask for the same seed.

    Returns
    -------
    y : array, x's shape, dtype and device (a new array, also for the identity)
    cache : DropoutCache for :func:`dropout_backward`

    Notes
    -----
    In training with ``p > 0``, with a mask ``m_i ~ Bernoulli(1 - p)`` drawn independently
    per element (``m_i = [u_i >= p]``, ``u_i`` uniform on [0, 1)):

    .. math::

        y_i = \frac{m_i\, x_i}{1 - p}, \qquad \mathbb{E}[y_i] = x_i,

    so the expected activation is the same in training and in evaluation, where
    ``y = x``. The scale is applied in x's dtype: ``y_i = x_i \cdot \mathrm{fl}(1/(1-p))``
    for kept elements.
    """
    _checks.float_array("x", x)
    p = check_dropout_p(p)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {training!r}")
    _check_rng(rng)
    if not training or p == 0.0:
        return x.copy(), DropoutCache(None, 1.0, tuple(x.shape), x.dtype)
    keep = _keep_mask(x, p, rng)                    # bool, x's shape, x's device
    scale = 1.0 / (1.0 - p)
    y = dispatch.run("dropout.forward", _call(x), x, keep, scale)
    return y, DropoutCache(keep, scale, tuple(x.shape), x.dtype)


def dropout_backward(dy, cache: DropoutCache):
    r"""Gradient of :func:`dropout_forward` with respect to x.

    Parameters
    ----------
    dy : array, the forward output's shape and dtype
    cache : DropoutCache from the forward

    Returns
    -------
    dx : array, x's shape and dtype (a new array, also for the identity)

    Notes
    -----
    With the forward's mask ``m`` (the same draw: backward never draws):

    .. math::

        dx_i = \frac{m_i\, dy_i}{1 - p},

    and ``dx = dy`` when the forward was the identity (evaluation, or p = 0).
    """
    _checks.cache_of(cache, DropoutCache, "dropout_forward")
    _checks.grad_shape(dy, cache.shape, cache.dtype)
    if cache.mask is None:
        return dy.copy()
    array_module_of(dy=dy, x=cache.mask)
    return dispatch.run("dropout.backward", _call(dy), dy, cache.mask, cache.scale)


def check_dropout_p(p) -> float:
    """Validate a dropout probability: a real number in [0, 1); returns it as a float."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a float in [0, 1), got {p!r} ({type(p).__name__})")
    p = float(p)
    if not 0.0 <= p < 1.0:                          # NaN fails here too
        hint = (" (p = 1 would zero every element and stop every gradient; PyTorch returns "
                "zeros for it, minifcn refuses it)") if p == 1.0 else ""
        raise ValueError(f"p must be in [0, 1), got {p!r}{hint}")
    return p


def as_generator(rng):
    """A generator from ``rng``: a NumPy or CuPy Generator is returned as is; an int seed or
    None makes a new ``numpy.random.Generator`` (what ``nn.Dropout`` keeps)."""
    _check_rng(rng)
    return rng if _is_generator(rng) else np.random.default_rng(rng)


# --- The random mask -----------------------------------------------------------------------

def _keep_mask(x, p, rng):
    """``u >= p`` for float32 uniforms u in x's shape, as a bool array on x's device."""
    if _is_cupy_generator(rng):
        if device_of(x) == "cpu":
            raise ValueError("rng is a cupy.random.Generator but x is a NumPy array; pass "
                             "a numpy.random.Generator or an int seed for NumPy inputs")
        keep = rng.random(x.shape, dtype=np.float32) >= p       # drawn on the GPU
        array_module_of(x=x, rng=keep)                          # the generator's GPU is x's
        return keep
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    keep = generator.random(x.shape, dtype=np.float32) >= p     # drawn on the host
    return to_device(keep, device_of(x))                        # no copy for NumPy x


def _check_rng(rng) -> None:
    if rng is None or _is_generator(rng):
        return
    if not isinstance(rng, numbers.Integral) or isinstance(rng, (bool, np.bool_)):
        raise TypeError("rng must be an int seed, a numpy.random.Generator, None, or (for "
                        f"CuPy inputs) a cupy.random.Generator, got {type(rng).__name__}")
    if rng < 0:
        raise ValueError(f"rng must be a non-negative int seed, got {rng!r}")


def _is_generator(rng) -> bool:
    return isinstance(rng, np.random.Generator) or _is_cupy_generator(rng)


def _is_cupy_generator(rng) -> bool:
    # If cupy was never imported, no cupy generator can exist: no import needed to decide.
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(rng, cupy.random.Generator)
