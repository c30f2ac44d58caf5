"""Transforms: normalisations against hand computations, geometry keeps image and label aligned."""
import numpy as np
import pytest

from minifcn.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, MEAN_RGB_UINT8, collate,
                                     denormalize, normalize, random_flip, random_scale_crop,
                                     reference_deprocess, reference_preprocess)

LABEL_VALUES = np.array([0, 7, 40, 130, 200], dtype=np.uint8)  # far apart: a blend shows
RAMP = 8  # the test image's red channel is RAMP * row, green RAMP * column


def _ramp_pair(h=30, w=30):
    """An image whose red and green encode (row, column), and a label that is a function of them."""
    y, x = np.mgrid[:h, :w]
    image = np.stack([RAMP * y, RAMP * x, np.full_like(y, 50)], axis=-1).astype(np.uint8)
    label = LABEL_VALUES[(y + 2 * x) % 5]
    return image, label


def _check_aligned(image, label, source_label):
    """Each output pixel's label is the source label at the source pixel its colour points to.

    The colour gives the output pixel centre's source position to within the uint8 rounding
    (EPS); nearest-neighbour takes the pixel containing it, so only within EPS of a seam may
    the label come from either side.
    """
    h, w = source_label.shape
    yc, xc = image[..., 0] / RAMP, image[..., 1] / RAMP  # source (row, column)
    # padding is checked elsewhere; at the borders Pillow's filter is clipped, so skip them
    inside = (label != 255) & (yc > 1) & (yc < h - 2) & (xc > 1) & (xc < w - 2)
    yc, xc = yc[inside], xc[inside]
    eps = 0.5 / RAMP + 0.01
    candidates = [source_label[np.clip(np.floor(yc + 0.5 + dy), 0, h - 1).astype(int),
                               np.clip(np.floor(xc + 0.5 + dx), 0, w - 1).astype(int)]
                  for dy in (-eps, eps) for dx in (-eps, eps)]
    matches = np.any([label[inside] == c for c in candidates], axis=0)
    assert matches.all(), f"{(~matches).sum()} of {matches.size} labels misaligned"
    assert inside.mean() > 0.4
    assert set(np.unique(label)) <= set(LABEL_VALUES.tolist()) | {255}


def test_reference_preprocess_by_hand():
    image = np.array([[[10, 20, 30], [255, 0, 128]]], dtype=np.uint8)  # (1, 2, 3) RGB
    x = reference_preprocess(image)
    assert x.shape == (3, 1, 2) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = np.array([[[30 - 104.00699, 128 - 104.00699]],   # B
                         [[20 - 116.66877, 0 - 116.66877]],     # G
                         [[10 - 122.67892, 255 - 122.67892]]])  # R
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["reference", "imagenet"])
def test_round_trip_and_mean_maps_to_zero(rng, mode):
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = normalize(image, mode=mode)
    assert x.shape == (3, 5, 7) and x.dtype == np.float32
    np.testing.assert_array_equal(denormalize(x, mode=mode), image)
    mean = np.broadcast_to(np.array(MEAN_RGB_UINT8, np.uint8), (2, 2, 3))
    grey_level = 1 if mode == "reference" else 1 / 255 / IMAGENET_STD.min()
    assert np.abs(normalize(mean, mode=mode)).max() < grey_level  # the padding colour is ~0


def test_reference_mode_is_reference_preprocess(rng):
    image = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(normalize(image, "reference"), reference_preprocess(image))
    np.testing.assert_array_equal(reference_deprocess(reference_preprocess(image)), image)


def test_imagenet_normalize_by_hand():
    image = np.array([[[255, 0, 51]]], dtype=np.uint8)
    expected = (np.array([1.0, 0.0, 0.2]) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(normalize(image)[:, 0, 0], expected, rtol=1e-6)


def test_flip_moves_image_and_label_together():
    image, label = _ramp_pair(6, 9)
    flipped = [random_flip(image, label, np.random.default_rng(s)) for s in range(16)]
    seen = set()
    for out_image, out_label in flipped:
        mirrored = out_image[0, 0, 1] != 0
        seen.add(bool(mirrored))
        ref_image, ref_label = (image[:, ::-1], label[:, ::-1]) if mirrored else (image, label)
        np.testing.assert_array_equal(out_image, ref_image)
        np.testing.assert_array_equal(out_label, ref_label)
    assert seen == {True, False}
    always = random_flip(image, label, np.random.default_rng(0), p=1.0)
    np.testing.assert_array_equal(always[1], label[:, ::-1])


def test_crop_without_scale_is_an_exact_window():
    image, label = _ramp_pair(20, 24)
    offsets = set()
    for seed in range(8):
        out_image, out_label = random_scale_crop(image, label, np.random.default_rng(seed),
                                                 scale=(1, 1), crop=(5, 7))
        assert out_image.shape == (5, 7, 3) and out_label.shape == (5, 7)
        top, left = out_image[0, 0, 0] // RAMP, out_image[0, 0, 1] // RAMP
        offsets.add((top, left))
        np.testing.assert_array_equal(out_image, image[top:top + 5, left:left + 7])
        np.testing.assert_array_equal(out_label, label[top:top + 5, left:left + 7])
    assert len(offsets) > 4


def test_crop_larger_than_image_pads_with_mean_and_ignore():
    image, label = _ramp_pair(6, 8)
    out_image, out_label = random_scale_crop(image, label, np.random.default_rng(0),
                                             scale=(1, 1), crop=(10, 12))
    np.testing.assert_array_equal(out_image[:6, :8], image)
    np.testing.assert_array_equal(out_label[:6, :8], label)
    pad = np.ones((10, 12), bool)
    pad[:6, :8] = False
    assert (out_label[pad] == 255).all()
    assert (out_image[pad] == np.array(MEAN_RGB_UINT8)).all()


@pytest.mark.parametrize("scale", [(0.5, 0.5), (0.7, 0.7), (1.6, 1.6), (2.0, 2.0)])
def test_rescale_keeps_alignment(scale):
    image, label = _ramp_pair()
    out_image, out_label = random_scale_crop(image, label, np.random.default_rng(0), scale=scale)
    assert out_label.shape == out_image.shape[:2] == (round(30 * scale[0]),) * 2
    _check_aligned(out_image, out_label, label)


@pytest.mark.parametrize("seed", range(6))
def test_random_scale_and_crop_keep_alignment(seed):
    image, label = _ramp_pair()
    rng = np.random.default_rng(seed)
    out_image, out_label = random_scale_crop(image, label, rng, scale=(0.6, 2.0), crop=(18, 20))
    assert out_image.shape == (18, 20, 3) and out_label.shape == (18, 20)
    _check_aligned(out_image, out_label, label)


def test_scale_crop_is_deterministic_from_the_rng():
    image, label = _ramp_pair()
    a = random_scale_crop(image, label, np.random.default_rng(3), crop=16)
    b = random_scale_crop(image, label, np.random.default_rng(3), crop=16)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_collate_pads_to_the_largest_item():
    first = (np.ones((3, 4, 5), np.float32), np.full((4, 5), 2, np.uint8))
    second = (np.full((3, 6, 3), 2.0, np.float32), np.ones((6, 3), np.uint8))
    images, labels = collate([first, second])
    assert images.shape == (2, 3, 6, 5) and images.dtype == np.float32
    assert labels.shape == (2, 6, 5) and labels.dtype == np.int64
    assert (images[0, :, :4, :5] == 1).all() and (images[0, :, 4:] == 0).all()
    assert (images[1, :, :, :3] == 2).all() and (images[1, :, :, 3:] == 0).all()
    assert (labels[0, :4, :5] == 2).all() and (labels[0, 4:] == 255).all()
    assert (labels[1, :, :3] == 1).all() and (labels[1, :, 3:] == 255).all()
    images, labels = collate([first, second], pad_value_image=-1.5, ignore_index=99)
    assert images[0, 0, 5, 0] == -1.5 and labels[1, 0, 4] == 99


def test_collate_with_normalized_items_pads_with_the_mean(rng):
    image, label = _ramp_pair(4, 4)
    small = (normalize(image, "reference"), label)
    big = (normalize(np.zeros((6, 6, 3), np.uint8), "reference"), np.zeros((6, 6), np.uint8))
    images, _ = collate([small, big])
    np.testing.assert_array_equal(reference_deprocess(images[0])[4:, :],
                                  np.broadcast_to(MEAN_RGB_UINT8, (2, 6, 3)))


@pytest.mark.parametrize("call, error, match", [
    (lambda i, l: normalize(i, mode="caffe"), ValueError, "mode must be one of"),
    (lambda i, l: reference_preprocess(i[..., 0]), ValueError, r"image must be \(H, W, 3\)"),
    (lambda i, l: random_flip(i, l, rng=np.random.RandomState(0)), TypeError,
     "rng must be a numpy.random.Generator"),
    (lambda i, l: random_flip(i, l[1:], np.random.default_rng()), ValueError,
     r"label must be \(H, W\) = \(4, 5\)"),
    (lambda i, l: random_flip(i.astype(float), l, np.random.default_rng()), TypeError,
     "image must be uint8"),
    (lambda i, l: random_scale_crop(i, l, np.random.default_rng(), scale=(2, 1)), ValueError,
     "scale must be"),
    (lambda i, l: random_scale_crop(i, l, np.random.default_rng(), crop=0), ValueError,
     "crop must be positive"),
    (lambda i, l: collate([]), ValueError, "at least one"),
    (lambda i, l: collate([(i, l)]), ValueError, r"batch\[0\] image must be a \(C, H, W\) float"),
    (lambda i, l: collate([(normalize(i), l[:, 1:])]), ValueError,
     r"batch\[0\] label must be \(H, W\) = \(4, 5\)"),
], ids=["mode", "rgb", "rng", "label-shape", "uint8", "scale", "crop", "empty", "hwc", "labels"])
def test_bad_arguments_are_named(call, error, match):
    image, label = _ramp_pair(4, 5)
    with pytest.raises(error, match=match):
        call(image, label)
