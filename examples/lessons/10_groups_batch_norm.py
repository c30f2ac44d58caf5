# %% [markdown]
# # Lesson 10: groups, batch normalisation and U-Net's sizes
#
# Three more things the segmentation networks after FCN change in their layers, taken
# apart with small numbers on minifcn's own ops (lesson 9 did dilation and ASPP).
#
# **Groups** split the channels into G groups, each filter seeing only its group's C/G
# channels. G = C is the depthwise convolution (lesson 7); a depthwise 3x3 followed by a
# 1x1 (pointwise) is the depthwise separable convolution of DeepLabV3+ and Xception.
#
# **Batch normalisation** normalises each channel by statistics of the batch in training
# and by running estimates in eval mode; its training-mode backward has two extra terms,
# because the mean and variance depend on every input. Last, U-Net's size rule: why only
# some input sizes work. The code: `minifcn/ops/reference/conv.py` (groups),
# `minifcn/ops/reference/norm.py`, `minifcn/models/unet_sizes.py`.

# %%
import numpy as np

import minifcn.ops as ops
from _common import grid, import_torch, max_diff, output_dir, row, save
from minifcn.gradcheck import check_function
from minifcn.models import UNet
from minifcn.models.unet_sizes import nearest_valid_sizes, output_size

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("10")
torch = import_torch()
rng = np.random.default_rng(10)

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

# %% [markdown]
# ## Picture
#
# `separable.png`: the full weight `P[f, c] D[c]` of filter 0, one 3x3 per channel, each a
# multiple of D[c].

# %%
save(row(*[grid(W_full[0, c], f"W[0, {c}]", fmt="{:.2f}", cell=40) for c in range(C)]),
     OUT, "separable.png")
