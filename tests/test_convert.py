"""minifcn convert and minifcn.convert: torchvision VGG16 and reference FCN state dicts to
minifcn's .npz; the fc6/fc7 reshapes against torch's own; the command's errors and summary."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from minifcn import cli
from minifcn.convert import (VGG16_KEYS, ConversionError, convert_state, detect_layout,
                             vgg16_to_fcn_state)
from minifcn.io import read_weights
from minifcn.ops import conv2d_forward, max_pool2d_forward, relu_forward

from helpers import rel_error

# torchvision's VGG16 configuration "D", channels divided by 32 to keep the files small.
VGG16_CFG = [2, 2, "M", 4, 4, "M", 8, 8, 8, "M", 16, 16, 16, "M", 16, 16, 16, "M"]
FC, N_IMAGENET = 24, 10          # fc6/fc7 outputs and classifier.6 classes, also shrunk
N_CLASS = 5


def torchvision_vgg16(torch, dtype):
    """torchvision.models.vgg16's structure (make_layers + classifier), built here so that
    its state-dict names come from nn.Sequential's own numbering, not from a hand-made list."""
    nn, layers, c_in = torch.nn, [], 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = v
    torch.manual_seed(0)
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    model.classifier = nn.Sequential(
        nn.Linear(c_in * 7 * 7, FC), nn.ReLU(True), nn.Dropout(),
        nn.Linear(FC, FC), nn.ReLU(True), nn.Dropout(), nn.Linear(FC, N_IMAGENET))
    return model.to(dtype).eval()


def fcn_torch_state(torch, arch, n_class=N_CLASS):
    """A reference-FCN state dict (pytorch-fcn's key names) of the shrunk VGG16."""
    state, c_in, widths = {}, 3, [v for v in VGG16_CFG if v != "M"]
    names = [f"conv{b}_{i}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)]
    shapes = {name: (c, c_prev, 3, 3) for name, c, c_prev in zip(names, widths, [3] + widths)}
    shapes.update({"fc6": (FC, 16, 7, 7), "fc7": (FC, FC, 1, 1), "score_fr": (n_class, FC, 1, 1),
                   "score_pool4": (n_class, 16, 1, 1), "score_pool3": (n_class, 8, 1, 1)})
    heads = {"fcn32s": ["score_fr"], "fcn16s": ["score_fr", "score_pool4"],
             "fcn8s": ["score_fr", "score_pool4", "score_pool3"]}[arch]
    ups = {"fcn32s": {"upscore": 64}, "fcn16s": {"upscore2": 4, "upscore16": 32},
           "fcn8s": {"upscore2": 4, "upscore8": 16, "upscore_pool4": 4}}[arch]
    generator = torch.Generator().manual_seed(1)
    for name in names + ["fc6", "fc7"] + heads:
        state[f"{name}.weight"] = torch.randn(shapes[name], generator=generator)
        state[f"{name}.bias"] = torch.randn(shapes[name][0], generator=generator)
    for name, k in ups.items():
        state[f"{name}.weight"] = torch.randn((n_class, n_class, k, k), generator=generator)
    return state


def convert(tmp_path, capsys, obj, torch, *options):
    """Save ``obj`` with torch.save, run ``minifcn convert`` in-process; (status, out, err)."""
    src, dst = tmp_path / "src.pth", tmp_path / "dst.npz"
    torch.save(obj, src)
    status = cli.main(["convert", str(src), str(dst), *options])
    out, err = capsys.readouterr()
    return status, out, err


def run_cli(*args, env=None):
    done = subprocess.run([sys.executable, "-m", "minifcn", *args], capture_output=True,
                          text=True, timeout=300, env=env)
    return done.returncode, done.stdout, done.stderr


# --- torchvision VGG16 ----------------------------------------------------------------------

def test_fc_layers_become_the_convolutions_torch_views(torch):
    model = torchvision_vgg16(torch, torch.float32)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    arrays = convert_state(state).arrays
    assert list(arrays) == list(VGG16_KEYS)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    for name, conv in zip([k[:-len(".weight")] for k in VGG16_KEYS[:26:2]], convs, strict=True):
        np.testing.assert_array_equal(arrays[f"{name}.weight"], conv.weight.detach().numpy())
        np.testing.assert_array_equal(arrays[f"{name}.bias"], conv.bias.detach().numpy())
    fc6, fc7 = model.classifier[0].weight.detach(), model.classifier[3].weight.detach()
    np.testing.assert_array_equal(arrays["fc6.weight"], fc6.view(FC, 16, 7, 7).numpy())
    np.testing.assert_array_equal(arrays["fc7.weight"], fc7.view(FC, FC, 1, 1).numpy())
    np.testing.assert_array_equal(arrays["fc6.bias"], model.classifier[0].bias.detach().numpy())


def test_the_converted_trunk_computes_what_torchvision_vgg16_computes(torch):
    """Convolutions, then fc6 and fc7 as 7x7 and 1x1 convolutions, on pool5's 7x7 map: the
    same numbers as torchvision's features -> flatten -> classifier[:5], in float64."""
    model = torchvision_vgg16(torch, torch.float64)
    arrays = vgg16_to_fcn_state({k: v.numpy() for k, v in model.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224))
    with torch.no_grad():
        want = model.classifier[:5](torch.flatten(model.avgpool(model.features(
            torch.from_numpy(x))), 1)).numpy()                         # (2, FC)
    h = x
    for v, name in zip(VGG16_CFG, _conv_names_with_pools()):
        if v == "M":
            h, _ = max_pool2d_forward(h, 2, 2)
        else:
            h, _ = relu_forward(conv2d_forward(h, arrays[f"{name}.weight"],
                                               arrays[f"{name}.bias"], padding=1)[0])
    for name in ("fc6", "fc7"):                                        # (2, FC, 1, 1)
        h, _ = relu_forward(conv2d_forward(h, arrays[f"{name}.weight"], arrays[f"{name}.bias"])[0])
    assert h.shape == (2, FC, 1, 1)
    assert rel_error(h[:, :, 0, 0], want) < 1e-12


def _conv_names_with_pools():
    names = iter(k[:-len(".weight")] for k in VGG16_KEYS[:26:2])
    return [None if v == "M" else next(names) for v in VGG16_CFG]


def test_convert_command_writes_a_vgg16_file(torch, tmp_path, capsys):
    model = torchvision_vgg16(torch, torch.float32)
    status, out, err = convert(tmp_path, capsys, model.state_dict(), torch)
    assert status == 0 and err == ""
    assert out.count("\n") == 1
    for part in ["(torchvision VGG16 layout)", ": vgg16, width 0.03125, 30 arrays",
                 "dropped classifier.6"]:
        assert part in out
    weights = read_weights(tmp_path / "dst.npz")
    assert list(weights.arrays) == list(VGG16_KEYS)
    assert weights.metadata["arch"] == "vgg16" and weights.metadata["width"] == 2 / 64
    assert weights.metadata["dtype"] == "float32" and weights.metadata["source"] == "src.pth"
    assert weights.arrays["fc6.weight"].shape == (FC, 16, 7, 7)


# --- Reference FCN state dicts --------------------------------------------------------------

@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s"])
def test_reference_fcn_state_dicts_convert_unchanged(torch, tmp_path, capsys, arch):
    """FCN-8s keys are also FCN-8s at-once's: they take --arch (tests/test_convert_arch.py)."""
    state = fcn_torch_state(torch, arch)
    options = ("--arch", arch) if arch == "fcn8s" else ()
    status, out, err = convert(tmp_path, capsys, state, torch, *options)
    assert status == 0 and err == ""
    assert f"(reference FCN-{arch[3:]} layout)" in out
    assert f": {arch}, n_class {N_CLASS}, width 0.03125, {len(state)} arrays\n" in out
    weights = read_weights(tmp_path / "dst.npz")
    assert weights.metadata["arch"] == arch and weights.metadata["n_class"] == N_CLASS
    assert list(weights.arrays) == list(state)
    for key, value in state.items():
        np.testing.assert_array_equal(weights.arrays[key], value.numpy(), err_msg=key)


@pytest.mark.parametrize("wrap", [
    lambda s: {"model_state_dict": s, "epoch": 3, "optim_state_dict": {}},
    lambda s: {"state_dict": s, "arch": "FCN8s"},
    lambda s: {f"module.{k}": v for k, v in s.items()},
], ids=["model_state_dict", "state_dict", "data-parallel"])
def test_wrapped_checkpoints_are_unwrapped(torch, tmp_path, capsys, wrap):
    state = fcn_torch_state(torch, "fcn8s")
    status, out, err = convert(tmp_path, capsys, wrap(state), torch)
    assert status == 0, err
    assert list(read_weights(tmp_path / "dst.npz").arrays) == list(state)


def test_convert_as_a_user_runs_it(torch, tmp_path):
    torch.save(fcn_torch_state(torch, "fcn8s"), tmp_path / "fcn8s.pth")
    status, out, err = run_cli("convert", str(tmp_path / "fcn8s.pth"), str(tmp_path / "f.npz"))
    assert status == 0 and err == ""
    first, second = out.splitlines()
    assert first == (f"converted {tmp_path / 'fcn8s.pth'} (reference FCN-8s layout) to "
                     f"{tmp_path / 'f.npz'}: no arch recorded (the keys fit fcn8s and "
                     "fcn8s-atonce), n_class 5, width 0.03125, 39 arrays")
    assert second.startswith("to choose the architecture, convert again with --arch fcn8s "
                             "or --arch fcn8s-atonce (pytorch-fcn's FCN8sAtOnce is")


# --- Errors: exit status 2, one line --------------------------------------------------------

def _without(state, key):
    return {k: v for k, v in state.items() if k != key}


def _bad_fc6(torch):
    state = torchvision_vgg16(torch, torch.float32).state_dict()
    state["classifier.0.weight"] = torch.zeros(FC, 16 * 48)
    return state


def _batch_norm_vgg(torch):
    state = torchvision_vgg16(torch, torch.float32).state_dict()
    state["features.1.running_mean"] = torch.zeros(2)
    return state


def _quantized(torch):
    import warnings
    with warnings.catch_warnings():       # quantized tensors are deprecated, files remain
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(torch.zeros(2), 0.1, 0, torch.quint8)


@pytest.mark.parametrize("make, message", [
    (lambda t: {"encoder.weight": t.zeros(2), "decoder.weight": t.zeros(2)},
     "unrecognised key layout.*found encoder.weight, decoder.weight"),
    (lambda t: _without(fcn_torch_state(t, "fcn8s"), "score_pool3.bias"),
     "not a reference fcn8s state dict: missing score_pool3.bias"),
    (lambda t: {**fcn_torch_state(t, "fcn32s"), "aux.weight": t.zeros(1)},
     "unexpected aux.weight"),
    (lambda t: {**fcn_torch_state(t, "fcn32s"), "fc7.weight": t.zeros(FC, 9, 1, 1)},
     r"fc7.weight \(24, 9, 1, 1\) takes 9 channels but the layer before gives 24"),
    (_bad_fc6, r"fc6 weight \(24, 768\) has 768 inputs, not conv5_3's 16 channels"),
    (_batch_norm_vgg, "batch-norm VGG"),
    (lambda t: t.zeros(3), "holds a Tensor, not a state dict"),
    (lambda t: t.nn.Linear(2, 2), r"torch.load\(weights_only=True\).*state_dict\(\) instead"),
    (lambda t: {"a.weight": t.zeros(2), "b": "text"}, "'b' is a str, not a tensor"),
    (lambda t: {"a.weight": t.zeros(2, 2).to_sparse()},
     r"'a.weight' is a torch.sparse_coo tensor; save it dense \(tensor.to_dense\(\)\)"),
    (lambda t: {"a.weight": t.zeros(2, dtype=t.float8_e4m3fn)},
     r"'a.weight' has dtype torch.float8_e4m3fn, which NumPy cannot hold; save it as float32"),
    (lambda t: {"a.weight": _quantized(t)},
     r"'a.weight' is a quantized tensor \(torch.quint8\); save it dequantized"),
    (lambda t: {"a.weight": t.zeros(2, device="meta")},
     "'a.weight' is a meta tensor, which holds no data"),
    (lambda t: {0: t.zeros(2), 1: t.zeros(2)},
     "is not a state dict: its keys must be parameter names, but 0 is a int"),
], ids=["unknown-layout", "missing-key", "unexpected-key", "fc7-mismatch", "fc6-not-square",
        "batch-norm", "bare-tensor", "pickled-module", "non-tensor", "sparse", "float8",
        "quantized", "meta", "integer-keys"])
def test_unconvertible_state_dicts_exit_2_with_one_line(torch, tmp_path, capsys, make, message):
    status, out, err = convert(tmp_path, capsys, make(torch), torch)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("minifcn: error: convert: ")
    assert re.search(message, err), err
    assert not (tmp_path / "dst.npz").exists()


@pytest.mark.parametrize("case, message", [
    ("random-bytes", "cannot be loaded with torch.load(weights_only=True)"),
    ("truncated", "not a readable PyTorch file"),
    ("missing", "SRC not found"),
    ("same-file", "same file"),
    ("no-folder", "cannot write"),
])
def test_unreadable_sources_and_unwritable_targets_exit_2(torch, tmp_path, capsys, case,
                                                          message):
    src, dst = tmp_path / "src.pth", tmp_path / "dst.npz"
    torch.save(fcn_torch_state(torch, "fcn32s"), src)
    if case == "random-bytes":
        src.write_bytes(np.random.default_rng(0).bytes(1000))
    elif case == "truncated":
        src.write_bytes(src.read_bytes()[:5000])
    elif case == "missing":
        src = tmp_path / "nope.pth"
    elif case == "same-file":
        dst = src
    else:
        dst = tmp_path / "no" / "dst.npz"
    assert cli.main(["convert", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == ["src.pth"]


def test_without_torch_the_command_says_how_to_install_it(tmp_path):
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("No module named \'torch\'")\n')
    (tmp_path / "w.pth").write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "fake"), os.environ.get("PYTHONPATH", "")])}
    status, out, err = run_cli("convert", str(tmp_path / "w.pth"), str(tmp_path / "w.npz"),
                               env=env)
    assert status == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert "needs torch" in err and "pip install torch==2.13.0" in err
    assert not (tmp_path / "w.npz").exists()


def test_without_torch_in_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)      # import torch raises ImportError
    (tmp_path / "w.pth").write_bytes(b"")
    assert cli.main(["convert", str(tmp_path / "w.pth"), str(tmp_path / "w.npz")]) == 2
    assert "pip install torch==2.13.0" in capsys.readouterr().err


# --- The pure functions, for the models to reuse --------------------------------------------

def _minifcn_vgg(rng, fc6_2d=False):
    state, c_in = {}, 3
    for key in VGG16_KEYS[:26:2]:
        name = key[:-len(".weight")]
        state[f"{name}.weight"] = rng.standard_normal((4, c_in, 3, 3))
        state[f"{name}.bias"] = rng.standard_normal(4)
        c_in = 4
    state["fc6.weight"] = rng.standard_normal((6, 4 * 49) if fc6_2d else (6, 4, 7, 7))
    state["fc6.bias"], state["fc7.bias"] = rng.standard_normal(6), rng.standard_normal(6)
    state["fc7.weight"] = rng.standard_normal((6, 6, 1, 1))
    return state


def test_vgg16_to_fcn_state_accepts_minifcn_names_and_reshapes_fully_connected_fc6(rng):
    state = _minifcn_vgg(rng, fc6_2d=True)
    arrays = vgg16_to_fcn_state(state)
    assert detect_layout(state) == "vgg16" and list(arrays) == list(VGG16_KEYS)
    np.testing.assert_array_equal(arrays["fc6.weight"], state["fc6.weight"].reshape(6, 4, 7, 7))
    again = vgg16_to_fcn_state(arrays)                        # idempotent
    assert all(np.array_equal(again[k], arrays[k]) for k in VGG16_KEYS)
    assert convert_state(state).metadata == {"width": 4 / 64}


def test_vgg16_to_fcn_state_refuses_other_weights(rng):
    fcn = {**_minifcn_vgg(rng), "score_fr.weight": np.zeros((2, 6, 1, 1)),
           "score_fr.bias": np.zeros(2), "upscore.weight": np.zeros((2, 2, 64, 64))}
    with pytest.raises(ConversionError, match="expected VGG16 weights, got fcn32s"):
        vgg16_to_fcn_state(fcn)
    bad = {**_minifcn_vgg(rng), "conv3_2.weight": np.zeros((4, 4, 5, 5))}
    with pytest.raises(ConversionError, match=r"conv3_2.weight \(4, 4, 5, 5\) is not a 3x3"):
        vgg16_to_fcn_state(bad)
    ints = {**_minifcn_vgg(rng), "fc7.bias": np.zeros(6, dtype=np.int64)}
    with pytest.raises(ConversionError, match="fc7.bias is int64, not a float array"):
        vgg16_to_fcn_state(ints)


# --- With the FCN models --------------------------------------------------------------------

def test_a_converted_reference_fcn8s_loads_strictly_into_fcn8s(torch, tmp_path, capsys):
    from minifcn.io import load_weights
    from minifcn.models import FCN8s

    rng = np.random.default_rng(0)
    state = {k: torch.from_numpy(rng.standard_normal(v.shape).astype(np.float32))
             for k, v in FCN8s(n_class=3, width=1 / 32).state_dict().items()}
    status, _, err = convert(tmp_path, capsys, {"model_state_dict": state}, torch)
    assert status == 0, err
    model = FCN8s(n_class=3, width=1 / 32)
    assert load_weights(tmp_path / "dst.npz", model) == ([], [])
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, state[name].numpy(), err_msg=name)


def test_torchvision_vgg16_weights_fill_an_fcn_trunk_and_head(torch, tmp_path, capsys):
    """FCN's trunk and fc6/fc7 written in torchvision's layout (fc layers flattened), then
    converted back: the paper's initialisation, loaded with strict=False."""
    from minifcn.io import load_weights
    from minifcn.models import FCN8s, FCN32s

    vgg = {k: v for k, v in FCN32s(n_class=3, width=1 / 32, rng=0).state_dict().items()
           if k in VGG16_KEYS}
    convs = [k[:-len(".weight")] for k in VGG16_KEYS[:26:2]]
    indices = [i for i, v in enumerate(_torchvision_sequence()) if v == "conv"]
    state = {f"features.{i}.{p}": torch.from_numpy(vgg[f"{name}.{p}"])
             for i, name in zip(indices, convs, strict=True) for p in ("weight", "bias")}
    for fc, index in (("fc6", 0), ("fc7", 3)):
        w = torch.from_numpy(vgg[f"{fc}.weight"])
        state[f"classifier.{index}.weight"] = w.reshape(w.shape[0], -1)   # nn.Linear's shape
        state[f"classifier.{index}.bias"] = torch.from_numpy(vgg[f"{fc}.bias"])
    state["classifier.6.weight"], state["classifier.6.bias"] = torch.zeros(7, 128), torch.zeros(7)
    status, _, err = convert(tmp_path, capsys, state, torch)
    assert status == 0, err
    model = FCN8s(n_class=3, width=1 / 32, rng=1)
    missing, unexpected = load_weights(tmp_path / "dst.npz", model, strict=False)
    assert unexpected == [] and sorted(missing) == sorted(set(model.state_dict()) - set(vgg))
    for key, value in vgg.items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)


def _torchvision_sequence():
    """torchvision's make_layers: each conv is followed by a ReLU; "M" is one max-pool."""
    return [x for v in VGG16_CFG for x in (["pool"] if v == "M" else ["conv", "relu"])]
