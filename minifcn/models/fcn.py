"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once, with their backward written out by hand.

Each network is the VGG16 trunk (``vgg.py``), a convolutional head (fc6, fc7 as
convolutions, then ``score_fr``, a 1x1 convolution to class scores at stride 32), and an
upsampling path back to the image:

* FCN-32s upsamples the stride-32 scores by 32 in one transposed convolution;
* FCN-16s upsamples by 2, adds scores predicted from pool4 (stride 16), upsamples by 16;
* FCN-8s does that, then upsamples by 2 again, adds scores from pool3 (stride 8) and
  upsamples by 8.

Because conv1_1 pads by 100, every map is larger than the image region it covers; crops at
offsets derived from the layers' coordinate maps (``coord.py``) align the skip scores
with the upsampled ones and the output with the image. ``backward`` is ``forward`` read
from the bottom up: a crop's gradient is padded back, a sum's gradient goes to both
summands, and the trunk receives the skip gradients at pool4 and pool3.
"""
from __future__ import annotations


import numpy as np

from ..backend import device_of
from ..nn import Conv2d, ConvTranspose2d, Crop, Dropout, ReLU
from .. import _validate as _checks
from ..ops import bilinear_upsampling_weight
from .coord import IDENTITY, crop_offset, layer_map, path_map
from .vgg import VGG16Trunk, scaled


class _FCN(VGG16Trunk):
    """What the FCN variants share: the trunk, the head, the score and upscore layers.

    Parameters (of every variant)
    -----------------------------
    n_class : int, 21 for PASCAL VOC (20 classes and background)
    width : float in (0, 1], scales every trunk and head channel count; 1.0 is the paper's
        network, 1/16 one that trains on a CPU in minutes
    learn_upsampling : bool; the upscore layers start bilinear and stay frozen
        (``requires_grad=False``, as in the reference) unless this is True
    dropout : float in [0, 1), the rate of drop6 and drop7
    dtype : float32 or float64
    rng : numpy Generator or int seed
    init : "kaiming" (He-normal trunk and head for training from scratch, the default),
        "default" (PyTorch's) or "zeros" (before loading weights: instant, and no memory is
        touched until the weights arrive). Score layers always start at zero.
    """

    arch = ""
    pool4_scale = 1.0      # FCN-8s at-once scales the skip features before scoring them
    pool3_scale = 1.0

    def __init__(self, n_class=21, width=1.0, learn_upsampling=False, dropout=0.5,
                 dtype=np.float32, rng=None, init="kaiming"):
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        super().__init__(width, dtype, rng, init)
        self.n_class = _checks.positive_int("n_class", n_class)
        self.learn_upsampling = bool(learn_upsampling)
        self.dtype = np.dtype(dtype)
        head = scaled(4096, width)
        self.fc6 = Conv2d(self.trunk_channels, head, 7, dtype=dtype, rng=rng, init=init)
        self.relu6 = ReLU()
        self.drop6 = Dropout(dropout, rng=rng)
        self.fc7 = Conv2d(head, head, 1, dtype=dtype, rng=rng, init=init)
        self.relu7 = ReLU()
        self.drop7 = Dropout(dropout, rng=rng)
        self.score_fr = self._score(head)

    # --- construction helpers -----------------------------------------------------------
    def _score(self, in_channels):
        """A 1x1 scoring convolution; it starts at zero, as in the reference."""
        return Conv2d(in_channels, self.n_class, 1, dtype=self.dtype, init="zeros")

    def _upscore(self, factor):
        """A transposed conv upsampling by ``factor``: kernel 2*factor, bilinear weights,
        frozen unless ``learn_upsampling``."""
        layer = ConvTranspose2d(self.n_class, self.n_class, 2 * factor, stride=factor,
                                bias=False, dtype=self.dtype, init="zeros")
        layer.weight.data = bilinear_upsampling_weight(self.n_class, 2 * factor, self.dtype)
        layer.weight.requires_grad = self.learn_upsampling
        return layer

    def head_path(self) -> list:
        return [self.fc6, self.relu6, self.drop6, self.fc7, self.relu7, self.drop7,
                self.score_fr]

    def _crop_to(self, big_map, reference_map, what):
        return Crop(crop_offset(big_map, reference_map, what))

    # --- shared pieces of forward and backward -------------------------------------------
    def _check_input(self, x):
        """Validate x against the model (channels, device, dtype); remember its shape, so
        that a backward without a forward is refused by name."""
        _checks.image_batch("x", x, what=" (N, 3, H, W)")
        if x.shape[1] != 3:
            raise ValueError(f"{self.arch} takes RGB images (N, 3, H, W), got x of shape "
                             f"{tuple(x.shape)}")
        weight = self.conv1_1.weight
        if device_of(x) != weight.device:
            raise ValueError(f"x is on {device_of(x)} but the model ({self.arch}) is on "
                             f"{weight.device}; move one of them: minifcn.backend.to_device("
                             f"x, {weight.device!r}) or model.to({device_of(x)!r})")
        if x.dtype != weight.dtype:
            raise TypeError(f"the model ({self.arch}) has dtype {weight.dtype} but x has "
                            f"{x.dtype}; cast one of them: x.astype(numpy.{weight.dtype}) or "
                            f"model.to(dtype=numpy.{x.dtype})")
        self.save_for_backward(tuple(x.shape))

    def forward_head(self, pool5):
        h = pool5
        for layer in self.head_path():
            h = layer(h)
        return h                                                  # score_fr (N, n_class, ...)

    def backward_head(self, dscore):
        dh = dscore
        for layer in reversed(self.head_path()):
            dh = layer.backward(dh)
        return dh                                                 # d pool5

    def extra_repr(self):
        return (f"n_class={self.n_class}, width={self.width}, "
                f"learn_upsampling={self.learn_upsampling}")


class FCN32s(_FCN):
    """FCN-32s: scores at stride 32, upsampled by 32 in one step (crop offset 19)."""

    arch = "fcn32s"

    def __init__(self, n_class=21, width=1.0, learn_upsampling=False, dropout=0.5,
                 dtype=np.float32, rng=None, init="kaiming"):
        super().__init__(n_class, width, learn_upsampling, dropout, dtype, rng, init)
        self.upscore = self._upscore(32)
        to_upscore = path_map(self.trunk_path(5) + self.head_path() + [self.upscore])
        self.crop_output = self._crop_to(to_upscore, IDENTITY, "upscore")

    def forward(self, x):
        self._check_input(x)
        _, _, pool5 = self.forward_trunk(x)
        upscore = self.upscore(self.forward_head(pool5))         # (N, n_class, ~H+38, ...)
        return self.crop_output(upscore, x)                       # (N, n_class, H, W)

    def backward(self, dy):
        self.saved()                                              # forward ran first
        dupscore = self.crop_output.backward(dy)
        dpool5 = self.backward_head(self.upscore.backward(dupscore))
        return self.backward_trunk(None, None, dpool5)


class FCN16s(_FCN):
    """FCN-16s: stride-32 scores upsampled by 2, plus pool4's scores (crop 5), upsampled by
    16 (crop 27)."""

    arch = "fcn16s"

    def __init__(self, n_class=21, width=1.0, learn_upsampling=False, dropout=0.5,
                 dtype=np.float32, rng=None, init="kaiming"):
        super().__init__(n_class, width, learn_upsampling, dropout, dtype, rng, init)
        self.score_pool4 = self._score(scaled(512, width))
        self.upscore2 = self._upscore(2)
        self.upscore16 = self._upscore(16)
        to_upscore2 = path_map(self.trunk_path(5) + self.head_path() + [self.upscore2])
        to_score_pool4 = path_map(self.trunk_path(4) + [self.score_pool4])
        self.crop_pool4 = self._crop_to(to_score_pool4, to_upscore2, "score_pool4")
        to_upscore16 = to_upscore2.then(layer_map(self.upscore16))
        self.crop_output = self._crop_to(to_upscore16, IDENTITY, "upscore16")

    def forward(self, x):
        self._check_input(x)
        _, pool4, pool5 = self.forward_trunk(x)
        upscore2 = self.upscore2(self.forward_head(pool5))        # stride 16
        score_pool4c = self.crop_pool4(self.score_pool4(pool4), upscore2)
        upscore16 = self.upscore16(upscore2 + score_pool4c)       # stride 1
        return self.crop_output(upscore16, x)

    def backward(self, dy):
        self.saved()                                              # forward ran first
        dfuse_pool4 = self.upscore16.backward(self.crop_output.backward(dy))
        dpool4 = self.score_pool4.backward(self.crop_pool4.backward(dfuse_pool4))
        dpool5 = self.backward_head(self.upscore2.backward(dfuse_pool4))
        return self.backward_trunk(None, dpool4, dpool5)


class FCN8s(_FCN):
    """FCN-8s: FCN-16s's fusion at stride 16, then upsampled by 2, plus pool3's scores
    (crop 9), upsampled by 8 (crop 31)."""

    arch = "fcn8s"

    def __init__(self, n_class=21, width=1.0, learn_upsampling=False, dropout=0.5,
                 dtype=np.float32, rng=None, init="kaiming"):
        super().__init__(n_class, width, learn_upsampling, dropout, dtype, rng, init)
        self.score_pool4 = self._score(scaled(512, width))
        self.score_pool3 = self._score(scaled(256, width))
        self.upscore2 = self._upscore(2)
        self.upscore_pool4 = self._upscore(2)
        self.upscore8 = self._upscore(8)
        to_upscore2 = path_map(self.trunk_path(5) + self.head_path() + [self.upscore2])
        to_score_pool4 = path_map(self.trunk_path(4) + [self.score_pool4])
        self.crop_pool4 = self._crop_to(to_score_pool4, to_upscore2, "score_pool4")
        to_upscore_pool4 = to_upscore2.then(layer_map(self.upscore_pool4))
        to_score_pool3 = path_map(self.trunk_path(3) + [self.score_pool3])
        self.crop_pool3 = self._crop_to(to_score_pool3, to_upscore_pool4, "score_pool3")
        to_upscore8 = to_upscore_pool4.then(layer_map(self.upscore8))
        self.crop_output = self._crop_to(to_upscore8, IDENTITY, "upscore8")

    def forward(self, x):
        self._check_input(x)
        pool3, pool4, pool5 = self.forward_trunk(x)
        upscore2 = self.upscore2(self.forward_head(pool5))        # stride 16
        score_pool4 = self.score_pool4(_scaled(pool4, self.pool4_scale))
        fuse_pool4 = upscore2 + self.crop_pool4(score_pool4, upscore2)
        upscore_pool4 = self.upscore_pool4(fuse_pool4)            # stride 8
        score_pool3 = self.score_pool3(_scaled(pool3, self.pool3_scale))
        fuse_pool3 = upscore_pool4 + self.crop_pool3(score_pool3, upscore_pool4)
        upscore8 = self.upscore8(fuse_pool3)                      # stride 1
        return self.crop_output(upscore8, x)                      # (N, n_class, H, W)

    def backward(self, dy):
        self.saved()                                              # forward ran first
        dfuse_pool3 = self.upscore8.backward(self.crop_output.backward(dy))
        dscore_pool3 = self.crop_pool3.backward(dfuse_pool3)      # the sum sends dfuse_pool3
        dpool3 = _scaled(self.score_pool3.backward(dscore_pool3), self.pool3_scale)
        dfuse_pool4 = self.upscore_pool4.backward(dfuse_pool3)    # ... to both summands
        dscore_pool4 = self.crop_pool4.backward(dfuse_pool4)
        dpool4 = _scaled(self.score_pool4.backward(dscore_pool4), self.pool4_scale)
        dpool5 = self.backward_head(self.upscore2.backward(dfuse_pool4))
        return self.backward_trunk(dpool3, dpool4, dpool5)


class FCN8sAtOnce(FCN8s):
    """FCN-8s trained in one stage: pool4 is scaled by 0.01 and pool3 by 0.0001 before
    scoring (fixed scales), so the skips start small next to the coarse scores."""

    arch = "fcn8s-atonce"
    pool4_scale = 0.01
    pool3_scale = 0.0001


def _scaled(a, scale):
    return a if scale == 1.0 else a * a.dtype.type(scale)
