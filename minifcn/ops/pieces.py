"""Every piece an op dispatches, with its reference implementation.

A *piece* is one computation with one signature: conv2d's forward, input gradient and weight
gradient are three pieces, since each has its own fast paths. The fast paths are registered
in ``fast/__init__.py``, after these.
"""
from . import dispatch
from .reference import activation, concat, conv, crop, im2col, loss, norm, pool, upsample

REFERENCES = {
    "conv2d.forward": conv.conv2d_forward,
    "conv2d.input_grad": conv.conv2d_input_grad,
    "conv2d.weight_grad": conv.conv2d_weight_grad,
    "conv_transpose2d.forward": conv.conv_transpose2d_forward,
    "conv_transpose2d.backward": conv.conv_transpose2d_backward,
    "im2col": im2col.im2col,
    "col2im": im2col.col2im,
    "max_pool2d.forward": pool.max_pool2d_forward,
    "max_pool2d.backward": pool.max_pool2d_backward,
    "upsample_bilinear2d.forward": upsample.upsample_bilinear2d_forward,
    "upsample_bilinear2d.backward": upsample.upsample_bilinear2d_backward,
    "softmax_cross_entropy.forward": loss.softmax_cross_entropy_forward,
    "softmax_cross_entropy.backward": loss.softmax_cross_entropy_backward,
    "relu.forward": activation.relu_forward,
    "relu.backward": activation.relu_backward,
    "dropout.forward": activation.dropout_forward,
    "dropout.backward": activation.dropout_backward,
    "crop.forward": crop.crop_forward,
    "crop.backward": crop.crop_backward,
    "batch_norm2d.forward": norm.batch_norm2d_forward,
    "batch_norm2d.backward": norm.batch_norm2d_backward,
    "concat.forward": concat.concat_forward,
    "concat.backward": concat.concat_backward,
    "adaptive_avg_pool2d.forward": pool.adaptive_avg_pool2d_forward,
    "adaptive_avg_pool2d.backward": pool.adaptive_avg_pool2d_backward,
}

for _piece, _run in REFERENCES.items():
    dispatch.reference(_piece, _run)
