# %% [markdown]
# # Lesson 6: FCN-8s end to end
#
# FCN-8s is the VGG16 trunk (13 3x3 convolutions, 5 max pools of lesson 3), a head (`fc6`
# 7x7, `fc7` 1x1, `score_fr` 1x1 to class scores at stride 32), and a path back to the
# image that fuses two skips:
#
#     score_fr (stride 32) --upscore2 x2--> + crop(score_pool4) = fuse_pool4 (stride 16)
#     fuse_pool4 --upscore_pool4 x2--> + crop(score_pool3) = fuse_pool3 (stride 8)
#     fuse_pool3 --upscore8 x8--> crop = scores for every image pixel (stride 1)
#
# The crops align maps that cover the image differently. Every layer maps coordinates
# affinely: a convolution or pooling (kernel K, stride S, padding P) centres output pixel
# p on input coordinate $pS - P + (K-1)/2$, so input coordinate x lands at
#
# $$p = \frac{x + P - (K-1)/2}{S}, \qquad\text{and a transposed convolution:}\qquad
#   p = S x + \frac{K-1}{2} - P .$$
#
# A path composes these into one $p = a x + b$. Two maps with the same scale a are aligned
# by cropping the bigger one at the difference of their offsets b. That is where FCN-8s's
# crops of 5, 9 and 31 come from. The code: `minifcn/models/coord.py`,
# `minifcn/models/fcn.py`, `minifcn/summary/`.

# %%
import numpy as np
from PIL import Image, ImageDraw

import minifcn.ops as ops
from _common import font, import_torch, max_diff, output_dir, save
from minifcn.gradcheck import check_module
from minifcn.models import FCN8s
from minifcn.models.coord import IDENTITY, conv_map, crop_offset, layer_map, path_map
from minifcn.nn import Sequential
from minifcn.summary import format_summary, summarize

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("06")
torch = import_torch()

# %% [markdown]
# ## A small FCN-8s
#
# Width 1/16 (4 to 256 channels instead of 64 to 4096), 3 classes, float64, a 32x40
# image. The score layers start at zero, as in the reference nets; here they get random
# values, and so do the biases, so that every gradient below is non-zero. `eval()` turns
# dropout off, which the gradient check needs (no randomness between two forwards).

# %%
H, W, N_CLASS = 32, 40, 3
model = FCN8s(n_class=N_CLASS, width=1 / 16, dtype=np.float64, rng=0).eval()
rng = np.random.default_rng(6)
for name, p in model.named_parameters():
    if name.endswith("bias") or name.startswith("score"):
        p.data = 0.1 * rng.standard_normal(p.data.shape)
x = rng.standard_normal((1, 3, H, W))
names = {id(m): n for n, m in model.named_children()}

# %% [markdown]
# ## The coordinate maps, and the crops 5, 9 and 31
#
# Compose the maps layer by layer (exact fractions). conv1_1's padding of 100 shifts
# everything: pixel x of the image is pixel x + 99 of conv1_1's output (offset
# $P - (K-1)/2 = 100 - 1$); each pool halves scale and offset (and shifts by -1/4).

# %%
def show(label, m):
    print(f"  {label:34s} p = {str(m.scale):5s} x + {str(m.offset):10s} ({float(m.offset):g})")


to = {}
running = IDENTITY
for layer in model.trunk_path(5):
    running = running.then(layer_map(layer))
    to[names[id(layer)]] = running
print("input coordinate x lands on pixel p of:")
for name in ("conv1_1", "pool1", "pool2", "pool3", "pool4", "pool5"):
    show(name, to[name])
to["score_fr"] = path_map(model.trunk_path(5) + model.head_path())
to["upscore2"] = to["score_fr"].then(layer_map(model.upscore2))
to["score_pool4"] = to["pool4"].then(layer_map(model.score_pool4))
to["upscore_pool4"] = to["upscore2"].then(layer_map(model.upscore_pool4))
to["score_pool3"] = to["pool3"].then(layer_map(model.score_pool3))
to["upscore8"] = to["upscore_pool4"].then(layer_map(model.upscore8))
for name in ("score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3",
             "upscore8"):
    show(name, to[name])
crops = {"score_pool4": crop_offset(to["score_pool4"], to["upscore2"]),
         "score_pool3": crop_offset(to["score_pool3"], to["upscore_pool4"]),
         "upscore8": crop_offset(to["upscore8"], IDENTITY)}
model_crops = {"score_pool4": model.crop_pool4.offset[0],
               "score_pool3": model.crop_pool3.offset[0], "upscore8": model.crop_output.offset[0]}
for name, offset in crops.items():
    print(f"crop {name}: offset difference {offset}; the model crops at {model_crops[name]}")

# %% [markdown]
# ## Why padding 100
#
# Two reasons, both computable. First, `fc6` is a 7x7 convolution on pool5 (stride 32):
# with VGG's own padding of 1, an image smaller than about 200 pixels leaves pool5 smaller
# than 7x7 and fc6 has no output at all. With 100, any image works, even 1x1. Second, the
# crops need the upsampled maps to *start before* the image: with padding 1 the output's
# offset would be negative, and no crop can align it.

# %%
def pool5_size(size, padding):
    size = ops.conv_output_size(size, 3, 1, padding)             # conv1_1
    for _ in range(5):
        size = ops.max_pool2d_output_size(size, 2, 2, ceil_mode=True)
    return size


smallest = {p: next(s for s in range(1, 400) if pool5_size(s, p) >= 7) for p in (1, 100)}
print(f"smallest image with fc6 output: {smallest[1]} pixels with padding 1, "
      f"{smallest[100]} with padding 100 (pool5 of a 1x1 image: {pool5_size(1, 100)}x"
      f"{pool5_size(1, 100)})")
with_padding_1 = conv_map(3, 1, 1)
for layer in (model.trunk_path(5) + model.head_path()
              + [model.upscore2, model.upscore_pool4, model.upscore8])[1:]:
    with_padding_1 = with_padding_1.then(layer_map(layer))
try:
    crop_offset(with_padding_1, IDENTITY, "upscore8")
    padding_1_error = None
except ValueError as error:
    padding_1_error = str(error)
print(f"with padding 1, upscore8's map is p = {with_padding_1.scale} x + "
      f"{with_padding_1.offset}:\n  {padding_1_error}")

# %% [markdown]
# ## `minifcn summary`, read line by line
#
# `minifcn summary fcn8s --size 32x40 --width 0.0625 --n-class 3` prints the same table:
# the output shape, parameters and cost of each layer, its receptive field (RF), and its
# coordinate map (scale, offset: the numbers above). Read it as: conv1_1 turns 32x40 into
# (32 + 200 - 2)x(40 + 200 - 2) = 230x238; the pools halve, rounding up; fc6 (7x7, no
# padding) takes 6 off; upscore2 (k4 s2) doubles and adds 2; each crop row names its
# offset; frozen upscore weights are starred.

# %%
rows = summarize(model, (H, W))
print(format_summary(rows))
summary_shapes = {r.name: r.shape for r in rows}
summary_crops = {r.name: r.offset[0] for r in rows if r.kind == "crop"}

# %% [markdown]
# ## Forward, step by step
#
# The same computation as `model.forward`, written out, with every shape printed.

# %%
shapes = {"input": x.shape}
h = x
for b in range(1, 6):
    for layer in model.block(b):
        h = layer(h)
        shapes[names[id(layer)]] = h.shape
    print(f"block {b}: {' -> '.join(str(shapes[names[id(l)]][2:]) for l in model.block(b)[::2])}"
          f"   pool{b} {h.shape}")
    if b == 3:
        pool3 = h
    if b == 4:
        pool4 = h
score_fr = model.forward_head(h)
upscore2 = model.upscore2(score_fr)
score_pool4 = model.score_pool4(pool4)
fuse_pool4 = upscore2 + model.crop_pool4(score_pool4, upscore2)
upscore_pool4 = model.upscore_pool4(fuse_pool4)
score_pool3 = model.score_pool3(pool3)
fuse_pool3 = upscore_pool4 + model.crop_pool3(score_pool3, upscore_pool4)
upscore8 = model.upscore8(fuse_pool3)
logits = model.crop_output(upscore8, x)
for name, value in [("score_fr", score_fr), ("upscore2", upscore2),
                    ("score_pool4", score_pool4), ("fuse_pool4", fuse_pool4),
                    ("upscore_pool4", upscore_pool4), ("score_pool3", score_pool3),
                    ("fuse_pool3", fuse_pool3), ("upscore8", upscore8),
                    ("crop_output", logits)]:
    shapes[name] = value.shape
    print(f"{name:14s} {value.shape}")
same_as_forward = np.array_equal(logits, model.forward(x))
print("written out == model.forward(x):", same_as_forward)
print("every shape equals the summary's:",
      all(summary_shapes[name] == shape for name, shape in shapes.items()))

# %% [markdown]
# ## The skip fusion and the backward
#
# `fuse_pool4 = upscore2 + crop(score_pool4)`: a sum sends its gradient to both summands
# unchanged, and a crop's backward puts the gradient back where the crop was taken, zeros
# elsewhere. So the trunk receives gradient at pool5 (through the head) *and* at pool4 and
# pool3 (through the skips), and adds them. `model.backward` is `forward` read bottom up.
# The upscore layers are frozen: they get no gradient.

# %%
target = rng.integers(0, N_CLASS, (1, H, W))
loss, loss_cache = ops.softmax_cross_entropy_forward(model.forward(x), target)
dlogits, _, _ = ops.softmax_cross_entropy_backward(1.0, loss_cache)
model.zero_grad()
dx = model.backward(dlogits)
print(f"loss {float(loss):.4f}; dx {dx.shape}")
grads = {n: p.grad for n, p in model.named_parameters()}
for name in ("conv1_1.weight", "score_pool3.weight", "score_pool4.weight", "score_fr.weight",
             "upscore8.weight"):
    g = grads[name]
    print(f"  {name:20s} grad " + ("None (frozen)" if g is None else
                                   f"{g.shape}, norm {np.linalg.norm(g):.3e}"))

# %% [markdown]
# ## The gradient check of the whole network
#
# `check_module` in directional mode compares, for the input and each of the 36 learnable
# tensors, the directional derivative $\langle \nabla L, u \rangle$ along a random u with
# a central difference $(L(w + \epsilon u) - L(w - \epsilon u)) / 2\epsilon$: two forwards
# per tensor instead of two per element.

# %%
report = check_module(model, x, mode="directional")
print(report)

# %% [markdown]
# Why the biases were made random above: with the default (Kaiming) initialisation the
# biases are 0, and conv1_1's output over the 100 pixels of zero padding is exactly its
# bias, 0: ReLU's kink. A finite difference across a kink measures the mean of the two
# slopes, not the derivative, and the check fails there although the backward is right.
# conv1_1 and its ReLU alone show it:

# %%
first = Sequential(model.conv1_1, model.relu1_1)
random_bias = model.conv1_1.bias.data
model.conv1_1.bias.data = np.zeros(random_bias.shape)
at_kink = check_module(first, rng.standard_normal((1, 3, 4, 4)), mode="directional")
model.conv1_1.bias.data = random_bias
print(f"zero bias: passed={at_kink.passed}, failures {at_kink.failures()}")

# %% [markdown]
# ## PyTorch: the same network in 20 lines of torch.nn.functional
#
# Same weights, same crops; the logits and the input gradient are compared.

# %%
torch_diff = None
if torch is not None:
    F = torch.nn.functional
    P = {n: torch.tensor(p.data) for n, p in model.named_parameters()}

    def torch_fcn8s(image):
        h, pools = image, {}
        for b in range(1, 6):
            for i in range(1, 4 if b > 2 else 3):
                h = F.relu(F.conv2d(h, P[f"conv{b}_{i}.weight"], P[f"conv{b}_{i}.bias"],
                                    padding=100 if (b, i) == (1, 1) else 1))
            h = pools[b] = F.max_pool2d(h, 2, 2, ceil_mode=True)
        h = F.relu(F.conv2d(h, P["fc6.weight"], P["fc6.bias"]))
        h = F.relu(F.conv2d(h, P["fc7.weight"], P["fc7.bias"]))
        h = F.conv2d(h, P["score_fr.weight"], P["score_fr.bias"])
        up = F.conv_transpose2d(h, P["upscore2.weight"], stride=2)
        s4 = F.conv2d(pools[4], P["score_pool4.weight"], P["score_pool4.bias"])
        up = F.conv_transpose2d(up + s4[:, :, 5:5 + up.shape[2], 5:5 + up.shape[3]],
                                P["upscore_pool4.weight"], stride=2)
        s3 = F.conv2d(pools[3], P["score_pool3.weight"], P["score_pool3.bias"])
        up = F.conv_transpose2d(up + s3[:, :, 9:9 + up.shape[2], 9:9 + up.shape[3]],
                                P["upscore8.weight"], stride=8)
        return up[:, :, 31:31 + image.shape[2], 31:31 + image.shape[3]]

    xt = torch.tensor(x, requires_grad=True)
    torch_logits = torch_fcn8s(xt)
    torch_logits.backward(torch.tensor(dlogits))
    model.zero_grad()
    ours_logits = model.forward(x)
    torch_diff = max(max_diff(torch_logits.detach(), ours_logits),
                     max_diff(xt.grad, model.backward(dlogits)))
    print(f"PyTorch: logits and dx differ by {torch_diff:.1e}")

# %% [markdown]
# ## Picture: the alignment
#
# `alignment.png` draws each map along the image's row axis, in input coordinates: map
# pixel p sits at $x = (p - b)/a$. Grey: the whole map; red: the part the crop keeps,
# which lies exactly on the map it is added to (the line below it).

# %%
def alignment_figure(spans, width=900):
    lo = min(s[1] for s in spans) - 10
    hi = max(s[2] for s in spans) + 10
    scale = (width - 190) / (hi - lo)
    image = Image.new("RGB", (width, 30 * len(spans) + 40), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k, (label, start, end, keep) in enumerate(spans):
        y = 30 + 30 * k
        draw.text((4, y - 8), label, font=font(13), fill=(30, 30, 30))
        ax = lambda v: 180 + (v - lo) * scale  # noqa: E731
        draw.line((ax(start), y, ax(end), y), fill=(150, 150, 150), width=6)
        if keep is not None:
            draw.line((ax(keep[0]), y, ax(keep[1]), y), fill=(214, 39, 40), width=6)
    for v in (0, H - 1):
        draw.line((180 + (v - lo) * scale, 15, 180 + (v - lo) * scale, image.height - 10),
                  fill=(60, 60, 200))
    draw.text((4, image.height - 22), "blue lines: the image's first and last row",
              font=font(12), fill=(60, 60, 200))
    return image


def span(name, size, reference=None, offset=None):
    m = to[name]
    centres = [float((p - m.offset) / m.scale) for p in (0, size - 1)]
    keep = None
    if offset is not None:
        keep = [float((p - m.offset) / m.scale) for p in (offset, offset + reference - 1)]
    return (f"{name} ({size})", centres[0], centres[1], keep)


save(alignment_figure([
    span("score_pool4", shapes["score_pool4"][2], shapes["upscore2"][2], crops["score_pool4"]),
    span("upscore2", shapes["upscore2"][2]),
    span("score_pool3", shapes["score_pool3"][2], shapes["upscore_pool4"][2],
         crops["score_pool3"]),
    span("upscore_pool4", shapes["upscore_pool4"][2]),
    span("upscore8", shapes["upscore8"][2], H, crops["upscore8"]),
    ("image", 0.0, float(H - 1), None)]), OUT, "alignment.png")
