"""``SoftmaxCrossEntropyLoss``: FCN's per-pixel classification loss as a layer."""
from __future__ import annotations

import numpy as np

from ..backend import to_device
from .. import _validate as _checks
from ..ops.loss import (loss_options, softmax_cross_entropy_backward,
                        softmax_cross_entropy_forward)
from .module import Module


class SoftmaxCrossEntropyLoss(Module):
    """Softmax cross-entropy over the class axis, like ``torch.nn.CrossEntropyLoss`` with
    integer targets.

    Parameters
    ----------
    weight : array (C,), float32 or float64, NumPy or CuPy, or a sequence (taken as
        float32), or None. Not learned: it has no gradient and is not a ``Parameter``, but
        ``to(device, dtype)`` moves and casts it with the module.
    ignore_index : int, 255 by default (PASCAL VOC's void label; PyTorch uses -100)
    reduction : ``"mean"`` (default), ``"sum"`` or ``"none"``

    ``forward(logits, target)`` returns the loss; ``backward(dloss=1.0)`` returns
    ``dlogits``, so ``loss_fn.backward()`` starts the backward pass of a network. The math,
    and what "mean" does when every pixel is ignored (0, not PyTorch's NaN), are in
    :func:`minifcn.ops.softmax_cross_entropy_forward`.
    """

    def __init__(self, weight=None, ignore_index=255, reduction="mean"):
        self.reduction, self.ignore_index = loss_options(reduction, ignore_index)
        if weight is not None and not hasattr(weight, "dtype"):
            try:
                weight = np.asarray(weight, dtype=np.float32)
            except (TypeError, ValueError):
                raise TypeError(f"weight must be an array or a sequence of numbers, one per "
                                f"class, got {weight!r}") from None
        if weight is not None:
            _checks.float_array("weight", weight, ndim=1, what=" (C,)")
        self.weight = weight

    def forward(self, logits, target):
        loss, cache = softmax_cross_entropy_forward(logits, target, self.weight,
                                                    self.ignore_index, self.reduction)
        self.save_for_backward(cache)
        return loss

    def backward(self, dloss=1.0):
        cache, = self.saved()
        dlogits, _, _ = softmax_cross_entropy_backward(dloss, cache)
        return dlogits

    def to(self, device=None, dtype=None):
        super().to(device=device, dtype=dtype)    # validates device and dtype
        if self.weight is not None:
            if device is not None:
                self.weight = to_device(self.weight, device)
            if dtype is not None:
                self.weight = self.weight.astype(dtype, copy=False)
        return self

    def extra_repr(self):
        weight = "None" if self.weight is None else f"array(shape={tuple(self.weight.shape)})"
        return (f"weight={weight}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}")
