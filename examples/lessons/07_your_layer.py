# %% [markdown]
# # Lesson 7: writing and checking a layer of your own
#
# A new op is a pair, as every op in minifcn: `forward(x, ...) -> (y, cache)` and
# `backward(dy, cache) -> grads`, the cache holding exactly what the backward needs. Here:
# a *depthwise* convolution, one `KH x KW` filter per channel (PyTorch:
# `conv2d(x, w, b, groups=C)`, weight `(C, 1, KH, KW)`):
#
# $$y[n, c, p, q] = b[c] + \sum_{i, j} w[c, i, j]\; x_{pad}[n, c, pS + i, qS + j] .$$
#
# Built on lesson 1's im2col: the rows of `X = im2col(x)` are ordered (c, i, j), so
# `X.reshape(C, KH*KW, L)` gives each channel its own `(KH*KW, L)` block, and the three
# GEMMs of lesson 1 become one small product per channel:
#
# $$Y_c = w_c^T X_c, \qquad dw_c = X_c\, dY_c, \qquad dX_c = w_c\, dY_c^T
#   \;\text{(then col2im)}, \qquad db_c = \textstyle\sum dY_c .$$
#
# Then the checker: `minifcn.gradcheck.check_function` compares every gradient with
# central differences in float64,
# $\partial L/\partial x_k \approx (L(x + \epsilon e_k) - L(x - \epsilon e_k)) / 2\epsilon$
# with $L = \langle y, dy \rangle$ for a random dy, and a planted bug shows what a failure
# looks like and how to locate it. `examples/gradcheck_custom_layer.py` goes further
# (kinks, a Module with parameters, a backward that writes into its input).

# %%
from typing import NamedTuple

import numpy as np

import minifcn.ops as ops
from _common import grid, import_torch, max_diff, output_dir, row, save
from minifcn.backend import get_array_module
from minifcn.gradcheck import check_function, numerical_gradient

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("07")
torch = import_torch()

# %% [markdown]
# ## The op

# %%
class DepthwiseCache(NamedTuple):
    col: object          # im2col(x), (C*KH*KW, N*OH*OW)
    weight: object       # (C, 1, KH, KW)
    x_shape: tuple       # (N, C, H, W)
    stride: int
    padding: int


def depthwise_conv2d_forward(x, weight, bias, stride=1, padding=1):
    """y[n, c] = b[c] + the correlation of x[n, c] with its own filter weight[c, 0]."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    KH, KW = weight.shape[2:]
    OH, OW = (ops.conv_output_size(H, KH, stride, padding),
              ops.conv_output_size(W, KW, stride, padding))
    col = ops.im2col(x, (KH, KW), stride, padding)             # (C*KH*KW, N*OH*OW)
    X = col.reshape(C, KH * KW, N * OH * OW)                   # (C, KH*KW, L), per channel
    y = xp.einsum("ck,ckl->cl", weight.reshape(C, KH * KW), X)  # (C, L): Y_c = w_c^T X_c
    y = y + bias[:, None]
    y = y.reshape(C, N, OH, OW).transpose(1, 0, 2, 3)          # (N, C, OH, OW)
    return xp.ascontiguousarray(y), DepthwiseCache(col, weight, x.shape, stride, padding)


def depthwise_conv2d_backward(dy, cache):
    """(dx, dweight, dbias), from the three per-channel products."""
    xp = get_array_module(dy)
    col, weight, x_shape, stride, padding = cache
    C, _, KH, KW = weight.shape
    dY = dy.transpose(1, 0, 2, 3).reshape(C, -1)               # (C, L)
    X = col.reshape(C, KH * KW, -1)                            # (C, KH*KW, L)
    dweight = xp.einsum("cl,ckl->ck", dY, X).reshape(weight.shape)   # dw_c = X_c dY_c
    dcol = xp.einsum("ck,cl->ckl", weight.reshape(C, KH * KW), dY)   # (C, KH*KW, L)
    dx = ops.col2im(dcol.reshape(C * KH * KW, -1), x_shape, (KH, KW), stride, padding)
    return dx, dweight, dY.sum(axis=1)                         # dbias (C,)


# %% [markdown]
# ## Check it
#
# Small inputs, float64 (the checker casts to float64 anyway): 2 images, 3 channels, 5x6,
# a 3x3 filter at stride 2. Full mode perturbs every element of x, weight and bias.

# %%
rng = np.random.default_rng(7)
x = rng.standard_normal((2, 3, 5, 6))
weight = rng.standard_normal((3, 1, 3, 3))
bias = rng.standard_normal(3)
report = check_function(depthwise_conv2d_forward, depthwise_conv2d_backward,
                        [x, weight, bias, 2, 1], title="depthwise conv")
print(report)

# %% [markdown]
# ## PyTorch
#
# `groups=C` is the depthwise convolution.

# %%
torch_diff = None
y, cache = depthwise_conv2d_forward(x, weight, bias, 2, 1)
dy = rng.standard_normal(y.shape)
dx, dweight, dbias = depthwise_conv2d_backward(dy, cache)
if torch is not None:
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=2, padding=1, groups=3)
    yt.backward(torch.tensor(dy))
    torch_diff = max(max_diff(yt.detach(), y), max_diff(xt.grad, dx),
                     max_diff(wt.grad, dweight), max_diff(bt.grad, dbias))
    print(f"PyTorch conv2d(groups=3): y, dx, dweight, dbias differ by {torch_diff:.1e}")

# %% [markdown]
# minifcn's own `conv2d_forward` takes `groups` too (one GEMM per group): with `groups=C`
# it is this layer, and its backward gives the same gradients.

# %%
y_grouped, grouped_cache = ops.conv2d_forward(x, weight, bias, stride=2, padding=1, groups=3)
grouped_diff = max(max_diff(y_grouped, y), *(max_diff(a, b) for a, b in zip(
    ops.conv2d_backward(dy, grouped_cache), (dx, dweight, dbias))))
print(f"conv2d_forward(groups=3) and its backward differ by {grouped_diff:.1e}")

# %% [markdown]
# ## A planted bug, caught and located
#
# A classic: the backward reshapes the columns as `(KH*KW, C, L)`, reading im2col's row
# order (c, i, j) as (i, j, c). The forward is right, so the outputs look fine; only the
# weight gradient is wrong, and the report names it. To locate the wrong elements, compare
# the analytic weight gradient with the numerical one element by element: they agree
# exactly where the two row orders coincide, `c*9 + k == k*3 + c` (tap k = 4c): at
# weight[0, 0, 0, 0], weight[1, 0, 1, 1] and weight[2, 0, 2, 2], the 3 of 27 that pass.

# %%
def buggy_backward(dy, cache):
    xp = get_array_module(dy)
    col, weight, x_shape, stride, padding = cache
    C, _, KH, KW = weight.shape
    dY = dy.transpose(1, 0, 2, 3).reshape(C, -1)
    X = col.reshape(KH * KW, C, -1).transpose(1, 0, 2)         # BUG: rows are (c, i, j)
    dweight = xp.einsum("cl,ckl->ck", dY, X).reshape(weight.shape)
    dcol = xp.einsum("ck,cl->ckl", weight.reshape(C, KH * KW), dY)
    dx = ops.col2im(dcol.reshape(C * KH * KW, -1), x_shape, (KH, KW), stride, padding)
    return dx, dweight, dY.sum(axis=1)


caught = check_function(depthwise_conv2d_forward, buggy_backward, [x, weight, bias, 2, 1],
                        title="depthwise conv with the bug")
print(caught)
worst = caught.tensor("weight")
print(f"\nfailures: {caught.failures()}; {worst.n_failed} of {worst.n_elements} weight "
      f"elements wrong, the worst at {worst.worst_index}")
_, buggy_cache = depthwise_conv2d_forward(x, weight, bias, 2, 1)
analytic = buggy_backward(dy, buggy_cache)[1]
numerical = numerical_gradient(lambda w: depthwise_conv2d_forward(x, w, bias, 2, 1)[0],
                               weight, dy)
error = np.abs(analytic - numerical)[:, 0]                      # (C, KH, KW)
right = np.argwhere(error < 1e-6).tolist()
print("elements (c, i, j) where the buggy gradient is right:", right)

# %% [markdown]
# ## Picture
#
# `bug.png`: |analytic - numerical| of the buggy weight gradient per (channel, tap), right
# elements framed; beside it the correct backward's error (rounding only).

# %%
correct_error = np.abs(dweight - numerical_gradient(
    lambda w: depthwise_conv2d_forward(x, w, bias, 2, 1)[0], weight, dy))[:, 0]
save(row(grid(error.reshape(3, 9), "buggy dweight: |error| per (c, tap)", fmt="{:.2f}",
              marks=error.reshape(3, 9) < 1e-6, cell=46),
         grid(correct_error.reshape(3, 9) * 1e9, "correct: |error| x 1e9", fmt="{:.2f}",
              cell=46)), OUT, "bug.png")
