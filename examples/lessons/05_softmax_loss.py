# %% [markdown]
# # Lesson 5: softmax cross-entropy, the loss of every pixel
#
# FCN scores every pixel with C logits x and compares them with the pixel's label t. The
# softmax turns logits into probabilities, the loss is minus the log of the label's one:
#
# $$p_c = \frac{e^{x_c}}{\sum_k e^{x_k}}, \qquad
#   \ell = -\log p_t = \log \sum_k e^{x_k} - x_t .$$
#
# $e^{x}$ overflows float64 above $x \approx 709$ (float32: 88), so both are computed from
# $x - m$, $m = \max_k x_k$, which changes nothing mathematically (log-sum-exp):
#
# $$\log \sum_k e^{x_k} = m + \log \sum_k e^{x_k - m} .$$
#
# The gradient is the reason this pair is used everywhere:
#
# $$\frac{\partial \ell}{\partial x_c} = p_c - [c = t] \qquad (\text{softmax} - \text{onehot}).$$
#
# Over an image, pixels labelled 255 (PASCAL VOC's "void", the outlines of objects) are
# ignored: zero loss, zero gradient. The rest, V, are averaged (`reduction="mean"`,
# $L = \frac{1}{|V|}\sum_{i \in V} \ell_i$) or summed (`"sum"`, FCN's original,
# unnormalised loss). The code: `minifcn/ops/reference/loss.py`.

# %%
import numpy as np

import minifcn.ops as ops
from _common import grid, import_torch, max_diff, output_dir, row, save
from minifcn.gradcheck import check_function

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("05")
torch = import_torch()
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## Large logits: why subtract the maximum
#
# Logits 1000, 1001, 1002 are as good as 0, 1, 2: the softmax only sees differences. The
# textbook formula overflows to inf/inf = NaN; the max-subtracted one does not. And the
# log of a probability that rounds to 0 is $-\infty$, while `log_softmax` computes it
# without taking that log.

# %%
big = np.array([[1000.0, 1001.0, 1002.0]])                     # (N, C) = (1, 3)
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(big) / np.exp(big).sum()
stable = ops.softmax(big)
print("textbook softmax of [1000, 1001, 1002]:", naive[0])
print("minifcn softmax of [1000, 1001, 1002]: ", stable[0])
print("the same as the softmax of [0, 1, 2]:  ", ops.softmax(big - 1000)[0])
far = np.array([[-1000.0, 0.0]])
with np.errstate(divide="ignore"):
    naive_log = np.log(ops.softmax(far))
print("log(softmax([-1000, 0])):", naive_log[0], "  log_softmax:", ops.log_softmax(far)[0])

# %% [markdown]
# ## One pixel by hand
#
# Logits (2, 1, 0.1), label 0: compute $p$, $\ell$ and $p - \mathrm{onehot}$ by hand and
# with minifcn's pair, and let the gradient checker compare the backward with finite
# differences.

# %%
logits = np.array([[2.0, 1.0, 0.1]])                           # (N, C)
label = np.array([0])                                          # (N,)
p_hand = np.exp(logits[0]) / np.exp(logits[0]).sum()
loss_hand = -np.log(p_hand[0])
grad_hand = p_hand - np.array([1.0, 0.0, 0.0])
loss, cache = ops.softmax_cross_entropy_forward(logits, label)
grad, _, _ = ops.softmax_cross_entropy_backward(1.0, cache)
print("p =", p_hand, " loss = -log p_0 =", round(float(loss_hand), 6))
print("gradient p - onehot =", grad_hand, " the backward gives", grad[0])
one_pixel = check_function(lambda x: ops.softmax_cross_entropy_forward(x, label),
                           lambda dy, c: ops.softmax_cross_entropy_backward(dy, c)[:1],
                           [logits], names=["logits"], title="softmax cross-entropy")
print(f"gradcheck: passed={one_pixel.passed}, worst |analytic - numerical| "
      f"{one_pixel.tensor('logits').max_abs_error:.1e}")

# %% [markdown]
# ## A label map with void pixels
#
# A 4x5 map of 3 classes with a void (255) outline around one object. The mean divides by
# the 13 valid pixels, not by all 20, and the ignored pixels get exactly zero gradient. Each
# valid pixel's gradient is its $(p - \mathrm{onehot}) / |V|$.

# %%
rng = np.random.default_rng(5)
target = np.array([[[0, 0, 0, 0, 0],
                     [0, 255, 255, 255, 0],
                     [0, 255, 2, 255, 1],
                     [0, 255, 255, 1, 1]]])                  # (N, H, W), 7 void pixels
scores = rng.standard_normal((1, 3, 4, 5))                     # (N, C, H, W)
valid = target != 255
n_valid = int(valid.sum())
mean_loss, mean_cache = ops.softmax_cross_entropy_forward(scores, target)
pixel_loss, _ = ops.softmax_cross_entropy_forward(scores, target, reduction="none")
d_mean, _, _ = ops.softmax_cross_entropy_backward(1.0, mean_cache)
onehot = np.eye(3)[np.where(valid, target, 0)].transpose(0, 3, 1, 2)   # (N, C, H, W)
grad_by_hand = (ops.softmax(scores) - onehot) * valid[:, None] / n_valid
print(f"{n_valid} valid pixels of {target.size}; mean loss {float(mean_loss):.6f} = "
      f"sum over valid {float(pixel_loss.sum()):.6f} / {n_valid}")
print("largest |gradient| at a void pixel:", float(np.abs(d_mean * ~valid[:, None]).max()))
print(f"gradient vs (softmax - onehot) / |V|: max |difference| "
      f"{max_diff(d_mean, grad_by_hand):.1e}")

# %% [markdown]
# ## Mean or sum, and FCN's learning rates 1e-10, 1e-12, 1e-14
#
# The sum is |V| times the mean, and so is its gradient. An SGD step is
# $-\eta\, \partial L / \partial w$, so a step on the sum with rate $\eta$ is a step on the
# mean with rate $\eta |V|$: the two are the same training, at rescaled rates.
#
# The original FCN nets sum the loss over every pixel of one image (batch 1, momentum
# 0.99), and train FCN-32s at $\eta = 10^{-10}$; FCN-16s and FCN-8s start from the trained
# coarser net and use $10^{-12}$ and $10^{-14}$. A PASCAL VOC image has about
# 500 x 375 = 187,500 pixels, so 1e-10 on the sum is about 1.9e-5 on the mean: a rate
# that looks absurd is an ordinary one in disguise. minifcn's loss defaults to the mean,
# so that rates do not depend on the image size.

# %%
sum_loss, sum_cache = ops.softmax_cross_entropy_forward(scores, target, reduction="sum")
d_sum, _, _ = ops.softmax_cross_entropy_backward(1.0, sum_cache)
print(f"sum {float(sum_loss):.6f} = {n_valid} x mean {float(mean_loss):.6f}: "
      f"{np.isclose(float(sum_loss), n_valid * float(mean_loss), rtol=1e-14, atol=0)}")
sum_vs_mean_grad = max_diff(d_sum, n_valid * d_mean)
print(f"gradient of the sum - |V| x gradient of the mean: max |difference| "
      f"{sum_vs_mean_grad:.1e}")
voc_pixels = 500 * 375
fcn_rates = {"FCN-32s": 1e-10, "FCN-16s": 1e-12, "FCN-8s": 1e-14}
mean_rates = {name: rate * voc_pixels for name, rate in fcn_rates.items()}
for name, rate in fcn_rates.items():
    print(f"{name}: rate {rate:.0e} on the sum = {mean_rates[name]:.2g} on the mean "
          f"for a {voc_pixels:,}-pixel image")

# %% [markdown]
# ## PyTorch

# %%
torch_diff = None
if torch is not None:
    F = torch.nn.functional
    torch_diff = 0.0
    for reduction, ours_loss, ours_grad in (("mean", mean_loss, d_mean),
                                            ("sum", sum_loss, d_sum)):
        xt = torch.tensor(scores, requires_grad=True)
        lt = F.cross_entropy(xt, torch.tensor(target), ignore_index=255, reduction=reduction)
        lt.backward()
        torch_diff = max(torch_diff, max_diff(lt.detach(), ours_loss),
                         max_diff(xt.grad, ours_grad))
    torch_diff = max(torch_diff, max_diff(torch.softmax(torch.tensor(big), 1), stable))
    print(f"PyTorch: cross_entropy (mean, sum, ignore_index=255), its gradients and the "
          f"softmax of large logits differ by {torch_diff:.1e}")

# %% [markdown]
# ## Pictures
#
# `pixel_loss.png`: the labels (void framed), each pixel's loss, and the size of its
# gradient (0 on void). `one_pixel.png`: logits, p, onehot and p - onehot.

# %%
grad_size = np.sqrt((d_mean[0] ** 2).sum(axis=0))              # (H, W)
save(row(grid(target[0], "labels (255 = void)", fmt="{:.0f}", marks=~valid[0], cell=40),
         grid(pixel_loss[0], "loss per pixel", fmt="{:.2f}", marks=~valid[0], cell=40),
         grid(grad_size * 1000, "|gradient| x 1000", fmt="{:.1f}", cell=40)),
     OUT, "pixel_loss.png")
save(grid(np.stack([logits[0], p_hand, [1.0, 0, 0], grad_hand]),
          "rows: logits, p, onehot, p - onehot", fmt="{:.3f}", cell=56), OUT, "one_pixel.png")
