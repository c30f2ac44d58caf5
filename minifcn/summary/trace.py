r"""The rows of a summary: each step of a network computed by arithmetic alone.

:func:`summarize` walks a model in data-flow order -- for an FCN the VGG16 trunk, the head
(fc6, fc7, score_fr), the skip branches with their crops and sums, the upscores and the
final crop; for a U-Net the contracting path, then each level's upsampling, skip crop,
concatenation and convolutions; for torchvision's segmentation ResNets the walk in
``resnet_walk.py`` (U-Net's is ``unet_walk.py``) -- and computes for every step, without running it:

* the output shape ``(N, C, H, W)``, from the layers' size formulas (``conv_output_size``,
  ``max_pool2d_output_size`` in ceil mode, ``conv_transpose_output_size``);
* the parameters, learnable and frozen (the bilinear ``upscore`` weights, by default);
* the forward FLOPs, a multiply-add counting 2 as in :func:`minifcn.bench.conv_flops`:
  ``2 N F OH OW (C/G) KH KW`` for a convolution of G groups (each output reads its
  group's C/G channels), and for a transposed convolution the count of
  the convolution it is the adjoint of. ReLU, a sum and a scale count 1 per output element,
  a max pooling ``KH*KW - 1`` comparisons per output element; biases, dropout (the identity
  at inference), crops and concatenations (copies) count 0;
* the im2col workspace in bytes: the ``(C*KH*KW, N*OH*OW)`` columns a convolution builds
  (0 for a 1x1 stride-1 unpadded one, whose columns are a view of x), and for a transposed
  convolution the ``(C_out*KH*KW, N*H*W)`` columns its col2im folds;
* the receptive field: its size ``r`` and jump ``j`` (input pixels between neighbouring
  outputs), by ``r' = r + (K - 1) j``, ``j' = j S`` with K the kernel's extent -- padding
  does not enter. A transposed convolution reaches ``ceil(K/S)`` inputs per output, so
  ``r' = r + (ceil(K/S) - 1) j``, ``j' = j / S``; a sum or a concatenation sees the larger
  of its inputs';
* the coordinate map ``p = scale * x + offset`` of :mod:`minifcn.models.coord`, and at each
  crop the offset it implies (checked against the model's own crop).

Receptive fields and coordinate maps are given along the height axis (the layers are
square). U-Net's crop offsets (88, 40, 16, 4 at depth 4) are derived here from the
coordinate maps too, and checked against the model's. The walk of each variant is the
model's ``forward`` with shapes for arrays.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from ..bench import conv_flops
from ..models.coord import IDENTITY, CoordMap, crop_offset, layer_map
from ..nn import BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, MaxPool2d, ReLU
from .. import _validate as _checks
from ..ops.arguments import conv_output_size, conv_transpose_output_size, is_pointwise
from ..ops.arguments import max_pool2d_output_size
from .resnet_walk import walk_segmentation_resnet
from .unet_walk import walk_unet


class LayerRow(NamedTuple):
    """One step of the network as :func:`summarize` computes it."""
    name: str           # the model's attribute (conv1_1, upscore2, crop_pool4) or a tensor's
    kind: str           # input, conv, relu, pool, dropout, scale, conv_transpose, crop, sum,
                        # concat
    detail: str         # the geometry in short: "3x3 p100", "2x2 s2 ceil", "+5" (a crop)
    inputs: tuple       # names of the rows it reads
    shape: tuple        # its output (N, C, H, W)
    params: int         # learnable parameters (requires_grad=True)
    frozen: int         # frozen parameters (requires_grad=False)
    flops: int          # forward FLOPs, a multiply-add counting 2
    workspace: int      # bytes of im2col (or col2im) columns
    rf: int             # receptive field in input pixels
    jump: Fraction      # input pixels between neighbouring outputs
    coord: CoordMap     # input row x lands on output row p = scale * x + offset
    offset: tuple | None = None   # crops: the (top, left) offset the coordinate maps give


class Totals(NamedTuple):
    """The sums over the rows, and the largest workspace (what im2col adds to the peak)."""
    params: int         # learnable
    frozen: int
    flops: int
    workspace: int      # the largest buffer: each conv frees its columns before the next
    workspace_layer: str


def summarize(model, input_hw, batch=1, dtype=None) -> list[LayerRow]:
    """Rows for every step of ``model`` on a ``(batch, C, H, W)`` input (C: the model's
    ``in_channels``, 3 for the FCNs), without running it.

    Parameters
    ----------
    model : FCN32s, FCN16s, FCN8s, FCN8sAtOnce (any width; see :func:`skeleton` for a
        width-1 model built without its 540 MB of weights), UNet, FCNResNet50 or
        DeepLabV3ResNet50
    input_hw : int or (H, W)
    batch : int, N
    dtype : the dtype the workspace is counted in (default: the model's)
    """
    h, w = _checks.pair("input_hw", input_hw, minimum=1)
    batch = _checks.positive_int("batch", batch)
    walk = _WALKS.get(getattr(model, "arch", None))
    if walk is None:
        raise TypeError(f"model must be one of {', '.join(_WALKS)} (minifcn.models), got "
                        f"{type(model).__name__}")
    if dtype is None:       # the FCNs record theirs; otherwise that of the first parameter
        dtype = getattr(model, "dtype", None) or model.parameters()[0].data.dtype
    trace = _Trace(model, np.dtype(dtype).itemsize)
    walk(model, trace, trace.input((batch, getattr(model, "in_channels", 3), h, w)))
    return trace.rows


def totals(rows) -> Totals:
    """Parameters and FLOPs summed over ``rows``; the largest workspace and its layer."""
    biggest = max(rows, key=lambda r: r.workspace)
    return Totals(sum(r.params for r in rows), sum(r.frozen for r in rows),
                  sum(r.flops for r in rows), biggest.workspace, biggest.name)


# --- the walk of each variant: its forward, with rows for arrays ----------------------------

def _walk_fcn32s(m, t, image):
    pool5 = t.path(m.trunk_path(5), image)
    score_fr = t.path(m.head_path(), pool5)                       # stride 32
    upscore = t.layer(m.upscore, score_fr)                        # stride 1
    t.crop(m.crop_output, upscore, like=image)


def _walk_fcn16s(m, t, image):
    pool4 = t.path(m.trunk_path(4), image)
    pool5 = t.path(m.block(5), pool4)
    score_fr = t.path(m.head_path(), pool5)
    upscore2 = t.layer(m.upscore2, score_fr)                      # stride 16
    score_pool4 = t.layer(m.score_pool4, pool4)
    score_pool4c = t.crop(m.crop_pool4, score_pool4, like=upscore2)
    fuse_pool4 = t.add("fuse_pool4", upscore2, score_pool4c)
    upscore16 = t.layer(m.upscore16, fuse_pool4)                  # stride 1
    t.crop(m.crop_output, upscore16, like=image)


def _walk_fcn8s(m, t, image):
    pool3 = t.path(m.trunk_path(3), image)
    pool4 = t.path(m.block(4), pool3)
    pool5 = t.path(m.block(5), pool4)
    score_fr = t.path(m.head_path(), pool5)
    upscore2 = t.layer(m.upscore2, score_fr)                      # stride 16
    score_pool4 = t.layer(m.score_pool4, t.scale("scale_pool4", pool4, m.pool4_scale))
    score_pool4c = t.crop(m.crop_pool4, score_pool4, like=upscore2)
    fuse_pool4 = t.add("fuse_pool4", upscore2, score_pool4c)
    upscore_pool4 = t.layer(m.upscore_pool4, fuse_pool4)          # stride 8
    score_pool3 = t.layer(m.score_pool3, t.scale("scale_pool3", pool3, m.pool3_scale))
    score_pool3c = t.crop(m.crop_pool3, score_pool3, like=upscore_pool4)
    fuse_pool3 = t.add("fuse_pool3", upscore_pool4, score_pool3c)
    upscore8 = t.layer(m.upscore8, fuse_pool3)                    # stride 1
    t.crop(m.crop_output, upscore8, like=image)


_WALKS = {"fcn32s": _walk_fcn32s, "fcn16s": _walk_fcn16s, "fcn8s": _walk_fcn8s,
          "fcn8s-atonce": _walk_fcn8s,   # at-once: the same graph with scales 0.01, 0.0001
          "unet": walk_unet, "fcn_resnet50": walk_segmentation_resnet,
          "deeplabv3_resnet50": walk_segmentation_resnet}


class _Trace:
    """Appends a row per step; each method takes and returns rows, as forward does arrays."""

    def __init__(self, model, itemsize):
        self.names = {id(module): name for name, module in model.named_modules()}
        self.itemsize = itemsize
        self.rows = []

    def _emit(self, name, kind, detail, inputs, shape, rf, jump, coord, **costs) -> LayerRow:
        row = LayerRow(name, kind, detail, tuple(inputs), tuple(shape), costs.get("params", 0),
                       costs.get("frozen", 0), costs.get("flops", 0), costs.get("workspace", 0),
                       rf, Fraction(jump), coord, costs.get("offset"))
        self.rows.append(row)
        return row

    def input(self, shape):
        return self._emit("input", "input", "", (), shape, 1, 1, IDENTITY)

    def path(self, layers, x):
        for layer in layers:
            x = self.layer(layer, x)
        return x

    def layer(self, module, x):
        name = self.names[id(module)]
        step = _step(module, name, x, self.itemsize)
        learnable, frozen = _count_parameters(module)
        return self._emit(name, step.kind, step.detail, (x.name,), step.shape, step.rf,
                          step.jump, x.coord.then(layer_map(module)), params=learnable,
                          frozen=frozen, flops=step.flops, workspace=step.workspace)

    def scale(self, name, x, factor):
        if factor == 1.0:                 # FCN-8s: no scale layer at all
            return x
        return self._emit(name, "scale", f"x{factor:g}", (x.name,), x.shape, x.rf, x.jump,
                          x.coord, flops=math.prod(x.shape))

    def crop(self, crop, x, like):
        name = self.names[id(crop)]
        offset = crop_offset(x.coord, like.coord, x.name)    # derived, as the model does
        if crop.offset != (offset, offset):
            raise ValueError(f"{name} crops at {crop.offset} but the coordinate maps give "
                             f"{offset}")
        (N, C, H, W), (h, w) = x.shape, like.shape[2:]
        if offset + h > H or offset + w > W:
            raise ValueError(f"{name}: {x.name} ({H}x{W}) is too small for a {h}x{w} crop "
                             f"at offset {offset}")
        coord = CoordMap(x.coord.scale, x.coord.offset - offset)   # now equal to like's
        return self._emit(name, "crop", f"+{offset}", (x.name, like.name),
                          (N, C, h, w), x.rf, x.jump, coord, offset=(offset, offset))

    def concat(self, name, *rows):
        """Channel concatenation ``[a, b, ...]``: all maps must cover the same pixels."""
        a = rows[0]
        for b in rows[1:]:
            if a.shape[::2] != b.shape[::2] or a.shape[3] != b.shape[3] or a.coord != b.coord:
                raise ValueError(f"{name}: cannot concatenate {a.name} {a.shape} at {a.coord}"
                                 f" and {b.name} {b.shape} at {b.coord}")
        N, _, H, W = a.shape
        return self._emit(name, "concat", "", [r.name for r in rows],
                          (N, sum(r.shape[1] for r in rows), H, W), max(r.rf for r in rows),
                          a.jump, a.coord)

    def global_pool(self, module, x):
        """Average pooling to 1x1: one pixel that sees the whole map (coordinate scale 0)."""
        N, C, H, W = x.shape
        return self._emit(self.names[id(module)], "pool", "avg 1x1", (x.name,), (N, C, 1, 1),
                          x.rf + (H - 1) * x.jump, x.jump * H, CoordMap(Fraction(0),
                                                                        Fraction(0)),
                          flops=math.prod(x.shape))

    def resize(self, name, x, like):
        """Bilinear resizing (``align_corners=False``) to ``like``'s size. From 1x1 it is a
        broadcast (like's coordinates, no FLOPs); otherwise output pixel p sits at input
        coordinate ``(p + 1/2) / s - 1/2`` (s: out/in, along the height), reads 2x2
        inputs and costs 7 FLOPs (4 products, 3 sums)."""
        (N, C, H, W), (h, w) = x.shape, like.shape[2:]
        if (H, W) == (1, 1):
            return self._emit(name, "resize", "broadcast", (x.name,), (N, C, h, w), x.rf,
                              x.jump, like.coord)
        s = Fraction(h, H)
        coord = x.coord.then(CoordMap(s, (s - 1) / 2))
        return self._emit(name, "resize", f"bilinear x{float(s):g}", (x.name,), (N, C, h, w),
                          x.rf + x.jump, x.jump / s, coord, flops=7 * N * C * h * w)

    def add(self, name, a, b):
        if a.shape != b.shape or a.coord != b.coord:
            raise ValueError(f"{name}: cannot add {a.name} {a.shape} at {a.coord} and "
                             f"{b.name} {b.shape} at {b.coord}")
        return self._emit(name, "sum", "", (a.name, b.name), a.shape, max(a.rf, b.rf),
                          a.jump, a.coord, flops=math.prod(a.shape))


# --- one layer's arithmetic -----------------------------------------------------------------

class _Step(NamedTuple):
    kind: str
    detail: str
    shape: tuple
    flops: int
    workspace: int
    rf: int
    jump: Fraction


def _step(module, name, x, itemsize) -> _Step:
    N, C, H, W = x.shape
    numel = math.prod(x.shape)
    if isinstance(module, Conv2d):
        return _conv(module, name, x, itemsize)
    if isinstance(module, ConvTranspose2d):
        return _conv_transpose(module, name, x, itemsize)
    if isinstance(module, MaxPool2d):
        (KH, KW), (SH, SW), (PH, PW) = module.kernel_size, module.stride, module.padding
        OH = max_pool2d_output_size(H, KH, SH, PH, module.ceil_mode)
        OW = max_pool2d_output_size(W, KW, SW, PW, module.ceil_mode)
        detail = _geometry((KH, KW), (SH, SW), (PH, PW)) + " ceil" * module.ceil_mode
        return _Step("pool", detail, (N, C, OH, OW), N * C * OH * OW * (KH * KW - 1), 0,
                     x.rf + (KH - 1) * x.jump, x.jump * SH)
    if isinstance(module, ReLU):
        return _Step("relu", "", x.shape, numel, 0, x.rf, x.jump)
    if isinstance(module, Dropout):
        return _Step("dropout", f"p={module.p:g}", x.shape, 0, 0, x.rf, x.jump)
    if isinstance(module, BatchNorm2d):     # inference: one scale and one shift per element
        return _Step("bn", "", x.shape, 2 * numel, 0, x.rf, x.jump)
    raise TypeError(f"summary has no shape rule for {name} ({type(module).__name__})")


def _conv(conv, name, x, itemsize) -> _Step:
    N, C, H, W = x.shape
    F, CW, KH, KW = conv.weight.shape                 # CW = C / G: one group's channels
    stride, padding, dilation = (conv.options[k] for k in ("stride", "padding", "dilation"))
    groups = conv.options.get("groups", 1)
    if CW * groups != C:
        raise ValueError(f"{name} expects {CW * groups} input channels, {x.name} has {C}")
    OH, OW = (conv_output_size(size, k, s, p, d) for size, k, s, p, d
              in zip((H, W), (KH, KW), stride, padding, dilation))
    if min(OH, OW) < 1:
        raise ValueError(f"{name}: its {KH}x{KW} kernel does not fit {x.name} ({H}x{W})")
    pointwise = is_pointwise((KH, KW), stride, padding)
    col = 0 if pointwise else C * KH * KW * N * OH * OW * itemsize          # im2col(x)
    detail = _geometry((KH, KW), stride, padding, dilation) + (f" g{groups}" if groups > 1
                                                                 else "")
    # Each output reads one group's C/G channels: the FLOPs of a C/G-channel input.
    return _Step("conv", detail, (N, F, OH, OW),
                 conv_flops((N, CW, H, W), conv.weight.shape, (OH, OW)), col,
                 x.rf + dilation[0] * (KH - 1) * x.jump, x.jump * stride[0])


def _conv_transpose(layer, name, x, itemsize) -> _Step:
    N, C, H, W = x.shape
    C_in, C_out, KH, KW = layer.weight.shape
    o = layer.options
    stride, padding, dilation = o["stride"], o["padding"], o["dilation"]
    if C_in != C:
        raise ValueError(f"{name} expects {C_in} input channels, {x.name} has {C}")
    OH, OW = (conv_transpose_output_size(size, k, s, p, op, d) for size, k, s, p, op, d
              in zip((H, W), (KH, KW), stride, padding, o["output_padding"], dilation))
    # The adjoint convolution maps (N, C_out, OH, OW) to x's shape, with the same FLOPs.
    flops = conv_flops((N, C_out, OH, OW), layer.weight.shape, (H, W))
    pointwise = is_pointwise((KH, KW), stride, padding)
    col = 0 if pointwise else C_out * KH * KW * N * H * W * itemsize       # W^T x, col2im'd
    reach = -(-(dilation[0] * (KH - 1) + 1) // stride[0])                   # ceil(K / S)
    return _Step("conv_transpose", _geometry((KH, KW), stride, padding, dilation),
                 (N, C_out, OH, OW), flops, col, x.rf + (reach - 1) * x.jump,
                 x.jump / stride[0])


def _count_parameters(module) -> tuple[int, int]:
    """(learnable, frozen) element counts of the module's parameters."""
    counts = [0, 0]
    for _, p in module.named_parameters():
        counts[not p.requires_grad] += math.prod(p.shape)
    return counts[0], counts[1]


def _geometry(kernel, stride, padding, dilation=(1, 1)) -> str:
    """'3x3 p100', '2x2 s2', '64x64 s32': the options that differ from the defaults."""
    text = f"{kernel[0]}x{kernel[1]}"
    for tag, pair, default in (("s", stride, 1), ("p", padding, 0), ("d", dilation, 1)):
        if pair != (default, default):
            text += f" {tag}{pair[0]}" if pair[0] == pair[1] else f" {tag}{pair[0]},{pair[1]}"
    return text
