"""``minifcn train --arch fcn_resnet50 | deeplabv3_resnet50 | unet`` end to end on a tiny
generated shapes set: checkpoints, a resume bit for bit, a model.npz that predict loads,
the configuration a resume rebuilds the network from, and U-Net's size errors."""
import os

import numpy as np
import pytest

from minifcn import cli
from minifcn.checkpoint import checkpoint_config
from minifcn.data.shapes import write_voc
from minifcn.inference import model_from_weights
from minifcn.io import read_weights

TINY = ["--width", "0.0625", "--batch-size", "2", "--no-progress",
        "--classes", "background,disc,rectangle,triangle"]
ARCHS = {"fcn_resnet50": ["--no-aux"], "deeplabv3_resnet50": ["--aux-weight", "0.4"],
         "unet": ["--depth", "2"]}


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_voc(root, {"train": 4, "val": 2}, size=(48, 48), seed=0)
    return str(root)


@pytest.mark.parametrize("arch", ARCHS)
def test_train_then_predict(shapes_dir, tmp_path, capsys, arch):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--data-dir", shapes_dir, *TINY, "--arch", arch, *ARCHS[arch],
                     "--iters", "2", "--val-every", "1", "--out", out]) == 0
    assert f"trained {arch} for 2 iterations" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["best.npz", "last.npz", "log.csv", "model.npz"]
    _, config = checkpoint_config(os.path.join(out, "last.npz"))
    assert config["model"] == arch
    if arch == "unet":
        assert (config["base"], config["depth"]) == (4, 2)       # 64 * 0.0625
    elif arch == "fcn_resnet50":                                # --no-aux: no aux weight
        assert config["aux"] is False and "aux_weight" not in config
    else:
        assert config["aux"] is True and config["aux_weight"] == 0.4
    weights = os.path.join(out, "model.npz")
    model = model_from_weights(weights)
    assert model.arch == arch and model.n_class == 4
    assert getattr(model, "aux", None) == config.get("aux")
    assert read_weights(weights).metadata["arch"] == arch
    image = os.path.join(shapes_dir, "JPEGImages", sorted(os.listdir(
        os.path.join(shapes_dir, "JPEGImages")))[0])
    assert cli.main(["predict", "--weights", weights, image, "--out",
                     str(tmp_path / "predicted")]) == 0
    assert "% of the pixels" in capsys.readouterr().out


def test_resnet_resumed_equals_one_run_bit_for_bit(shapes_dir, tmp_path):
    common = ["train", "--data-dir", shapes_dir, *TINY, "--arch", "fcn_resnet50",
              "--val-split", "none", "--scale", "0.8", "1.2", "--crop", "40x40", "--iters", "4"]
    assert cli.main([*common, "--out", str(tmp_path / "once")]) == 0
    assert cli.main([*common, "--stop-after", "2", "--out", str(tmp_path / "twice")]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "twice"),
                     "--resume", str(tmp_path / "twice" / "last.npz")]) == 0
    once = read_weights(tmp_path / "once" / "model.npz").arrays
    twice = read_weights(tmp_path / "twice" / "model.npz").arrays
    assert once.keys() == twice.keys() and "backbone.bn1.running_var" in once
    assert int(once["backbone.bn1.num_batches_tracked"]) == 4
    for name in once:
        np.testing.assert_array_equal(once[name], twice[name], err_msg=name)


def test_resume_with_another_depth_is_another_run(shapes_dir, tmp_path, capsys):
    common = ["train", "--data-dir", shapes_dir, *TINY, "--arch", "unet", "--iters", "3",
              "--val-split", "none", "--out", str(tmp_path / "run")]
    assert cli.main([*common, "--depth", "2", "--stop-after", "1"]) == 0
    capsys.readouterr()
    assert cli.main([*common, "--depth", "1", "--crop", "44",
                     "--resume", str(tmp_path / "run" / "last.npz")]) == 2
    assert "depth: 2 in the checkpoint, 1 now" in capsys.readouterr().err


@pytest.mark.parametrize("options, expected", [
    ([], "UNet(depth=4) cannot take height 48: its level-2 map would be 5 pixels, odd "
         "before the 2x2 pool"),
    (["--depth", "2", "--crop", "46"], "UNet(depth=2) cannot take height 46"),
], ids=["depth-4", "crop"])
def test_unet_refuses_a_size_with_its_own_one_line_error(shapes_dir, tmp_path, capsys,
                                                         options, expected):
    out = tmp_path / "run"
    assert cli.main(["train", "--data-dir", shapes_dir, *TINY, "--arch", "unet", *options,
                     "--iters", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "the nearest are" in err and err.count("\n") == 1
    assert not out.exists()                                     # refused before the run


@pytest.mark.parametrize("arch, option", [("unet", "--no-aux"), ("fcn8s", "--depth"),
                                          ("fcn_resnet50", "--dropout")])
def test_an_option_of_another_family_is_refused(shapes_dir, tmp_path, capsys, arch, option):
    value = [] if option == "--no-aux" else ["3" if option == "--depth" else "0.2"]
    assert cli.main(["train", "--data-dir", shapes_dir, *TINY, "--arch", arch, option,
                     *value, "--out", str(tmp_path / "run")]) == 2
    assert f"{option} applies to" in capsys.readouterr().err
