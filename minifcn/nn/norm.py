"""``BatchNorm2d``: batch normalisation with learned scale and shift and running statistics."""
from __future__ import annotations

import numpy as np

from .. import _validate as _checks
from ..ops.norm import batch_norm2d_backward, batch_norm2d_forward
from .module import Buffer, Module, Parameter


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel, like ``torch.nn.BatchNorm2d``.

    Parameters
    ----------
    num_features : int, the channel count C
    eps : float, added to the variance (1e-5)
    momentum : float in [0, 1] (0.1), or None for a cumulative average over the batches seen
    affine : bool; learned ``weight`` (gamma, ones) and ``bias`` (beta, zeros)
    track_running_stats : bool; without, eval mode also normalises by batch statistics
    dtype : float32 or float64

    ``running_mean`` (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (int64 0)
    are buffers: in ``state_dict`` under those names, as in PyTorch, but not parameters.
    ``train()`` normalises by the batch and updates them; ``eval()`` normalises by them.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        C = _checks.positive_int("num_features", num_features)
        _checks.float_dtype("dtype", dtype)
        dtype = np.dtype(dtype)
        self.num_features, self.eps, self.momentum = C, eps, momentum
        self.weight = Parameter(np.ones(C, dtype)) if affine else None
        self.bias = Parameter(np.zeros(C, dtype)) if affine else None
        self.track_running_stats = bool(track_running_stats)
        if self.track_running_stats:
            self.running_mean = Buffer(np.zeros(C, dtype))
            self.running_var = Buffer(np.ones(C, dtype))
            self.num_batches_tracked = Buffer(np.zeros((), np.int64))

    def forward(self, x):
        track = self.track_running_stats
        momentum = self.momentum
        if self.training and track:
            self.num_batches_tracked.data = self.num_batches_tracked.data + 1
            if momentum is None:                      # cumulative average
                momentum = 1.0 / float(self.num_batches_tracked.data)
        weight, bias = ((self.weight.data, self.bias.data) if self.weight is not None
                        else (None, None))
        y, cache = batch_norm2d_forward(
            x, self.running_mean.data if track else None,
            self.running_var.data if track else None, weight, bias,
            training=self.training or not track, momentum=momentum if momentum is not None
            else 0.0, eps=self.eps)
        self.save_for_backward(cache)
        return y

    def backward(self, dy):
        cache, = self.saved()
        dx, dweight, dbias = batch_norm2d_backward(dy, cache)
        if self.weight is not None:
            self.weight.accumulate(dweight, copy=False)
            self.bias.accumulate(dbias, copy=False)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.weight is not None}, track_running_stats={self.track_running_stats}")
