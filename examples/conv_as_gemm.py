"""A convolution is one matrix product: see im2col at work, and its adjoint col2im.

Run: python examples/conv_as_gemm.py
"""
import numpy as np

from minifcn.ops import col2im, conv2d_forward, im2col

rng = np.random.default_rng(0)
x = rng.standard_normal((1, 2, 5, 5))            # (N, C, H, W)
weight = rng.standard_normal((3, 2, 3, 3))       # (F, C, KH, KW)

# 1. Every 2x3x3 window of x becomes one column: (C*KH*KW, N*OH*OW) = (18, 9).
col = im2col(x, kernel_size=3, stride=2, padding=1)
print("im2col:", x.shape, "->", col.shape)
print("column 0 is the top-left window (zero padding included):\n",
      col[:, 0].reshape(2, 3, 3).round(2))

# 2. The convolution is then a single GEMM: (F, C*KH*KW) @ (C*KH*KW, N*OH*OW).
y_gemm = (weight.reshape(3, -1) @ col).reshape(3, 1, 3, 3).transpose(1, 0, 2, 3)
y, _ = conv2d_forward(x, weight, stride=2, padding=1)
print("conv2d == W @ im2col(x):", np.allclose(y, y_gemm))

# 3. col2im is im2col's adjoint: <im2col(x), c> == <x, col2im(c)> for every x and c.
#    It sums overlapping windows back onto the image, which is why it gives dx.
c = rng.standard_normal(col.shape)
lhs = np.vdot(col, c)
rhs = np.vdot(x, col2im(c, x.shape, kernel_size=3, stride=2, padding=1))
print(f"<im2col(x), c> = {lhs:.12f}\n<x, col2im(c)> = {rhs:.12f}")

# 4. How many windows read each pixel? col2im of all-ones counts them.
counts = col2im(np.ones_like(col), x.shape, kernel_size=3, stride=2, padding=1)
print("windows covering each pixel (stride 2 overlaps on odd rows/columns):\n", counts[0, 0])
