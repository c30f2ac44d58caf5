r"""The ops ``minifcn bench ops`` times: every kind of FCN layer at the shapes FCN-8s gives it
on one input size, each with its minifcn pair, its ``torch.nn.functional`` twin and its work.

The shapes come from the network itself (:func:`minifcn.summary.summarize` of a weightless
FCN-8s), so at 500x500 conv1_1 pads the image by 100 and conv1_2, relu1_1 and pool1 see a
698x698 map, fc6 a 22x22 pool5, and upscore8 turns the 70x70 fused scores into 568x568::

    cases = fcn_cases((500, 500))                 # name -> Case, in the network's order
    y, cache = cases["pool1"].forward(None, **cases["pool1"].inputs(rng, np.float32))

``conv_case`` builds a convolution case of any shape (``benchmarks/bench_conv.py`` times
VGG16's at 224x224 with it).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..ops import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                   conv_transpose2d_forward, crop_backward, crop_forward, dropout_backward,
                   dropout_forward, max_pool2d_backward, max_pool2d_forward, relu_backward,
                   relu_forward, softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                   upsample_bilinear2d_backward, upsample_bilinear2d_forward)
from ..ops.arguments import conv_output_size
from .work import conv_flops, nbytes, transposed_flops

SEED = 20261121
VGG_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
             "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7")
# Every case, in the network's order; ``bilinear`` is the fixed-weight alternative to
# upscore8 (+ crop): the stride-8 scores upsampled straight to the image's size.
OPS = ("conv1_1", "relu1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "conv3_1", "conv3_2",
       "conv3_3", "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6",
       "drop6", "fc7", "upscore2", "upscore8", "crop", "bilinear", "loss")
# The default: each shape once (conv3_3 repeats conv3_2, and so on), and conv2_2, conv3_2,
# conv4_2 left out, which repeat the arithmetic of conv1_2 at half the size (36 GFLOP each).
DEFAULT_OPS = ("conv1_1", "relu1_1", "conv1_2", "pool1", "conv2_1", "conv3_1", "conv4_1",
               "conv5_1", "fc6", "drop6", "fc7", "upscore2", "upscore8", "crop", "bilinear",
               "loss")


def moved(arrays, y) -> int:
    """Bytes the forward must at least read and write: every input and the output."""
    return nbytes(*arrays.values(), y)


def cropped(arrays, y) -> int:
    """A crop reads only the block it keeps and writes it once."""
    return 2 * nbytes(y)


def no_flops(arrays, y):
    """FLOPs are not defined (or not worth counting) for this op: a copy, a compare."""
    return None


class Case(NamedTuple):
    """One op at one shape: its inputs, minifcn's pair, torch's forward, and its work."""
    name: str
    shape: str                 # the table's description of the input and options
    inputs: Callable           # (rng, dtype) -> {name: NumPy array}, the forwards' arguments
    wrt: tuple                 # the inputs the backward differentiates, in its order
    forward: Callable          # minifcn: (mask_rng, **inputs) -> (y, cache)
    backward: Callable         # minifcn: (dy, cache) -> a grad, or a tuple (None: no grad)
    torch_forward: Callable    # (F, **tensors) -> y, F = torch.nn.functional
    flops: Callable = no_flops  # (inputs, y) -> forward FLOPs or None; backward does 2x
    moved: Callable = moved    # (inputs, y) -> bytes the forward reads and writes
    random: bool = False       # a random mask: compare with torch where both kept a value


def normal(**shapes):
    """``inputs(rng, dtype)`` drawing a standard normal array for each named shape."""
    return lambda rng, dtype: {name: rng.standard_normal(shape, np.float32).astype(dtype)
                               for name, shape in shapes.items()}


def conv_inputs(x_shape, w_shape):
    """``inputs(rng, dtype)``: x standard normal, a He-scaled weight, a standard normal bias."""
    def inputs(rng, dtype):
        arrays = normal(x=x_shape, weight=w_shape, bias=w_shape[:1])(rng, dtype)
        arrays["weight"] *= dtype.type(np.sqrt(2.0 / np.prod(w_shape[1:])))
        return arrays
    return inputs


def loss_inputs(logits_shape):
    """``inputs(rng, dtype)``: logits and int64 labels, about 10% of them void (255)."""
    def inputs(rng, dtype):
        logits = rng.standard_normal(logits_shape, np.float32).astype(dtype)
        target = rng.integers(0, logits_shape[1], logits_shape[:1] + logits_shape[2:])
        target[rng.random(target.shape) < 0.1] = 255                 # (N, H, W) int64
        return {"logits": logits, "target": target}
    return inputs


def hw(shape) -> str:
    """A map's spatial size in short: ``"698"`` when square, else ``"698x520"``."""
    h, w = shape[-2:]
    return str(h) if h == w else f"{h}x{w}"


def conv_case(name: str, x_shape, w_shape, stride=1, padding=0) -> Case:
    """conv2d with bias, weight ``w_shape`` (F, C, KH, KW), on an ``x_shape`` input."""
    n_out, C, KH, KW = w_shape
    out = tuple(conv_output_size(s, k, stride, padding) for s, k in zip(x_shape[2:], (KH, KW)))
    geometry = f"{KH}x{KW}" + (f" s{stride}" if stride != 1 else "") + \
        (f" p{padding}" if padding else "")
    return Case(
        name, f"{C}->{n_out} {geometry} {hw(x_shape)}->{hw(out)}", conv_inputs(x_shape, w_shape),
        ("x", "weight", "bias"),
        lambda rng, x, weight, bias: conv2d_forward(x, weight, bias, stride, padding),
        conv2d_backward,
        lambda F, x, weight, bias: F.conv2d(x, weight, bias, stride, padding),
        lambda arrays, y: conv_flops(arrays["x"].shape, w_shape, y.shape[2:]))


def upscore_case(name: str, x_shape, w_shape, stride: int) -> Case:
    """conv_transpose2d without bias (FCN's upscore layers)."""
    out = (np.array(x_shape[2:]) - 1) * stride + np.array(w_shape[2:])
    return Case(
        name, f"{x_shape[1]}x{hw(x_shape)} k{w_shape[2]} s{stride} ->{hw(out)}",
        normal(x=x_shape, weight=w_shape), ("x", "weight"),
        lambda rng, x, weight: conv_transpose2d_forward(x, weight, stride=stride),
        conv_transpose2d_backward,
        lambda F, x, weight: F.conv_transpose2d(x, weight, stride=stride),
        lambda arrays, y: transposed_flops(arrays["x"].shape, w_shape, y.shape[2:]))


class _Net:
    """FCN-8s's layers and the shape of every map it computes on one input size."""

    def __init__(self, size, width, n_class):
        from ..summary import skeleton, summarize   # summary imports this package

        self.model = skeleton("fcn8s", n_class=n_class, width=width)
        self.rows = {row.name: row for row in summarize(self.model, size)}
        self.modules = dict(self.model.named_modules())

    def shape(self, name):
        return self.rows[name].shape

    def input(self, name):
        """The shape of the (first) map layer ``name`` reads."""
        return self.shape(self.rows[name].inputs[0])


def _conv(net, name):
    conv = net.modules[name]
    (stride, _), (padding, _) = conv.options["stride"], conv.options["padding"]
    return conv_case(name, net.input(name), conv.weight.shape, stride, padding)


def _pool(net, name):
    pool = net.modules[name]
    (k, _), (s, _), (p, _), ceil = pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode
    x_shape = net.input(name)
    return Case(name, f"{x_shape[1]}x{hw(x_shape)} k{k} s{s}" + " ceil" * ceil,
                normal(x=x_shape), ("x",),
                lambda rng, x: max_pool2d_forward(x, k, s, p, ceil_mode=ceil),
                max_pool2d_backward,
                lambda F, x: F.max_pool2d(x, k, s, p, ceil_mode=ceil))


def _relu(net, name):
    x_shape = net.input(name)
    return Case(name, f"{x_shape[1]}x{hw(x_shape)}", normal(x=x_shape), ("x",),
                lambda rng, x: relu_forward(x), relu_backward, lambda F, x: F.relu(x))


def _dropout(net, name):
    p, x_shape = net.modules[name].p, net.input(name)
    return Case(name, f"{x_shape[1]}x{hw(x_shape)} p{p:g}", normal(x=x_shape), ("x",),
                lambda rng, x: dropout_forward(x, p, True, rng=rng), dropout_backward,
                lambda F, x: F.dropout(x, p, training=True), random=True)


def _upscore(net, name):
    layer = net.modules[name]
    return upscore_case(name, net.input(name), layer.weight.shape, layer.options["stride"][0])


def _crop(net, name, layer="crop_output"):
    """The crop of upscore8's output to the image (FCN-8s's largest)."""
    x_shape, (top, left) = net.input(layer), net.rows[layer].offset
    size = net.shape(layer)[2:]
    return Case(name, f"{x_shape[1]}x{hw(x_shape)} @{top} ->{hw(size)}", normal(x=x_shape),
                ("x",), lambda rng, x: crop_forward(x, (top, left), size), crop_backward,
                lambda F, x: x[:, :, top:top + size[0], left:left + size[1]].contiguous(),
                moved=cropped)


def _bilinear(net, name):
    x_shape, size = net.input("upscore8"), net.shape("input")[2:]
    return Case(name, f"{x_shape[1]}x{hw(x_shape)} ->{hw(size)}", normal(x=x_shape), ("x",),
                lambda rng, x: upsample_bilinear2d_forward(x, size=size),
                upsample_bilinear2d_backward,
                lambda F, x: F.interpolate(x, size=size, mode="bilinear", align_corners=False))


def _loss(net, name):
    shape = net.shape("crop_output")                                # (N, n_class, H, W)
    return Case(name, f"{shape[1]}x{hw(shape)} 10% void", loss_inputs(shape), ("logits",),
                lambda rng, logits, target: softmax_cross_entropy_forward(
                    logits, target, ignore_index=255),
                softmax_cross_entropy_backward,
                lambda F, logits, target: F.cross_entropy(logits, target, ignore_index=255))


_BUILDERS = {**{name: _conv for name in VGG_CONVS}, "relu1_1": _relu, "pool1": _pool,
             "drop6": _dropout, "upscore2": _upscore, "upscore8": _upscore, "crop": _crop,
             "bilinear": _bilinear, "loss": _loss}


def fcn_cases(size=(500, 500), width: float = 1.0, n_class: int = 21, names=OPS) -> dict:
    """``{name: Case}`` for ``names`` (default :data:`OPS`, all of them) at the shapes of
    FCN-8s (``width``, ``n_class``) on a batch of one ``size = (H, W)`` image, in the order
    of ``names``. Raises ValueError for a size or width the network cannot take, or an
    unknown name."""
    unknown = [name for name in names if name not in _BUILDERS]
    if unknown:
        raise ValueError(f"unknown op {unknown[0]!r}; expected one of {', '.join(OPS)}")
    net = _Net(size, width, n_class)
    return {name: _BUILDERS[name](net, name) for name in names}
