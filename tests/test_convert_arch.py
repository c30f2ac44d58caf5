"""Weights whose keys fit several architectures: pytorch-fcn's FCN8s and FCN8sAtOnce have the
same state-dict keys. ``minifcn convert`` records no arch for them unless ``--arch`` names
one, and loading such a file without an arch is an error naming the candidates."""
import re

import numpy as np
import pytest

from minifcn import cli
from minifcn.convert import FCN_KEYS, ConversionError, convert_state
from minifcn.inference import model_from_weights
from minifcn.io import WeightsError, read_weights
from minifcn.models import ARCHITECTURES

from helpers import rel_error

N_CLASS, WIDTH = 3, 1 / 32


def atonce_net(torch):
    """pytorch-fcn's FCN8sAtOnce (its twin in tests/torch_fcn.py), float64, every parameter
    random, the upscore layers included."""
    import torch_fcn

    net = torch_fcn.FCN8sAtOnce(n_class=N_CLASS, width=WIDTH).double().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            fan_in = max(1, p[0].numel()) if p.ndim > 1 else 1
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) / fan_in ** 0.5)
    return net


def convert(tmp_path, capsys, torch, state, *options):
    """``minifcn convert src.pth dst.npz OPTIONS`` in-process: (status, stdout, stderr)."""
    torch.save(state, tmp_path / "src.pth")
    status = cli.main(["convert", str(tmp_path / "src.pth"), str(tmp_path / "dst.npz"),
                       *options])
    out, err = capsys.readouterr()
    return status, out, err


def logits(torch, net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def test_the_known_key_sets_are_the_architectures():
    assert list(FCN_KEYS) == list(ARCHITECTURES)
    for arch, cls in ARCHITECTURES.items():
        assert sorted(FCN_KEYS[arch]) == sorted(cls(n_class=2, width=WIDTH).state_dict()), arch


def test_fcn8s_keys_record_no_arch_and_loading_asks_for_one(torch, tmp_path, capsys):
    net = atonce_net(torch)
    status, out, err = convert(tmp_path, capsys, torch, net.state_dict())
    assert status == 0 and err == ""
    first, second = out.splitlines()
    assert ": no arch recorded (the keys fit fcn8s and fcn8s-atonce), n_class 3" in first
    assert "--arch fcn8s or --arch fcn8s-atonce" in second
    metadata = read_weights(tmp_path / "dst.npz").metadata
    assert "arch" not in metadata
    assert metadata["arch_candidates"] == ["fcn8s", "fcn8s-atonce"]
    with pytest.raises(WeightsError, match=r"fit fcn8s and fcn8s-atonce .*pass arch='fcn8s' "
                                           r"or arch='fcn8s-atonce' \(command line: --arch"):
        model_from_weights(tmp_path / "dst.npz")


def test_with_the_arch_given_it_computes_what_pytorch_fcn_computes(torch, tmp_path, capsys):
    net = atonce_net(torch)
    assert convert(tmp_path, capsys, torch, net.state_dict())[0] == 0
    x = np.random.default_rng(1).standard_normal((1, 3, 37, 45))
    want = logits(torch, net, x)
    model = model_from_weights(tmp_path / "dst.npz", arch="fcn8s-atonce", dtype=np.float64)
    assert model.arch == "fcn8s-atonce"
    assert rel_error(model(x), want) < 1e-12
    wrong = model_from_weights(tmp_path / "dst.npz", arch="fcn8s", dtype=np.float64)
    assert rel_error(wrong(x), want) > 1e-3     # what a silent guess of fcn8s would give


def test_the_arch_option_records_it(torch, tmp_path, capsys):
    status, out, err = convert(tmp_path, capsys, torch, atonce_net(torch).state_dict(),
                               "--arch", "fcn8s-atonce")
    assert status == 0 and err == ""
    assert out.count("\n") == 1 and ": fcn8s-atonce, n_class 3" in out
    metadata = read_weights(tmp_path / "dst.npz").metadata
    assert metadata["arch"] == "fcn8s-atonce" and "arch_candidates" not in metadata
    assert model_from_weights(tmp_path / "dst.npz").arch == "fcn8s-atonce"


@pytest.mark.parametrize("arch, message", [
    ("fcn32s", r"convert: arch 'fcn32s' does not fit these weights, whose keys are those of "
               r"fcn8s and fcn8s-atonce: missing upscore.weight; unexpected score_pool3"),
    ("fcn16s", r"convert: arch 'fcn16s' does not fit .* missing upscore16.weight"),
    ("fcn9s", r"argument --arch: invalid choice: 'fcn9s'"),
])
def test_a_wrong_arch_is_one_clear_line(torch, tmp_path, capsys, arch, message):
    status, out, err = convert(tmp_path, capsys, torch, atonce_net(torch).state_dict(),
                               "--arch", arch)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "dst.npz").exists()


def test_vgg16_weights_take_no_arch():
    arrays = {k: np.zeros((2, 2, 3, 3), np.float32) for k in FCN_KEYS["fcn32s"][:2]}
    with pytest.raises(ConversionError, match="arch 'fcn8s' does not fit: these are VGG16"):
        convert_state(arrays, arch="fcn8s")
    with pytest.raises(ConversionError, match=r"arch must be one of fcn32s, .*got \['fcn8s'\]"):
        convert_state(arrays, arch=["fcn8s"])


def test_predict_without_arch_names_the_candidates(torch, tmp_path, capsys):
    from PIL import Image

    assert convert(tmp_path, capsys, torch, atonce_net(torch).state_dict())[0] == 0
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(image)
    command = ["predict", str(image), "--weights", str(tmp_path / "dst.npz"),
               "--out", str(tmp_path / "out")]
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert re.search(r"predict: .* fit fcn8s and fcn8s-atonce .*--arch fcn8s or --arch "
                     r"fcn8s-atonce", err), err
    assert cli.main(command + ["--arch", "fcn8s-atonce"]) == 0
