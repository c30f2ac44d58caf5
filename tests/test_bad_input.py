"""Bad input, everywhere: every public function and module refuses it at its boundary.

One table, one row per bad input: the call, the exception type, and a pattern the message
must match, naming the argument, what was expected and what came. Each refusal must come
from minifcn's own checks, never from deep inside NumPy (no broadcast error, no bare
IndexError). Then the edge inputs that must be *accepted* (empty batches, non-contiguous
arrays, 1x1 images). Devices, non-finite logits and memory are in test_bad_input_more.py.
"""
import functools
import os

import numpy as np
import pytest

import minifcn
from minifcn import gradcheck, inference, metrics, nn, ops, optim
from minifcn.data import transforms
from minifcn.models import FCN8s

_rng = np.random.default_rng(8)


def f32(*shape):
    return _rng.standard_normal(shape).astype(np.float32)


X = f32(2, 3, 8, 8)                                  # (N, C, H, W)
W = f32(4, 3, 3, 3)                                  # conv weight (F, C, KH, KW)
WT = f32(3, 4, 4, 4)                                 # transposed conv weight (C_in, C_out, ..)
LOGITS = f32(2, 3, 4, 4)
TARGET = _rng.integers(0, 3, (2, 4, 4))
RGB = np.zeros((8, 8, 3), np.uint8)
LABEL = np.zeros((8, 8), np.int64)


# (y, cache) of each forward on good input, for the backward rows
CONV = ops.conv2d_forward(X, W, padding=1)
CONVT = ops.conv_transpose2d_forward(X, WT, stride=2, padding=1)
POOL = ops.max_pool2d_forward(X, 2)
UP = ops.upsample_bilinear2d_forward(X, scale_factor=2)
RELU = ops.relu_forward(X)
DROP = ops.dropout_forward(X, 0.5, rng=0)
CROP = ops.crop_forward(X, 1, 4)
LOSS = ops.softmax_cross_entropy_forward(LOGITS, TARGET)


@functools.lru_cache(maxsize=None)
def fcn():
    """A tiny FCN-8s (width 1/64, 3 classes), built once."""
    return FCN8s(n_class=3, width=1 / 64, rng=0).eval()


def fcn_after_forward():
    model = fcn()
    model(f32(1, 3, 16, 16))
    return model


def with_grad(grad):
    """A parameter whose .grad was set by hand to ``grad``, and an SGD over it."""
    p = nn.Parameter(f32(3))
    p.grad = grad
    return optim.SGD([p], lr=0.1)


def row(call, error, match, id):
    return pytest.param(call, error, match, id=id)


OPS = [
    row(lambda: ops.conv2d_forward(X[0], W), ValueError,
        r"x must be 4-D \(N, C, H, W\), got shape \(3, 8, 8\)", "conv2d-x-3d"),
    row(lambda: ops.conv2d_forward(X.astype(np.float16), W), TypeError,
        r"x must be float32 or float64, got float16", "conv2d-x-float16"),
    row(lambda: ops.conv2d_forward(X.astype(np.int32), W), TypeError,
        r"x must be float32 or float64, got int32", "conv2d-x-int"),
    row(lambda: ops.conv2d_forward(X > 0, W), TypeError,
        r"x must be float32 or float64, got bool", "conv2d-x-bool"),
    row(lambda: ops.conv2d_forward(X.tolist(), W), TypeError,
        r"x must be a NumPy or CuPy array, got list", "conv2d-x-list"),
    row(lambda: ops.conv2d_forward(f32(2, 3, 0, 8), W, padding=1), ValueError,
        r"x must have at least one channel and a positive height and width .*"
        r"got shape \(2, 3, 0, 8\)", "conv2d-x-zero-height"),
    row(lambda: ops.conv2d_forward(f32(2, 0, 8, 8), f32(4, 0, 3, 3)), ValueError,
        r"x must have at least one channel .*got shape \(2, 0, 8, 8\)", "conv2d-x-no-channels"),
    row(lambda: ops.conv2d_forward(X, f32(0, 3, 3, 3)), ValueError,
        r"weight must have no empty dimension \(F, C, KH, KW\), got shape \(0, 3, 3, 3\)",
        "conv2d-weight-no-filters"),
    row(lambda: ops.conv2d_forward(f32(2, 5, 8, 8), W), ValueError,
        r"weight expects 3 input channels .* but x has 5 \(shape \(2, 5, 8, 8\)\)",
        "conv2d-channel-mismatch"),
    row(lambda: ops.conv2d_forward(X.astype(np.float64), W), TypeError,
        r"weight has dtype float32 but x has float64", "conv2d-dtype-mismatch"),
    row(lambda: ops.conv2d_forward(X, W, f32(5)), ValueError,
        r"bias must have shape \(4,\) to match weight \(4, 3, 3, 3\), got \(5,\)",
        "conv2d-bias-length"),
    row(lambda: ops.conv2d_forward(X, W, f32(1, 4)), ValueError,
        r"bias must be 1-D, got shape \(1, 4\)", "conv2d-bias-2d"),
    row(lambda: ops.conv2d_forward(f32(1, 3, 2, 2), W), ValueError,
        r"kernel \(extent 3x3 with dilation\) is larger than the padded input \(2x2 from "
        r"input 2x2", "conv2d-kernel-larger-than-input"),
    row(lambda: ops.conv2d_forward(X, W, stride=0), ValueError,
        r"stride must be positive, got 0", "conv2d-stride-0"),
    row(lambda: ops.conv2d_forward(X, W, stride=1.5), TypeError,
        r"stride must be an int or a pair of ints, got 1.5", "conv2d-stride-float"),
    row(lambda: ops.conv2d_forward(X, W, padding=-1), ValueError,
        r"padding must be at least 0, got -1", "conv2d-padding-negative"),
    row(lambda: ops.conv2d_backward(f32(2, 4, 7, 7), CONV[1]), ValueError,
        r"dy must have the forward output's shape \(2, 4, 8, 8\), got \(2, 4, 7, 7\)",
        "conv2d-dy-shape"),
    row(lambda: ops.conv2d_backward(CONV[0].astype(np.float64), CONV[1]), TypeError,
        r"dy has dtype float64 but the forward ran in float32", "conv2d-dy-dtype"),
    row(lambda: ops.conv2d_backward(CONV[0].astype(np.float16), CONV[1]), TypeError,
        r"dy must be float32 or float64, got float16", "conv2d-dy-float16"),
    row(lambda: ops.conv2d_backward(CONV[0].tolist(), CONV[1]), TypeError,
        r"dy must be a NumPy or CuPy array, got list", "conv2d-dy-list"),
    row(lambda: ops.conv2d_backward(CONV[0], None), TypeError,
        r"cache must be the Conv2dCache that conv2d_forward returned, got NoneType",
        "conv2d-cache-none"),
    row(lambda: ops.conv2d_backward(CONV[0], POOL[1]), TypeError,
        r"cache must be the Conv2dCache .*got MaxPool2dCache", "conv2d-cache-of-another-op"),
    row(lambda: ops.conv_transpose2d_forward(f32(1, 3, 0, 8), WT, stride=2), ValueError,
        r"x must have at least one channel and a positive height .*got shape \(1, 3, 0, 8\)",
        "convT-x-zero-height"),
    row(lambda: ops.conv_transpose2d_forward(f32(2, 4, 8, 8), WT), ValueError,
        r"weight expects 3 input channels .*\(C_in, C_out, KH, KW\)\) but x has 4",
        "convT-channel-mismatch"),
    row(lambda: ops.conv_transpose2d_forward(X, WT, stride=2, output_padding=2), ValueError,
        r"output_padding must be smaller than either stride or dilation, got "
        r"output_padding=\(2, 2\)", "convT-output-padding"),
    row(lambda: ops.conv_transpose2d_forward(X[:1, :, :1, :1], WT, padding=5), ValueError,
        r"padding \(5, 5\) removes more than the 1x1 input produces.*-6x-6",
        "convT-padding-too-large"),
    row(lambda: ops.conv_transpose2d_backward(f32(2, 4, 3, 3), CONVT[1]), ValueError,
        r"dy must have the forward output's shape \(2, 4, 16, 16\), got \(2, 4, 3, 3\)",
        "convT-dy-shape"),
    row(lambda: ops.conv_transpose2d_backward(CONVT[0], CONV[1]), TypeError,
        r"cache must be the ConvTranspose2dCache .*got Conv2dCache", "convT-cache"),
    row(lambda: ops.max_pool2d_forward(X[0], 2), ValueError,
        r"x must be 4-D \(N, C, H, W\), got shape \(3, 8, 8\)", "pool-x-3d"),
    row(lambda: ops.max_pool2d_forward(X.astype(np.int64), 2), TypeError,
        r"x must be float32 or float64, got int64", "pool-x-int"),
    row(lambda: ops.max_pool2d_forward(f32(1, 3, 0, 8), 2), ValueError,
        r"x must have at least one channel and a positive height .*\(1, 3, 0, 8\)",
        "pool-x-zero-height"),
    row(lambda: ops.max_pool2d_forward(f32(1, 3, 1, 1), 3), ValueError,
        r"output size 0x0 is too small: kernel_size \(3, 3\) is larger than the padded "
        r"input", "pool-kernel-larger-than-input"),
    row(lambda: ops.max_pool2d_forward(X, 2, padding=2), ValueError,
        r"padding must be at most half the kernel size \(1, 1\) .*got \(2, 2\)",
        "pool-padding"),
    row(lambda: ops.max_pool2d_forward(X, 2, 2, 0, 1), TypeError,
        r"ceil_mode must be a bool, got 1", "pool-ceil-mode-int"),
    row(lambda: ops.max_pool2d_backward(f32(2, 3, 5, 4), POOL[1]), ValueError,
        r"dy must have the forward output's shape \(2, 3, 4, 4\), got \(2, 3, 5, 4\)",
        "pool-dy-shape"),
    row(lambda: ops.max_pool2d_backward(POOL[0].astype(np.float64), POOL[1]), TypeError,
        r"dy has dtype float64 but the forward ran in float32", "pool-dy-dtype"),
    row(lambda: ops.max_pool2d_backward(POOL[0], ()), TypeError,
        r"cache must be the MaxPool2dCache that max_pool2d_forward returned, got tuple",
        "pool-cache"),
    row(lambda: ops.upsample_bilinear2d_forward(X[0], scale_factor=2), ValueError,
        r"x must be 4-D \(N, C, H, W\), got shape \(3, 8, 8\)", "upsample-x-3d"),
    row(lambda: ops.upsample_bilinear2d_forward(X.astype(np.float16), size=4), TypeError,
        r"x must be float32 or float64, got float16", "upsample-x-float16"),
    row(lambda: ops.upsample_bilinear2d_forward(X, size=0), ValueError,
        r"size must be positive, got 0", "upsample-size-0"),
    row(lambda: ops.upsample_bilinear2d_forward(X, scale_factor=float("nan")), ValueError,
        r"scale_factor must be positive and finite, got nan", "upsample-scale-nan"),
    row(lambda: ops.upsample_bilinear2d_forward(X, size=4, scale_factor=2), ValueError,
        r"give exactly one of size and scale_factor, got size=4 and scale_factor=2",
        "upsample-size-and-scale"),
    row(lambda: ops.upsample_bilinear2d_backward(f32(2, 3, 4, 4), UP[1]), ValueError,
        r"dy must have the forward output's shape \(2, 3, 16, 16\), got \(2, 3, 4, 4\)",
        "upsample-dy-shape"),
    row(lambda: ops.upsample_bilinear2d_backward(UP[0], RELU[1]), TypeError,
        r"cache must be the Upsample2dCache .*got ReLUCache", "upsample-cache"),
    row(lambda: ops.relu_forward(X.astype(np.float16)), TypeError,
        r"x must be float32 or float64, got float16", "relu-float16"),
    row(lambda: ops.relu_forward(1.0), TypeError,
        r"x must be a NumPy or CuPy array, got float", "relu-python-float"),
    row(lambda: ops.relu_backward(f32(2, 3), RELU[1]), ValueError,
        r"dy must have the forward output's shape \(2, 3, 8, 8\), got \(2, 3\)",
        "relu-dy-shape"),
    row(lambda: ops.relu_backward(RELU[0], DROP[1]), TypeError,
        r"cache must be the ReLUCache that relu_forward returned, got DropoutCache",
        "relu-cache"),
    row(lambda: ops.dropout_forward(np.arange(3)), TypeError,
        r"x must be float32 or float64, got int64", "dropout-x-int"),
    row(lambda: ops.dropout_forward(X, 1.0), ValueError,
        r"p must be in \[0, 1\), got 1.0", "dropout-p-1"),
    row(lambda: ops.dropout_backward(f32(2), DROP[1]), ValueError,
        r"dy must have the forward output's shape \(2, 3, 8, 8\), got \(2,\)",
        "dropout-dy-shape"),
    row(lambda: ops.dropout_backward(DROP[0], RELU[1]), TypeError,
        r"cache must be the DropoutCache .*got ReLUCache", "dropout-cache"),
    row(lambda: ops.crop_forward(X, 0, 9), ValueError,
        r"the crop does not fit in x: offset \(0, 0\) \+ size \(9, 9\) = \(9, 9\) exceeds "
        r"x's spatial size \(8, 8\)", "crop-larger-than-input"),
    row(lambda: ops.crop_forward(X, 5, 4), ValueError,
        r"the crop does not fit in x: offset \(5, 5\) \+ size \(4, 4\) = \(9, 9\)",
        "crop-offset-plus-size"),
    row(lambda: ops.crop_forward(X, -1, 4), ValueError,
        r"offset must be at least 0, got -1", "crop-offset-negative"),
    row(lambda: ops.crop_forward(X, 0, 2.5), TypeError,
        r"size must be an int or a pair of ints, got 2.5", "crop-size-float"),
    row(lambda: ops.crop_forward(X.astype(np.int32), 0, 4), TypeError,
        r"x must be float32 or float64, got int32", "crop-x-int"),
    row(lambda: ops.crop_backward(f32(2, 3, 5, 5), CROP[1]), ValueError,
        r"dy must have the forward output's shape \(2, 3, 4, 4\), got \(2, 3, 5, 5\)",
        "crop-dy-shape"),
    row(lambda: ops.crop_backward(CROP[0], {}), TypeError,
        r"cache must be the CropCache that crop_forward returned, got dict", "crop-cache"),
    row(lambda: ops.softmax_cross_entropy_forward(f32(3), np.array([0])), ValueError,
        r"logits must be at least 2-D, \(N, C\) or \(N, C, H, W\), got shape \(3,\)",
        "loss-logits-1d"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS.astype(np.float16), TARGET),
        TypeError, r"logits must be float32 or float64, got float16", "loss-logits-float16"),
    row(lambda: ops.softmax_cross_entropy_forward(f32(2, 0, 4, 4), TARGET), ValueError,
        r"logits must have at least one class .*got shape \(2, 0, 4, 4\)",
        "loss-logits-no-classes"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET + 0.5), TypeError,
        r"target must hold integer class indices .*got dtype float64",
        "loss-target-fractional"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET.astype(np.float32)),
        TypeError, r"target must hold integer class indices .*got dtype float32",
        "loss-target-float-whole"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET > 0), TypeError,
        r"target must hold integer class indices .*got dtype bool", "loss-target-bool"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET.tolist()), TypeError,
        r"target must be a NumPy or CuPy array, got list", "loss-target-list"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET + 3), ValueError,
        r"target has 32 label\(s\) outside \[0, 3\) that are not ignore_index=255: the "
        r"first is \d at index \(0, 0, 0\)", "loss-target-out-of-range"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET - 3), ValueError,
        r"target has \d+ label\(s\) outside \[0, 3\) .*the first is -\d", "loss-target-negative"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET[:, None]), ValueError,
        r"target must have shape \(2, 4, 4\) to match logits \(2, 3, 4, 4\) .*got "
        r"\(2, 1, 4, 4\)", "loss-target-channel-axis"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET, weight=f32(4)), ValueError,
        r"weight must have shape \(3,\), one entry per class .*got \(4,\)", "loss-weight-length"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET, weight=np.ones(3)),
        TypeError, r"weight has dtype float64 but logits has float32", "loss-weight-dtype"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET, reduction="avg"), ValueError,
        r"reduction must be one of 'mean', 'sum', 'none', got 'avg'", "loss-reduction"),
    row(lambda: ops.softmax_cross_entropy_forward(LOGITS, TARGET, ignore_index=1.5), TypeError,
        r"ignore_index must be an int, got 1.5", "loss-ignore-index-float"),
    row(lambda: ops.softmax_cross_entropy_backward(np.ones(3, np.float32), LOSS[1]),
        ValueError, r"dloss must have the loss's shape \(\) \(reduction='mean'\), got \(3,\)",
        "loss-dloss-shape"),
    row(lambda: ops.softmax_cross_entropy_backward("1", LOSS[1]), TypeError,
        r"dloss must be a NumPy or CuPy array, got str", "loss-dloss-str"),
    row(lambda: ops.softmax_cross_entropy_backward(np.ones((), np.float64), LOSS[1]),
        TypeError, r"dloss has dtype float64 but the forward ran in float32", "loss-dloss-dtype"),
    row(lambda: ops.softmax_cross_entropy_backward(1.0, CONV[1]), TypeError,
        r"cache must be the SoftmaxCrossEntropyCache .*got Conv2dCache", "loss-cache"),
    row(lambda: ops.softmax(np.arange(3)), TypeError,
        r"x must be float32 or float64, got int64", "softmax-int"),
    row(lambda: ops.softmax(LOGITS, axis=4), ValueError,
        r"axis must be in \[-4, 4\) for x of shape \(2, 3, 4, 4\), got 4", "softmax-axis"),
    row(lambda: ops.log_softmax([1.0, 2.0]), TypeError,
        r"x must be a NumPy or CuPy array, got list", "log-softmax-list"),
    row(lambda: ops.im2col(X[0], 3), ValueError,
        r"x must be 4-D \(N, C, H, W\), got shape \(3, 8, 8\)", "im2col-x-3d"),
    row(lambda: ops.col2im(f32(27, 10), (1, 3, 8, 8), 3), ValueError,
        r"col must have shape \(27, 36\) for x_shape \(1, 3, 8, 8\), got \(27, 10\)",
        "col2im-col-shape"),
    row(lambda: ops.col2im(f32(27, 36), "abcd", 3), ValueError,
        r"x_shape must be \(N, C, H, W\), four ints >= 0, got 'abcd'", "col2im-x-shape-str"),
    row(lambda: ops.col2im(f32(27, 36), (3, 8, 8), 3), ValueError,
        r"x_shape must be \(N, C, H, W\), four ints >= 0, got \(3, 8, 8\)", "col2im-x-shape-3"),
    row(lambda: ops.conv_output_size(8, 3, 0), ValueError,
        r"stride must be at least 1, got 0", "conv-output-size-stride-0"),
    row(lambda: ops.conv_output_size(8, 0), ValueError,
        r"kernel must be at least 1, got 0", "conv-output-size-kernel-0"),
    row(lambda: ops.conv_transpose_output_size(8, 3, 2, 0, -1), ValueError,
        r"output_padding must be at least 0, got -1", "convT-output-size-output-padding"),
    row(lambda: ops.max_pool2d_output_size(8, 2, 0), ValueError,
        r"stride must be at least 1, got 0", "pool-output-size-stride-0"),
    row(lambda: ops.max_pool2d_output_size(8.0, 2), TypeError,
        r"size must be an int, got 8.0", "pool-output-size-float"),
    row(lambda: ops.bilinear_kernel(0), ValueError,
        r"kernel_size must be positive, got 0", "bilinear-kernel-0"),
    row(lambda: ops.bilinear_upsampling_weight(3, 4, np.int32), TypeError,
        r"dtype must be float32 or float64, got int32", "bilinear-weight-int"),
]

NN = [
    row(lambda: nn.Conv2d(3, 4, 3).backward(CONV[0]), RuntimeError,
        r"Conv2d.backward\(\) was called before forward\(\)", "Conv2d-backward-first"),
    row(lambda: nn.Conv2d(3, 4, 3)(f32(2, 5, 8, 8)), ValueError,
        r"weight expects 3 input channels .*but x has 5", "Conv2d-wrong-channels"),
    row(lambda: nn.Conv2d(3, 4, 3)(f32(2, 3, 8, 8).astype(np.float64)), TypeError,
        r"weight has dtype float32 but x has float64", "Conv2d-float64-input"),
    row(lambda: nn.Conv2d(0, 4, 3), ValueError,
        r"in_channels must be positive, got 0", "Conv2d-in-channels-0"),
    row(lambda: nn.Conv2d(3, 4, 3, dtype=np.float16), TypeError,
        r"dtype must be float32 or float64, got float16", "Conv2d-dtype-float16"),
    row(lambda: nn.ConvTranspose2d(3, 4, 4, stride=2)(f32(2, 5, 8, 8)), ValueError,
        r"weight expects 3 input channels .*but x has 5", "ConvTranspose2d-wrong-channels"),
    row(lambda: nn.MaxPool2d(2).backward(POOL[0]), RuntimeError,
        r"MaxPool2d.backward\(\) was called before forward\(\)", "MaxPool2d-backward-first"),
    row(lambda: nn.ReLU().backward(RELU[0]), RuntimeError,
        r"ReLU.backward\(\) was called before forward\(\)", "ReLU-backward-first"),
    row(lambda: nn.Crop(5)(X, (4, 4)), ValueError,
        r"the crop does not fit in x: offset \(5, 5\)", "Crop-too-large"),
    row(lambda: nn.Crop(0)(X, np.zeros(3)), ValueError,
        r"like must be an array with at least 2 dimensions .*got shape \(3,\)", "Crop-like-1d"),
    row(lambda: nn.UpsamplingBilinear2d(), ValueError,
        r"give exactly one of size and scale_factor, got size=None", "Upsampling-no-size"),
    row(lambda: nn.SoftmaxCrossEntropyLoss()(LOGITS, TARGET + 0.5), TypeError,
        r"target must hold integer class indices .*got dtype float64", "Loss-target-float"),
    row(lambda: nn.SoftmaxCrossEntropyLoss(weight=["a"]), TypeError,
        r"weight must be an array or a sequence of numbers, one per class, got \['a'\]",
        "Loss-weight-strings"),
    row(lambda: nn.SoftmaxCrossEntropyLoss().backward(), RuntimeError,
        r"SoftmaxCrossEntropyLoss.backward\(\) was called before forward\(\)",
        "Loss-backward-first"),
    row(lambda: nn.Sequential(nn.ReLU(), 3), TypeError,
        r"Sequential argument 1 must be a Module, got int", "Sequential-not-a-module"),
    row(lambda: nn.Conv2d(3, 4, 3).to("gpu"), ValueError,
        r"device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'", "Module-to-bad-device"),
    row(lambda: nn.Conv2d(3, 4, 3).to(dtype=np.int32), TypeError,
        r"dtype must be float32 or float64, got int32", "Module-to-int"),
    row(lambda: nn.Conv2d(3, 4, 3).load_state_dict({"weight": f32(2, 2), "bias": f32(4)}),
        ValueError, r"wrong shape for weight: expected shape \(4, 3, 3, 3\), got \(2, 2\)",
        "load-state-dict-shape"),
    row(lambda: nn.Parameter("abc"), TypeError,
        r"data must be float32 or float64, got <U3", "Parameter-str"),
    row(lambda: nn.Parameter([1, 2]), TypeError,
        r"data must be float32 or float64, got int64", "Parameter-int-list"),
    row(lambda: nn.Parameter(f32(3)).accumulate(f32(4)), ValueError,
        r"gradient of shape \(4,\) does not match the parameter's shape \(3,\)",
        "Parameter-accumulate-shape"),
]

MODELS = [
    row(lambda: fcn()(f32(1, 1, 16, 16)), ValueError,
        r"fcn8s takes RGB images \(N, 3, H, W\), got x of shape \(1, 1, 16, 16\)",
        "fcn-1-channel"),
    row(lambda: fcn()(f32(1, 16, 16, 3)), ValueError,
        r"fcn8s takes RGB images \(N, 3, H, W\), got x of shape \(1, 16, 16, 3\)",
        "fcn-channels-last"),
    row(lambda: fcn()(f32(3, 16, 16)), ValueError,
        r"x must be 4-D \(N, 3, H, W\), got shape \(3, 16, 16\)", "fcn-3d-image"),
    row(lambda: fcn()(f32(1, 3, 0, 16)), ValueError,
        r"x must have at least one channel and a positive height and width \(N, 3, H, W\), "
        r"got shape \(1, 3, 0, 16\)", "fcn-empty-image"),
    row(lambda: fcn()(f32(1, 3, 16, 16).astype(np.float16)), TypeError,
        r"x must be float32 or float64, got float16", "fcn-float16"),
    row(lambda: fcn()(np.zeros((1, 3, 16, 16), np.uint8)), TypeError,
        r"x must be float32 or float64, got uint8", "fcn-uint8"),
    row(lambda: fcn()(f32(1, 3, 16, 16).astype(np.float64)), TypeError,
        r"the model \(fcn8s\) has dtype float32 but x has float64; cast one of them",
        "fcn-float64-into-float32"),
    row(lambda: fcn()(f32(1, 3, 4, 4).tolist()), TypeError,
        r"x must be a NumPy or CuPy array, got list", "fcn-list"),
    row(lambda: FCN8s(n_class=3, width=1 / 64).backward(f32(1, 3, 16, 16)), RuntimeError,
        r"FCN8s.backward\(\) was called before forward\(\)", "fcn-backward-first"),
    row(lambda: fcn_after_forward().backward(f32(1, 4, 16, 16)), ValueError,
        r"dy must have the forward output's shape \(1, 3, 16, 16\), got \(1, 4, 16, 16\)",
        "fcn-dy-classes"),
    row(lambda: fcn_after_forward().backward(f32(1, 3, 16, 16).astype(np.float64)), TypeError,
        r"dy has dtype float64 but the forward ran in float32", "fcn-dy-dtype"),
    row(lambda: FCN8s(n_class=0, width=1 / 64), ValueError,
        r"n_class must be positive, got 0", "fcn-n-class-0"),
    row(lambda: FCN8s(width=0), ValueError,
        r"width must be a number in \(0, 1\], got 0", "fcn-width-0"),
    row(lambda: FCN8s(width=1 / 64, dropout=1), ValueError,
        r"p must be in \[0, 1\), got 1.0", "fcn-dropout-1"),
    row(lambda: FCN8s(width=1 / 64, dtype=np.float16), TypeError,
        r"dtype must be float32 or float64, got float16", "fcn-dtype-float16"),
]

INFERENCE = [
    row(lambda: minifcn.predict(fcn(), np.zeros((16, 16), np.uint8)), ValueError,
        r"image must be an \(H, W, 3\) uint8 RGB array or an image path, got uint8 array "
        r"of shape \(16, 16\)", "predict-grey"),
    row(lambda: minifcn.predict(fcn(), np.zeros((16, 16, 3), np.float32)), ValueError,
        r"image must be an \(H, W, 3\) uint8 .*got float32 array", "predict-float-image"),
    row(lambda: minifcn.predict(fcn(), np.zeros((16, 16, 4), np.uint8)), ValueError,
        r"image must be an \(H, W, 3\) uint8 .*shape \(16, 16, 4\)", "predict-rgba"),
    row(lambda: minifcn.predict(fcn(), np.zeros((0, 16, 3), np.uint8)), ValueError,
        r"image must have at least one row and column, got shape \(0, 16, 3\)",
        "predict-empty-image"),
    row(lambda: minifcn.predict("fcn8s.npz", RGB), TypeError,
        r"model must be a minifcn.nn.Module .*got str", "predict-model-is-a-path"),
    row(lambda: minifcn.predict(fcn(), RGB, preprocess="caffe"), ValueError,
        r"mode must be one of \('reference', 'imagenet'\), got 'caffe'", "predict-preprocess"),
    row(lambda: inference.colorize(np.zeros((4, 4))), ValueError,
        r"label must be an \(H, W\) integer label map, got float64", "colorize-float-label"),
    row(lambda: inference.colorize(np.full((4, 4), 300)), ValueError,
        r"label holds class 300 but palette has only 256 colours", "colorize-beyond-palette"),
    row(lambda: inference.overlay(RGB, LABEL[:5]), ValueError,
        r"label must be \(H, W\) = \(8, 8\) like the image, got \(5, 8\)", "overlay-shape"),
    row(lambda: inference.overlay(RGB, LABEL, alpha="a"), TypeError,
        r"alpha must be a number in \[0, 1\], got 'a'", "overlay-alpha-str"),
    row(lambda: inference.overlay(RGB, LABEL, alpha=2), ValueError,
        r"alpha must lie in \[0, 1\], got 2", "overlay-alpha-2"),
    row(lambda: inference.class_shares(np.full((4, 4), 3), ["a"]), ValueError,
        r"label holds class 3 but class_names has only 1 names", "class-shares-names"),
]

METRICS = [
    row(lambda: metrics.ConfusionMatrix(0), ValueError,
        r"n_class must be positive, got 0", "cm-n-class-0"),
    row(lambda: metrics.ConfusionMatrix(3).update(np.zeros((4, 4)), LABEL[:4, :4]), TypeError,
        r"pred must be an integer label map, got dtype float64", "cm-float-pred"),
    row(lambda: metrics.ConfusionMatrix(3).update(LABEL, LABEL[:, :5]), ValueError,
        r"pred and target must have the same shape, got pred \(8, 8\) and target \(8, 5\)",
        "cm-shape"),
    row(lambda: metrics.ConfusionMatrix(3).update(LABEL, LABEL + 7), ValueError,
        r"target labels must lie in \[0, 3\) or ignore_index 255, got 7", "cm-out-of-range"),
    row(lambda: metrics.ConfusionMatrix(3).update([[0]], [[0]]), TypeError,
        r"pred must be a NumPy or CuPy integer array, got list", "cm-list"),
    row(lambda: metrics.ConfusionMatrix(3).compute(), ValueError,
        r"no labelled pixels have been counted", "cm-compute-first"),
]

OPTIM = [
    row(lambda: optim.SGD(nn.Conv2d(3, 4, 3).parameters(), lr=-1), ValueError,
        r"lr must be a finite number >= 0, got -1.0", "sgd-lr-negative"),
    row(lambda: optim.SGD(nn.Conv2d(3, 4, 3).parameters(), lr=float("nan")), ValueError,
        r"lr must be a finite number >= 0, got nan", "sgd-lr-nan"),
    row(lambda: optim.SGD([f32(3)], lr=0.1), TypeError,
        r"params must hold minifcn.nn.Parameter objects, got ndarray", "sgd-arrays"),
    row(lambda: optim.Adam(nn.Conv2d(3, 4, 3).parameters(), betas=(0.9,)), TypeError,
        r"betas must be a pair \(beta1, beta2\), got \(0.9,\)", "adam-betas"),
    row(lambda: with_grad(f32(4)).step(), ValueError,
        r"the grad of parameter 0 .*has shape \(4,\), but the parameter has shape \(3,\)",
        "sgd-grad-shape"),
    row(lambda: with_grad(np.zeros(3)).step(), TypeError,
        r"the grad of parameter 0 .*has dtype float64, but the parameter has float32",
        "sgd-grad-dtype"),
]

TRANSFORMS = [
    row(lambda: transforms.normalize(np.zeros((8, 8, 3), np.float32)), TypeError,
        r"image must be uint8 .*got float32", "normalize-float-image"),
    row(lambda: transforms.normalize(np.full((8, 8, 3), 300)), TypeError,
        r"image must be uint8 .*got int64", "normalize-int64-image"),
    row(lambda: transforms.normalize(np.zeros((8, 8), np.uint8)), ValueError,
        r"image must be \(H, W, 3\) RGB, got shape \(8, 8\)", "normalize-grey"),
    row(lambda: transforms.normalize(RGB, "caffe"), ValueError,
        r"mode must be one of \('reference', 'imagenet'\), got 'caffe'", "normalize-mode"),
    row(lambda: transforms.denormalize(np.zeros((8, 8, 3))), ValueError,
        r"x must be \(3, H, W\), got shape \(8, 8, 3\)", "denormalize-hwc"),
    row(lambda: transforms.random_flip(RGB, LABEL, None), TypeError,
        r"rng must be a numpy.random.Generator .*got NoneType", "flip-rng"),
    row(lambda: transforms.random_flip(RGB, np.full((8, 8), 0.5), _rng), TypeError,
        r"label must hold integer class indices .*got dtype float64", "flip-float-label"),
    row(lambda: transforms.random_flip(RGB, LABEL[:, :7], _rng), ValueError,
        r"label must be \(H, W\) = \(8, 8\) like the image, got shape \(8, 7\)",
        "flip-label-shape"),
    row(lambda: transforms.random_scale_crop(RGB, LABEL, _rng, scale=1.0), TypeError,
        r"scale must be a pair of numbers \(low, high\), got 1.0", "scale-crop-scale-number"),
    row(lambda: transforms.random_scale_crop(RGB, LABEL, _rng, scale=(2, 1)), ValueError,
        r"scale must be \(low, high\) with 0 < low <= high < inf, got \(2, 1\)",
        "scale-crop-scale-order"),
    row(lambda: transforms.random_scale_crop(RGB, LABEL, _rng, crop=0), ValueError,
        r"crop must be positive, got 0", "scale-crop-crop-0"),
    row(lambda: transforms.random_scale_crop(RGB[:0], LABEL[:0], _rng), ValueError,
        r"image must have at least one row and column, got shape \(0, 8, 3\)",
        "scale-crop-empty"),
    row(lambda: transforms.collate([]), ValueError,
        r"batch must hold at least one \(image, label\) item, got none", "collate-empty"),
    row(lambda: transforms.collate([X[0]]), TypeError,
        r"batch\[0\] must be an \(image, label\) pair, got ndarray", "collate-not-pairs"),
    row(lambda: transforms.collate([(X[0], np.full((8, 8), 0.5))]), TypeError,
        r"batch\[0\] label must hold integer class indices .*got dtype float64",
        "collate-float-label"),
    row(lambda: transforms.collate([(X[0], LABEL), (f32(4, 8, 8), LABEL)]), ValueError,
        r"batch\[1\] image has 4 channels but batch\[0\] has 3", "collate-channels"),
]

GRADCHECK = [
    row(lambda: gradcheck.check_function(3, ops.relu_backward, [X]), TypeError,
        r"forward must be callable, got int", "check-function-forward"),
    row(lambda: gradcheck.check_function(ops.relu_forward, ops.relu_backward, X), TypeError,
        r"inputs must be a list or tuple of forward's arguments, got ndarray",
        "check-function-inputs-array"),
    row(lambda: gradcheck.check_function(ops.relu_forward, ops.relu_backward, [X], eps=0),
        ValueError, r"eps must be a finite number, positive, got 0", "check-function-eps-0"),
    row(lambda: gradcheck.check_function(ops.relu_forward, ops.relu_backward, [X],
                                         rtol=-1), ValueError,
        r"rtol must be a finite number, at least 0, got -1", "check-function-rtol"),
    row(lambda: gradcheck.check_function(ops.relu_forward, ops.relu_backward, [X],
                                         dtype=np.float16), TypeError,
        r"dtype must be float64 \(the default\), float32 or None, got float16",
        "check-function-dtype"),
    row(lambda: gradcheck.check_function(ops.relu_forward, ops.relu_backward, [X],
                                         mode="x"), ValueError,
        r"mode must be one of \('full', 'directional'\), got 'x'", "check-function-mode"),
    row(lambda: gradcheck.check_function(ops.relu_forward, ops.relu_backward, [X],
                                         grad_output=f32(3)), ValueError,
        r"grad_output has shape \(3,\) but forward returned shape \(2, 3, 8, 8\)",
        "check-function-grad-output"),
    row(lambda: gradcheck.check_module(ops.relu_forward, X), TypeError,
        r"module must be a minifcn.nn.Module \(it lacks .*\), got function",
        "check-module-function"),
    row(lambda: gradcheck.numerical_gradient(lambda x: x, np.arange(3), np.ones(3)),
        TypeError, r"numerical_gradient needs a float array x .*got int64",
        "numerical-gradient-int"),
    row(lambda: gradcheck.numerical_gradient(lambda x: x, np.ones(3), np.ones(4)),
        ValueError, r"dy must have the shape of f\(x\), \(3,\), got \(4,\)",
        "numerical-gradient-dy-shape"),
    row(lambda: gradcheck.directional_derivative(lambda x: x, np.ones(3), np.ones(4),
                                                 np.ones(3), 1e-6), ValueError,
        r"direction must have x's shape \(3,\), got \(4,\)", "directional-shape"),
    row(lambda: minifcn.set_workspace_limit("lots"), ValueError,
        r"limit must be a number of bytes or a size such as '256MiB' .*got 'lots'",
        "workspace-limit-str"),
    row(lambda: minifcn.set_workspace_limit(-1), ValueError,
        r"limit must be at least 1 byte, got -1", "workspace-limit-negative"),
]

TABLE = OPS + NN + MODELS + INFERENCE + METRICS + OPTIM + TRANSFORMS + GRADCHECK


@pytest.fixture(autouse=True)
def keep_workspace_limit():
    previous = minifcn.get_workspace_limit()
    yield
    minifcn.set_workspace_limit(previous)


@pytest.mark.filterwarnings("ignore::minifcn.gradcheck.GradcheckPrecisionWarning")
@pytest.mark.parametrize("call, error, match", TABLE)
def test_bad_input_is_refused_by_name(call, error, match):
    with pytest.raises(error, match=match) as caught:
        call()
    raised_in = os.path.normpath(str(caught.traceback[-1].path))
    package = os.path.dirname(os.path.abspath(minifcn.__file__))
    assert raised_in.startswith(package), f"raised outside minifcn, in {raised_in}"



# --- Edge inputs that must be accepted ------------------------------------------------------

EMPTY_BATCH = [
    pytest.param(lambda x: ops.conv2d_forward(x, W, f32(4), padding=1), ops.conv2d_backward,
                 (0, 4, 8, 8), id="conv2d"),
    pytest.param(lambda x: ops.conv_transpose2d_forward(x, WT, stride=2),
                 ops.conv_transpose2d_backward, (0, 4, 18, 18), id="convT-phases"),
    pytest.param(lambda x: ops.conv_transpose2d_forward(x, WT[:, :, :3, :3]),
                 ops.conv_transpose2d_backward, (0, 4, 10, 10), id="convT-col2im"),
    pytest.param(lambda x: ops.max_pool2d_forward(x, 2, ceil_mode=True), ops.max_pool2d_backward,
                 (0, 3, 4, 4), id="pool-tiles"),
    pytest.param(lambda x: ops.max_pool2d_forward(x, 3, 1), ops.max_pool2d_backward,
                 (0, 3, 6, 6), id="pool-overlapping"),
    pytest.param(lambda x: ops.upsample_bilinear2d_forward(x, scale_factor=2),
                 ops.upsample_bilinear2d_backward, (0, 3, 16, 16), id="upsample"),
    pytest.param(ops.relu_forward, ops.relu_backward, (0, 3, 8, 8), id="relu"),
    pytest.param(lambda x: ops.crop_forward(x, 1, 4), ops.crop_backward, (0, 3, 4, 4),
                 id="crop"),
]


@pytest.mark.parametrize("forward, backward, shape", EMPTY_BATCH)
def test_an_empty_batch_gives_empty_results(forward, backward, shape):
    """N = 0 is accepted, as in PyTorch; every gradient is shaped like its input."""
    x = f32(0, 3, 8, 8)
    y, cache = forward(x)
    assert y.shape == shape and y.dtype == x.dtype
    grads = backward(np.zeros_like(y), cache)
    dx = grads[0] if isinstance(grads, tuple) else grads
    assert dx.shape == x.shape and dx.dtype == x.dtype


def test_an_empty_batch_through_the_loss_and_a_model():
    loss, cache = ops.softmax_cross_entropy_forward(f32(0, 3, 4, 4), TARGET[:0])
    assert float(loss) == 0.0                      # Z = 0: the documented 0, not 0/0
    assert ops.softmax_cross_entropy_backward(1.0, cache)[0].shape == (0, 3, 4, 4)
    model = FCN8s(n_class=3, width=1 / 64, rng=0)
    y = model(f32(0, 3, 16, 16))
    assert y.shape == (0, 3, 16, 16)
    assert model.backward(y).shape == (0, 3, 16, 16)


NON_CONTIGUOUS = [
    pytest.param(lambda x: ops.conv2d_forward(x, W, padding=1)[0], id="conv2d"),
    pytest.param(lambda x: ops.conv_transpose2d_forward(x, WT, stride=2)[0], id="convT"),
    pytest.param(lambda x: ops.max_pool2d_forward(x, 2)[0], id="pool"),
    pytest.param(lambda x: ops.upsample_bilinear2d_forward(x, size=5)[0], id="upsample"),
    pytest.param(lambda x: ops.crop_forward(x, 1, 3)[0], id="crop"),
    pytest.param(lambda x: ops.relu_forward(x)[0], id="relu"),
    pytest.param(lambda x: ops.softmax_cross_entropy_forward(x, np.zeros((2, 8, 8), int))[0],
                 id="loss"),
]


@pytest.mark.parametrize("op", NON_CONTIGUOUS)
def test_non_contiguous_input_gives_the_contiguous_result(op):
    wide = f32(2, 3, 8, 16)
    x = wide[..., ::2]                             # (2, 3, 8, 8), strided
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(op(x), op(np.ascontiguousarray(x)))


def test_a_one_pixel_image_is_segmented():
    assert fcn()(f32(1, 3, 1, 1)).shape == (1, 3, 1, 1)
    assert minifcn.predict(fcn(), np.zeros((1, 1, 3), np.uint8)).shape == (1, 1)
