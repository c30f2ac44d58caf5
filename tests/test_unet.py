"""U-Net against a plain-torch U-Net (tests/torch_unet.py) in float64: equal state-dict
keys, equal scores, input gradient and every parameter gradient; a directional gradcheck of
a tiny one; the size rule (the paper's 572 -> 388) and the error for sizes that would pool
an odd map, naming the nearest valid sizes."""
import numpy as np
import pytest

from minifcn.gradcheck import check_module
from minifcn.models.unet import UNet
from minifcn.models.unet_sizes import nearest_valid_sizes, output_size, skip_offset

from helpers import rel_error


def _simulated(size, depth):
    """Output side by following every layer's size, or None where a pool gets an odd map
    or a map vanishes: an independent check of the closed form."""
    for _ in range(depth):
        size -= 4
        if size < 2 or size % 2:
            return None
        size //= 2
    size -= 4
    for _ in range(depth):
        if size < 1:
            return None
        size = 2 * size - 4
    return size if size >= 1 else None


def test_the_papers_sizes():
    assert output_size(572, 4) == 388
    assert [skip_offset(level, 4) for level in range(4)] == [88, 40, 16, 4]


def test_the_output_offset_is_the_inputs_centre():
    """The offset training crops labels at: 92 at depth 4 (572 -> 388), both sides equal."""
    from minifcn.models import UNet
    assert UNet(2, base=2, depth=4).output_offset(572, 588) == (92, 92)
    assert UNet(2, base=2, depth=2).output_offset(44, 60) == (20, 20)
    with pytest.raises(ValueError, match="cannot take width 46.*the nearest are 44 or 48"):
        UNet(2, base=2, depth=2).output_offset(44, 46)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_the_size_rule_matches_the_layers(depth):
    for size in range(1, 300):
        expected = _simulated(size, depth)
        if expected is None:
            with pytest.raises(ValueError, match="the nearest are"):
                output_size(size, depth)
        else:
            assert output_size(size, depth) == expected == size - (12 * 2 ** depth - 8)


def test_an_odd_map_is_refused_naming_the_nearest_valid_sizes():
    model = UNet(2, base=2, depth=2, rng=0)
    with pytest.raises(ValueError) as caught:
        model(np.zeros((1, 3, 44, 45), np.float32))
    message = str(caught.value)
    assert "cannot take width 45: its level-0 map would be 41 pixels, odd before the 2x2 " \
           "pool" in message
    assert "S + 4 a multiple of 4 and S >= 44" in message
    assert message.endswith("the nearest are 44 or 48")
    assert nearest_valid_sizes(570, 4) == (556, 572)
    with pytest.raises(ValueError, match="height 20: its maps would vanish.*nearest are 44$"):
        model(np.zeros((1, 3, 20, 44), np.float32))
    with pytest.raises(ValueError, match=r"in_channels=3\) takes x of shape \(N, 3, H, W\)"):
        model(np.zeros((1, 1, 44, 44), np.float32))


def _twins(torch, depth, base=4, n_class=3, in_channels=3):
    import torch_unet

    torch.manual_seed(depth)
    net = torch_unet.UNet(n_class, in_channels, base, depth).double()
    ours = UNet(n_class, in_channels, base, depth, dtype=np.float64, init="zeros")
    ours.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, strict=True)
    return net, ours


@pytest.mark.parametrize("depth, size", [(2, (44, 52)), (3, (92, 100))])
def test_parity_with_torch_in_float64(torch, depth, size):
    net, ours = _twins(torch, depth)
    assert list(ours.state_dict()) == list(net.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *size))
    tx = torch.tensor(x, requires_grad=True)
    t_y = net(tx)
    dy = rng.standard_normal(tuple(t_y.shape))
    t_y.backward(torch.from_numpy(dy))
    y = ours(x)
    assert y.shape == (2, 3, *(s - (12 * 2 ** depth - 8) for s in size))
    dx = ours.backward(dy)
    errors = {"y": rel_error(y, t_y.detach().numpy()), "dx": rel_error(dx, tx.grad.numpy())}
    t_params = dict(net.named_parameters())
    errors.update({name: rel_error(p.grad, t_params[name].grad.numpy())
                   for name, p in ours.named_parameters()})
    assert max(errors.values()) < 1e-10, errors


def test_tiny_unet_gradcheck(rng):
    model = UNet(2, in_channels=2, base=2, depth=1, dtype=np.float64, rng=0)
    report = check_module(model, rng.standard_normal((1, 2, 18, 20)), mode="directional")
    assert report.passed, report
