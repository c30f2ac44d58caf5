"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once (minifcn.models).

Output shapes over many input sizes; the crop offsets derived from coordinate maps (equal to
the reference's, and moving or failing clearly when the architecture changes); parameter
names, shapes and initial values; whole-network gradient checks; and parity with the
PyTorch reimplementation in tests/torch_fcn.py (logits, loss, input and parameter
gradients) in float64 and float32.
"""
import contextlib
import copy
import math

import numpy as np
import pytest

from minifcn import memory
from minifcn.backend import asnumpy
from minifcn.gradcheck import check_module
from minifcn.models import ARCHITECTURES, FCN8s, FCN8sAtOnce, FCN16s, FCN32s, vgg
from minifcn.nn import ConvTranspose2d, Crop
from minifcn.ops import get_conv_algorithm, set_conv_algorithm
from minifcn.ops import (bilinear_upsampling_weight, softmax_cross_entropy_backward,
                         softmax_cross_entropy_forward)

from helpers import rel_error

VARIANTS = [FCN32s, FCN16s, FCN8s, FCN8sAtOnce]
variants = pytest.mark.parametrize("cls", VARIANTS, ids=lambda cls: cls.arch)
N_CLASS = 3

REFERENCE_OFFSETS = {           # the constants of the Caffe nets and of pytorch-fcn
    "fcn32s": {"crop_output": 19},
    "fcn16s": {"crop_pool4": 5, "crop_output": 27},
    "fcn8s": {"crop_pool4": 5, "crop_pool3": 9, "crop_output": 31},
    "fcn8s-atonce": {"crop_pool4": 5, "crop_pool3": 9, "crop_output": 31},
}

# pytorch-fcn's FCN8s state-dict keys, in its order
FCN8S_KEYS = """
conv1_1.weight conv1_1.bias conv1_2.weight conv1_2.bias
conv2_1.weight conv2_1.bias conv2_2.weight conv2_2.bias
conv3_1.weight conv3_1.bias conv3_2.weight conv3_2.bias conv3_3.weight conv3_3.bias
conv4_1.weight conv4_1.bias conv4_2.weight conv4_2.bias conv4_3.weight conv4_3.bias
conv5_1.weight conv5_1.bias conv5_2.weight conv5_2.bias conv5_3.weight conv5_3.bias
fc6.weight fc6.bias fc7.weight fc7.bias
score_fr.weight score_fr.bias score_pool3.weight score_pool3.bias
score_pool4.weight score_pool4.bias
upscore2.weight upscore8.weight upscore_pool4.weight
""".split()
TRUNK_AND_HEAD_KEYS = FCN8S_KEYS[:32]
ARCH_KEYS = {
    "fcn32s": TRUNK_AND_HEAD_KEYS + ["upscore.weight"],
    "fcn16s": TRUNK_AND_HEAD_KEYS + ["score_pool4.weight", "score_pool4.bias",
                                     "upscore2.weight", "upscore16.weight"],
    "fcn8s": FCN8S_KEYS,
    "fcn8s-atonce": FCN8S_KEYS,
}
UPSCORE_GEOMETRY = {"upscore": (64, 32), "upscore2": (4, 2), "upscore16": (32, 16),
                    "upscore_pool4": (4, 2), "upscore8": (16, 8)}     # (kernel, stride)


def small(cls, dtype=np.float32, **options):
    """A 3-class width-1/32 net with seeded weights, in eval mode (dropout off)."""
    return cls(n_class=N_CLASS, width=1 / 32, dtype=dtype, rng=0, **options).eval()


def randomise(model, rng, scale=0.1):
    """Small random values in the score layers and every bias.

    The score layers start at zero, which zeroes the gradient of everything below them,
    and the biases at zero, which puts every ReLU in the padded border on its kink (where
    finite differences see 1/2 and backward 0). Random values make every gradient
    non-trivial and every function smooth at the checked point.
    """
    for name, p in model.named_parameters():
        if name.startswith("score") or name.endswith(".bias"):
            p.data = rng.normal(0.0, scale, p.shape).astype(p.dtype)
    return model


def crops(model):
    return {name: layer.offset for name, layer in model.named_children()
            if isinstance(layer, Crop)}


@pytest.fixture(scope="module")
def small_nets():
    return {cls.arch: small(cls) for cls in VARIANTS}


@pytest.fixture
def paper_fcn8s():
    """FCN-8s at width 1 for PASCAL VOC's 21 classes: 134M parameters (0.5 GiB in float32,
    as much again in gradients), built for each test. The recycled memory of earlier tests
    is given back first (the last test's model was alive at its own teardown, so its
    gradients' blocks reached the pool only afterwards): the peak stays that of one test."""
    memory.clear()
    yield FCN8s(n_class=21, rng=0)


# --- Output shapes ---------------------------------------------------------------------------

SIZES = [(1, 1), (1, 5), (2, 3), (3, 2), (5, 8), (8, 13), (13, 1), (31, 32), (32, 33),
         (33, 31), (63, 64), (64, 65), (65, 97), (97, 100), (100, 63)]


@variants
@pytest.mark.parametrize("hw", SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_output_and_input_gradient_have_the_input_size(small_nets, rng, cls, hw):
    model = small_nets[cls.arch]
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    y = model(x)
    assert y.shape == (2, N_CLASS) + hw and y.dtype == np.float32
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == np.float32


@variants
def test_500x500_output(small_nets, rng, cls):
    x = rng.standard_normal((1, 3, 500, 500)).astype(np.float32)
    assert small_nets[cls.arch](x).shape == (1, N_CLASS, 500, 500)


# --- Crop offsets: derived, equal to the reference's -----------------------------------------

@variants
def test_derived_offsets_equal_the_reference(small_nets, cls):
    want = {name: (o, o) for name, o in REFERENCE_OFFSETS[cls.arch].items()}
    assert crops(small_nets[cls.arch]) == want


@pytest.mark.parametrize("arch, output_offset", [("fcn32s", 18), ("fcn16s", 26),
                                                 ("fcn8s", 30), ("fcn8s-atonce", 30)])
def test_offsets_follow_conv1_1_padding(monkeypatch, rng, arch, output_offset):
    # One pixel less padding moves the image one pixel closer to the output's origin;
    # the skip crops compare two paths that both start at conv1_1, so they do not move.
    monkeypatch.setattr(vgg, "CONV1_1_PADDING", 99)
    model = small(ARCHITECTURES[arch])
    assert model.conv1_1.options["padding"] == (99, 99)
    want = {name: (o, o) for name, o in REFERENCE_OFFSETS[arch].items()}
    want["crop_output"] = (output_offset, output_offset)
    assert crops(model) == want
    for hw in [(1, 1), (17, 30)]:
        assert model(rng.standard_normal((1, 3) + hw).astype(np.float32)).shape[2:] == hw


def test_too_little_padding_is_explained(monkeypatch):
    monkeypatch.setattr(vgg, "CONV1_1_PADDING", 60)
    with pytest.raises(ValueError, match=r"cannot crop upscore8: .*negative offset -9.*"
                                         r"more padding upstream"):
        small(FCN8s)


class _OddUpscore2(FCN8s):
    """FCN-8s whose stride-2 upscores have a 5x5 kernel: the grids no longer line up."""

    def _upscore(self, factor):
        if factor != 2:
            return super()._upscore(factor)
        return ConvTranspose2d(self.n_class, self.n_class, 5, stride=2, bias=False)


class _Stride4Upscore2(FCN8s):
    """FCN-8s whose first upscore upsamples by 4: score_pool4 sits at another scale."""

    def _upscore(self, factor):
        return super()._upscore(4 if factor == 2 and not hasattr(self, "upscore2") else factor)


def test_a_fractional_offset_is_explained():
    with pytest.raises(ValueError, match=r"cannot crop score_pool4: the offset 9/2 is not a "
                                         r"whole number of pixels"):
        small(_OddUpscore2)


def test_a_scale_mismatch_is_explained():
    with pytest.raises(ValueError, match=r"cannot crop score_pool4: its scale 1/16 .* "
                                         r"differs from the reference's 1/8"):
        small(_Stride4Upscore2)


# --- Parameters: names, shapes, initial values ------------------------------------------------

@variants
def test_parameter_names_are_the_reference_state_dict_keys(small_nets, cls):
    names = [name for name, _ in small_nets[cls.arch].named_parameters()]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(ARCH_KEYS[cls.arch])
    assert list(small_nets[cls.arch].state_dict()) == names


@variants
def test_score_layers_start_at_zero_and_upscores_are_frozen_bilinear_kernels(cls):
    model = small(cls)
    upscores = []
    for name, p in model.named_parameters():
        layer = name.split(".")[0]
        if layer.startswith("score"):
            assert not np.any(p.data), f"{name} does not start at zero"
        if layer.startswith("upscore"):
            upscores.append(layer)
            kernel, stride = UPSCORE_GEOMETRY[layer]
            assert p.shape == (N_CLASS, N_CLASS, kernel, kernel)
            assert np.array_equal(p.data, bilinear_upsampling_weight(N_CLASS, kernel))
            assert getattr(model, layer).options["stride"] == (stride, stride)
            assert getattr(model, layer).bias is None
        assert p.requires_grad == (not layer.startswith("upscore")), name
    assert upscores
    learned = small(cls, learn_upsampling=True)
    assert all(getattr(learned, layer).weight.requires_grad for layer in upscores)


def test_frozen_upscores_get_no_gradient_learned_ones_do(rng):
    x = rng.standard_normal((1, 3, 9, 10)).astype(np.float32)
    for learn in (False, True):
        model = randomise(small(FCN8s, learn_upsampling=learn), rng)
        model.backward(np.ones_like(model(x)))
        for layer in ("upscore2", "upscore_pool4", "upscore8"):
            grad = getattr(model, layer).weight.grad
            assert (grad is not None and np.any(grad)) if learn else grad is None, layer


def test_trunk_and_head_start_he_normal_with_zero_biases():
    model = small(FCN8s)
    for name in ("conv3_1", "conv5_3", "fc6", "fc7"):
        layer = getattr(model, name)
        fan_in = int(np.prod(layer.weight.shape[1:]))
        std = float(layer.weight.data.std())
        assert abs(std / math.sqrt(2.0 / fan_in) - 1) < 0.25, f"{name}: std {std}"
        assert not np.any(layer.bias.data), name


@pytest.mark.parametrize("width, conv1, conv5, head", [(1 / 16, 4, 32, 256),
                                                       (1 / 32, 2, 16, 128),
                                                       (0.01, 1, 5, 41)])
def test_width_scales_every_trunk_and_head_channel(width, conv1, conv5, head):
    model = FCN8s(n_class=2, width=width, rng=0)
    assert model.conv1_1.weight.shape == (conv1, 3, 3, 3)
    assert model.conv5_3.weight.shape == (conv5, conv5, 3, 3)
    assert model.fc6.weight.shape == (head, conv5, 7, 7)
    assert model.fc7.weight.shape == (head, head, 1, 1)
    assert model.score_fr.weight.shape == (2, head, 1, 1)


def _paper_parameter_count(n_class):
    """FCN-8s's parameters from its layer list: VGG16's 3x3 convs, fc6 7x7, fc7 1x1,
    three 1x1 score layers, bias-free upscores of kernels 4, 4 and 16."""
    count, c_in = 0, 3
    for block in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
        for c_out in block:
            count += c_out * c_in * 3 * 3 + c_out
            c_in = c_out
    count += 4096 * 512 * 7 * 7 + 4096 + 4096 * 4096 + 4096               # fc6, fc7
    count += (4096 + 512 + 256) * n_class + 3 * n_class                    # score layers
    count += n_class * n_class * (4 * 4 + 4 * 4 + 16 * 16)                 # upscores
    return count


@pytest.mark.slow
def test_width_1_is_the_papers_network(paper_fcn8s):
    model = paper_fcn8s
    assert model.conv1_1.weight.shape == (64, 3, 3, 3)
    assert model.conv1_1.options["padding"] == (100, 100)
    assert model.conv3_3.weight.shape == (256, 256, 3, 3)
    assert model.conv5_3.weight.shape == (512, 512, 3, 3)
    assert model.fc6.weight.shape == (4096, 512, 7, 7)
    assert model.fc7.weight.shape == (4096, 4096, 1, 1)
    assert model.score_fr.weight.shape == (21, 4096, 1, 1)
    assert model.score_pool4.weight.shape == (21, 512, 1, 1)
    assert model.score_pool3.weight.shape == (21, 256, 1, 1)
    assert model.upscore8.weight.shape == (21, 21, 16, 16)
    total = sum(p.data.size for p in model.parameters())
    assert total == _paper_parameter_count(21) == 134_489_759


# --- Whole-network gradient checks -------------------------------------------------------------

SAMPLED_GROUPS = {
    "fcn32s": ["conv1_1", "conv4_2", "fc6", "score_fr", "upscore"],
    "fcn16s": ["conv1_1", "fc6", "score_fr", "score_pool4", "upscore2", "upscore16"],
    "fcn8s": ["conv1_1", "fc6", "score_fr", "score_pool4", "score_pool3", "upscore2",
              "upscore_pool4", "upscore8"],
    "fcn8s-atonce": ["conv1_1", "fc7", "score_fr", "score_pool4", "score_pool3",
                     "upscore_pool4", "upscore8"],
}


def _checkable(cls, rng, **options):
    """A float64 net with random score layers and biases, and a small float64 input."""
    model = randomise(small(cls, np.float64, **options), rng)
    return model, rng.standard_normal((1, 3, 11, 13))


@variants
@pytest.mark.parametrize("learn_upsampling", [False, True], ids=["frozen", "learned"])
def test_whole_network_directional_gradcheck(rng, cls, learn_upsampling):
    model, x = _checkable(cls, rng, learn_upsampling=learn_upsampling)
    report = check_module(model, x, mode="directional")
    assert report.passed, str(report)
    learned = [n for n, p in model.named_parameters() if p.requires_grad]
    assert [t.name for t in report.tensors] == ["input"] + learned
    assert any(n.startswith("upscore") for n in learned) == learn_upsampling


@pytest.mark.slow
@variants
def test_whole_network_sampled_elements_gradcheck(rng, cls):
    model, x = _checkable(cls, rng, learn_upsampling=True)
    groups = SAMPLED_GROUPS[cls.arch]
    for name, p in model.named_parameters():     # check only these: the others are frozen
        p.requires_grad = name.split(".")[0] in groups
    report = check_module(model, x, mode="full", max_elements=8)
    assert report.passed, str(report)
    assert {t.name.split(".")[0] for t in report.tensors} == {"input"} | set(groups)


def test_training_mode_gradcheck_with_fixed_dropout_masks(rng):
    model, x = _checkable(FCN8s, rng)
    model.train()
    model.drop6.rng = 0         # an int seed: the same mask at every forward
    model.drop7.rng = 1
    report = check_module(model, x, mode="directional")
    assert report.passed, str(report)


# --- Parity with the PyTorch reimplementation (tests/torch_fcn.py) -------------------------

def _minifcn_step(model, logits, target):
    """After ``logits = model(x)``: the mean cross-entropy (void 255 ignored), dx and
    {name: .grad}."""
    model.zero_grad()
    loss, cache = softmax_cross_entropy_forward(logits, target, ignore_index=255)
    dlogits, _, _ = softmax_cross_entropy_backward(1.0, cache)
    dx = model.backward(dlogits)
    return logits, loss, dx, {name: p.grad for name, p in model.named_parameters()}


def _torch_step(torch, net, x, target):
    tx = torch.tensor(x, requires_grad=True)
    logits = net(tx)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(target),
                                             ignore_index=255)
    loss.backward()
    grads = {name: None if p.grad is None else p.grad.numpy()
             for name, p in net.named_parameters()}
    return logits.detach().numpy(), loss.detach().numpy(), tx.grad.numpy(), grads


def _problem(rng, n, hw, dtype, n_class=N_CLASS):
    """x (n, 3, H, W) and labels in [0, n_class) with a void (255) block and void pixels."""
    x = rng.standard_normal((n, 3) + hw).astype(dtype)
    target = rng.integers(0, n_class, (n,) + hw)
    target[:, : hw[0] // 3, : hw[1] // 4] = 255
    target[rng.random(target.shape) < 0.1] = 255
    return x, target


def assert_matches_torch(torch, model, x, target, tol, torch_dtype=None,
                         same_decisions=False):
    """minifcn's logits, loss, dx and every parameter gradient within ``tol`` of the PyTorch
    twin's, PyTorch computing in ``torch_dtype`` (default: x's dtype), and, with
    ``same_decisions``, taking minifcn's ReLU masks and pool argmaxes (``decisions.py``).
    Returns the twin's count of decisions it would have taken otherwise."""
    import torch_fcn
    from decisions import decisions, imposing
    torch_dtype = np.dtype(torch_dtype or x.dtype)
    net = torch_fcn.twin(model, torch_dtype)
    logits = model(x)                           # minifcn's decisions, before torch's step
    with (imposing(*decisions(model)) if same_decisions else contextlib.nullcontext()) as d:
        want = _torch_step(torch, net, x.astype(torch_dtype), target)
    del net                                     # its parameters (1 GiB at width 1 in float64)
    got = _minifcn_step(model, logits, target)
    for what, a, b in zip(("logits", "loss", "dx"), got[:3], want[:3]):
        assert a.dtype == x.dtype, what
        assert rel_error(a, b) < tol, f"{what}: rel error {rel_error(a, b):.2e}"
    grads, want_grads = got[3], want[3]
    assert list(grads) == [name for name, _ in model.named_parameters()]
    assert sorted(grads) == sorted(want_grads)
    for name, grad in grads.items():
        if want_grads[name] is None:            # a frozen upscore
            assert grad is None and not model.learn_upsampling, name
            continue
        assert grad.dtype == x.dtype, name
        assert rel_error(grad, want_grads[name]) < tol, \
            f"{name}: rel error {rel_error(grad, want_grads[name]):.2e}"
    return d


@pytest.mark.parametrize("learn_upsampling", [False, True], ids=["frozen", "learned"])
def test_fcn8s_matches_torch_in_float64(torch, rng, learn_upsampling):
    model = randomise(FCN8s(n_class=N_CLASS, width=1 / 16, learn_upsampling=learn_upsampling,
                            dtype=np.float64, rng=0).eval(), rng)
    assert_matches_torch(torch, model, *_problem(rng, 2, (64, 80), np.float64), tol=1e-10)


@pytest.mark.parametrize("cls", [FCN32s, FCN16s, FCN8sAtOnce], ids=lambda cls: cls.arch)
@pytest.mark.parametrize("hw", [(37, 45), (1, 2)], ids=["37x45", "1x2"])
def test_other_variants_match_torch_in_float64(torch, rng, cls, hw):
    model = randomise(cls(n_class=N_CLASS, width=1 / 16, learn_upsampling=True,
                          dtype=np.float64, rng=0).eval(), rng)
    assert_matches_torch(torch, model, *_problem(rng, 1, hw, np.float64), tol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["im2col", "auto"], ids=["im2col", "winograd"])
def test_paper_fcn8s_matches_torch_in_float32(torch, rng, paper_fcn8s, algorithm):
    """Width 1 in float32: logits and loss within 1e-4 of PyTorch's float32 run; logits,
    loss, dx and every gradient within a derived bound of PyTorch's float64 run of the same
    weights taking the same ReLU and max-pool decisions.

    Why the same decisions: the padding of 100 makes the pools see exact ties, which float32
    rounding breaks differently on every BLAS kernel and thread count, each time a valid
    subgradient that routes the gradient to another pixel (``tests/decisions.py``; on
    OpenBLAS's Haswell kernels conv1_1's bias gradient then moved by 4e-3 to 8e-3 against
    PyTorch float64). With the decisions shared, what is left is rounding, bounded by
    ``float32_tolerance``: 3.7e-5 here (im2col; measured at most 1.0e-6 with OpenBLAS's
    AVX-512 and Haswell kernels, 1 and 2 threads) and 1.1e-3 with Winograd's transforms
    (measured at most 1.2e-5). A crop offset by one, pool3's skip scaled by 1e-4 or fc7's
    weight gradient transposed each fail it (rel error 0.19, 0.38, 1.09).
    """
    import torch_fcn
    from decisions import float32_tolerance
    model = randomise(paper_fcn8s.eval(), rng)
    x, target = _problem(rng, 1, (32, 32), np.float32, n_class=21)
    with torch.no_grad():
        logits = torch_fcn.twin(model)(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(target),
                                                 ignore_index=255)
    set_conv_algorithm(algorithm)
    try:
        got_logits = model(x)
        got_loss, _ = softmax_cross_entropy_forward(got_logits, target, ignore_index=255)
        tol = float32_tolerance(model, x.shape, winograd=algorithm == "auto")
        assert rel_error(got_logits, logits.numpy()) < 1e-4
        assert rel_error(got_loss, loss.numpy()) < 1e-4
        decided = assert_matches_torch(torch, model, x, target, tol=tol,
                                       torch_dtype=np.float64, same_decisions=True)
    finally:
        set_conv_algorithm("auto")
    assert decided.relu_flips == 0       # only pool ties are ill-posed; a ReLU flip is a bug


def test_a_pytorch_port_state_dict_loads_strictly(torch, rng):
    import torch_fcn
    net = torch_fcn.FCN8s(n_class=N_CLASS, width=1 / 32).double().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("score"):
                p.normal_(0.0, 0.1)
    model = FCN8s(n_class=N_CLASS, width=1 / 32, dtype=np.float64).eval()
    model.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, strict=True)
    x = rng.standard_normal((1, 3, 20, 17))
    assert rel_error(model(x), net(torch.from_numpy(x)).detach().numpy()) < 1e-10


# --- Dropout, dtypes, devices, bad input ------------------------------------------------------

def test_dropout_draws_new_masks_in_training_and_none_in_eval(rng):
    model = randomise(FCN8s(n_class=N_CLASS, width=1 / 32, rng=0), rng)
    assert model.training and model.drop6.p == model.drop7.p == 0.5
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    first, second = model(x), model(x)
    assert not np.array_equal(first, second)
    model.eval()
    evaluated = model(x)
    assert np.array_equal(evaluated, model(x))
    no_dropout = FCN8s(n_class=N_CLASS, width=1 / 32, dropout=0.0)       # training mode
    no_dropout.load_state_dict(model.state_dict())
    assert np.array_equal(no_dropout(x), evaluated)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_computes_in_the_parameters_dtype_end_to_end(rng, dtype):
    model = randomise(small(FCN8sAtOnce, learn_upsampling=True), rng).to(dtype=dtype)
    x = rng.standard_normal((1, 3, 12, 9)).astype(dtype)
    y = model(x)
    assert y.dtype == dtype
    assert model.backward(np.ones_like(y)).dtype == dtype
    for name, p in model.named_parameters():
        assert p.data.dtype == dtype and p.grad is not None and p.grad.dtype == dtype, name


@variants
@pytest.mark.parametrize("x, error, match", [
    (np.zeros((1, 1, 8, 8), np.float32), ValueError,
     r"takes RGB images \(N, 3, H, W\), got x of shape \(1, 1, 8, 8\)"),
    (np.zeros((3, 8, 8), np.float32), ValueError,
     r"x must be 4-D \(N, 3, H, W\), got shape \(3, 8, 8\)"),
    (np.zeros((1, 3, 8, 8), np.int64), TypeError, r"x must be float32 or float64, got int64"),
    ([[[[0.0]]]], TypeError, r"x must be a NumPy or CuPy array, got list"),
    (np.zeros((1, 3, 8, 8), np.float64), TypeError,
     r"has dtype float32 but x has float64; cast one of them"),
], ids=["1-channel", "3-D", "int", "list", "float64-into-float32"])
def test_bad_input_is_named(small_nets, cls, x, error, match):
    with pytest.raises(error, match=match):
        small_nets[cls.arch](x)


def test_bad_dy_and_backward_before_forward(rng):
    model = small(FCN16s)
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        model.backward(np.zeros((1, N_CLASS, 8, 8), np.float32))
    model(rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    with pytest.raises(ValueError, match=r"dy must have the forward output's shape "
                                         r"\(1, 3, 8, 8\), got \(1, 3, 8, 9\)"):
        model.backward(np.zeros((1, N_CLASS, 8, 9), np.float32))


@pytest.mark.parametrize("options, error, match", [
    (dict(n_class=0), ValueError, r"n_class must be positive, got 0"),
    (dict(n_class=2.5), TypeError, r"n_class must be an int, got 2.5"),
    (dict(width=0), ValueError, r"width must be a number in \(0, 1\], got 0"),
    (dict(width=1.5), ValueError, r"width must be a number in \(0, 1\], got 1.5"),
    (dict(width="1"), ValueError, r"width must be a number in \(0, 1\], got '1'"),
    (dict(dropout=1.0), ValueError, r"p must be in \[0, 1\), got 1.0"),
    (dict(dtype=np.float16), TypeError, r"dtype must be float32 or float64, got float16"),
], ids=["n_class=0", "n_class=2.5", "width=0", "width=1.5", "width=str", "dropout=1",
        "float16"])
def test_bad_constructor_arguments(options, error, match):
    for cls in VARIANTS:
        with pytest.raises(error, match=match):
            cls(**{"width": 1 / 32, **options})


def test_cupy_matches_numpy(xp, rng):
    model = randomise(small(FCN8s, learn_upsampling=True), rng)
    x, _ = _problem(rng, 1, (20, 26), np.float32)
    dy = rng.standard_normal((1, N_CLASS, 20, 26)).astype(np.float32)
    want_y = model(x)
    want_dx = model.backward(dy)
    want = {name: p.grad for name, p in model.named_parameters()}
    on_device = copy.deepcopy(model).to(device="cpu" if xp is np else "cuda")
    on_device.zero_grad()
    y = on_device(xp.asarray(x))
    dx = on_device.backward(xp.asarray(dy))
    assert type(y) is type(dx) is type(xp.asarray(x))
    assert rel_error(asnumpy(y), want_y) < 1e-5
    assert rel_error(asnumpy(dx), want_dx) < 1e-5
    for name, p in on_device.named_parameters():
        assert rel_error(asnumpy(p.grad), want[name]) < 1e-5, name


def test_init_option_of_the_trunk_and_head():
    zeros = FCN8s(n_class=N_CLASS, width=1 / 32, init="zeros")
    for name, p in zeros.named_parameters():
        if name.startswith("upscore"):
            kernel = UPSCORE_GEOMETRY[name.split(".")[0]][0]
            assert np.array_equal(p.data, bilinear_upsampling_weight(N_CLASS, kernel)), name
        else:
            assert not np.any(p.data), name
    default = FCN8s(n_class=N_CLASS, width=1 / 32, init="default", rng=0)
    assert np.any(default.conv1_1.bias.data) and not np.any(default.score_fr.weight.data)
    with pytest.raises(ValueError, match="init must be one of 'default', 'kaiming', 'zeros'"):
        FCN8s(width=1 / 32, init="he")
