"""benchmarks/other_shapes.py, the second generator the demo is scored on but never trains on,
and bench_demo's scoring of a weight file with it."""
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "benchmarks"))
import bench_demo  # noqa: E402
from other_shapes import OtherShapes  # noqa: E402


def test_items_are_rgb_images_with_the_demo_classes_and_repeat_by_seed():
    data = OtherShapes(24, size=(64, 48), seed=5)
    items = [data[i] for i in range(len(data))]
    for image, label in items:
        assert image.shape == (64, 48, 3) and image.dtype == np.uint8
        assert label.shape == (64, 48) and label.dtype == np.uint8
    counts = np.bincount(np.concatenate([label.ravel() for _, label in items]), minlength=4)
    assert len(counts) == 4 and counts.min() > 0            # every class, nothing else
    assert np.array_equal(OtherShapes(24, size=(64, 48), seed=5)[7][0], items[7][0])
    assert not np.array_equal(OtherShapes(24, size=(64, 48), seed=6)[7][0], items[7][0])
    with pytest.raises(IndexError, match=r"index must be in \[0, 24\)"):
        data[24]


def test_labels_mark_what_was_painted():
    """Inside a labelled shape the picture differs from the background around it."""
    data = OtherShapes(40, size=(96, 96), seed=1)
    inside = []
    for i in range(len(data)):
        image, label = data[i]
        shape = label > 0
        if shape.sum() < 50 or (~shape).sum() < 50:
            continue
        inside.append(np.abs(image[shape].mean(0) - image[~shape].mean(0)).max())
    assert np.median(inside) > 20


def test_bench_demo_scores_a_weight_file_on_the_other_generator(tmp_path, monkeypatch):
    from minifcn.io import save_weights
    from minifcn.models import FCN8s

    path = str(tmp_path / "model.npz")
    save_weights(path, FCN8s(n_class=4, width=1 / 16, rng=np.random.default_rng(0)))
    monkeypatch.setattr(bench_demo, "OTHER_IMAGES", 2)
    monkeypatch.setitem(bench_demo.RECIPE, "size", (64, 64))
    score = bench_demo.other_generator(path, seed=0)
    assert 0.0 <= score <= 1.0
