# %% [markdown]
# # Lesson 1: im2col, and a convolution as one matrix product
#
# A convolution (PyTorch's `conv2d`, strictly a cross-correlation) of x `(N, C, H, W)`
# with a weight `(F, C, KH, KW)`, stride S and zero padding P:
#
# $$y[n, f, p, q] = b[f] + \sum_{c, i, j} W[f, c, i, j]\; x_{pad}[n, c, pS + i, qS + j]$$
#
# `im2col` copies every `C x KH x KW` window of the padded input into one column of a
# matrix X, of shape `(C*KH*KW, N*OH*OW)`:
#
# $$X[(c, i, j), (n, p, q)] = x_{pad}[n, c, pS + i, qS + j]$$
#
# Seen as a matrix `(F, C*KH*KW)`, the weight then convolves the whole batch in one GEMM,
# and the two gradients are two more GEMMs:
#
# | what            | product                        | shapes                 |
# |-----------------|--------------------------------|------------------------|
# | forward         | $Y = W X$                      | (F, CKK) @ (CKK, NL)   |
# | weight gradient | $dW = dY\,X^T$                 | (F, NL) @ (NL, CKK)    |
# | input gradient  | $dX = W^T dY$, then col2im     | (CKK, F) @ (F, NL)     |
#
# `col2im` adds every entry of a column back onto the pixel it was copied from, summing
# where windows overlap. It is im2col's *adjoint*:
#
# $$\langle \mathrm{im2col}(x), c \rangle = \langle x, \mathrm{col2im}(c) \rangle
#   \quad\text{for every } x, c,$$
#
# and that is why it turns $dX$ into $dx$. The code is short:
# `minifcn/ops/reference/im2col.py` and `minifcn/ops/reference/conv.py`.
#
# Run: `python examples/lessons/01_im2col.py [--out DIR]` (PNGs go to
# `lesson-output/01/` by default, or `$MINIFCN_LESSON_OUT/01`).

# %%
import numpy as np

import minifcn.ops as ops
from _common import grid, import_torch, max_diff, output_dir, row, save

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("01")
torch = import_torch()

# %% [markdown]
# ## Tiny numbers: a 4x4 image, a 2x2 kernel
#
# With `KH = KW = 2`, stride 1 and no padding, a 4x4 image has `3 x 3 = 9` windows, so X
# has 4 rows (the window's pixels, in the order (i, j) = (0,0), (0,1), (1,0), (1,1)) and 9
# columns (the windows, row by row).

# %%
x = np.arange(16.0).reshape(1, 1, 4, 4)                 # (N, C, H, W) = (1, 1, 4, 4)
weight = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])         # (F, C, KH, KW) = (1, 1, 2, 2)
col = ops.im2col(x, kernel_size=2)                      # (C*KH*KW, N*OH*OW) = (4, 9)
print("x[0, 0] =\n", x[0, 0])
print("X = im2col(x), shape", col.shape, "\n", col)
print("column 0 is the top-left window [[0, 1], [4, 5]], read row by row:", col[:, 0])

# %% [markdown]
# The convolution is one product, `(1, 4) @ (4, 9)`, reshaped to the 3x3 output. Compare
# it with `conv2d_forward` and with the definition written as loops.

# %%
y_gemm = (weight.reshape(1, 4) @ col).reshape(1, 1, 3, 3)      # (F, N*OH*OW) -> (N, F, OH, OW)
y_op, cache = ops.conv2d_forward(x, weight)
y_loop = np.zeros((1, 1, 3, 3))
for p in range(3):
    for q in range(3):
        y_loop[0, 0, p, q] = (weight[0, 0] * x[0, 0, p:p + 2, q:q + 2]).sum()
print("Y = W X =\n", y_gemm[0, 0])
print("conv2d_forward == W @ im2col(x):", np.array_equal(y_op, y_gemm))
print("the loops of the definition give the same:", np.array_equal(y_loop, y_gemm))

# %% [markdown]
# ## The backward: two more GEMMs
#
# Take an upstream gradient dy (what the next layer sends back). With `dY` its matrix
# `(F, N*OH*OW)`: `dW = dY X^T` sums, for each weight entry, dy times the pixel that entry
# multiplied; `dX = W^T dY` gives one column per window, and col2im folds the columns back
# onto the image.

# %%
dy = np.array([[[[1.0, 0, 0], [0, 1, 0], [0, 0, 2]]]])  # (N, F, OH, OW)
dY = dy.reshape(1, 9)                                  # (F, N*OH*OW): N = F = 1 here
dW_gemm = (dY @ col.T).reshape(weight.shape)           # (F, CKK) -> (F, C, KH, KW)
dX = weight.reshape(1, 4).T @ dY                       # (CKK, N*OH*OW) = (4, 9)
dx_gemm = ops.col2im(dX, x.shape, kernel_size=2)       # (N, C, H, W)
dx_op, dW_op, _ = ops.conv2d_backward(dy, cache)
print("dW = dY X^T =\n", dW_gemm[0, 0])
print("dx = col2im(W^T dY) =\n", dx_gemm[0, 0])
print("conv2d_backward gives the same dW:", np.array_equal(dW_op, dW_gemm),
      " and the same dx:", np.array_equal(dx_op, dx_gemm))

# %% [markdown]
# ## The adjoint identity, numerically
#
# On a bigger, random case (2 images, 3 channels, 3x3 kernel, stride 2, padding 1), any x
# and any column matrix c must give the same inner product both ways. The two numbers
# agree to rounding: col2im is exactly the transpose of the linear map im2col.

# %%
rng = np.random.default_rng(0)
x_big = rng.standard_normal((2, 3, 5, 5))
geometry = dict(kernel_size=3, stride=2, padding=1)
col_big = ops.im2col(x_big, **geometry)                # (3*3*3, 2*3*3) = (27, 18)
c = rng.standard_normal(col_big.shape)
lhs = float(np.vdot(col_big, c))
rhs = float(np.vdot(x_big, ops.col2im(c, x_big.shape, **geometry)))
print(f"<im2col(x), c> = {lhs:.15f}")
print(f"<x, col2im(c)> = {rhs:.15f}")
print(f"difference {abs(lhs - rhs):.1e}")

# %% [markdown]
# How many windows read each pixel? col2im of a matrix of ones counts them: with a 3x3
# kernel at stride 2 the windows overlap on every other row and column, and those pixels
# collect gradient from 2 or 4 windows.

# %%
counts = ops.col2im(np.ones_like(col_big), x_big.shape, **geometry)[0, 0]
print("windows covering each pixel:\n", counts)

# %% [markdown]
# ## PyTorch
#
# The same forward and gradients from `torch.nn.functional.conv2d` and autograd.

# %%
torch_diff = None
if torch is not None:
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(weight, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt)
    yt.backward(torch.tensor(dy))
    torch_diff = max(max_diff(yt.detach(), y_gemm), max_diff(xt.grad, dx_gemm),
                     max_diff(wt.grad, dW_gemm))
    print(f"PyTorch: y, dx, dW differ from the GEMMs' by at most {torch_diff:.1e}")

# %% [markdown]
# ## Picture
#
# `im2col.png`: the image with the first window framed, X with its first column framed,
# the weight and the output. `overlap.png`: the window counts of the stride-2 case.

# %%
first = np.zeros((4, 4), bool)
first[:2, :2] = True
first_column = np.zeros(col.shape, bool)
first_column[:, 0] = True
save(row(grid(x[0, 0], "x (4x4)", marks=first),
         grid(col, "X = im2col(x) (4x9)", marks=first_column),
         grid(weight[0, 0], "W (2x2)"), grid(y_gemm[0, 0], "Y = W X (3x3)", cell=40)),
     OUT, "im2col.png")
save(grid(counts, "windows per pixel (3x3, stride 2, pad 1)", cell=44), OUT, "overlap.png")
