"""Inference: predict, model_from_weights, colours, shares, evaluate, and the CLI commands."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from minifcn import cli
from minifcn.backend import asnumpy
from minifcn.data import VOC_PALETTE, VOCSegmentation, normalize, read_image, read_label
from minifcn.data.shapes import CLASS_NAMES as SHAPES
from minifcn.data.shapes import write_voc
from minifcn.io import WeightsError, save_weights, write_weights
from minifcn.models import FCN8s, FCN32s
from minifcn.inference import (class_names, class_shares, colorize, evaluate, model_from_weights,
                             overlay, predict)


def _tiny_model(cls=FCN8s, seed=0):
    """A 4-class FCN at width 1/32 with random (not zero) score layers, so labels vary."""
    model = cls(n_class=4, width=1 / 32, rng=seed)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.data = rng.standard_normal(p.data.shape).astype(p.data.dtype) * 0.5
    return model


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.npz"
    save_weights(path, model)
    return path


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_voc(root, {"train": 2, "val": 3}, size=(40, 48), seed=3)
    return root


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- predict --------------------------------------------------------------------------------

def test_predict_is_exported_at_the_top_level():
    import minifcn
    import minifcn.inference

    assert minifcn.predict is minifcn.inference.predict and callable(minifcn.predict)


def test_importing_minifcn_leaves_pillow_and_the_data_modules_alone():
    import subprocess
    import sys

    code = ("import sys, minifcn; print('PIL' in sys.modules, 'minifcn.inference' in "
            "sys.modules); minifcn.predict; print('minifcn.inference' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False", "True"], done.stderr


@pytest.mark.parametrize("h, w", [(37, 51), (16, 16), (1, 3), (33, 20)])
def test_predict_returns_an_hw_uint8_label_map(model, h, w):
    label = predict(model, _image(h, w))
    assert label.shape == (h, w) and label.dtype == np.uint8
    assert label.max() < 4


def test_predict_is_the_argmax_of_the_scores_in_eval_mode(model):
    image = _image(29, 35, seed=1)
    model.train()
    label = predict(model, image)
    assert model.training and model.fc6.training            # modes restored
    assert all(m._cache is None for _, m in model.named_modules())  # activations freed
    assert len(np.unique(label)) > 1                        # a non-trivial check
    np.testing.assert_array_equal(predict(model, image), label)   # dropout was off
    model.eval()
    x = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)
    x -= np.array([104.00699, 116.66877, 122.67892], np.float32)[:, None, None]
    np.testing.assert_array_equal(label, model(x[None])[0].argmax(axis=0))
    model.train()


def test_predict_uses_the_requested_preprocessing(model):
    image = _image(30, 30, seed=2)
    x = normalize(image, "imagenet")[None]                  # (1, 3, H, W)
    expected = model.eval()(x)[0].argmax(axis=0)
    model.train()
    np.testing.assert_array_equal(predict(model, image, "imagenet"), expected)
    with pytest.raises(ValueError, match="mode must be one of"):
        predict(model, image, "caffe")


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "RGB"])
def test_predict_reads_image_files_of_any_mode(model, tmp_path, mode):
    rgb = Image.fromarray(_image(23, 31, seed=3))
    converted = rgb.convert(mode) if mode != "P" else rgb.quantize(16)
    path = tmp_path / f"image_{mode}.png"
    converted.save(path)
    label = predict(model, str(path))
    assert label.shape == (23, 31) and label.dtype == np.uint8
    expected = np.asarray(converted.convert("RGB"))
    np.testing.assert_array_equal(label, predict(model, expected))


def test_predict_applies_exif_orientation(model, tmp_path):
    image = Image.fromarray(_image(20, 32, seed=4))
    exif = Image.Exif()
    exif[0x0112] = 6                                        # rotate 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert predict(model, path).shape == (32, 20)


def test_predict_rejects_what_is_not_an_rgb_image(model):
    with pytest.raises(ValueError, match=r"image must be an \(H, W, 3\) uint8"):
        predict(model, np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"image must be an \(H, W, 3\) uint8"):
        predict(model, np.zeros((8, 8, 3), np.float32))


def test_predict_runs_on_the_models_device(xp, model, weights):
    gpu = model_from_weights(weights, device="cpu" if xp is np else "cuda")
    image = _image(27, 19, seed=5)
    label = predict(gpu, image)
    assert isinstance(label, np.ndarray) and label.dtype == np.uint8
    np.testing.assert_array_equal(label, predict(model, image))


# --- model_from_weights ---------------------------------------------------------------------

def test_model_from_weights_rebuilds_the_same_model(model, weights):
    rebuilt, metadata = model_from_weights(weights, with_metadata=True)
    assert type(rebuilt) is FCN8s and rebuilt.n_class == 4 and rebuilt.width == 1 / 32
    assert metadata["arch"] == "fcn8s" and not rebuilt.training
    image = _image(41, 27, seed=6)
    np.testing.assert_array_equal(predict(rebuilt, image), predict(model, image))


def test_model_from_weights_without_metadata_names_the_options(model, tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, **{k: asnumpy(v) for k, v in model.state_dict().items()})
    with pytest.raises(WeightsError, match=r"arch, n_class, width; pass arch=.*--arch"):
        model_from_weights(plain)
    rebuilt = model_from_weights(plain, arch="fcn8s", n_class=4, width=1 / 32)
    image = _image(17, 22, seed=7)
    np.testing.assert_array_equal(predict(rebuilt, image), predict(model, image))


def test_model_from_weights_refuses_another_architecture(tmp_path):
    other = _tiny_model(FCN32s)
    path = tmp_path / "mislabelled.npz"
    write_weights(path, other.state_dict(), arch="fcn8s", n_class=4, width=1 / 32)
    with pytest.raises(WeightsError, match="does not fit fcn8s"):
        model_from_weights(path)
    write_weights(path, other.state_dict(), arch="segnet", n_class=4, width=1 / 32)
    with pytest.raises(WeightsError, match="architecture 'segnet'.*known: fcn32s.*unet"):
        model_from_weights(path)
    write_weights(path, other.state_dict(), arch="unet", n_class=4, width=1 / 32)
    with pytest.raises(WeightsError, match="cannot build unet with n_class=4: no 4-D "
                                           "encoder.0.0.weight"):
        model_from_weights(path)


def test_model_from_weights_options_override_the_metadata(weights):
    assert model_from_weights(weights, n_class=4).n_class == 4
    with pytest.raises(WeightsError, match=r"does not fit fcn8s \(n_class=4, width=0.0625\)"):
        model_from_weights(weights, width=1 / 16)


def test_class_names():
    assert class_names(4) == SHAPES and len(class_names(21)) == 21
    assert class_names(3) == ("class0", "class1", "class2")
    assert class_names(2, {"classes": ["sky", "ground"]}) == ("sky", "ground")


# --- colours and shares ---------------------------------------------------------------------

def test_colorize_maps_each_class_to_its_palette_colour():
    label = np.array([[0, 1], [2, 255]], np.uint8)
    colours = colorize(label)
    assert colours.shape == (2, 2, 3) and colours.dtype == np.uint8
    np.testing.assert_array_equal(colours[0, 1], [128, 0, 0])
    np.testing.assert_array_equal(colours[1, 1], [224, 224, 192])
    with pytest.raises(ValueError, match="label holds class 255 but palette has only 4"):
        colorize(label, VOC_PALETTE[:4])


def test_overlay_blends_image_and_colours():
    image = np.full((3, 5, 3), 200, np.uint8)
    label = np.zeros((3, 5), np.uint8)
    label[1, 2] = 1                                          # (128, 0, 0)
    out = overlay(image, label, alpha=0.25)
    assert out.shape == (3, 5, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1, 2], [182, 150, 150])
    np.testing.assert_array_equal(out[0, 0], [150, 150, 150])
    np.testing.assert_array_equal(overlay(image, label, alpha=0.0), image)
    np.testing.assert_array_equal(overlay(image, label, alpha=1.0), colorize(label))
    with pytest.raises(ValueError, match=r"label must be \(H, W\) = \(3, 5\)"):
        overlay(image, label[:2])
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        overlay(image, label, alpha=1.5)


def test_class_shares_sum_to_one_largest_first():
    label = np.array([[2, 2, 2, 0], [2, 3, 3, 0]], np.uint8)
    shares = class_shares(label, SHAPES)
    assert [name for name, _ in shares] == ["rectangle", "background", "triangle"]
    assert shares[0][1] == pytest.approx(0.5) and shares[1][1] == pytest.approx(0.25)
    assert sum(share for _, share in shares) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="class_names has only 2 names"):
        class_shares(label, SHAPES[:2])


# --- evaluate -------------------------------------------------------------------------------

def test_evaluate_scores_the_whole_set(model, shapes_root):
    dataset = VOCSegmentation(shapes_root, "val", classes=SHAPES)
    metrics = evaluate(model, dataset)
    hits = labelled = 0
    for image_id in dataset.ids:
        target = read_label(dataset.label_path(image_id), 4)
        pred = predict(model, dataset.image_path(image_id))
        hits += int(((pred == target) & (target != 255)).sum())
        labelled += int((target != 255).sum())
    assert metrics.pixel_accuracy == pytest.approx(hits / labelled)
    assert metrics.class_iou.shape == (4,)
    assert 0.0 <= metrics.mean_iou <= 1.0


# --- the command line -----------------------------------------------------------------------

def run_cli(*args):
    done = subprocess.run([sys.executable, "-m", "minifcn", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_cli_predict_writes_labels_and_overlay(weights, tmp_path):
    paths = [tmp_path / "cat.jpg", tmp_path / "grey.png"]
    Image.fromarray(_image(33, 45, seed=8)).save(paths[0])
    Image.fromarray(_image(21, 18, seed=9)).convert("L").save(paths[1])
    out = tmp_path / "out"
    status, stdout, stderr = run_cli("predict", *paths, "--weights", weights, "--out", out)
    assert status == 0, stderr
    for path, (h, w) in zip(paths, [(33, 45), (21, 18)]):
        stem = path.stem
        with Image.open(out / f"{stem}_labels.png") as labels:
            assert labels.mode == "P" and labels.size == (w, h)
            expected = predict(model_from_weights(weights), path)
            np.testing.assert_array_equal(np.asarray(labels), expected)
        with Image.open(out / f"{stem}_overlay.png") as blended:
            assert blended.mode == "RGB"
            picture = np.asarray(blended)
        assert picture.shape[0] >= h + 24 and picture.shape[1] >= w   # a legend below
        np.testing.assert_array_equal(picture[:h, :w], overlay(read_image(path), expected))
        for c in np.unique(expected):                      # each class found has its swatch
            assert np.all(picture[h:] == VOC_PALETTE[c], axis=-1).sum() >= 15 * 15, SHAPES[c]
        assert f"{path} -> {out / stem}_labels.png, {out / stem}_overlay.png" in stdout
    shares = [line for line in stdout.splitlines() if line.startswith("  ")]
    assert shares and all(line.split("(")[0].strip() in SHAPES
                          and line.endswith("% of the pixels") for line in shares)


def test_cli_evaluate_prints_the_metrics_table(weights, shapes_root):
    status, stdout, stderr = run_cli("evaluate", "--weights", weights, "--data-dir",
                                     shapes_root, "--split", "val")
    assert status == 0, stderr
    assert "(val, 3 images)" in stdout
    for row in ("background", "triangle", "pixel accuracy", "mean IoU"):
        assert row in stdout


@pytest.fixture
def wrong_weights(tmp_path):
    path = tmp_path / "wrong.npz"
    write_weights(path, _tiny_model(FCN32s).state_dict(), arch="fcn8s", n_class=4,
                  width=1 / 32)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing-image", "image not found"),
    ("not-an-image", "cannot read image file"),
    ("wrong-weights", "does not fit fcn8s"),
    ("missing-weights", "does not exist"),
    ("no-metadata", "--arch --n-class --width"),
    ("evaluate-missing-dir", "dataset root not found"),
])
def test_cli_user_errors_exit_2_with_one_line(case, message, weights, wrong_weights, model,
                                              tmp_path, capsys):
    image = tmp_path / "ok.png"
    Image.fromarray(_image(10, 12)).save(image)
    plain = tmp_path / "plain.npz"
    np.savez(plain, **{k: asnumpy(v) for k, v in model.state_dict().items()})
    (tmp_path / "not_an_image.jpg").write_text("hello")
    args = {
        "missing-image": ["predict", tmp_path / "absent.jpg", "--weights", weights],
        "not-an-image": ["predict", tmp_path / "not_an_image.jpg", "--weights", weights],
        "wrong-weights": ["predict", image, "--weights", wrong_weights],
        "missing-weights": ["predict", image, "--weights", tmp_path / "absent.npz"],
        "no-metadata": ["predict", image, "--weights", plain],
        "evaluate-missing-dir": ["evaluate", "--weights", weights, "--data-dir",
                                 tmp_path / "absent"],
    }[case]
    args += ["--out", tmp_path / "out"] if args[0] == "predict" else []
    assert cli.main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err


def test_cli_error_as_a_subprocess_is_one_line_exit_2(wrong_weights, tmp_path):
    image = tmp_path / "ok.png"
    Image.fromarray(_image(10, 12)).save(image)
    status, _, stderr = run_cli("predict", image, "--weights", wrong_weights)
    assert status == 2 and "Traceback" not in stderr
    assert stderr.startswith("minifcn: error: predict:") and len(stderr.splitlines()) == 1
