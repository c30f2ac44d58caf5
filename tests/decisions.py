"""The discrete decisions of a float32 run, imposed on PyTorch's float64 twin.

A whole FCN at width 1 is not a well-posed float32 comparison on its own. conv1_1 pads by
100, so wide regions of every trunk map hold activations that are equal in exact
arithmetic, and the max-pools there see exact ties. Which element of a tied window wins is
then decided by float32 rounding, and rounding depends on the BLAS kernel the CPU gets
(OpenBLAS's Haswell kernels, used on AMD EPYC, break ties differently from its AVX-512
ones) and on the thread count. Each choice is a valid subgradient, but the gradient goes
to a different pixel, and sums such as conv1_1's bias gradient then move by up to 1.5%
(measured, OPENBLAS_CORETYPE=Haswell: 156,171 pool choices differ from PyTorch float64's,
every one at a window that is an exact tie in float64; no ReLU sign differs).

So the reference takes the float32 run's decisions: :func:`imposing` runs the PyTorch twin
with each ReLU replaced by multiplication with minifcn's mask and each max-pool by a gather
at minifcn's argmax. What remains between the two runs is float32 rounding of one fixed
piecewise-linear function, which :func:`float32_tolerance` bounds.
"""
import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

import minifcn.bench.torch_fcn as torch_fcn_module
from minifcn.backend import asnumpy
from minifcn.nn import Conv2d, ConvTranspose2d, MaxPool2d, ReLU

UNIT_ROUNDOFF = 2.0 ** -24          # float32


def decisions(model):
    """The ReLU masks and max-pool argmaxes of ``model``'s last forward, in forward order."""
    masks = [asnumpy(layer.saved()[0].mask) for _, layer in model.named_modules()
             if isinstance(layer, ReLU)]
    argmaxes = [asnumpy(layer.saved()[0].argmax) for _, layer in model.named_modules()
                if isinstance(layer, MaxPool2d)]
    return masks, argmaxes


class _Decided:
    """Stands in for ``torch.nn.functional`` inside the twin: relu and max_pool2d follow the
    given decisions (and count where PyTorch's own would differ); the rest is torch's."""

    def __init__(self, masks, argmaxes):
        self.masks, self.argmaxes = list(masks), list(argmaxes)
        self.relu_flips, self.pool_flips = 0, 0

    def __getattr__(self, name):
        return getattr(F, name)

    def relu(self, h):
        mask = torch.from_numpy(self.masks.pop(0))
        assert mask.shape == h.shape, f"ReLU mask {tuple(mask.shape)} for {tuple(h.shape)}"
        self.relu_flips += int(((h > 0) != mask).sum())
        return h * mask

    def max_pool2d(self, h, kernel_size, stride, ceil_mode=False):
        y, own = F.max_pool2d(h, kernel_size, stride=stride, ceil_mode=ceil_mode,
                              return_indices=True)
        argmax = torch.from_numpy(self.argmaxes.pop(0).astype(np.int64))  # i*KW + j
        assert argmax.shape == y.shape, f"argmax {tuple(argmax.shape)} for {tuple(y.shape)}"
        _, _, oh, ow = y.shape
        rows = torch.arange(oh)[:, None] * stride + argmax // kernel_size
        cols = torch.arange(ow)[None, :] * stride + argmax % kernel_size
        index = rows * h.shape[3] + cols                          # (N, C, OH, OW) into H*W
        self.pool_flips += int((index != own).sum())
        return h.flatten(2).gather(2, index.flatten(2)).view_as(y)


@contextlib.contextmanager
def imposing(masks, argmaxes):
    """Inside the block, the PyTorch twins of ``tests/torch_fcn.py`` take these decisions;
    yields the stand-in, whose ``relu_flips``/``pool_flips`` count PyTorch's disagreements.
    Every decision must be used, in order and at its shape."""
    decided = _Decided(masks, argmaxes)
    original = torch_fcn_module.F
    torch_fcn_module.F = decided
    try:
        yield decided
    finally:
        torch_fcn_module.F = original
    assert not decided.masks and not decided.argmaxes, "decisions left over"


# Winograd F(4x4, 3x3) computes each output through its transforms B, G and A. Rounding
# errors there are sums of the products' errors: their root-sum-square grows, over the
# direct 3x3 product of nine terms, by sqrt(max(A^2 ((G^2 1 G^2T) o (B^2 1 B^2T)) A^2T) / 9)
# = 31.4 (the corner output of the tile; squares taken element-wise).
WINOGRAD_GROWTH = 31.4


def float32_tolerance(model, x_shape, winograd=False) -> float:
    r"""The relative error float32 rounding may give one whole-network step, by the
    probabilistic analysis of floating-point sums (Higham and Mary, SIAM J. Sci. Comput.
    2019): a sum of K float32 terms errs by about :math:`\sqrt{K}\,u` relative to its
    terms' scale, and errors of successive sums add like independent ones.

    A gradient at conv1_1 is the end of a chain of sums: every layer's forward
    (C*KH*KW terms), every layer's input gradient on the way back (F*KH*KW), then the
    weight gradient's sum over conv1_1's output positions. K is that chain's length, u
    float32's unit roundoff; Winograd layers grow their errors by ``WINOGRAD_GROWTH``.
    """
    k = 0
    for _, layer in model.named_modules():
        if isinstance(layer, (Conv2d, ConvTranspose2d)):
            a, b, kh, kw = layer.weight.shape
            k += (a + b) * kh * kw
    n, _, h, w = x_shape
    pad = model.conv1_1.options["padding"][0]
    k += n * (h + 2 * pad - 2) * (w + 2 * pad - 2)
    return math.sqrt(k) * UNIT_ROUNDOFF * (WINOGRAD_GROWTH if winograd else 1.0)
