# %% [markdown]
# # Lesson 9: dilation, groups and batch normalisation
#
# The segmentation networks after FCN change three things in the convolution layer, and
# this lesson takes each apart with small numbers on minifcn's own ops.
#
# **Dilation** (atrous convolution) spaces a kernel's taps D pixels apart:
#
# $$y[f, p, q] = b[f] + \sum_{c, i, j} W[f, c, i, j]\; x_{pad}[c, p + iD, q + jD] .$$
#
# A 3x3 kernel at dilation D covers a `(2D+1) x (2D+1)` window with the same 9 weights.
# DeepLab and torchvision's segmentation ResNets use it to stop downsampling (output
# stride 8) without shrinking what each layer sees, and DeepLabV3's ASPP runs three
# dilated 3x3 branches side by side (rates 12, 24, 36) with an image-pooling branch.
#
# **Groups** split the channels into G groups, each filter seeing only its group's C/G
# channels. G = C is the depthwise convolution (lesson 7); a depthwise 3x3 followed by a
# 1x1 (pointwise) is the depthwise separable convolution of DeepLabV3+ and Xception.
#
# **Batch normalisation** normalises each channel by statistics of the batch in training
# and by running estimates in eval mode; its training-mode backward has two extra terms,
# because the mean and variance depend on every input. Last, U-Net's size rule: why only
# some input sizes work. The code: `minifcn/ops/reference/conv.py` (dilation and groups),
# `minifcn/ops/reference/norm.py`, `minifcn/models/heads.py` (ASPP),
# `minifcn/models/resnet.py` (`Bottleneck`, the dilated backbone), `minifcn/models/unet_sizes.py`.

# %%
import numpy as np

import minifcn.ops as ops
from _common import grid, heat, import_torch, max_diff, output_dir, row, save
from minifcn.gradcheck import check_function
from minifcn.models import UNet
from minifcn.models.heads import ASPP, ASPP_RATES
from minifcn.models.resnet import ResNet50Backbone
from minifcn.models.unet_sizes import nearest_valid_sizes, output_size

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("09")
torch = import_torch()
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
# ## Depthwise separable convolution
#
# A depthwise 3x3 (`groups=C`, weight D of shape `(C, 1, 3, 3)`) then a pointwise 1x1
# (weight P, `(F, C, 1, 1)`): $z[c] = D[c] * x[c]$, $y[f] = \sum_c P[f, c]\, z[c]$
# $= \sum_c (P[f, c]\, D[c]) * x[c]$. So it *is* a full 3x3 convolution, with the weight
# $W[f, c, i, j] = P[f, c]\, D[c, i, j]$: each `(f, c)` kernel a multiple of channel c's
# one kernel. It has `9C + FC` weights and multiply-adds per pixel instead of `9FC`, a
# ratio of 1/F + 1/9.

# %%
C, F = 4, 6
x_sep = rng.standard_normal((2, C, 7, 8))
D = rng.standard_normal((C, 1, 3, 3))                          # depthwise
P = rng.standard_normal((F, C, 1, 1))                          # pointwise
z, _ = ops.conv2d_forward(x_sep, D, padding=1, groups=C)       # (2, C, 7, 8)
y_separable, _ = ops.conv2d_forward(z, P)                      # (2, F, 7, 8)
W_full = P[:, :, 0, 0, None, None] * D[None, :, 0]             # (F, C, 3, 3)
y_full, _ = ops.conv2d_forward(x_sep, W_full, padding=1)
separable_diff = max_diff(y_separable, y_full)
print(f"depthwise then pointwise against the full conv with W[f, c] = P[f, c] D[c]: "
      f"{separable_diff:.1e}")
counts = {}
for c, f in ((C, F), (256, 256), (2048, 256)):
    full, separable = 9 * f * c, 9 * c + f * c
    counts[(c, f)] = (full, separable)
    print(f"C={c:4d}, F={f}: full 3x3 {full:9,d} weights (and multiply-adds a pixel), "
          f"separable {separable:7,d}: {full / separable:.1f}x fewer")

# %% [markdown]
# ## Grouped convolution in general
#
# `groups=G` is G independent convolutions, group g's filters `W[g F/G : (g+1) F/G]`
# (each `(C/G, 3, 3)`) on channels `x[:, g C/G : (g+1) C/G]`, the outputs concatenated
# along the channels. Equivalently, a full convolution whose weight is zero outside the
# G diagonal blocks. Its backward splits the same way (`concat_backward` hands each group
# its slice of dy). Here C = 4, F = 6, G = 2.

# %%
G = 2
W_grouped = rng.standard_normal((F, C // G, 3, 3))             # (F, C/G, 3, 3)
y_grouped, grouped_cache = ops.conv2d_forward(x_sep, W_grouped, padding=1, groups=G)
parts, part_caches = [], []
for g in range(G):
    x_g = x_sep[:, g * C // G:(g + 1) * C // G]                # (N, C/G, H, W)
    y_g, cache_g = ops.conv2d_forward(x_g, W_grouped[g * F // G:(g + 1) * F // G], padding=1)
    parts.append(y_g)
    part_caches.append(cache_g)
y_concat, concat_cache = ops.concat_forward(parts)             # (N, F, H, W)
W_block = np.zeros((F, C, 3, 3))
for g in range(G):
    W_block[g * F // G:(g + 1) * F // G, g * C // G:(g + 1) * C // G] = \
        W_grouped[g * F // G:(g + 1) * F // G]
y_block, _ = ops.conv2d_forward(x_sep, W_block, padding=1)
dy_grouped = rng.standard_normal(y_grouped.shape)
dx_grouped = ops.conv2d_backward(dy_grouped, grouped_cache)[0]
dx_parts = np.concatenate([ops.conv2d_backward(d, cache)[0] for d, cache in
                           zip(ops.concat_backward(dy_grouped, concat_cache), part_caches)],
                          axis=1)
grouped_diffs = (max_diff(y_grouped, y_concat), max_diff(y_grouped, y_block),
                 max_diff(dx_grouped, dx_parts))
print(f"groups=2 against two convs concatenated: {grouped_diffs[0]:.1e}; against the "
      f"block-diagonal full conv: {grouped_diffs[1]:.1e}; dx against the groups' dx: "
      f"{grouped_diffs[2]:.1e}")

# %% [markdown]
# ## Batch normalisation: two variances
#
# Per channel, over its M = N*H*W values: training mode normalises by the batch mean
# $\mu$ and the *biased* variance $\sigma^2 = \frac1M \sum (x - \mu)^2$, so every
# channel of $\hat x$ has mean 0 and variance $\sigma^2/(\sigma^2 + \epsilon)$, just
# under 1. The running estimates, which eval mode uses, move by momentum m towards the
# batch's mean and its *unbiased* variance $\sigma^2 M/(M-1)$, the estimate of the
# population's. Here N = 2, 3 channels, 2x3 maps: M = 12, M/(M-1) = 12/11.

# %%
scale, shift = np.array([1.0, 2.0, 0.5]), np.array([0.0, 3.0, -1.0])
x_bn = rng.standard_normal((2, 3, 2, 3)) * scale[:, None, None] + shift[:, None, None]
gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
M = x_bn.shape[0] * x_bn.shape[2] * x_bn.shape[3]
running_mean, running_var = np.zeros(3), np.ones(3)
y_train, train_cache = ops.batch_norm2d_forward(x_bn, running_mean, running_var, gamma, beta,
                                                training=True, momentum=0.1)
batch_mean = x_bn.mean(axis=(0, 2, 3))
var_biased, var_unbiased = x_bn.var(axis=(0, 2, 3)), x_bn.var(axis=(0, 2, 3), ddof=1)
expected_running_var = 0.9 * 1.0 + 0.1 * var_unbiased         # what the running var becomes
running_var_1 = running_var.copy()                           # (the op updated it in place)
x_hat = (y_train - beta[:, None, None]) / gamma[:, None, None]
print("batch mean       ", np.round(batch_mean, 4))
print("biased var (/M)  ", np.round(var_biased, 4))
print("unbiased (/(M-1))", np.round(var_unbiased, 4),
      f"  ratio {var_unbiased[0] / var_biased[0]:.6f} = M/(M-1) = {M / (M - 1):.6f}")
running_unbiased_diff = max_diff(running_var_1, expected_running_var)
running_biased_diff = max_diff(running_var_1, 0.9 + 0.1 * var_biased)
print("running var after one step:", np.round(running_var_1, 6),
      f"; 0.9 + 0.1 * unbiased: {running_unbiased_diff:.1e} apart, "
      f"0.9 + 0.1 * biased: {running_biased_diff:.1e} apart")
print("x_hat per channel: mean", np.round(x_hat.mean(axis=(0, 2, 3)), 12) + 0.0, " variance",
      np.round(x_hat.var(axis=(0, 2, 3)), 7), " = var/(var + eps):",
      np.round(var_biased / (var_biased + 1e-5), 7))

# %% [markdown]
# ## Eval mode uses the running estimates
#
# Eval mode normalises by `running_mean` and `running_var` and changes nothing in them.
# After one step they are still mostly their start (0 and 1), so eval's output is far
# from training's. After 300 steps on the same batch they have converged to the batch
# mean and the *unbiased* variance, and eval's $\hat x$ is training's times
# $\sqrt{(\sigma^2 + \epsilon) / (\sigma^2 M/(M-1) + \epsilon)} \approx \sqrt{11/12}
# = 0.957$: with few values per channel the two modes never quite agree.

# %%
y_eval, _ = ops.batch_norm2d_forward(x_bn, running_mean, running_var, gamma, beta)
eval_by_hand = gamma[:, None, None] * (x_bn - running_mean[:, None, None]) / np.sqrt(
    running_var[:, None, None] + 1e-5) + beta[:, None, None]
print(f"eval mode after one step: against the formula {max_diff(y_eval, eval_by_hand):.1e};"
      f" against training mode {max_diff(y_eval, y_train):.2f}")
for _ in range(299):
    ops.batch_norm2d_forward(x_bn, running_mean, running_var, gamma, beta, training=True)
y_eval_late, _ = ops.batch_norm2d_forward(x_bn, running_mean, running_var, gamma, beta)
eval_ratio = (y_eval_late - beta[:, None, None]) / (y_train - beta[:, None, None])
shrink = np.sqrt((var_biased + 1e-5) / (var_unbiased + 1e-5))
print(f"after 300 steps: running var - unbiased var {max_diff(running_var, var_unbiased):.1e},"
      f" running mean - batch mean {max_diff(running_mean, batch_mean):.1e}")
print("eval x_hat / train x_hat per channel", np.round(eval_ratio.mean(axis=(0, 2, 3)), 6),
      "; sqrt((var + eps)/(unbiased + eps))", np.round(shrink, 6))

# %% [markdown]
# ## The training-mode backward
#
# With $r = 1/\sqrt{\sigma^2 + \epsilon}$ and means over the channel's M values (the
# derivation is in `batch_norm2d_backward`'s docstring):
#
# $$dx = \gamma\, r \big( dy - \overline{dy} - \hat x\; \overline{dy\, \hat x} \big).$$
#
# The first term is what eval mode's backward would give; the other two exist because
# $\mu$ and $\sigma^2$ move with every $x_j$. Adding a constant to a channel of x changes
# nothing in y (the mean takes it away), so dx must sum to zero per channel: the
# $-\overline{dy}$ term does it. Scaling a channel of x changes nothing either, apart from
# $\epsilon$, so dx is orthogonal to $\hat x$ up to a term in $\epsilon$: the third term does
# it, and exactly $\sum dx\, \hat x = \gamma r \frac{\epsilon}{\sigma^2 + \epsilon}
# \sum dy\, \hat x$. The check: the formula against the op, both against finite
# differences (`check_function`), and the eval-mode gradient $\gamma r\, dy$ failing.

# %%
dy_bn = rng.standard_normal(x_bn.shape)
dx_bn, dgamma, dbeta = ops.batch_norm2d_backward(dy_bn, train_cache)
r = 1 / np.sqrt(var_biased + 1e-5)
dy_mean = dy_bn.mean(axis=(0, 2, 3), keepdims=True)
dyx_mean = (dy_bn * x_hat).mean(axis=(0, 2, 3), keepdims=True)
dx_formula = (gamma * r)[:, None, None] * (dy_bn - dy_mean - x_hat * dyx_mean)
formula_diff = max_diff(dx_bn, dx_formula)
dx_sums = dx_bn.sum(axis=(0, 2, 3))
dx_dot_xhat = (dx_bn * x_hat).sum(axis=(0, 2, 3))
eps_term = gamma * r * 1e-5 / (var_biased + 1e-5) * (dy_bn * x_hat).sum(axis=(0, 2, 3))
print(f"the formula against batch_norm2d_backward: {formula_diff:.1e}")
print("sum of dx per channel     ", dx_sums)
print("sum of dx * x_hat         ", dx_dot_xhat)
print("gamma r eps/(var+eps) ... ", eps_term)


def bn_train(x, weight, bias):
    return ops.batch_norm2d_forward(x, None, None, weight, bias, training=True)


def eval_style_backward(dy, cache):            # treats the mean and variance as constants
    dx = (cache.weight * cache.rstd)[:, None, None] * dy
    return (dx,) + ops.batch_norm2d_backward(dy, cache)[1:]


report = check_function(bn_train, ops.batch_norm2d_backward, [x_bn, gamma, beta],
                        grad_output=dy_bn, title="batch_norm2d, training mode")
naive = check_function(bn_train, eval_style_backward, [x_bn, gamma, beta], grad_output=dy_bn,
                       title="without the two extra terms")
print(report)
print(naive)
print(f"failures without the extra terms: {naive.failures()}")

# %%
torch_diff = None
if torch is not None:
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x_bn, gamma, beta))
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    yt = torch.nn.functional.batch_norm(xt, rm, rv, gt, bt, training=True, momentum=0.1)
    yt.backward(torch.tensor(dy_bn))
    torch_diff = max(max_diff(yt.detach(), y_train), max_diff(xt.grad, dx_bn),
                     max_diff(gt.grad, dgamma), max_diff(bt.grad, dbeta),
                     max_diff(rv, 0.9 + 0.1 * var_unbiased))
    print(f"PyTorch batch_norm (training): y, dx, dgamma, dbeta, running var differ by "
          f"{torch_diff:.1e}")

# %% [markdown]
# ## U-Net's size rule
#
# U-Net's 3x3 convolutions are valid (no padding): each pair takes 4 pixels off a side,
# and each 2x2 pool halves what is left. A pool of an odd map drops its last row, and the
# skip connection's crop then no longer lines up with the upsampled map, so every map
# before a pool must be even: with depth d, `S + 4` must be a multiple of $2^d$. The
# paper's 572 walks down to 28 and back up to 388 (the expanding path's pairs take 4
# pixels more per level):

# %%
def unet_walk(size, depth=4):
    down = [size]
    for _ in range(depth):
        down += [down[-1] - 4, (down[-1] - 4) // 2]            # two valid 3x3, a 2x2 pool
    up = [down[-1] - 4]                                         # the bottom pair
    for _ in range(depth):
        up += [2 * up[-1], 2 * up[-1] - 4]                      # 2x2 transposed conv, pair
    return down, up


down, up = unet_walk(572)
print("down:", down, " bottom and up:", up)
print("unet_sizes.output_size(572, depth=4) =", output_size(572, 4))
valid = [s for s in range(560, 600) if (s + 4) % 16 == 0]
print("sizes from 560 to 599 with S + 4 a multiple of 16:", valid)
try:
    output_size(500, 4)
    size_error = None
except ValueError as error:
    size_error = str(error)
print("500:", size_error)
print("nearest_valid_sizes(500, 4) =", nearest_valid_sizes(500, 4), "; 500 walks down as",
      unet_walk(500)[0])

# %% [markdown]
# A small UNet (depth 2, base 2 channels) checks the rule on the model: it takes 60x76
# (60 + 4 and 76 + 4 multiples of 4) to 20x36, 40 pixels less each way, and refuses 62.

# %%
unet = UNet(n_class=2, in_channels=1, base=2, depth=2, dtype=np.float64, rng=0)
unet_out = unet(rng.standard_normal((1, 1, 60, 76)))
print("UNet(depth=2) on 60x76 ->", unet_out.shape[2:], "; output_size:",
      output_size(60, 2), output_size(76, 2))
try:
    unet(rng.standard_normal((1, 1, 62, 76)))
    unet_error = None
except ValueError as error:
    unet_error = str(error)
print("62x76:", unet_error)

# %% [markdown]
# ## Pictures
#
# `dilation.png`: a 3x3 kernel and its zero-stuffed 5x5 and 7x7 forms, and the receptive
# fields of three plain and three dilated (1, 2, 4) layers (the centre 17x17 of dx: white
# where most paths lead to the centre output, black where none does; the dilated field is
# full but uneven, a grid of pixels reached by many paths and pixels reached by one). `aspp_taps.png`: how many of
# the 9 taps read inside the 65x65 map, per pixel, at rates 12, 24 and 36 (white: 9,
# black: 1). `separable.png`: the full weight `P[f, c] D[c]` of filter 0, one 3x3 per
# channel, each a multiple of D[c].

# %%
save(row(grid(w3[0, 0], "3x3", fmt="{:.1f}"), grid(stuffed[2][0, 0], "D=2", fmt="{:.1f}"),
         grid(stuffed[3][0, 0], "D=3", fmt="{:.1f}", cell=30),
         heat(reach_plain[8:25, 8:25], "plain: 7x7", zoom=8),
         heat(reach_dilated[8:25, 8:25], "1, 2, 4: 15x15", zoom=8)), OUT, "dilation.png")
save(row(*[heat(taps[r], f"rate {r}", zoom=3, vmin=1, vmax=9) for r in ASPP_RATES]),
     OUT, "aspp_taps.png")
save(row(*[grid(W_full[0, c], f"W[0, {c}]", fmt="{:.2f}", cell=40) for c in range(C)]),
     OUT, "separable.png")
