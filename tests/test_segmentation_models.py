"""FCN-ResNet50 and DeepLabV3-ResNet50 against the same networks in plain torch
(tests/torch_segmentation.py, torchvision's layout): equal state-dict keys and shapes, and,
with random weights and running statistics copied across by key, equal scores, auxiliary
scores, input gradients and every parameter gradient in float64, in eval mode and in
training mode (running statistics compared after the step). Width 1/16 keeps it small."""
import numpy as np
import pytest

from minifcn.gradcheck import check_module
from minifcn.models.resnet import Bottleneck
from minifcn.models.segmentation import DeepLabV3ResNet50, FCNResNet50
from minifcn.nn import BatchNorm2d, Conv2d, Dropout, Sequential

from helpers import rel_error

MODELS = {"fcn": FCNResNet50, "deeplabv3": DeepLabV3ResNet50}
WIDTH = 1 / 16


def _twins(torch, kind, seed=0):
    """The torch network with random weights and statistics, and minifcn's loaded from it."""
    import torch_segmentation
    torch.manual_seed(seed)
    net = torch_segmentation.Segmenter(kind, n_class=5, width=WIDTH).double()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith(("running_mean", "bn1.weight", "bn2.weight", "bn3.weight",
                                "bias")):
                t.copy_(torch.randn_like(t) * 0.5 + (name.endswith("weight")))
            elif name.endswith("num_batches_tracked"):
                t.fill_(7)
    ours = MODELS[kind](n_class=5, width=WIDTH, dtype=np.float64, init="zeros")
    ours.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, strict=True)
    return net, ours


def _no_dropout(torch, net, ours):
    """Dropout's masks cannot be matched across libraries: training mode without them."""
    for m in net.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    for _, m in ours.named_modules():
        if isinstance(m, Dropout):
            m.training = False


def _compare(torch, net, ours, x, train):
    net.train(train)
    ours.train(train)
    if train:
        _no_dropout(torch, net, ours)
    tx = torch.tensor(x, requires_grad=True)
    t_out, t_aux = net(tx)
    rng = np.random.default_rng(1)
    dy, daux = rng.standard_normal(t_out.shape), rng.standard_normal(t_aux.shape)
    (t_out * torch.from_numpy(dy)).sum().add((t_aux * torch.from_numpy(daux)).sum()).backward()
    y = ours(x)
    dx = ours.backward(dy, daux)
    errors = {"out": rel_error(y, t_out.detach().numpy()),
              "aux": rel_error(ours.aux_output, t_aux.detach().numpy()),
              "dx": rel_error(dx, tx.grad.numpy())}
    t_params = dict(net.named_parameters())
    for name, p in ours.named_parameters():
        errors[name] = rel_error(p.grad, t_params[name].grad.numpy())
    t_state = net.state_dict()
    for name, b in ours.named_buffers():
        errors[name] = rel_error(b.data, t_state[name].numpy())
    return errors


@pytest.mark.parametrize("kind", MODELS)
def test_state_dict_keys_and_shapes_equal_torchvision_layout(torch, kind):
    net, ours = _twins(torch, kind)
    theirs = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert list(ours.state_dict()) == list(theirs)
    assert {k: tuple(np.shape(v)) for k, v in ours.state_dict().items()} == theirs
    assert ours.state_dict()["backbone.bn1.num_batches_tracked"].dtype == np.int64


@pytest.mark.slow
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("kind", MODELS)
def test_matches_torch_in_float64(torch, kind, train):
    net, ours = _twins(torch, kind)
    x = np.random.default_rng(0).standard_normal((2 if train else 1, 3, 65, 65))
    errors = _compare(torch, net, ours, x, train)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-10, f"{worst}: relative error {errors[worst]:.1e}"


def test_a_swapped_key_is_caught(torch):
    net, ours = _twins(torch, "fcn")
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    a, b = "backbone.layer1.0.bn1.weight", "backbone.layer1.0.bn2.weight"
    state[a], state[b] = state[b], state[a]
    ours.load_state_dict(state)
    errors = _compare(torch, net, ours, np.random.default_rng(0).standard_normal((1, 3, 33, 33)),
                      False)
    assert errors["out"] > 1e-6                 # the parity test's bound is 1e-10


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_layer_gradcheck(rng, training):
    bn = BatchNorm2d(3, dtype=np.float64)
    bn.weight.data = rng.standard_normal(3)
    bn.running_var.data = rng.random(3) + 0.5
    bn.train(training)
    assert check_module(bn, rng.standard_normal((2, 3, 4, 3))).passed


def test_bottleneck_gradcheck(rng):
    down = Sequential(Conv2d(4, 8, 1, stride=2, bias=False, dtype=np.float64, rng=0),
                      BatchNorm2d(8, dtype=np.float64))
    block = Bottleneck(4, 2, stride=2, dilation=1, downsample=down, dtype=np.float64, rng=0)
    assert check_module(block, rng.standard_normal((2, 4, 6, 5)), mode="directional").passed


def test_batch_norm_layer_buffers_and_modes(torch, rng):
    bn, t_bn = BatchNorm2d(3, momentum=0.2, dtype=np.float64), torch.nn.BatchNorm2d(3, momentum=0.2)
    t_bn.double()
    x = rng.standard_normal((4, 3, 2, 2))
    for _ in range(2):
        bn(x), t_bn(torch.from_numpy(x))
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == list(t_bn.state_dict())
    for name, t in t_bn.state_dict().items():
        assert rel_error(np.asarray(bn.state_dict()[name], dtype=np.float64),
                         t.double().numpy()) < 1e-12
    bn.eval(), t_bn.eval()
    assert rel_error(bn(x), t_bn(torch.from_numpy(x)).detach().numpy()) < 1e-12
    assert int(bn.num_batches_tracked.data) == 2
    bn.to(dtype=np.float32)
    assert bn.running_mean.data.dtype == np.float32
    assert bn.num_batches_tracked.data.dtype == np.int64


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_aspp_on_a_map_wider_than_its_rates(torch, rng, train):
    """On the models' 9x9 test maps every rate >= 9 reads the centre tap only; a 40x40 map
    tells rates 12, 24 and 36 apart."""
    import torch_segmentation
    from minifcn.models.heads import ASPP
    torch.manual_seed(0)
    net = torch_segmentation.ASPP(6, 4).double()
    ours = ASPP(6, out_channels=4, dtype=np.float64, init="zeros")
    ours.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()})
    net.train(train), ours.train(train)
    _no_dropout(torch, net, ours)
    x = rng.standard_normal((2, 6, 40, 40))
    tx = torch.tensor(x, requires_grad=True)
    ty = net(tx)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    assert rel_error(ours(x), ty.detach().numpy()) < 1e-10
    assert rel_error(ours.backward(dy), tx.grad.numpy()) < 1e-10
    t_params = dict(net.named_parameters())
    for name, p in ours.named_parameters():
        assert rel_error(p.grad, t_params[name].grad.numpy()) < 1e-10, name
