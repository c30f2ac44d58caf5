"""The VOC-layout reader on a small fixture written with Pillow, and its error messages."""
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from minifcn.data.voc import (VOC_CLASSES, VOC_PALETTE, DatasetError, VOCSegmentation,
                              read_image, read_label, voc_palette)

H, W = 12, 16


def _label(seed, n_class=21):
    """A label map with a few classes inside and a 255 border, as in VOC."""
    rng = np.random.default_rng(seed)
    label = np.zeros((H, W), dtype=np.uint8)
    label[2:8, 3:10] = rng.integers(1, n_class)
    label[6:11, 8:15] = rng.integers(1, n_class)
    label[1, :] = label[:, 2] = 255
    return label


def _write_label(path, label, mode="P"):
    if mode == "P":
        img = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
        img.putpalette(VOC_PALETTE.tobytes())
    else:
        img = Image.fromarray(label).convert(mode)
    img.save(path)


def _image(seed, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _make_voc(root, ids=("a", "b", "c"), val=("d",)):
    """Write a VOC layout; return {id: label}. 'b' is greyscale, 'c' an RGBA PNG named .jpg."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(root / sub, exist_ok=True)
    labels = {}
    for k, image_id in enumerate(ids + val):
        labels[image_id] = _label(k)
        _write_label(root / "SegmentationClass" / f"{image_id}.png", labels[image_id])
        img = Image.fromarray(_image(k))
        if image_id == "b":
            img = img.convert("L")
        if image_id == "c":
            img.convert("RGBA").save(root / "JPEGImages" / "c.jpg", format="PNG")
            continue
        img.save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(val) + "\n")
    return labels


@pytest.fixture
def voc(tmp_path):
    return tmp_path, _make_voc(tmp_path)


def test_palette_is_the_voc_colour_map():
    p = voc_palette()
    assert p.shape == (256, 3) and p.dtype == np.uint8
    assert p[0].tolist() == [0, 0, 0] and p[1].tolist() == [128, 0, 0]
    assert p[15].tolist() == [192, 128, 128]  # person
    assert p[255].tolist() == [224, 224, 192]  # ignore / border
    assert len({tuple(c) for c in p}) == 256
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == "person"
    assert not VOC_PALETTE.flags.writeable


def test_reads_splits_and_exact_labels(voc):
    root, labels = voc
    train, val = VOCSegmentation(root, "train"), VOCSegmentation(root, split="val")
    assert train.ids == ["a", "b", "c"] and val.ids == ["d"] and len(train) == 3
    assert train.n_class == 21 and train.classes == VOC_CLASSES
    for i, image_id in enumerate(train.ids):
        image, label = train[i]
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, labels[image_id])
    assert (train[0][1] == 255).any()


def test_image_modes_are_converted_to_rgb(voc):
    root, _ = voc
    data = VOCSegmentation(root)
    grey = data[1][0]  # written as an 'L' JPEG
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    rgba = data[2][0]  # an RGBA PNG: lossless, so exact
    np.testing.assert_array_equal(rgba, _image(2))


def test_exif_orientation_is_respected(tmp_path):
    stored = np.zeros((8, 16, 3), dtype=np.uint8)
    stored[:, 8:] = 255  # stored: left black, right white
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "x.jpg"
    img.save(path, exif=exif.tobytes(), quality=100)
    raw = np.asarray(Image.open(path))
    shown = read_image(path)
    assert shown.shape == (16, 8, 3)
    np.testing.assert_array_equal(shown, np.rot90(raw, k=-1))
    assert shown[:4].mean() < 30 and shown[-4:].mean() > 225  # black on top after rotation


def test_transform_is_applied(voc):
    root, labels = voc
    data = VOCSegmentation(root, transform=lambda image, label: (image.shape, label.sum()))
    assert data[0] == ((H, W, 3), labels["a"].sum())


def test_greyscale_label_and_n_class(tmp_path):
    _make_voc(tmp_path, ids=("a",), val=("b",))
    small = np.array([[0, 1], [3, 255]], dtype=np.uint8).repeat(6, 0).repeat(8, 1)
    _write_label(tmp_path / "SegmentationClass" / "a.png", small, mode="L")
    data = VOCSegmentation(tmp_path, n_class=4)
    assert data.n_class == 4 and len(data.classes) == 4
    np.testing.assert_array_equal(data[0][1], small)


def test_class_names_option(voc):
    root, _ = voc
    with pytest.raises(ValueError, match="n_class=3 disagrees"):
        VOCSegmentation(root, classes=("x", "y"), n_class=3)
    with pytest.raises(ValueError, match="n_class must be"):
        VOCSegmentation(root, n_class=0)
    with pytest.raises(ValueError, match="split must be a plain name"):
        VOCSegmentation(root, split="../train")


# ----------------------------------------------------------------------------------------
# Errors name the file


def test_missing_root_and_split(tmp_path):
    with pytest.raises(DatasetError, match="root not found: .*nowhere"):
        VOCSegmentation(tmp_path / "nowhere")
    _make_voc(tmp_path)
    with pytest.raises(DatasetError, match=r"split file not found: .*test\.txt"):
        VOCSegmentation(tmp_path, split="test")
    (tmp_path / "ImageSets/Segmentation/empty.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"empty\.txt lists no image ids"):
        VOCSegmentation(tmp_path, split="empty")


@pytest.mark.parametrize("missing", ["JPEGImages/b.jpg", "SegmentationClass/b.png"])
def test_listed_id_with_a_missing_file(voc, missing):
    root, _ = voc
    os.remove(root / missing)
    with pytest.raises(DatasetError, match=f"file not found: .*{missing}.*'b'.*train.txt"):
        VOCSegmentation(root)


def _corrupt(root):
    (root / "JPEGImages/a.jpg").write_bytes(b"not a jpeg at all")


def _truncate(root):
    Image.fromarray(_image(0, 64, 64)).save(root / "JPEGImages/a.jpg")  # headers read, data cut
    data = (root / "JPEGImages/a.jpg").read_bytes()
    (root / "JPEGImages/a.jpg").write_bytes(data[:len(data) * 2 // 3])


def _resize_label(root):
    _write_label(root / "SegmentationClass/a.png", np.zeros((H, W + 1), np.uint8))


def _stray_value(root):
    label = _label(0)
    label[0, 0] = 21
    _write_label(root / "SegmentationClass/a.png", label)


def _rgb_label(root):
    Image.fromarray(VOC_PALETTE[_label(0)]).save(root / "SegmentationClass/a.png")


@pytest.mark.parametrize("damage, message", [
    (_corrupt, r"cannot read image file .*JPEGImages.a\.jpg"),
    (_truncate, r"cannot decode image .*JPEGImages.a\.jpg"),
    (_resize_label, r"label .*a\.png is 17x12 \(WxH\) but its image .*a\.jpg is 16x12"),
    (_stray_value, r"label .*a\.png holds values \[21\] outside 0..20"),
    (_rgb_label, r"label .*a\.png has mode 'RGB'; expected a palette"),
], ids=["corrupt", "truncated", "size", "value", "rgb-label"])
def test_bad_file_raises_naming_it(voc, damage, message):
    root, _ = voc
    damage(root)
    data = VOCSegmentation(root)
    with pytest.raises(DatasetError, match=message):
        data[0]
    assert data[1][0].shape == (H, W, 3)  # the other items still read


def test_label_values_checked_against_n_class(voc):
    root, _ = voc
    _write_label(root / "SegmentationClass/a.png", np.full((H, W), 4, np.uint8))
    with pytest.raises(DatasetError, match=r"a\.png holds values \[4\] outside 0..3"):
        VOCSegmentation(root, n_class=4)[0]
    assert isinstance(DatasetError("x"), ValueError)


def test_decompression_bomb_guard_stays_on(voc, monkeypatch):
    root, _ = voc
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", (H * W) // 4)
    with pytest.raises(DatasetError, match=r"refusing to open .*a\.jpg"):
        VOCSegmentation(root)[0]


def test_skip_bad_drops_with_a_warning(voc):
    root, labels = voc
    _stray_value(root)
    os.remove(root / "JPEGImages/c.jpg")
    with pytest.warns(UserWarning, match="skipping") as record:
        data = VOCSegmentation(root, skip_bad=True)
    assert data.ids == ["b"] and [i for i, _ in data.skipped] == ["a", "c"]
    messages = [str(w.message) for w in record]
    assert "a.png holds values [21]" in messages[0] and "c.jpg" in messages[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(data[0][1], labels["b"])


def test_read_label_rejects_negative_wide_values(tmp_path):
    path = tmp_path / "wide.tif"  # a 32-bit greyscale ('I') label
    Image.fromarray(np.full((4, 4), -1, np.int32)).save(path)
    with pytest.raises(DatasetError, match=r"wide\.tif holds values \[-1\]"):
        read_label(path)


def test_item_sizes_come_from_the_headers_as_the_items_are_read(voc, monkeypatch):
    """Each item's (H, W) as ``[i]`` gives it (a greyscale JPEG, an RGBA PNG, a JPEG stored
    turned with EXIF orientation 6), from the headers: a JPEG's pixels are not decoded."""
    from PIL import ImageFile

    root, _ = voc
    img = Image.fromarray(_image(0, h=W, w=H))                  # stored 16x12, shown 12x16
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(root / "JPEGImages" / "a.jpg", exif=exif.tobytes())
    data = VOCSegmentation(root)
    assert data.item_sizes() == [data[i][0].shape[:2] for i in range(len(data))]
    assert data.item_sizes()[0] == (H, W)
    assert VOCSegmentation(root, transform=lambda image, label: 0).item_sizes() is None

    def no_decoding(self):
        raise AssertionError(f"{self.filename} decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    (root / "ImageSets/Segmentation/jpegs.txt").write_text("a\nb\nd\n")
    assert VOCSegmentation(root, "jpegs").item_sizes() == [(H, W)] * 3
