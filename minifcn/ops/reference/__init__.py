r"""The readable reference implementation of every op: the code a learner reads, and the code
``minifcn.ops.set_algorithm('reference')`` runs.

One file per op family, forward and backward a few lines apart, each written once against
``xp = get_array_module(x)`` (NumPy or CuPy), with the shape of every reshape in a comment.
There is no validation here: arguments arrive validated and normalised by the public
functions in ``minifcn/ops/`` (geometry as ``(h, w)`` tuples of ints). There is no chunking,
no memory pool and no fast path either; those live beside this code and are tested against it.

=============  =============================================================
im2col.py      im2col, col2im: a convolution as one matrix product
conv.py        conv2d and conv_transpose2d, each the other's adjoint
pool.py        max pooling, PyTorch's tie and NaN rules
upsample.py    bilinear resizing, ``y = A_h x A_w^T``
loss.py        softmax, log_softmax, softmax cross-entropy
activation.py  relu, dropout
crop.py        spatial crop
norm.py        batch normalisation, training and eval mode
concat.py      channel concatenation and its split
=============  =============================================================

``pool.py`` also holds global average pooling (``adaptive_avg_pool2d`` to 1x1).
"""
from . import activation, concat, conv, crop, im2col, loss, norm, pool, upsample

__all__ = ["activation", "concat", "conv", "crop", "im2col", "loss", "norm", "pool",
           "upsample"]
