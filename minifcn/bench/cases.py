r"""The ops ``minifcn bench ops`` times: every kind of FCN layer at the shapes FCN-8s gives it
on one input size, each with its minifcn pair, its ``torch.nn.functional`` twin and its work.
The layers of the other networks (``net_cases.py``) are built here too, from their rows.

The shapes come from the network itself (:func:`minifcn.summary.summarize` of a weightless
FCN-8s), so at 500x500 conv1_1 pads the image by 100 and conv1_2, relu1_1 and pool1 see a
698x698 map, fc6 a 22x22 pool5, and upscore8 turns the 70x70 fused scores into 568x568::

    cases = fcn_cases((500, 500))                 # name -> Case, in the network's order
    y, cache = cases["pool1"].forward(None, **cases["pool1"].inputs(rng, np.float32))

``conv_case`` builds a convolution case of any shape (``benchmarks/bench_conv.py`` times
VGG16's at 224x224 with it). :func:`build_cases` builds the cases of any network from a
table ``{op name: (summary row, builder)}``: the builder reads the layer's module and the
shapes of the maps around it from the row, so a case cannot drift from its network.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..ops import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                   conv_transpose2d_forward, crop_backward, crop_forward, dropout_backward,
                   dropout_forward, max_pool2d_backward, max_pool2d_forward, relu_backward,
                   relu_forward, softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                   upsample_bilinear2d_backward, upsample_bilinear2d_forward)
from ..ops import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                   batch_norm2d_backward, batch_norm2d_forward, concat_backward, concat_forward)
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


def conv_inputs(x_shape, w_shape, bias=True):
    """``inputs(rng, dtype)``: x standard normal, a He-scaled weight, a standard normal bias
    (none with ``bias=False``)."""
    def inputs(rng, dtype):
        arrays = normal(x=x_shape, weight=w_shape, **({"bias": w_shape[:1]} if bias else {}))(
            rng, dtype)
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


def conv_case(name: str, x_shape, w_shape, stride=1, padding=0, dilation=1,
              bias=True) -> Case:
    """conv2d, with a bias or without (``bias=False``: the ResNets' convolutions, which a
    BatchNorm follows), weight ``w_shape`` (F, C, KH, KW), on an ``x_shape`` input."""
    n_out, C, KH, KW = w_shape
    out = tuple(conv_output_size(s, k, stride, padding, dilation)
                for s, k in zip(x_shape[2:], (KH, KW)))
    geometry = f"{KH}x{KW}" + "".join(f" {tag}{value}" for tag, value, default in (
        ("s", stride, 1), ("p", padding, 0), ("d", dilation, 1)) if value != default)
    options = dict(stride=stride, padding=padding, dilation=dilation)
    return Case(
        name, f"{C}->{n_out} {geometry} {hw(x_shape)}->{hw(out)}",
        conv_inputs(x_shape, w_shape, bias), ("x", "weight", "bias")[:3 if bias else 2],
        lambda rng, x, weight, bias=None: conv2d_forward(x, weight, bias, **options),
        conv2d_backward,
        lambda F, x, weight, bias=None: F.conv2d(x, weight, bias, **options),
        lambda arrays, y: conv_flops(arrays["x"].shape, w_shape, y.shape[2:]))


def upscore_case(name: str, x_shape, w_shape, stride: int, bias=False) -> Case:
    """conv_transpose2d, without a bias (FCN's upscore layers) or with one (U-Net's)."""
    out = (np.array(x_shape[2:]) - 1) * stride + np.array(w_shape[2:])
    shapes = dict(x=x_shape, weight=w_shape, **({"bias": w_shape[1:2]} if bias else {}))
    return Case(
        name, f"{x_shape[1]}x{hw(x_shape)} k{w_shape[2]} s{stride} ->{hw(out)}",
        normal(**shapes), tuple(shapes),
        lambda rng, x, weight, bias=None: conv_transpose2d_forward(x, weight, bias,
                                                                   stride=stride),
        conv_transpose2d_backward,
        lambda F, x, weight, bias=None: F.conv_transpose2d(x, weight, bias, stride=stride),
        lambda arrays, y: transposed_flops(arrays["x"].shape, w_shape, y.shape[2:]))


class _Net:
    """A network's layers and the shape of every map it computes on one input size: the
    rows of :func:`minifcn.summary.summarize_arch`, by name."""

    def __init__(self, arch, size, width, n_class):
        from ..summary import skeleton, summarize   # summary imports this package

        self.model = skeleton(arch, n_class=n_class, width=width)
        self.rows = {row.name: row for row in summarize(self.model, size)}
        self.modules = dict(self.model.named_modules())

    def shape(self, name):
        return self.rows[name].shape

    def input(self, name):
        """The shape of the (first) map layer ``name`` reads."""
        return self.shape(self.rows[name].inputs[0])


# Each builder makes the case ``name`` from the summary row ``row`` of ``net``.

def _conv(net, name, row):
    conv, o = net.modules[row], net.modules[row].options
    (stride, _), (padding, _), (dilation, _) = o["stride"], o["padding"], o["dilation"]
    return conv_case(name, net.input(row), conv.weight.shape, stride, padding, dilation,
                     bias=conv.bias is not None)


def _pool(net, name, row):
    pool = net.modules[row]
    (k, _), (s, _), (p, _), ceil = pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode
    x_shape = net.input(row)
    return Case(name, f"{x_shape[1]}x{hw(x_shape)} k{k} s{s}" + f" p{p}" * bool(p) +
                " ceil" * ceil, normal(x=x_shape), ("x",),
                lambda rng, x: max_pool2d_forward(x, k, s, p, ceil_mode=ceil),
                max_pool2d_backward,
                lambda F, x: F.max_pool2d(x, k, s, p, ceil_mode=ceil))


def _relu(net, name, row):
    x_shape = net.input(row)
    return Case(name, f"{x_shape[1]}x{hw(x_shape)}", normal(x=x_shape), ("x",),
                lambda rng, x: relu_forward(x), relu_backward, lambda F, x: F.relu(x))


def _dropout(net, name, row):
    p, x_shape = net.modules[row].p, net.input(row)
    return Case(name, f"{x_shape[1]}x{hw(x_shape)} p{p:g}", normal(x=x_shape), ("x",),
                lambda rng, x: dropout_forward(x, p, True, rng=rng), dropout_backward,
                lambda F, x: F.dropout(x, p, training=True), random=True)


def _upscore(net, name, row):
    layer = net.modules[row]
    return upscore_case(name, net.input(row), layer.weight.shape, layer.options["stride"][0],
                        bias=layer.bias is not None)


def _crop(net, name, row):
    """A crop of the row's first input to the row's size, at the offset it derived."""
    x_shape, (top, left) = net.input(row), net.rows[row].offset
    size = net.shape(row)[2:]
    return Case(name, f"{x_shape[1]}x{hw(x_shape)} @{top} ->{hw(size)}", normal(x=x_shape),
                ("x",), lambda rng, x: crop_forward(x, (top, left), size), crop_backward,
                lambda F, x: x[:, :, top:top + size[0], left:left + size[1]].contiguous(),
                moved=cropped)


def _bilinear(net, name, row):
    """The row's input upsampled bilinearly straight to the image's size."""
    x_shape, size = net.input(row), net.shape("input")[2:]
    return Case(name, f"{x_shape[1]}x{hw(x_shape)} ->{hw(size)}", normal(x=x_shape), ("x",),
                lambda rng, x: upsample_bilinear2d_forward(x, size=size),
                upsample_bilinear2d_backward,
                lambda F, x: F.interpolate(x, size=size, mode="bilinear", align_corners=False))


def _loss(net, name, row):
    """Softmax cross-entropy of the row's output (the network's scores)."""
    shape = net.shape(row)                                          # (N, n_class, H, W)
    return Case(name, f"{shape[1]}x{hw(shape)} 10% void", loss_inputs(shape), ("logits",),
                lambda rng, logits, target: softmax_cross_entropy_forward(
                    logits, target, ignore_index=255),
                softmax_cross_entropy_backward,
                lambda F, logits, target: F.cross_entropy(logits, target, ignore_index=255))


def _batch_norm(net, name, row):
    """batch_norm2d in training mode, as a training step runs it: the batch's statistics,
    the running ones updated, and the backward through the statistics."""
    bn, x_shape = net.modules[row], net.input(row)
    C, momentum, eps = x_shape[1], bn.momentum, bn.eps
    N, _, H, W = x_shape
    if N * H * W < 2:                                 # a variance needs two values
        raise ValueError(f"{name} sees one value per channel ({H}x{W} map, batch {N}), "
                         f"too few for a training-mode batch norm; give a larger size")

    def inputs(rng, dtype):
        arrays = normal(x=x_shape, weight=(C,), bias=(C,))(rng, dtype)
        return dict(arrays, running_mean=np.zeros(C, dtype), running_var=np.ones(C, dtype))

    def forward(rng, x, weight, bias, running_mean, running_var):
        return batch_norm2d_forward(x, running_mean, running_var, weight, bias, training=True,
                                    momentum=momentum, eps=eps)

    return Case(name, f"{C}x{hw(x_shape)} train", inputs, ("x", "weight", "bias"), forward,
                batch_norm2d_backward,
                lambda F, x, weight, bias, running_mean, running_var: F.batch_norm(
                    x, running_mean, running_var, weight, bias, training=True,
                    momentum=momentum, eps=eps))


def _global_pool(net, name, row):
    """adaptive_avg_pool2d to 1x1: DeepLabV3's image pooling."""
    x_shape = net.input(row)
    return Case(name, f"{x_shape[1]}x{hw(x_shape)} ->1", normal(x=x_shape), ("x",),
                lambda rng, x: adaptive_avg_pool2d_forward(x, 1), adaptive_avg_pool2d_backward,
                lambda F, x: F.adaptive_avg_pool2d(x, 1))


def _concat(net, name, row):
    """Channel concatenation of the row's inputs (x0, x1, ...)."""
    shapes = {f"x{k}": net.shape(source) for k, source in enumerate(net.rows[row].inputs)}
    keys, y_shape = tuple(shapes), net.shape(row)
    channels = [shape[1] for shape in shapes.values()]
    parts = (f"{len(channels)}*{channels[0]}" if len(channels) > 2 and len(set(channels)) == 1
             else "+".join(map(str, channels)))                    # 5*256, 64+64
    return Case(name, f"{parts}x{hw(y_shape)} ->{y_shape[1]}", normal(**shapes), keys,
                lambda rng, **xs: concat_forward([xs[k] for k in keys]), concat_backward,
                lambda F, **xs: _torch_cat([xs[k] for k in keys]))


def _torch_cat(tensors):
    import torch                                    # only where torch's side runs

    return torch.cat(tensors, dim=1)


LAYERS = {"conv": _conv, "pool": _pool, "relu": _relu, "dropout": _dropout,
          "upscore": _upscore, "crop": _crop, "bilinear": _bilinear, "loss": _loss,
          "batch_norm": _batch_norm, "global_pool": _global_pool, "concat": _concat}

# FCN-8s: op name -> (summary row, builder), in OPS's order. ``crop`` is upscore8's crop to
# the image (the network's largest); ``bilinear`` reads upscore8's input.
_NOT_CONVS = {"relu1_1": ("relu1_1", "relu"), "pool1": ("pool1", "pool"),
              "drop6": ("drop6", "dropout"), "upscore2": ("upscore2", "upscore"),
              "upscore8": ("upscore8", "upscore"), "crop": ("crop_output", "crop"),
              "bilinear": ("upscore8", "bilinear"), "loss": ("crop_output", "loss")}
FCN8S = {name: _NOT_CONVS.get(name, (name, "conv")) for name in OPS}


def build_cases(arch: str, table: dict, size, width: float = 1.0, n_class: int = 21,
                names=None) -> dict:
    """``{name: Case}`` for ``names`` (default: every op of ``table``, ``{op name:
    (summary row, builder name in LAYERS)}``) at the shapes of ``arch`` (``width``,
    ``n_class``) on a batch of one ``size = (H, W)`` image, in the order of ``names``.
    Raises ValueError for a size or width the network cannot take, or an unknown name."""
    names = tuple(table) if names is None else names
    unknown = [name for name in names if name not in table]
    if unknown:
        raise ValueError(f"unknown op {unknown[0]!r}; expected one of {', '.join(table)}")
    net = _Net(arch, size, width, n_class)
    return {name: LAYERS[table[name][1]](net, name, table[name][0]) for name in names}


def fcn_cases(size=(500, 500), width: float = 1.0, n_class: int = 21, names=OPS) -> dict:
    """``{name: Case}`` for ``names`` (default :data:`OPS`, all of them) at the shapes of
    FCN-8s (``width``, ``n_class``) on a batch of one ``size = (H, W)`` image, in the order
    of ``names``. Raises ValueError for a size or width the network cannot take, or an
    unknown name."""
    return build_cases("fcn8s", FCN8S, size, width, n_class, names)
