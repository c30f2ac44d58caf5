"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once in PyTorch: the network ``minifcn bench fcn``
times beside minifcn's, and the reference the tests compare with (``tests/torch_fcn.py``
re-exports it).

Written from the layer list of the reference nets (Caffe ``voc-fcn*s`` and their PyTorch
port, pytorch-fcn), not from ``minifcn.models``: it imports nothing from minifcn, and its
crop offsets are the reference's constants (19; 5, 27; 5, 9, 31), while minifcn derives its
own from coordinate maps. Agreement between the two therefore checks minifcn's offsets,
its trunk and its hand-written backward against an independent statement of the network.

Parameter names are the reference's state-dict keys (``conv1_1.weight`` ...
``upscore8.weight``), equal to minifcn's, so weights move across by name::

    net = twin(model)                  # same architecture, width, dtype and weights
    logits = net(torch.from_numpy(x))

Needs torch, which minifcn does not: import this module only where torch is installed
(nothing in minifcn imports it at import time).
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def scaled(channels, width):
    """A channel count times ``width``, at least 1 (as minifcn's ``width`` option)."""
    return max(1, int(round(channels * width)))


def crop(x, offset, like):
    """x[:, :, offset:offset + h, offset:offset + w] with (h, w) the last two dims of like."""
    h, w = like.shape[2:]
    return x[:, :, offset:offset + h, offset:offset + w]


class _FCN(nn.Module):
    """VGG16 trunk (conv1_1 padded by 100, ceil-mode pools), fc6/fc7 head and score_fr."""

    def __init__(self, n_class=21, width=1.0, learn_upsampling=False, dropout=0.5):
        super().__init__()
        self.n_class, self.width = n_class, width
        self.learn_upsampling = learn_upsampling
        in_channels = 3
        for b, block in enumerate(VGG16_BLOCKS, start=1):
            for i, channels in enumerate(block, start=1):
                out_channels = scaled(channels, width)
                padding = 100 if (b, i) == (1, 1) else 1
                setattr(self, f"conv{b}_{i}",
                        nn.Conv2d(in_channels, out_channels, 3, padding=padding))
                in_channels = out_channels
        head = scaled(4096, width)
        self.fc6 = nn.Conv2d(in_channels, head, 7)
        self.fc7 = nn.Conv2d(head, head, 1)
        self.drop = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(head, n_class, 1)

    def upscore_layer(self, factor):
        """ConvTranspose2d(kernel 2 * factor, stride factor, no bias)."""
        layer = nn.ConvTranspose2d(self.n_class, self.n_class, 2 * factor, stride=factor,
                                   bias=False)
        layer.weight.requires_grad_(self.learn_upsampling)
        return layer

    def trunk(self, x):
        """x (N, 3, H, W) -> pool3, pool4, pool5."""
        pools = []
        h = x
        for b, block in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, len(block) + 1):
                h = F.relu(getattr(self, f"conv{b}_{i}")(h))
            h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
            pools.append(h)
        return pools[2], pools[3], pools[4]

    def head(self, pool5):
        """pool5 -> score_fr (N, n_class, h, w) at stride 32."""
        h = self.drop(F.relu(self.fc6(pool5)))
        h = self.drop(F.relu(self.fc7(h)))
        return self.score_fr(h)


class FCN32s(_FCN):
    def __init__(self, n_class=21, width=1.0, learn_upsampling=False, dropout=0.5):
        super().__init__(n_class, width, learn_upsampling, dropout)
        self.upscore = self.upscore_layer(32)

    def forward(self, x):
        _, _, pool5 = self.trunk(x)
        return crop(self.upscore(self.head(pool5)), 19, x)


class FCN16s(_FCN):
    def __init__(self, n_class=21, width=1.0, learn_upsampling=False, dropout=0.5):
        super().__init__(n_class, width, learn_upsampling, dropout)
        self.score_pool4 = nn.Conv2d(scaled(512, width), n_class, 1)
        self.upscore2 = self.upscore_layer(2)
        self.upscore16 = self.upscore_layer(16)

    def forward(self, x):
        _, pool4, pool5 = self.trunk(x)
        upscore2 = self.upscore2(self.head(pool5))
        h = upscore2 + crop(self.score_pool4(pool4), 5, upscore2)
        return crop(self.upscore16(h), 27, x)


class FCN8s(_FCN):
    pool4_scale, pool3_scale = 1.0, 1.0

    def __init__(self, n_class=21, width=1.0, learn_upsampling=False, dropout=0.5):
        super().__init__(n_class, width, learn_upsampling, dropout)
        self.score_pool3 = nn.Conv2d(scaled(256, width), n_class, 1)
        self.score_pool4 = nn.Conv2d(scaled(512, width), n_class, 1)
        self.upscore2 = self.upscore_layer(2)
        self.upscore8 = self.upscore_layer(8)
        self.upscore_pool4 = self.upscore_layer(2)

    def forward(self, x):
        pool3, pool4, pool5 = self.trunk(x)
        upscore2 = self.upscore2(self.head(pool5))
        h = upscore2 + crop(self.score_pool4(pool4 * self.pool4_scale), 5, upscore2)
        upscore_pool4 = self.upscore_pool4(h)
        h = upscore_pool4 + crop(self.score_pool3(pool3 * self.pool3_scale), 9, upscore_pool4)
        return crop(self.upscore8(h), 31, x)


class FCN8sAtOnce(FCN8s):
    pool4_scale, pool3_scale = 0.01, 0.0001


ARCHITECTURES = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s,
                 "fcn8s-atonce": FCN8sAtOnce}


def load_numpy_state_dict(net, state_dict):
    """Copy a name -> NumPy array dict (minifcn's ``state_dict()``) into ``net``, strictly.

    The arrays are cast to the dtype of ``net``'s parameters (``net.double()`` first for
    float64); a missing, unexpected or wrongly shaped key raises, as in torch.
    """
    tensors = {name: torch.from_numpy(np.ascontiguousarray(array))
               for name, array in state_dict.items()}
    net.load_state_dict(tensors, strict=True)
    return net


def twin(model, dtype=None):
    """The PyTorch network equal to a minifcn FCN ``model`` (NumPy parameters): same
    architecture, n_class, width, learn_upsampling, training mode and weights, in ``dtype``
    (default: the model's parameter dtype)."""
    state = {name: np.asarray(array) for name, array in model.state_dict().items()}
    dtype = dtype or next(iter(state.values())).dtype
    net = ARCHITECTURES[model.arch](model.n_class, model.width, model.learn_upsampling,
                                    model.drop6.p)
    net.to(dtype=torch.float64 if np.dtype(dtype) == np.float64 else torch.float32)
    net.train(model.training)
    return load_numpy_state_dict(net, state)
