"""Each class's confidence (the mean softmax probability of the pixels predicted as it) and
one class's mask: ``predict_with_confidence``, ``class_confidences``, ``class_mask`` and
``minifcn predict``'s lines ``name(index): confidence, share`` and ``--mask CLASS``."""
import re

import numpy as np
import pytest
from PIL import Image

from minifcn import cli
from minifcn.data import normalize
from minifcn.data.shapes import CLASS_NAMES as SHAPES
from minifcn.inference import (class_confidences, class_mask, class_shares, predict,
                               predict_with_confidence)
from minifcn.io import save_weights
from minifcn.models import FCN8s


@pytest.fixture(scope="module")
def model():
    """A 4-class FCN-8s (the shapes classes), float64, random weights scaled by their fan-in:
    on imagenet-normalised noise two classes win, none with a saturated softmax. The score
    layers' classes are permuted so that the winners are 3 (most pixels) and 1, whose rank
    and index differ."""
    net = FCN8s(n_class=4, width=1 / 32, dtype=np.float64, rng=0)
    rng = np.random.default_rng(0)
    for name, p in net.named_parameters():
        if p.requires_grad:
            p.data = rng.standard_normal(p.data.shape) / np.sqrt(max(1, p.data[0].size))
            if name.startswith("score"):
                p.data = p.data[[3, 1, 2, 0]]
    return net


def _image(h=29, w=34, seed=5):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _softmax_top(model, image):
    """The winning class's softmax probability per pixel, written the plain way."""
    scores = model.eval()(normalize(image, "imagenet")[None].astype(np.float64))[0]
    p = np.exp(scores) / np.exp(scores).sum(axis=0)                    # (K, H, W)
    return p.max(axis=0)


def test_confidence_is_the_winning_softmax_probability(model):
    image = _image()
    label, confidence = predict_with_confidence(model, image, "imagenet")
    assert np.array_equal(label, predict(model, image, "imagenet"))
    assert len(np.unique(label)) > 1
    np.testing.assert_allclose(confidence, _softmax_top(model, image), rtol=1e-12)
    assert 0.25 < confidence.min() and confidence.max() < 0.99   # 4 classes: at least 1/4


def test_class_confidences_are_means_over_each_class_pixels():
    label = np.array([[0, 0, 2], [2, 2, 3]])
    confidence = np.array([[0.5, 0.7, 0.9], [0.6, 0.3, 1.0]])
    found = class_confidences(label, confidence, SHAPES)
    assert [(k, name, share) for k, name, share, _ in found] == \
        [(k, name, share) for k, (name, share) in
         zip((2, 0, 3), class_shares(label, SHAPES))]
    np.testing.assert_allclose([c for *_, c in found], [0.6, 0.6, 1.0], rtol=1e-15)
    with pytest.raises(ValueError, match=r"confidence must be \(H, W\) = \(2, 3\)"):
        class_confidences(label, confidence[:, :2], SHAPES)


def test_class_mask_by_name_or_index():
    label = np.array([[0, 1], [1, 3]], np.uint8)
    expected = np.array([[0, 255], [255, 0]], np.uint8)
    for cls in (SHAPES[1], 1, "1"):
        assert np.array_equal(class_mask(label, cls, SHAPES), expected)
    with pytest.raises(ValueError, match=r"no class 'dog': expected a name \(background, "):
        class_mask(label, "dog", SHAPES)
    with pytest.raises(ValueError, match="an index 0..3"):
        class_mask(label, 4, SHAPES)


def test_cli_prints_confidences_and_writes_the_mask(model, tmp_path, capsys):
    save_weights(tmp_path / "w.npz", model)
    image = _image()
    Image.fromarray(image).save(tmp_path / "photo.png")
    label, confidence = predict_with_confidence(model, image, "imagenet")
    cls = SHAPES[int(np.unique(label)[-1])]                   # a class that is there
    status = cli.main(["predict", str(tmp_path / "photo.png"), "--weights",
                       str(tmp_path / "w.npz"), "--out", str(tmp_path / "out"),
                       "--preprocess", "imagenet", "--mask", cls])
    printed = capsys.readouterr().out
    assert status == 0
    mask_file = tmp_path / "out" / f"photo_mask_{cls}.png"
    assert f"photo_overlay.png, {mask_file}" in printed
    lines = [line for line in printed.splitlines() if line.startswith("  ")]
    expected = [f"  {name}({k}): {100 * c:.2f}, {100 * share:.1f}% of the pixels"
                for k, name, share, c in class_confidences(label, confidence, SHAPES)]
    assert lines == expected and len(lines) > 1
    assert lines[0].startswith(f"  {SHAPES[3]}(3): ")
    assert re.fullmatch(r"  \w+\(\d\): \d+\.\d\d, \d+\.\d% of the pixels", lines[0])
    with Image.open(mask_file) as mask:
        assert mask.mode == "L"
        assert np.array_equal(np.asarray(mask), np.where(label == SHAPES.index(cls), 255, 0))


def test_cli_refuses_an_unknown_mask_class(model, tmp_path, capsys):
    save_weights(tmp_path / "w.npz", model)
    Image.fromarray(_image()).save(tmp_path / "photo.png")
    status = cli.main(["predict", str(tmp_path / "photo.png"), "--weights",
                       str(tmp_path / "w.npz"), "--out", str(tmp_path / "out"),
                       "--mask", "dog"])
    err = capsys.readouterr().err
    assert status == 2 and "predict: --mask: no class 'dog': expected a name" in err
    assert not (tmp_path / "out").exists()
