# %% [markdown]
# # Lesson 2: the transposed convolution is the convolution's backward
#
# A convolution is linear in its input, so for a fixed weight it is a matrix: flatten x
# `(H, W)` into a vector of length `H*W` and y into one of length `OH*OW`, and
#
# $$y = C\,x, \qquad C \in \mathbb{R}^{(OH \cdot OW) \times (H \cdot W)} .$$
#
# Its input gradient is $dx = C^T dy$ (lesson 1 computed it as `col2im(W^T dY)`). A
# *transposed convolution* is exactly that map, used as a layer of its own: it takes a
# small map z to a big one, $z \mapsto C^T z$. So
#
# * `conv_transpose2d(z, W)` is conv2d's input gradient with z in the role of dy, and
# * `conv_transpose2d`'s own input gradient is `conv2d(dy, W)`: the transpose of $C^T$ is $C$.
#
# The weight keeps conv2d's layout read the other way: a conv weight `(F, C, KH, KW)`
# serves as a transposed-conv weight with `C_in = F` input and `C_out = C` output channels,
# the layout of `torch.nn.functional.conv_transpose2d`. Its output size along one axis:
#
# $$OH = (H - 1)S - 2P + D(K - 1) + \text{output\_padding} + 1 .$$
#
# The code: `conv_transpose2d_forward` in `minifcn/ops/reference/conv.py` is four lines
# around `conv2d_input_grad`.

# %%
import numpy as np

import minifcn.ops as ops
from _common import grid, heat, import_torch, max_diff, output_dir, row, save

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("02")
torch = import_torch()

# %% [markdown]
# ## The matrix C of a small convolution
#
# A 5x5 image, a 3x3 kernel holding 1..9 (so each entry of C says which weight it is),
# stride 2, no padding: 2x2 outputs. Column k of C is the convolution of the k-th unit
# image, so we can build C by convolving the 25 unit images.

# %%
H = W = 5
weight = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)              # (F, C, KH, KW)
units = np.eye(H * W).reshape(H * W, 1, H, W)                  # 25 unit images, (25, 1, 5, 5)
y_units, _ = ops.conv2d_forward(units, weight, stride=2)       # (25, 1, 2, 2)
C = y_units.reshape(H * W, 4).T                                # (OH*OW, H*W) = (4, 25)
print("C (4x25): row r holds the kernel, laid out where output r's window sits\n",
      C.astype(int))

# %% [markdown]
# ## conv_transpose2d(z) = C^T z
#
# Take a 2x2 map z. The transposed convolution pastes one copy of the kernel per input
# pixel, scaled by it, at stride 2 on a 5x5 canvas; the copies overlap on row and column
# 2, where they add. That is exactly $C^T z$.

# %%
z = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])               # (N, C_in, 2, 2)
y_t, cache_t = ops.conv_transpose2d_forward(z, weight, stride=2)   # (1, 1, 5, 5)
y_matrix = (C.T @ z.reshape(4)).reshape(5, 5)
print("conv_transpose2d(z) =\n", y_t[0, 0].astype(int))
print("C^T z == conv_transpose2d(z):", np.array_equal(y_matrix, y_t[0, 0]))

# %% [markdown]
# And the other way round: the transposed convolution's input gradient is the convolution
# of dy, and conv2d's input gradient is the transposed convolution of dy.

# %%
rng = np.random.default_rng(0)
dy_big = rng.standard_normal((1, 1, 5, 5))
dz, _, _ = ops.conv_transpose2d_backward(dy_big, cache_t)
conv_of_dy, _ = ops.conv2d_forward(dy_big, weight, stride=2)
backward_is_conv = max_diff(dz, conv_of_dy)
x_small = rng.standard_normal((1, 1, 5, 5))
_, cache_c = ops.conv2d_forward(x_small, weight, stride=2)
dz_small = rng.standard_normal((1, 1, 2, 2))
dx_conv, _, _ = ops.conv2d_backward(dz_small, cache_c)
forward_is_conv_grad = max_diff(dx_conv, ops.conv_transpose2d_forward(dz_small, weight,
                                                                      stride=2)[0])
print(f"conv_transpose2d_backward(dy) - conv2d(dy): max |difference| {backward_is_conv:.1e}")
print(f"conv2d_backward(dy) - conv_transpose2d(dy): max |difference| {forward_is_conv_grad:.1e}")

# %% [markdown]
# ## Output sizes
#
# A convolution with stride S rounds down, so several input sizes give one output size: a
# 3x3, stride 2, padding 1 convolution takes both 7 and 8 pixels to 4. Going back, the
# transposed convolution of 4 pixels gives 7; `output_padding = 1` asks for the 8 (it adds
# a row at the bottom/right, it is not padding of the input). FCN's upsampling layers use
# kernel 2s at stride s with no padding: `upscore2` (k4 s2) takes H to 2H + 2 and
# `upscore8` (k16 s8) takes H to 8H + 8; the extra pixels are cropped away (lesson 6).

# %%
cases = [  # name, H, kernel, stride, padding, output_padding
    ("undo conv k3 s2 p1 of 7", 4, 3, 2, 1, 0),
    ("undo conv k3 s2 p1 of 8", 4, 3, 2, 1, 1),
    ("FCN upscore2", 10, 4, 2, 0, 0),
    ("FCN upscore8", 10, 16, 8, 0, 0),
    ("bilinear x4 (lesson 4)", 10, 8, 4, 2, 0),
]
sizes = {}
for name, h, k, s, p, op in cases:
    formula = (h - 1) * s - 2 * p + (k - 1) + op + 1
    y_case, _ = ops.conv_transpose2d_forward(np.zeros((1, 1, h, h)), np.zeros((1, 1, k, k)),
                                             stride=s, padding=p, output_padding=op)
    sizes[name] = (formula, ops.conv_transpose_output_size(h, k, s, p, op), y_case.shape[2])
    print(f"{name:26s} H={h:2d} k={k:2d} s={s} p={p} output_padding={op}: "
          f"({h}-1)*{s} - 2*{p} + {k - 1} + {op} + 1 = {formula}; the op gives {y_case.shape[2]}")
print("a conv k3 s2 p1 takes 7 and 8 to:",
      ops.conv_output_size(7, 3, 2, 1), ops.conv_output_size(8, 3, 2, 1))

# %% [markdown]
# ## Uneven overlap: the checkerboard
#
# The copies of the kernel overlap. Transposed-convolve a map of ones with a kernel of ones
# and each output pixel counts how many copies land on it. With kernel 3 at stride 2 the
# count alternates 1, 2, 4 (a learned kernel has to fight that pattern: the checkerboard
# artifact); with kernel 4 at stride 2 every inner pixel gets 4. That is one reason FCN
# upsamples by s with kernel 2s. `examples/checkerboard.py` draws it at full size.

# %%
def overlap(kernel, stride, size=6):
    y_ones, _ = ops.conv_transpose2d_forward(np.ones((1, 1, size, size)),
                                             np.ones((1, 1, kernel, kernel)), stride=stride)
    return y_ones[0, 0]


overlap_k3, overlap_k4 = overlap(3, 2), overlap(4, 2)
inner_k3 = sorted(set(overlap_k3[2:-2, 2:-2].ravel().tolist()))
inner_k4 = sorted(set(overlap_k4[2:-2, 2:-2].ravel().tolist()))
print("copies per inner pixel, kernel 3 stride 2:", inner_k3)
print("copies per inner pixel, kernel 4 stride 2:", inner_k4)

# %% [markdown]
# ## PyTorch

# %%
torch_diff = None
if torch is not None:
    F = torch.nn.functional
    torch_diff = max_diff(F.conv_transpose2d(torch.tensor(z), torch.tensor(weight), stride=2),
                          y_t)
    torch_sizes = [F.conv_transpose2d(torch.zeros(1, 1, h, h), torch.zeros(1, 1, k, k),
                                      stride=s, padding=p, output_padding=op).shape[2]
                   for _, h, k, s, p, op in cases]
    torch_diff = max(torch_diff, max_diff(torch_sizes, [v[2] for v in sizes.values()]))
    print(f"PyTorch: conv_transpose2d and the output sizes differ by at most {torch_diff:.1e}")

# %% [markdown]
# ## Pictures
#
# `matrix.png`: C and $C^T z$. `overlap.png`: the copies per pixel, kernel 3 against 4.

# %%
save(row(heat(C, "C (4x25), white = 9", zoom=16),
         grid(y_t[0, 0], "conv_transpose2d(z) = C^T z", cell=48)), OUT, "matrix.png")
save(row(grid(overlap_k3, "kernel 3, stride 2", cell=26),
         grid(overlap_k4, "kernel 4, stride 2", cell=26)), OUT, "overlap.png")
