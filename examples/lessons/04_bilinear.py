# %% [markdown]
# # Lesson 4: bilinear upsampling, and FCN's upscore kernel
#
# Along one axis, bilinear interpolation by a factor s (PyTorch's `align_corners=False`)
# matches pixel *centres*: output pixel o looks at the input coordinate
#
# $$\mathrm{src}(o) = \frac{o + 0.5}{s} - 0.5,$$
#
# and blends the two input pixels around it, $i_0 = \lfloor \mathrm{src} \rfloor$ and
# $i_0 + 1$, with weights $1 - t$ and $t$, $t = \mathrm{src} - i_0$ (clamped at the
# borders: before the first centre and after the last, the edge pixel is repeated). That is
# a matrix $A$ of shape `(O, L)` with two non-zeros per row, each row summing to 1. Two
# dimensions are separable: per image and channel,
#
# $$y = A_h\, x\, A_w^T, \qquad dx = A_h^T\, dy\, A_w .$$
#
# FCN upsamples its class scores with a *transposed convolution* of kernel 2s at stride s
# whose weight is the bilinear "tent"
#
# $$K[i, j] = \Big(1 - \frac{|i - c|}{s}\Big)\Big(1 - \frac{|j - c|}{s}\Big),
#   \qquad c = s - \tfrac12 .$$
#
# This lesson shows, by computation, that the two are the same map away from the border,
# and what happens at the border. The code: `minifcn/ops/reference/upsample.py`;
# `bilinear_kernel` in `minifcn/ops/upsample.py`.

# %%
import numpy as np

import minifcn.ops as ops
from _common import column, grid, heat, import_torch, max_diff, output_dir, row, save
from minifcn.ops.upsample import linear_interpolation_matrix

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("04")
torch = import_torch()
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## The interpolation matrix: 3 pixels to 6
#
# Output 0 sits at src = -0.25, before the first centre: it copies pixel 0. Output 1 sits
# at 0.25: three quarters of pixel 0, one quarter of pixel 1. And so on.

# %%
A = linear_interpolation_matrix(3, 6)                          # (O, L) = (6, 3)
A_corners = linear_interpolation_matrix(3, 6, align_corners=True)
print("A (align_corners=False) =\n", A)
print("A (align_corners=True: src = o (L-1)/(O-1), the corners' centres coincide) =\n",
      A_corners)

# %% [markdown]
# The op is these two products, forward and backward:

# %%
rng = np.random.default_rng(4)
x = rng.standard_normal((1, 1, 3, 4))
y, cache = ops.upsample_bilinear2d_forward(x, scale_factor=2)      # (1, 1, 6, 8)
A_w = linear_interpolation_matrix(4, 8)
matrix_forward = max_diff(y[0, 0], A @ x[0, 0] @ A_w.T)
dy = rng.standard_normal(y.shape)
matrix_backward = max_diff(ops.upsample_bilinear2d_backward(dy, cache)[0, 0],
                           A.T @ dy[0, 0] @ A_w)
print(f"y  - A_h x A_w^T:   max |difference| {matrix_forward:.1e}")
print(f"dx - A_h^T dy A_w:  max |difference| {matrix_backward:.1e}")

# %% [markdown]
# ## FCN's upscore kernel
#
# For s = 2 the kernel is 4x4, the outer product of the tent (1/4, 3/4, 3/4, 1/4). Each
# input pixel pastes one copy of it, scaled by its value, every 2 output pixels; the tent's
# weights are exactly the interpolation weights $1 - |\mathrm{src}(o) - h|$ of the pixels
# it reaches, and the overlapping copies sum to 1.

# %%
K4 = ops.bilinear_kernel(4)
tent = np.sqrt(np.diag(K4))                                    # K[i, i] = tent[i]^2
print("bilinear_kernel(4) =\n", K4)
print("its 1-D tent:", tent, " kernel == np.outer(tent, tent):",
      np.allclose(K4, np.outer(tent, tent)))

# %% [markdown]
# ## Proof by computation: the transposed convolution's matrix
#
# Along one axis the transposed convolution (kernel 2s, stride s, padding s/2) is also a
# matrix T `(L*s, L)`: transposed-convolve each unit vector. Compare T with the
# interpolation matrix A row by row, for FCN's factors 2 and 8 (upscore2, upscore8) and for
# 4: every row agrees except s/2 rows at each end.

# %%
def transposed_conv_matrix(length, s):
    """The (length*s, length) matrix of conv_transpose2d with the bilinear kernel 2s."""
    units = np.eye(length).reshape(length, 1, 1, length)       # unit vectors as 1xL images
    tent = np.sqrt(np.diag(ops.bilinear_kernel(2 * s)))       # (2s,), the 1-D tent
    w = tent.reshape(1, 1, 1, 2 * s)                           # (C_in, C_out, 1, 2s)
    out, _ = ops.conv_transpose2d_forward(units, w, stride=(1, s), padding=(0, s // 2))
    return out[:, 0, 0, :].T                                   # (length*s, length)


rows_equal = {}
for s in (2, 4, 8):
    T, A_s = transposed_conv_matrix(6, s), linear_interpolation_matrix(6, 6 * s)
    same = np.all(np.abs(T - A_s) < 1e-12, axis=1)              # (6s,) per output row
    rows_equal[s] = (int(same.sum()), T.shape[0], int(np.flatnonzero(~same).size))
    print(f"s = {s}: {same.sum()} of {T.shape[0]} rows equal; the others are rows "
          f"{np.flatnonzero(~same).tolist()} (s/2 = {s // 2} at each end)")
T2 = transposed_conv_matrix(3, 2)
print("T for 3 -> 6 (s = 2) =\n", T2, "\nrows 0 and 5 hold 0.75, not 1: "
      "the tent's other quarter would come from a pixel beyond the border, a zero")

# %% [markdown]
# ## The same in 2-D, and at the border
#
# Upsampling an 8x8 image by 4: inside, the transposed convolution and interpolation agree
# to rounding. On the 2-pixel border they differ: interpolation repeats the edge pixel,
# the transposed convolution fades towards zero. On the first row, away from the corners,
# it returns $(1 - |\mathrm{src} - 0|)$ times the edge value, 0.625 and 0.875 for s = 4.
# FCN's upscore layers use padding 0 and keep the whole `(H + 1)s` output; the crops of
# lesson 6 then cut away more than these borders.

# %%
s = 4
i, j = np.mgrid[:8, :8]
image = ((i + j) / 14.0 + 0.5 * ((i - 3) ** 2 + (j - 4) ** 2 < 5))[None, None]   # (1, 1, 8, 8)
w = ops.bilinear_upsampling_weight(1, 2 * s, dtype=np.float64)  # (C_in, C_out, 2s, 2s)
by_conv, _ = ops.conv_transpose2d_forward(image, w, stride=s, padding=s // 2)
by_interp, _ = ops.upsample_bilinear2d_forward(image, scale_factor=s)
diff = np.abs(by_conv - by_interp)[0, 0]
inside = float(diff[s // 2:-s // 2, s // 2:-s // 2].max())
border = float(diff.max())
ratio = by_conv[0, 0, :2, 4:-4] / by_interp[0, 0, :2, 4:-4]     # rows 0, 1; inner columns
first_rows_ratio = (ratio.min(axis=1), ratio.max(axis=1))
print(f"upsampling 8x8 by {s}: max |conv_transpose - interpolate| inside {inside:.1e}, "
      f"on the border {border:.3f}")
print("conv_transpose / interpolate on rows 0 and 1 (inner columns): min",
      first_rows_ratio[0], "max", first_rows_ratio[1])

# %% [markdown]
# With `align_corners=True` the source coordinates differ, `o (L-1)/(O-1)`: no fixed
# kernel at stride s reproduces it, and the difference is everywhere, not only at the
# border.

# %%
by_corners, _ = ops.upsample_bilinear2d_forward(image, scale_factor=s, align_corners=True)
corners_inside = float(np.abs(by_conv - by_corners)[0, 0, s:-s, s:-s].max())
print(f"max |conv_transpose - interpolate(align_corners=True)| inside: {corners_inside:.3f}")

# %% [markdown]
# `bilinear_upsampling_weight(C, k)` puts the kernel on the diagonal `W[c, c]` only, so each
# of the C class-score maps is upsampled on its own. minifcn freezes these layers by
# default (`learn_upsampling=False`, as the reference nets do): FCN's upsampling is then
# this fixed interpolation; with `learn_upsampling=True` it starts here and learns.

# %%
two = rng.standard_normal((1, 2, 5, 5))
both, _ = ops.conv_transpose2d_forward(two, ops.bilinear_upsampling_weight(2, 4, np.float64),
                                       stride=2)
separately = [ops.conv_transpose2d_forward(two[:, c:c + 1], K4[None, None], stride=2)[0]
              for c in range(2)]
channels_apart = max_diff(both, np.concatenate(separately, axis=1))
print(f"2 channels at once vs one by one: max |difference| {channels_apart:.1e}")

# %% [markdown]
# ## PyTorch

# %%
torch_diff = None
if torch is not None:
    F = torch.nn.functional
    torch_diff = max(
        max_diff(F.interpolate(torch.tensor(image), scale_factor=s, mode="bilinear",
                               align_corners=False), by_interp),
        max_diff(F.interpolate(torch.tensor(image), scale_factor=s, mode="bilinear",
                               align_corners=True), by_corners),
        max_diff(F.conv_transpose2d(torch.tensor(image), torch.tensor(w), stride=s,
                                    padding=s // 2), by_conv))
    print(f"PyTorch: interpolate (both modes) and conv_transpose2d differ by {torch_diff:.1e}")

# %% [markdown]
# ## Pictures
#
# `matrices.png`: A and T for 6 -> 24 pixels (s = 4). `upsampling.png`: the image, both
# upsamplings and their difference (scaled), which lives on the border only.

# %%
save(row(heat(linear_interpolation_matrix(6, 24), "A: interpolate, 6 -> 24", zoom=10),
         heat(transposed_conv_matrix(6, 4), "T: conv_transpose k8 s4", zoom=10)),
     OUT, "matrices.png")
save(column(row(heat(image[0, 0], "input 8x8", zoom=24, vmin=0, vmax=1.5),
                heat(by_conv[0, 0], "conv_transpose", zoom=6, vmin=0, vmax=1.5)),
            row(heat(by_interp[0, 0], "interpolate", zoom=6, vmin=0, vmax=1.5),
                heat(diff, f"|difference|, max {border:.2f}", zoom=6))),
     OUT, "upsampling.png")
save(grid(K4, "bilinear_kernel(4)", fmt="{:.4f}", cell=60), OUT, "kernel.png")
