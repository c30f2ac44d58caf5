"""The generated shapes set: determinism, labels, occlusion, class balance, VOC writing."""
import os

import numpy as np
import pytest
from PIL import Image

from minifcn.data.shapes import (CLASS_NAMES, PALETTE, Shape, ShapesDataset, compose,
                                 shape_mask, write_voc)

SIZE = (48, 40)      # small and non-square: rows and columns must not be swapped


@pytest.fixture(scope="module")
def corpus():
    """300 items with their scenes, made once for the statistical tests."""
    data = ShapesDataset(300, size=SIZE, seed=7)
    return data, [data[i] for i in range(len(data))], [data.scene(i) for i in range(len(data))]


# --- samples and determinism -------------------------------------------------------------

def test_sample_types_and_shapes():
    data = ShapesDataset(3, size=SIZE)
    image, label = data[2]
    assert len(data) == 3
    assert image.dtype == np.uint8 and image.shape == (*SIZE, 3)
    assert label.dtype == np.uint8 and label.shape == SIZE
    assert CLASS_NAMES == ("background", "disc", "rectangle", "triangle")
    assert PALETTE.shape == (4, 3) and PALETTE.dtype == np.uint8


def test_same_seed_same_items_in_any_order():
    first = ShapesDataset(6, size=SIZE, seed=3)
    second = ShapesDataset(50, size=SIZE, seed=3)      # the length does not change item i
    forward = [first[i] for i in range(6)]
    backward = [second[i] for i in reversed(range(6))][::-1]
    for (image_a, label_a), (image_b, label_b) in zip(forward, backward):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(label_a, label_b)
    np.testing.assert_array_equal(first[4][0], first[4][0])   # reading twice is stable


def test_different_seeds_and_items_differ():
    a, b = ShapesDataset(4, size=SIZE, seed=0), ShapesDataset(4, size=SIZE, seed=1)
    assert all(not np.array_equal(a[i][0], b[i][0]) for i in range(4))
    assert not np.array_equal(a[0][0], a[1][0])


# --- labels ------------------------------------------------------------------------------

def test_label_values_and_every_class_appears(corpus):
    _, items, _ = corpus
    values = np.unique(np.concatenate([label.ravel() for _, label in items]))
    np.testing.assert_array_equal(values, [0, 1, 2, 3])


def test_empty_images_follow_the_stated_fraction():
    data = ShapesDataset(400, size=(16, 16), empty_fraction=0.25, seed=1)
    empty = np.array([not data.scene(i) for i in range(len(data))])
    assert 0.18 < empty.mean() < 0.32                  # binomial sd 0.022
    always = ShapesDataset(30, size=16, empty_fraction=1.0)
    assert all(always[i][1].max() == 0 for i in range(30))
    assert all(ShapesDataset(30, size=16, empty_fraction=0.0).scene(i) for i in range(30))


def test_an_image_is_empty_exactly_when_its_label_is(corpus):
    _, items, scenes = corpus
    assert [bool(label.any()) for _, label in items] == [bool(scene) for scene in scenes]
    counts = [len(scene) for scene in scenes if scene]
    assert min(counts) >= 1 and max(counts) <= 4


def test_later_shapes_occlude_earlier_ones():
    disc = Shape(1, (20.0, 20.0, 10.0), (200.0, 0.0, 0.0), (0.0, 0.0))
    square = Shape(2, (20.0, 30.0, 6.0, 6.0, 0.0), (0.0, 0.0, 200.0), (0.0, 0.0))
    background = np.full((40, 48, 3), 100, np.float32)
    image, label = compose(background, [disc, square])
    assert label[20, 27] == 2 and label[20, 14] == 1 and label[35, 5] == 0
    np.testing.assert_allclose(image[20, 27], [0, 0, 200])
    np.testing.assert_allclose(image[20, 14], [200, 0, 0])
    np.testing.assert_allclose(image[35, 5], [100, 100, 100])
    image, label = compose(background, [square, disc])
    assert label[20, 27] == 1 and label[20, 35] == 2


def test_generated_labels_follow_painting_order(corpus):
    data, items, scenes = corpus
    for (image, label), scene in zip(items[:60], scenes[:60]):
        np.testing.assert_array_equal(compose(np.zeros((*SIZE, 3)), scene)[1], label)
        if scene:
            top = shape_mask(scene[-1], SIZE)
            assert np.all(label[top] == scene[-1].label)
            mean = image[top].mean(axis=0)
            assert np.abs(mean - scene[-1].colour).max() < 30    # noise, shading, clipping


# --- the task needs shape, not colour or size ---------------------------------------------

def test_colour_does_not_tell_the_class(corpus):
    _, items, scenes = corpus
    drawn = {c: np.array([s.colour for scene in scenes for s in scene if s.label == c])
             for c in (1, 2, 3)}
    assert min(len(colours) for colours in drawn.values()) > 100
    means = np.array([colours.mean(axis=0) for colours in drawn.values()])      # (3, 3)
    spreads = np.array([colours.std(axis=0) for colours in drawn.values()])
    assert np.ptp(means, axis=0).max() < 20 and np.ptp(spreads, axis=0).max() < 15
    pixels = [np.concatenate([image[label == c] for image, label in items]) for c in (1, 2, 3)]
    assert np.ptp([p.mean(axis=0) for p in pixels], axis=0).max() < 25


def test_shape_areas_are_plausible_and_alike_across_classes(corpus):
    _, _, scenes = corpus
    area = {c: np.array([shape_mask(s, SIZE).sum() for scene in scenes for s in scene
                         if s.label == c]) / np.prod(SIZE) for c in (1, 2, 3)}
    for fractions in area.values():
        assert fractions.min() > 0.003 and fractions.max() < 0.35
    medians = [np.median(fractions) for fractions in area.values()]
    assert max(medians) / min(medians) < 1.4


@pytest.mark.parametrize("shape, expected", [
    (Shape(1, (50.0, 50.0, 20.0), (0, 0, 0), (0, 0)), np.pi * 20 ** 2),
    (Shape(2, (50.0, 50.0, 10.0, 25.0, 0.6), (0, 0, 0), (0, 0)), 4 * 10 * 25),
    (Shape(3, (10.0, 20.0, 80.0, 30.0, 40.0, 90.0), (0, 0, 0), (0, 0)),
     0.5 * abs((80 - 10) * (90 - 20) - (40 - 10) * (30 - 20))),
    (Shape(3, (40.0, 90.0, 80.0, 30.0, 10.0, 20.0), (0, 0, 0), (0, 0)),   # clockwise
     0.5 * abs((80 - 10) * (90 - 20) - (40 - 10) * (30 - 20))),
], ids=["disc", "rotated-rectangle", "triangle", "triangle-clockwise"])
def test_masks_have_the_area_of_their_geometry(shape, expected):
    assert shape_mask(shape, (100, 100)).sum() == pytest.approx(expected, rel=0.05)


# --- backgrounds and noise --------------------------------------------------------------

def _background_only(kind, n=12, noise=0.0):
    """Images of one background kind with no shape and no noise."""
    data = ShapesDataset(n, size=SIZE, empty_fraction=1.0, noise=noise, backgrounds=(kind,))
    return [data[i][0].astype(float) for i in range(n)]


def test_a_flat_background_is_one_colour_and_images_differ():
    images = _background_only("flat")
    assert all(np.ptp(image.reshape(-1, 3), axis=0).max() <= 1 for image in images)
    assert np.ptp([image[0, 0] for image in images], axis=0).min() > 50


def test_a_texture_background_varies_between_two_colours_at_a_small_scale():
    images = _background_only("texture", n=30)
    # the pattern changes from pixel to pixel far more than a gradient's slow ramp does
    step = [np.abs(np.diff(image, axis=1)).mean() + np.abs(np.diff(image, axis=0)).mean()
            for image in images]
    gradient = [np.abs(np.diff(image, axis=1)).mean() + np.abs(np.diff(image, axis=0)).mean()
                for image in _background_only("gradient", n=30)]
    assert np.median(step) > 2 * np.median(gradient)
    assert all(0 <= image.min() and image.max() <= 255 for image in images)


def test_mixed_backgrounds_draw_every_kind():
    data = ShapesDataset(60, size=SIZE, empty_fraction=1.0, noise=0.0,
                         backgrounds=("flat", "gradient", "texture"))
    flat = sum(np.ptp(data[i][0].reshape(-1, 3), axis=0).max() <= 1 for i in range(60))
    assert 10 <= flat <= 30                     # about a third; the rest vary
    again = ShapesDataset(60, size=SIZE, empty_fraction=1.0, noise=0.0,
                          backgrounds=("flat", "gradient", "texture"))
    assert np.array_equal(data[17][0], again[17][0])


def test_a_noise_range_draws_the_noise_per_image():
    flat = ShapesDataset(40, size=SIZE, empty_fraction=1.0, noise=(0.0, 20.0),
                         backgrounds=("flat",))
    sigma = np.array([flat[i][0].astype(float).reshape(-1, 3).std(axis=0).mean()
                      for i in range(40)])
    assert sigma.min() < 4 and sigma.max() > 14     # some clean images, some noisy ones
    assert np.corrcoef(sigma[:-1], sigma[1:])[0, 1] < 0.5


def test_the_default_background_stays_the_gradient_stream():
    """A single kind draws nothing to choose it, so seeds keep their images."""
    assert np.array_equal(ShapesDataset(3, size=SIZE, seed=4)[2][0],
                          ShapesDataset(3, size=SIZE, seed=4, backgrounds=("gradient",))[2][0])


# --- bad arguments -----------------------------------------------------------------------

def test_indexing_errors():
    data = ShapesDataset(5, size=SIZE)
    for index in (-1, 5, 100):
        with pytest.raises(IndexError, match=r"index must be in \[0, 5\), got"):
            data[index]
    with pytest.raises(TypeError):
        data[1.5]
    assert np.array_equal(data[np.int64(2)][1], data[2][1])


@pytest.mark.parametrize("options, error, match", [
    ({"n": -1}, ValueError, "n must be non-negative"),
    ({"n": 2.0}, TypeError, "n must be an int"),
    ({"size": 8}, ValueError, "size must be at least 16"),
    ({"n_shapes": (0, 3)}, ValueError, "n_shapes must be positive"),
    ({"n_shapes": (3, 1)}, ValueError, "least <= most"),
    ({"empty_fraction": 1.5}, ValueError, r"empty_fraction must be in \[0.0, 1.0\]"),
    ({"seed": -2}, ValueError, "seed must be non-negative"),
    ({"scale": 0.1}, TypeError, "scale must be a pair"),
    ({"noise": (9, 3)}, ValueError, "noise must be .least, most. with least <= most"),
    ({"noise": -1}, ValueError, r"noise must be in \[0.0, 255.0\]"),
    ({"backgrounds": "flat"}, ValueError, "backgrounds must be a non-empty tuple of"),
    ({"backgrounds": ()}, ValueError, "backgrounds must be a non-empty tuple of"),
    ({"backgrounds": ("flat", "marble")}, ValueError, r"got \('flat', 'marble'\)"),
], ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_bad_arguments_are_named(options, error, match):
    with pytest.raises(error, match=match):
        ShapesDataset(**{"n": 3, **options})


def test_shape_mask_rejects_an_unknown_label():
    with pytest.raises(ValueError, match="shape.label must be 1, 2 or 3, got 4"):
        shape_mask(Shape(4, (1.0, 1.0, 1.0), (0, 0, 0), (0, 0)), SIZE)


# --- the VOC layout ----------------------------------------------------------------------

def test_write_voc_writes_the_layout(tmp_path):
    written = write_voc(tmp_path, {"train": 4, "val": 3}, size=SIZE, seed=5)
    assert written == {"train": [f"shapes_{i:06d}" for i in range(4)],
                       "val": [f"shapes_{i:06d}" for i in range(4, 7)]}
    data = ShapesDataset(7, size=SIZE, seed=5)
    for split, ids in written.items():
        listed = (tmp_path / "ImageSets" / "Segmentation" / f"{split}.txt").read_text()
        assert listed.split() == ids
        for name in ids:
            image, label = data[int(name.split("_")[1])]
            with Image.open(tmp_path / "SegmentationClass" / f"{name}.png") as png:
                assert png.mode == "P"
                np.testing.assert_array_equal(np.asarray(png), label)
                palette = np.array(png.getpalette()[:12]).reshape(4, 3)
                np.testing.assert_array_equal(palette, PALETTE)
            with Image.open(tmp_path / "JPEGImages" / f"{name}.jpg") as jpg:
                assert jpg.format == "JPEG" and jpg.mode == "RGB" and jpg.size == SIZE[::-1]
                decoded = np.asarray(jpg).astype(float)
                assert np.abs(decoded - image).mean() < 8
    leftovers = [f for _, _, files in os.walk(tmp_path) for f in files if f.endswith(".tmp")]
    assert leftovers == []


def test_write_voc_takes_a_palette_and_checks_its_arguments(tmp_path):
    data = ShapesDataset(2, size=SIZE, seed=0)
    colours = [(10, 20, 30), (40, 50, 60), (70, 80, 90), (100, 110, 120)]
    ids = data.write_voc(tmp_path, "val", prefix="demo", palette=colours)
    assert ids == ["demo_000000", "demo_000001"]
    with Image.open(tmp_path / "SegmentationClass" / "demo_000001.png") as png:
        assert png.getpalette()[:12] == [v for colour in colours for v in colour]
    with pytest.raises(ValueError, match="palette must be 4 to 256 RGB colours"):
        data.write_voc(tmp_path, "val", palette=[(0, 0, 0)])
    with pytest.raises(ValueError, match="split must be a plain name"):
        data.write_voc(tmp_path, "../train")
