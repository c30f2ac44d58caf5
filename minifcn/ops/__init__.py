r"""The math of every layer: stateless functional pairs.

Each op is a pair ``name_forward(x, ..., options) -> (y, cache)`` and
``name_backward(dy, cache) -> grads``, with the grads in the order of the forward's
differentiable inputs. The cache is a small ``NamedTuple`` holding exactly what the
backward needs. Arguments, semantics and weight layouts follow ``torch.nn.functional``.

The public functions here validate their arguments once and hand the computation to the
dispatcher (:mod:`.dispatch`). The math itself, written to be read, is in
``minifcn/ops/reference/``; ``fast/`` holds faster code for the same functions, each path
tested against the reference. ``set_algorithm("reference")`` runs the reference
everywhere; ``explain(op, ...)`` says which code runs for a call, and why.

Symbols used in the docstrings, defined once here:

=========  ==============================================================
N          batch size
C, F       input channels, output channels (filters)
H, W       input height and width
OH, OW     output height and width
KH, KW     kernel height and width
S, P, D    stride, zero padding, dilation (each a pair: S_H, S_W, ...)
x_pad      x with P zeros added on each side of H and W
dy         gradient of the loss with respect to the op's output y
=========  ==============================================================
"""
from . import pieces  # noqa: F401  (the references, before the fast paths)
from . import fast  # noqa: F401  (registers the fast paths)
from .activation import (DropoutCache, ReLUCache, dropout_backward, dropout_forward,
                         relu_backward, relu_forward)
from .conv import Conv2dCache, conv2d_backward, conv2d_forward
from .conv_transpose import (ConvTranspose2dCache, conv_transpose2d_backward,
                             conv_transpose2d_forward)
from .crop import CropCache, crop_backward, crop_forward
from .concat import ConcatCache, concat_backward, concat_forward
from .average_pool import (AdaptiveAvgPool2dCache, adaptive_avg_pool2d_backward,
                           adaptive_avg_pool2d_forward)
from .norm import BatchNorm2dCache, batch_norm2d_backward, batch_norm2d_forward
from .im2col import col2im, conv_output_size, conv_transpose_output_size, im2col
from .loss import (SoftmaxCrossEntropyCache, log_softmax, softmax,
                   softmax_cross_entropy_backward, softmax_cross_entropy_forward)
from .pool import (MaxPool2dCache, max_pool2d_backward, max_pool2d_forward,
                   max_pool2d_output_size)
from .dispatch import (get_algorithm, get_conv_algorithm, set_algorithm, set_conv_algorithm,
                       using)
from .explain import explain
from .upsample import (Upsample2dCache, bilinear_kernel, bilinear_upsampling_weight,
                       upsample_bilinear2d_backward, upsample_bilinear2d_forward)

__all__ = [
    "ReLUCache", "relu_forward", "relu_backward",
    "DropoutCache", "dropout_forward", "dropout_backward",
    "CropCache", "crop_forward", "crop_backward",
    "ConcatCache", "concat_forward", "concat_backward",
    "AdaptiveAvgPool2dCache", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "BatchNorm2dCache", "batch_norm2d_forward", "batch_norm2d_backward",
    "Conv2dCache", "conv2d_forward", "conv2d_backward",
    "ConvTranspose2dCache", "conv_transpose2d_forward", "conv_transpose2d_backward",
    "im2col", "col2im", "conv_output_size", "conv_transpose_output_size",
    "SoftmaxCrossEntropyCache", "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward", "softmax", "log_softmax",
    "Upsample2dCache", "upsample_bilinear2d_forward", "upsample_bilinear2d_backward",
    "bilinear_kernel", "bilinear_upsampling_weight",
    "MaxPool2dCache", "max_pool2d_forward", "max_pool2d_backward", "max_pool2d_output_size",
    "set_algorithm", "get_algorithm", "using", "explain",
    "set_conv_algorithm", "get_conv_algorithm",
]
