"""A PyTorch U-Net's weights through ``minifcn convert``, ``model_from_weights`` and
``minifcn predict``: the state dict of the plain-torch U-Net (tests/torch_unet.py, laid out
as minifcn's UNet) converts with its options read from the arrays, loads strictly, scores
as the torch network does, and a state dict that does not fit is refused naming its keys."""
import numpy as np
import pytest
from PIL import Image

from minifcn import cli
from minifcn.convert import ConversionError, convert_state
from minifcn.inference import model_from_weights
from minifcn.io import read_weights

N_CLASS, IN_CHANNELS, BASE, DEPTH = 3, 2, 4, 2


def twin(torch, depth=DEPTH):
    import torch_unet

    net = torch_unet.UNet(N_CLASS, IN_CHANNELS, base=BASE, depth=depth).double()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():                  # fan-in scaled, so that the scores vary
        for p in net.parameters():
            noise = torch.randn(p.shape, generator=generator, dtype=p.dtype)
            p.copy_(noise / p[0].numel() ** 0.5 if p.ndim > 1 else noise * 0.1)
    return net.eval()


def _state(torch, depth=DEPTH):
    return {k: v.numpy() for k, v in twin(torch, depth).state_dict().items()}


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_converted_weights_score_as_the_torch_unet_in_float64(torch, tmp_path, capsys, depth):
    net = twin(torch, depth)
    torch.save(net.state_dict(), tmp_path / "unet.pth")
    status = cli.main(["convert", str(tmp_path / "unet.pth"), str(tmp_path / "unet.npz")])
    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), err
    assert "(U-Net layout)" in out and f": unet, n_class {N_CLASS}" in out
    assert f"in_channels {IN_CHANNELS}, base {BASE}, depth {depth}" in out
    metadata = read_weights(tmp_path / "unet.npz").metadata
    assert {k: metadata[k] for k in ("arch", "n_class", "in_channels", "base", "depth")} == \
        {"arch": "unet", "n_class": N_CLASS, "in_channels": IN_CHANNELS, "base": BASE,
         "depth": depth}
    assert "preprocess" not in metadata                # not in the arrays: predict is told
    model = model_from_weights(tmp_path / "unet.npz", dtype=np.float64)
    size = 13 * 2 ** depth - 4                        # a size this depth takes
    x = np.random.default_rng(1).standard_normal((2, IN_CHANNELS, size, size))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = model(x)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def test_a_converted_three_channel_unet_predicts_from_the_command_line(torch, tmp_path,
                                                                      capsys):
    import torch_unet

    torch.save(torch_unet.UNet(N_CLASS, 3, base=BASE, depth=DEPTH).state_dict(),
               tmp_path / "unet.pth")
    assert cli.main(["convert", str(tmp_path / "unet.pth"), str(tmp_path / "unet.npz")]) == 0
    pixels = np.random.default_rng(3).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "cells.png")
    capsys.readouterr()
    assert cli.main(["predict", str(tmp_path / "cells.png"), "--weights",
                     str(tmp_path / "unet.npz"), "--preprocess", "imagenet", "--out",
                     str(tmp_path / "out")]) == 0
    labels = np.asarray(Image.open(tmp_path / "out" / "cells_labels.png"))
    assert labels.shape == (37, 45)


def _renamed(state, old, new):
    return {(new if k == old else k): v for k, v in state.items()}


@pytest.mark.parametrize("change, message", [
    (lambda s: _renamed(s, "decoder.0.2.weight", "decoder.0.3.weight"),
     "missing decoder.0.2.weight; unexpected decoder.0.3.weight"),
    (lambda s: {**s, "decoder.1.0.weight": s["decoder.0.0.weight"]},
     "wrong shape: decoder.1.0.weight (4, 8, 3, 3), expected (8, 16, 3, 3)"),
    (lambda s: {k: v for k, v in s.items() if not k.startswith("head.")},
     "no 4-D score layer head.weight"),
    (lambda s: {**s, "head.bias": s["head.bias"].astype(int)}, "head.bias is int64"),
    (lambda s: {**s, "extra.weight": np.zeros(3)}, "unexpected extra.weight"),
], ids=["renamed-key", "wrong-layer", "no-score", "int-bias", "extra-key"])
def test_state_dicts_that_do_not_fit_are_refused_naming_the_keys(torch, change, message):
    with pytest.raises(ConversionError) as caught:
        convert_state(change(_state(torch)))
    assert "not a U-Net state dict" in str(caught.value)
    assert message in str(caught.value)


def test_arch_must_fit_the_layout(torch):
    with pytest.raises(ConversionError, match="they are a U-Net's"):
        convert_state(_state(torch), arch="fcn8s")
    assert convert_state(_state(torch), arch="unet").arch == "unet"
    from minifcn.models import FCN32s

    fcn = {k: np.asarray(v) for k, v in FCN32s(n_class=3, width=1 / 16).state_dict().items()}
    for arch in ("unet", "fcn_resnet50"):           # neither is a reference FCN's arch
        with pytest.raises(ConversionError, match=f"arch '{arch}' does not fit these weights: "
                                                  "they are the reference FCN's"):
            convert_state(fcn, arch=arch)
