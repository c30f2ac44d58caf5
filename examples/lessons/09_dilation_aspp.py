# %% [markdown]
# # Lesson 9: dilation and atrous spatial pyramid pooling
#
# The segmentation networks after FCN stop downsampling early and look wider instead.
# **Dilation** (atrous convolution) spaces a kernel's taps D pixels apart:
#
# $$y[f, p, q] = b[f] + \sum_{c, i, j} W[f, c, i, j]\; x_{pad}[c, p + iD, q + jD] .$$
#
# A 3x3 kernel at dilation D covers a `(2D+1) x (2D+1)` window with the same 9 weights.
# DeepLab and torchvision's segmentation ResNets use it to stop downsampling (output
# stride 8) without shrinking what each layer sees, and DeepLabV3's ASPP runs three
# dilated 3x3 branches side by side (rates 12, 24, 36) with an image-pooling branch. This
# lesson takes both apart with small numbers on minifcn's own ops; lesson 10 does the same
# for grouped convolution, batch normalisation and U-Net's sizes. The code:
# `minifcn/ops/reference/conv.py` (dilation), `minifcn/models/heads.py` (ASPP),
# `minifcn/models/resnet.py` (`Bottleneck`, the dilated backbone).

# %%
import numpy as np

import minifcn.ops as ops
from _common import grid, heat, max_diff, output_dir, row, save
from minifcn.models.heads import ASPP, ASPP_RATES
from minifcn.models.resnet import ResNet50Backbone

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("09")
rng = np.random.default_rng(9)

# %% [markdown]
# ## Dilation is a zero-stuffed kernel
#
# Put the 9 weights of a 3x3 kernel on every D-th row and column of a `(2D+1) x (2D+1)`
# kernel of zeros: `big[::D, ::D] = w`. The plain convolution with `big` multiplies the
# same pixels by the same weights as the dilated one with `w` (the zeros add nothing), so
# the two agree to rounding. Padding D keeps the size ("same" padding for a 3x3 at D).

# %%
x9 = rng.standard_normal((1, 2, 9, 9))                         # (N, C, H, W)
w3 = rng.standard_normal((3, 2, 3, 3))                         # (F, C, 3, 3)


def zero_stuffed(w, d):
    big = np.zeros(w.shape[:2] + (2 * d + 1, 2 * d + 1))        # (F, C, 2D+1, 2D+1)
    big[:, :, ::d, ::d] = w                                     # tap (i, j) at (iD, jD)
    return big


stuffed, stuffed_diff = {}, {}
for d in (2, 3):
    stuffed[d] = zero_stuffed(w3, d)
    y_dilated, _ = ops.conv2d_forward(x9, w3, padding=d, dilation=d)
    y_big, _ = ops.conv2d_forward(x9, stuffed[d], padding=d)
    stuffed_diff[d] = max_diff(y_dilated, y_big)
    print(f"dilation {d}: 3x3 kernel -> {stuffed[d].shape[2]}x{stuffed[d].shape[3]} window, "
          f"{np.count_nonzero(stuffed[d][0, 0])} nonzero weights; output {y_dilated.shape[2:]}"
          f", max |dilated - stuffed| {stuffed_diff[d]:.1e}")
print("filter 0, channel 0, at dilation 2:\n", np.round(stuffed[2][0, 0], 2))

# %% [markdown]
# ## The receptive field
#
# Which input pixels reach the centre output of a stack of 3x3 layers? Ask the backward:
# a gradient of 1 at the centre output, all-ones weights (so nothing cancels), and the
# nonzero pixels of dx are the receptive field. A 3x3 layer at dilation D adds 2D to its
# side: three plain layers see 1 + 2 + 2 + 2 = 7 pixels, dilations 1, 2, 4 see
# 1 + 2 + 4 + 8 = 15 with the same 27 weights — exponential growth, no resolution lost.

# %%
def receptive_field(dilations, size=33):
    x = np.zeros((1, 1, size, size))
    caches = []
    for d in dilations:                                         # the size stays (padding D)
        x, cache = ops.conv2d_forward(x, np.ones((1, 1, 3, 3)), padding=d, dilation=d)
        caches.append(cache)
    dy = np.zeros_like(x)
    dy[0, 0, size // 2, size // 2] = 1.0
    for cache in reversed(caches):
        dy = ops.conv2d_backward(dy, cache)[0]                  # dx of each layer
    rows = np.flatnonzero(dy[0, 0].any(axis=1))
    return dy[0, 0], int(rows[-1] - rows[0] + 1)


fields = {}
for dilations in ((1, 1, 1), (1, 2, 4)):
    reach, fields[dilations] = receptive_field(dilations)
    print(f"3x3 layers at dilations {dilations}: receptive field {fields[dilations]}x"
          f"{fields[dilations]} (formula {1 + 2 * sum(dilations)})")
reach_plain, reach_dilated = receptive_field((1, 1, 1))[0], receptive_field((1, 2, 4))[0]

# %% [markdown]
# ## Output stride 8: the backbone's last layers dilate instead of striding
#
# ResNet-50 halves its map five times (the 7x7 stem at stride 2, a max pool, layer2, layer3,
# layer4: output stride 32). torchvision's segmentation ResNets replace the strides of
# layer3 and layer4 by dilation 2 and 4 (`replace_stride_with_dilation=[False, True,
# True]`): each 3x3 then reaches as far in the image as it did on the halved map, and a
# 520x520 image keeps a 65x65 map. (ASPP's rates 12, 24, 36 are DeepLabV3's 6, 12, 18 for
# output stride 16, doubled for this map twice as fine.) The sizes, from `conv_output_size`:

# %%
def backbone_sizes(size, dilate=(False, True, True)):
    size = ops.conv_output_size(size, 7, 2, 3)                 # conv1, stride 2
    sizes = [size, ops.conv_output_size(size, 3, 2, 1)]        # maxpool 3, stride 2, pad 1
    for stage_dilates in dilate:                               # layer2, layer3, layer4
        if not stage_dilates:
            sizes.append(ops.conv_output_size(sizes[-1], 3, 2, 1))
        else:
            sizes.append(sizes[-1])                             # dilation: stride 1
    return sizes                                                # conv1, pool, layer2..4


sizes_os8 = backbone_sizes(520)
sizes_os32 = backbone_sizes(520, (False, False, False))
print("520 with dilation (output stride 8): conv1, pool, layer2, layer3, layer4 =", sizes_os8)
print("520 without (output stride 32):                                       ", sizes_os32)

# %% [markdown]
# The same with minifcn's `ResNet50Backbone` (width 1/32, a 72x72 image, eval mode): its
# layer4 is 9x9 with dilation and 3x3 without, as the sizes above predict for 72.

# %%
x72 = rng.standard_normal((1, 3, 72, 72))
backbone_maps = {}
for dilate in ((False, True, True), (False, False, False)):
    backbone = ResNet50Backbone(width=1 / 32, replace_stride_with_dilation=dilate,
                                dtype=np.float64, rng=0).eval()
    layer4, _ = backbone(x72)
    backbone_maps[dilate] = layer4.shape[2:]
    print(f"replace_stride_with_dilation={list(dilate)}: layer4 {layer4.shape}, predicted "
          f"{backbone_sizes(72, dilate)[-1]}")

# %% [markdown]
# Inside, each stage is a sequence of `Bottleneck` blocks (1x1, 3x3, 1x1, each with
# BatchNorm, and a residual sum); only the 3x3 carries the stride or the dilation, with
# padding equal to the dilation. The first block of a dilated stage keeps the dilation of
# the stage before (it used to carry the stride), the others take the new one:

# %%
backbone = ResNet50Backbone(width=1 / 32, dtype=np.float64, rng=0)   # dilated, as torchvision
block_dilations = {name: [block.conv2.options["dilation"][0]
                         for block in getattr(backbone, name)] for name in ("layer3", "layer4")}
print("the 3x3 dilation of each Bottleneck:", block_dilations)

# %% [markdown]
# ## ASPP on a 65x65 map: how many taps read the map?
#
# ASPP's 3x3 branches (rates 12, 24, 36, padding equal to the rate) read, for output pixel
# (p, q), the pixels `(p + (i-1) r, q + (j-1) r)`; a tap whose pixel falls outside the
# 65x65 map reads padding (zero). Convolving an all-ones map with an all-ones kernel counts,
# at every pixel, the taps that read inside. Along one axis a pixel p has 1 + [p >= r] +
# [p <= 64 - r] taps inside; at rate 36 no pixel has 3 (it would need 36 <= p <= 28), and
# the 7x7 pixels p, q in 29..35 have only the centre tap: there the branch is a 1x1
# convolution.

# %%
MAP = 65
ones = np.ones((1, 1, MAP, MAP))
taps = {}
for r in ASPP_RATES:
    taps[r] = ops.conv2d_forward(ones, np.ones((1, 1, 3, 3)), padding=r, dilation=r)[0][0, 0]
    t = taps[r]
    print(f"rate {r}: taps inside at the centre {t[32, 32]:.0f}, at a corner {t[0, 0]:.0f}; "
          f"mean {t.mean():.2f} of 9; pixels with all 9: {np.mean(t == 9):.1%}, "
          f"with only 1: {np.mean(t == 1):.1%}; taps reading padding: {1 - t.mean() / 9:.0%}")

# %% [markdown]
# So on the 7x7 centre block the rate-36 convolution equals the 1x1 convolution with its
# centre weights `w[:, :, 1:2, 1:2]` (checked below, random map and weights). What it
# cannot see is the image as a whole; DeepLabV3 adds a fifth branch for that: average the
# map to 1x1 (`adaptive_avg_pool2d`), a 1x1 convolution, BatchNorm and ReLU, then back to
# 65x65 — from 1x1 the bilinear upsampling is a broadcast, the same vector at every pixel.
# The five branches are concatenated along the channels (`concat`) and projected by a 1x1.

# %%
feature = rng.standard_normal((1, 4, MAP, MAP))
w_rate = rng.standard_normal((2, 4, 3, 3))
y36, _ = ops.conv2d_forward(feature, w_rate, padding=36, dilation=36)
y1x1, _ = ops.conv2d_forward(feature, w_rate[:, :, 1:2, 1:2])
centre_diff = max_diff(y36[:, :, 29:36, 29:36], y1x1[:, :, 29:36, 29:36])
print(f"rate 36 on the 7x7 centre block against the 1x1 with its centre weights: "
      f"{centre_diff:.1e}")

aspp = ASPP(4, out_channels=2, dtype=np.float64, rng=1).eval()
aspp_out = aspp(feature)
branches = [branch(feature) for branch in aspp.convs]           # each (1, 2, 65, 65)
pooling_branch = branches[-1]
pool_spread = float(np.ptp(pooling_branch, axis=(2, 3)).max())  # max - min over the map
pooled, _ = ops.adaptive_avg_pool2d_forward(feature)            # (1, 4, 1, 1)
by_hand, _ = ops.conv2d_forward(pooled, aspp.convs[4][1].weight.data)       # the 1x1
bn = aspp.convs[4][2]
by_hand, _ = ops.batch_norm2d_forward(by_hand, bn.running_mean.data, bn.running_var.data,
                                      bn.weight.data, bn.bias.data)         # eval mode
pool_branch_diff = max_diff(pooling_branch, np.maximum(by_hand, 0))         # broadcast
joined, _ = ops.concat_forward(branches)
print(f"ASPP branches: {[b.shape[1] for b in branches]} channels -> concat {joined.shape}"
      f" -> project {aspp_out.shape}")
print(f"pooling branch: spread over the 65x65 map {pool_spread:.1e}; against pool, 1x1, "
      f"BN, ReLU by hand: {pool_branch_diff:.1e}")

# %% [markdown]
# ## Pictures
#
# `dilation.png`: a 3x3 kernel and its zero-stuffed 5x5 and 7x7 forms, and the receptive
# fields of three plain and three dilated (1, 2, 4) layers (the centre 17x17 of dx: white
# where most paths lead to the centre output, black where none does; the dilated field is
# full but uneven, a grid of pixels reached by many paths and pixels reached by one).
# `aspp_taps.png`: how many of the 9 taps read inside the 65x65 map, per pixel, at rates
# 12, 24 and 36 (white: 9, black: 1).

# %%
save(row(grid(w3[0, 0], "3x3", fmt="{:.1f}"), grid(stuffed[2][0, 0], "D=2", fmt="{:.1f}"),
         grid(stuffed[3][0, 0], "D=3", fmt="{:.1f}", cell=30),
         heat(reach_plain[8:25, 8:25], "plain: 7x7", zoom=8),
         heat(reach_dilated[8:25, 8:25], "1, 2, 4: 15x15", zoom=8)), OUT, "dilation.png")
save(row(*[heat(taps[r], f"rate {r}", zoom=3, vmin=1, vmax=9) for r in ASPP_RATES]),
     OUT, "aspp_taps.png")
