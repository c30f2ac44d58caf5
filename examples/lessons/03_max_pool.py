# %% [markdown]
# # Lesson 3: max pooling, ceil mode, and where the gradient goes
#
# Max pooling with kernel K, stride S and padding P keeps the largest value of each window:
#
# $$y[n, c, p, q] = \max_{0 \le i, j < K} x_{pad}[n, c, pS + i, qS + j],
#   \qquad x_{pad} = -\infty \text{ outside } x .$$
#
# The padding is $-\infty$, not 0, so that it never wins. The number of windows along an
# axis is
#
# $$OH = \left\lfloor \frac{H + 2P - K}{S} \right\rfloor + 1 \quad\text{(floor mode)},
#   \qquad \left\lceil \frac{H + 2P - K}{S} \right\rceil + 1 \quad\text{(ceil mode)},$$
#
# and in ceil mode a last window that would *start* in the right padding,
# $(OH - 1)S \ge H + P$, is dropped (PyTorch's rule). FCN's VGG trunk pools 2x2, stride 2,
# in ceil mode, so an odd-sized map keeps its last row and column.
#
# y depends on each window's winner alone, so the gradient flows to the winner only:
#
# $$dx[\text{winner of window } (p, q)] \mathrel{+}= dy[p, q],$$
#
# summed when one pixel wins several overlapping windows. The forward keeps the winner's
# offset `i*K + j` in `argmax` for the backward; a tie goes to the first maximum in
# row-major order, as in PyTorch. The code: `minifcn/ops/reference/pool.py`.

# %%
import numpy as np

import minifcn.ops as ops
from _common import grid, import_torch, max_diff, output_dir, row, save

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("03")
torch = import_torch()

# %% [markdown]
# ## Ceil mode on a 5x5 image
#
# 2x2 windows at stride 2: floor mode fits 2 windows per axis and drops the last row and
# column; ceil mode adds a third window, half of which lies in the $-\infty$ padding.

# %%
rng = np.random.default_rng(3)
x = rng.permutation(25).astype(float).reshape(1, 1, 5, 5)       # distinct values 0..24
y_floor, _ = ops.max_pool2d_forward(x, 2, 2, ceil_mode=False)
y, cache = ops.max_pool2d_forward(x, 2, 2, ceil_mode=True)
x_padded = np.pad(x[0, 0], ((0, 1), (0, 1)), constant_values=-np.inf)   # what ceil mode reads
print("x =\n", x[0, 0].astype(int))
print("floor mode:", y_floor.shape[2:], "\n", y_floor[0, 0].astype(int))
print("ceil mode: ", y.shape[2:], "\n", y[0, 0].astype(int))
print("argmax (offset i*2 + j of each winner in its window):\n", cache.argmax[0, 0])

# %% [markdown]
# Through the VGG trunk, ceil mode decides the map sizes. With FCN's padding of 100, a
# 500x500 image becomes a 698x698 conv1 map, then:

# %%
def pool_sizes(size, ceil_mode):
    sizes = []
    for _ in range(5):
        size = ops.max_pool2d_output_size(size, 2, 2, ceil_mode=ceil_mode)
        sizes.append(size)
    return sizes


vgg_ceil, vgg_floor = pool_sizes(698, True), pool_sizes(698, False)
print("pool1..pool5, ceil mode: ", vgg_ceil)
print("pool1..pool5, floor mode:", vgg_floor)

# %% [markdown]
# The rule that drops a window: 3 pixels, K = S = 2, P = 1. The ceil formula gives
# $\lceil (3 + 2 - 2)/2 \rceil + 1 = 3$ windows, starting at padded positions 0, 2 and 4;
# the third starts at $4 \ge H + P = 4$, in the right padding, so it is dropped: 2 windows.

# %%
ceil_formula = -(-(3 + 2 * 1 - 2) // 2) + 1
dropped = ops.max_pool2d_output_size(3, 2, 2, padding=1, ceil_mode=True)
print(f"ceil formula {ceil_formula}, after the rule {dropped}")

# %% [markdown]
# ## The gradient follows the argmax
#
# Send back dy = 1..9, one distinct value per window. The backward puts each on its
# window's winner. We rebuild that route by hand from `argmax`: window (p, q) with offset
# `k = i*2 + j` chose pixel `(2p + i, 2q + j)`.

# %%
dy = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
dx = ops.max_pool2d_backward(dy, cache)
route = np.zeros((5, 5))                      # dx built from argmax alone
winners = np.zeros((5, 5), bool)
winner_value = np.zeros((3, 3))
for p in range(3):
    for q in range(3):
        i, j = divmod(int(cache.argmax[0, 0, p, q]), 2)
        route[2 * p + i, 2 * q + j] += dy[0, 0, p, q]
        winners[2 * p + i, 2 * q + j] = True
        winner_value[p, q] = x[0, 0, 2 * p + i, 2 * q + j]
print("dx from max_pool2d_backward:\n", dx[0, 0].astype(int))
print("the argmax route gives the same:", np.array_equal(route, dx[0, 0]))
print("each winner holds its window's maximum y:", np.array_equal(winner_value, y[0, 0]))

# %% [markdown]
# ## Overlapping windows
#
# With a 3x3 kernel at stride 2 (AlexNet's pooling), windows share their border rows and
# columns. A 7x7 image of small random values with one bright pixel at (2, 2): that pixel
# lies in four windows, wins all four and collects their four gradients; the total is
# kept, $\sum dx = \sum dy$.

# %%
x7 = rng.uniform(0, 1, (1, 1, 7, 7))
x7[0, 0, 2, 2] = 10.0
y3, cache3 = ops.max_pool2d_forward(x7, 3, 2)                   # (1, 1, 3, 3)
dx3 = ops.max_pool2d_backward(np.ones_like(y3), cache3)
print("3x3 stride 2, dy = 1: windows won per pixel\n", dx3[0, 0].astype(int))
print(f"most windows won by one pixel: {dx3.max():.0f}; sum dx = {dx3.sum():.0f} = sum dy "
      f"= {y3.size}")

# %% [markdown]
# ## Ties
#
# A window of equal values has no single maximum; the max is not differentiable there.
# Like PyTorch, minifcn sends the whole gradient to the first maximum, the window's
# top-left. This is not an exotic case in FCN: conv1_1's 100 pixels of zero padding make
# large constant regions, and every pool window there is a tie.

# %%
flat = np.zeros((1, 1, 4, 4))
y_tie, cache_tie = ops.max_pool2d_forward(flat, 2, 2)
dx_tie = ops.max_pool2d_backward(np.ones_like(y_tie), cache_tie)
print("a constant 4x4 image, dy = 1: dx =\n", dx_tie[0, 0].astype(int))

# %% [markdown]
# ## PyTorch

# %%
torch_diff = None
if torch is not None:
    F = torch.nn.functional
    torch_diff = 0.0
    for image, kernel, ceil, grad, ours in ((x, 2, True, dy, dx), (x7, 3, False, None, dx3),
                                            (flat, 2, False, None, dx_tie)):
        xt = torch.tensor(image, requires_grad=True)
        yt = F.max_pool2d(xt, kernel, 2, ceil_mode=ceil)
        yt.backward(torch.ones_like(yt) if grad is None else torch.tensor(grad))
        torch_diff = max(torch_diff, max_diff(xt.grad, ours))
    torch_dropped = F.max_pool2d(torch.zeros(1, 1, 3, 3), 2, 2, padding=1,
                                 ceil_mode=True).shape[2]
    torch_diff = max(torch_diff, abs(torch_dropped - dropped), max_diff(
        F.max_pool2d(torch.tensor(x), 2, 2, ceil_mode=True), y))
    print(f"PyTorch: y, the three gradients and the dropped window differ by {torch_diff:.1e}")

# %% [markdown]
# ## Pictures
#
# `route.png`: x with its $-\infty$ ceil-mode padding and the winners framed, y, dy, and dx
# (each dy on its winner). `overlap_and_ties.png`: the 3x3/stride-2 counts and the tie case.

# %%
framed = np.pad(winners, ((0, 1), (0, 1)))
save(row(grid(x_padded, "x, padded for ceil mode", fmt="{:.0f}", marks=framed),
         grid(y[0, 0], "y (ceil mode)", fmt="{:.0f}"), grid(dy[0, 0], "dy", fmt="{:.0f}"),
         grid(dx[0, 0], "dx: dy on the winners", fmt="{:.0f}", marks=winners)),
     OUT, "route.png")
save(row(grid(dx3[0, 0], "windows won, 3x3 s2", fmt="{:.0f}", marks=dx3[0, 0] > 1),
         grid(dx_tie[0, 0], "ties: dx of a constant image", fmt="{:.0f}",
              marks=dx_tie[0, 0] > 0)), OUT, "overlap_and_ties.png")
