# %% [markdown]
# # Lesson 8: a classifier becomes a segmenter
#
# A VGG-style classifier is a trunk of 3x3 convolutions and 2x2 max pools, then a flatten
# and fully connected layers. Its first FC layer reads the trunk's last map a, of shape
# `(C, K, K)`, flattened in C order, $v[cK^2 + iK + j] = a[c, i, j]$:
#
# $$z[f] = b[f] + \sum_{m} W[f, m]\, v[m]
#        = b[f] + \sum_{c, i, j} W[f, cK^2 + iK + j]\; a[c, i, j] .$$
#
# A `K x K` convolution (no padding) of the same map has one output pixel,
#
# $$y[f, 0, 0] = b[f] + \sum_{c, i, j} W'[f, c, i, j]\; a[c, i, j],$$
#
# so the two agree exactly when $W'[f, c, i, j] = W[f, cK^2 + iK + j]$: that is
# `W.reshape(F, C, K, K)`, the same C order the flatten used. The later FC layers read a
# vector of length G and become `1 x 1` convolutions, `(F, G) -> (F, G, 1, 1)`. VGG16's fc6
# `(4096, 25088)` becomes `(4096, 512, 7, 7)`, fc7 `(4096, 4096, 1, 1)`, fc8 a 1x1 score
# layer. This is "convolutionalisation", the first step of FCN.
#
# On a bigger map the same convolution slides: $y[f, p, q]$ is the FC layer applied to the
# `K x K` window of a at (p, q). Each window of a comes from a window of the image, shifted
# by the trunk's total stride S (here three pools: S = 8). So the converted net computes
# the classifier on every window of the image at stride S, in one pass, sharing the
# trunk's work: a coarse map of class scores. The code FCN uses:
# `minifcn/convert.py` (`_as_convolutions`), called by `minifcn.models.from_vgg16`.

# %%
import numpy as np
from PIL import ImageDraw

import minifcn.ops as ops
from _common import MARK, grid, heat, import_torch, max_diff, output_dir, row, save
from minifcn.convert import TORCHVISION_VGG16_FEATURES
from minifcn.models import FCN32s, from_vgg16
from minifcn.models.vgg import VGG16_BLOCKS, scaled

ops.set_algorithm("reference")     # every op below runs minifcn/ops/reference/
OUT = output_dir("08")
torch = import_torch()

# %% [markdown]
# ## Tiny numbers: the flatten order
#
# Two channels of a 2x2 map, C = K = 2. The flatten numbers the 8 entries `c*4 + i*2 + j`:
# reshaping a weight row to `(C, K, K)` puts weight m back on the entry it multiplied.
# A channels-last flatten (`(K, K, C)`, as an NHWC framework flattens) numbers them
# `i*4 + j*2 + c`: the same 8 weights, on the wrong entries.

# %%
flat_index = np.arange(8).reshape(2, 2, 2)                      # (C, K, K): index c*4 + i*2 + j
wrong_index = np.arange(8).reshape(2, 2, 2).transpose(2, 0, 1)  # (K, K, C) -> (C, K, K)
print("C order, channel 0 and 1:\n", flat_index)
print("channels last, read as (C, K, K):\n", wrong_index)

# %% [markdown]
# ## The classifier
#
# Three blocks of a 3x3 convolution (no padding, see below why), ReLU and a 2x2 max pool,
# 3 -> 8 -> 16 -> 16 channels; a 70x70 image leaves a 7x7 map (70 -> 68 -> 34 -> 32 -> 16
# -> 14 -> 7), as VGG16 leaves 7x7 of a 224x224 image. Then three FC layers,
# 784 -> 64 -> 64 -> 5 classes, written as plain matrix products. Random weights, float64.

# %%
rng = np.random.default_rng(8)
CHANNELS, HIDDEN, N_CLASS = (3, 8, 16, 16), 64, 5
S, SIZE, K = 2 ** 3, 70, 7          # total stride, classifier's input size, last map's size


def he(shape, fan_in):
    return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)


conv_w = [he((c_out, c_in, 3, 3), 9 * c_in) for c_in, c_out in zip(CHANNELS, CHANNELS[1:])]
conv_b = [0.1 * rng.standard_normal(c) for c in CHANNELS[1:]]
C = CHANNELS[-1]
fc_w = [he((HIDDEN, C * K * K), C * K * K), he((HIDDEN, HIDDEN), HIDDEN),
        he((N_CLASS, HIDDEN), HIDDEN)]                           # (out, in), as torch.nn.Linear
fc_b = [0.1 * rng.standard_normal(w.shape[0]) for w in fc_w]


def trunk(x, padding=0):
    h = x
    for w, b in zip(conv_w, conv_b):
        h, _ = ops.conv2d_forward(h, w, b, padding=padding)     # (N, C', H - 2 + 2P, ...)
        h, _ = ops.relu_forward(h)
        h, _ = ops.max_pool2d_forward(h, 2)                     # halves, rounding down
    return h


def classify(x, padding=0):
    a = trunk(x, padding)                                       # (N, 16, 7, 7)
    v = a.reshape(len(a), -1)                                   # (N, 784): c*49 + i*7 + j
    h = np.maximum(v @ fc_w[0].T + fc_b[0], 0)                  # (N, 64)
    h = np.maximum(h @ fc_w[1].T + fc_b[1], 0)                  # (N, 64)
    return h @ fc_w[2].T + fc_b[2]                              # (N, 5): the logits


x = rng.standard_normal((1, 3, SIZE, SIZE))
logits = classify(x)
print("trunk output", trunk(x).shape, "-> logits", logits.shape, "\n", logits)

# %% [markdown]
# ## The reshape, and the converted net
#
# fc1 `(64, 784)` -> `(64, 16, 7, 7)`, fc2 `(64, 64)` -> `(64, 64, 1, 1)`, fc3 `(5, 64)` ->
# `(5, 64, 1, 1)`; the biases stay as they are. On the 70x70 image the conv net's output is
# `(1, 5, 1, 1)`, and it equals the logits to rounding.

# %%
def as_conv(w, channels, k):
    return w.reshape(w.shape[0], channels, k, k)               # (F, C*K*K) -> (F, C, K, K)


def as_conv_channels_last(w, channels, k):                     # the wrong order
    return w.reshape(w.shape[0], k, k, channels).transpose(0, 3, 1, 2)


def convolutionalise(first=as_conv):
    return [first(fc_w[0], C, K), as_conv(fc_w[1], HIDDEN, 1), as_conv(fc_w[2], HIDDEN, 1)]


def segment(x, head, padding=0):
    h = trunk(x, padding)
    for i, (w, b) in enumerate(zip(head, fc_b)):
        h, _ = ops.conv2d_forward(h, w, b)                      # fc1: 7x7, then 1x1
        if i < 2:
            h, _ = ops.relu_forward(h)
    return h                                                    # (N, 5, OH, OW)


head = convolutionalise()
conv_logits = segment(x, head)
logits_diff = max_diff(conv_logits[:, :, 0, 0], logits)
print("conv net on 70x70:", conv_logits.shape, f"; max |conv - classifier| {logits_diff:.1e}")
wrong_head = convolutionalise(as_conv_channels_last)
wrong_diff = max_diff(segment(x, wrong_head)[:, :, 0, 0], logits)
print(f"channels-last reshape: max |conv - classifier| {wrong_diff:.2f} (logits are of size "
      f"{np.abs(logits).max():.2f}): the same weights on the wrong inputs")

# %% [markdown]
# ## A bigger image: a map of class scores
#
# A 102x118 image leaves an 11x13 map, and the 7x7 convolution slides over it: 5x7 cells.
# One score cell sees 70x70 pixels (its receptive field: 22 per pool3 pixel, plus 6 steps
# of 8), and cell (p, q) sees the window starting at (8p, 8q). With no padding, moving
# the image by 8 pixels moves every map exactly (by 8, 4, 4, 2, 2, 1: each pool's windows
# stay aligned), so each cell *is* the classifier on its window. Checked for three cells.

# %%
def window(image, p, q, size=SIZE):
    return image[:, :, S * p:S * p + size, S * q:S * q + size]    # (N, 3, size, size)


x_big = rng.standard_normal((1, 3, SIZE + 4 * S, SIZE + 6 * S))
score_map = segment(x_big, head)                                # (1, 5, 5, 7)
print("image", x_big.shape[2:], "-> score map", score_map.shape)
cells = [(0, 0), (2, 3), (4, 6)]
cell_diffs = {}
for p, q in cells:
    cell_diffs[(p, q)] = max_diff(score_map[:, :, p, q], classify(window(x_big, p, q)))
    print(f"cell ({p}, {q}) against the classifier on rows {S * p}..{S * p + SIZE - 1}, "
          f"columns {S * q}..{S * q + SIZE - 1}: max difference {cell_diffs[(p, q)]:.1e}")
labels = score_map[0].argmax(axis=0)                            # (5, 7): a coarse label map
print("the class of each cell (argmax):\n", labels)

# %% [markdown]
# Why no padding: VGG pads its 3x3 convolutions by 1. The conversion is still exact on
# the classifier's own size (the window is the whole image), but a window inside a bigger
# image sees its neighbours' pixels where the classifier saw zero padding, so the cells
# are the classifier *with context*, not the classifier on a crop. The same weights with
# padding 1 (56x56 -> 7x7; 88x104 -> 5x7 cells):

# %%
x56 = rng.standard_normal((1, 3, 56, 56))
padded_logits_diff = max_diff(segment(x56, head, padding=1)[:, :, 0, 0],
                              classify(x56, padding=1))
x_big56 = rng.standard_normal((1, 3, 56 + 4 * S, 56 + 6 * S))
padded_map = segment(x_big56, head, padding=1)
padded_cell_diff = max(max_diff(padded_map[:, :, p, q],
                                classify(window(x_big56, p, q, 56), padding=1))
                       for p, q in cells)
print(f"padding 1, on 56x56: max |conv - classifier| {padded_logits_diff:.1e}; "
      f"cells of 88x104 against their windows: {padded_cell_diff:.2f}")

# %% [markdown]
# ## PyTorch
#
# The classifier as `torch.nn` layers (`Conv2d`, `MaxPool2d`, `Flatten`, `Linear`), the
# Linear weights copied into `Conv2d` with `.view`, and both compared with minifcn: the
# logits, the converted net on 70x70, and the score map of the bigger image.

# %%
torch_diff = None
if torch is not None:
    nn = torch.nn

    def torch_trunk():
        layers = []
        for w, b in zip(conv_w, conv_b):
            conv = nn.Conv2d(w.shape[1], w.shape[0], 3).double()
            conv.weight.data, conv.bias.data = torch.tensor(w), torch.tensor(b)
            layers += [conv, nn.ReLU(), nn.MaxPool2d(2)]
        return layers

    linears = [nn.Linear(w.shape[1], w.shape[0]).double() for w in fc_w]
    convs = [nn.Conv2d(C, HIDDEN, K).double(), nn.Conv2d(HIDDEN, HIDDEN, 1).double(),
             nn.Conv2d(HIDDEN, N_CLASS, 1).double()]
    for linear, conv, w, b in zip(linears, convs, fc_w, fc_b):
        linear.weight.data, linear.bias.data = torch.tensor(w), torch.tensor(b)
        conv.weight.data = linear.weight.data.view(conv.weight.shape)   # the reshape
        conv.bias.data = linear.bias.data.clone()
    torch_classifier = nn.Sequential(*torch_trunk(), nn.Flatten(), linears[0], nn.ReLU(),
                                     linears[1], nn.ReLU(), linears[2])
    torch_segmenter = nn.Sequential(*torch_trunk(), convs[0], nn.ReLU(), convs[1], nn.ReLU(),
                                    convs[2])
    with torch.no_grad():
        t_logits = torch_classifier(torch.tensor(x))
        t_conv = torch_segmenter(torch.tensor(x))[:, :, 0, 0]
        t_map = torch_segmenter(torch.tensor(x_big))
    torch_diff = max(max_diff(t_logits, logits), max_diff(t_conv, t_logits),
                     max_diff(t_map, score_map))
    print(f"PyTorch: Linear and Conv2d logits, and the score map, differ from minifcn's by "
          f"at most {torch_diff:.1e}")

# %% [markdown]
# ## FCN: the same step on VGG16, then the way back up
#
# `minifcn.models.from_vgg16(FCN32s, weights)` takes torchvision's VGG16 state dict:
# `classifier.0` (fc6) is reshaped to a 7x7 convolution over conv5_3's channels,
# `classifier.3` (fc7) to a 1x1 convolution (`_as_convolutions` in `minifcn/convert.py`),
# and `classifier.6` (fc8, ImageNet's 1000 classes) is dropped: FCN scores its own classes
# with a new 1x1 layer, `score_fr`, started at zero. Here on VGG16 at width 1/16 (conv5_3
# has 32 channels, fc6 and fc7 256 outputs), random weights:

# %%
WIDTH = 1 / 16
vgg, c_in = {}, 3
for index, channels in zip(TORCHVISION_VGG16_FEATURES, [c for b in VGG16_BLOCKS for c in b]):
    c_out = scaled(channels, WIDTH)
    vgg[f"features.{index}.weight"] = rng.standard_normal((c_out, c_in, 3, 3))
    vgg[f"features.{index}.bias"] = rng.standard_normal(c_out)
    c_in = c_out
F6 = scaled(4096, WIDTH)
for name, shape in (("classifier.0", (F6, c_in * 7 * 7)), ("classifier.3", (F6, F6)),
                    ("classifier.6", (1000, F6))):
    vgg[f"{name}.weight"], vgg[f"{name}.bias"] = rng.standard_normal(shape), np.zeros(shape[0])
fcn = from_vgg16(FCN32s, vgg, n_class=N_CLASS, dtype=np.float64)
fc6_is_reshape = np.array_equal(fcn.fc6.weight.data,
                                vgg["classifier.0.weight"].reshape(F6, c_in, 7, 7))
fc7_is_reshape = np.array_equal(fcn.fc7.weight.data,
                                vgg["classifier.3.weight"].reshape(F6, F6, 1, 1))
print(f"classifier.0 {vgg['classifier.0.weight'].shape} -> fc6 {fcn.fc6.weight.data.shape}: "
      f"the C-order reshape: {fc6_is_reshape}")
print(f"classifier.3 {vgg['classifier.3.weight'].shape} -> fc7 {fcn.fc7.weight.data.shape}: "
      f"{fc7_is_reshape}; score_fr {fcn.score_fr.weight.data.shape}, all zero: "
      f"{not fcn.score_fr.weight.data.any()}")

# %% [markdown]
# The map this gives is coarse: one cell per 32 pixels. For a 500x500 image, conv1_1's
# padding of 100 (lesson 6) and five ceil-mode pools leave pool5 22x22, and fc6 (7x7)
# leaves score_fr 16x16. A label per pixel needs the way back up: FCN upsamples the scores
# with transposed convolutions started as bilinear interpolation (lessons 2 and 4), and
# FCN-16s/8s add finer scores from pool4 and pool3, cropped into alignment (lesson 6).

# %%
size = ops.conv_output_size(500, 3, 1, 100)                    # conv1_1, padding 100
for _ in range(5):
    size = ops.max_pool2d_output_size(size, 2, 2, ceil_mode=True)
score_fr_size = ops.conv_output_size(size, 7, 1, 0)           # fc6, 7x7
print(f"500x500 image: pool5 {size}x{size}, score_fr {score_fr_size}x{score_fr_size}")

# %% [markdown]
# ## Pictures
#
# `flatten_order.png`: the flat index each weight of a `(C, K, K)` kernel came from, C
# order against channels last. `score_map.png`: channel 0 of the bigger image with the
# three checked windows framed, class 0's scores, and the argmax label of each cell.

# %%
save(row(*[grid(index[c], f"{name} c={c}", cell=56) for name, index in
           (("C order", flat_index), ("ch. last", wrong_index)) for c in (0, 1)]),
     OUT, "flatten_order.png")
ZOOM = 2
picture = heat(x_big[0, 0], "image, channel 0", zoom=ZOOM)
draw = ImageDraw.Draw(picture)
for p, q in cells:
    draw.rectangle((S * q * ZOOM, 24 + S * p * ZOOM, (S * q + SIZE) * ZOOM - 1,
                    24 + (S * p + SIZE) * ZOOM - 1), outline=MARK, width=2)
checked = np.zeros(labels.shape, bool)
for p, q in cells:
    checked[p, q] = True
save(row(picture, grid(score_map[0, 0], "class 0 scores", fmt="{:.1f}", marks=checked),
         grid(labels, "argmax class", marks=checked)), OUT, "score_map.png")
