"""Figures: training curves and segmentation panels, located through the public layouts."""
import csv
import math

import numpy as np
import pytest
from PIL import Image

from minifcn.data.shapes import CLASS_NAMES, PALETTE
from minifcn.plot import (CURVES_SIZE, IOU_COLOUR, LOSS_COLOUR, curves_layout, linear_axis,
                          log_axis, overlay_with_legend, panel_boxes, read_log,
                          segmentation_panels, training_curves)
from minifcn.inference import overlay
from minifcn.train import LOG_FIELDS

SIZE = (20, 30)      # non-square: rows and columns must not be swapped


def _label():
    label = np.zeros(SIZE, np.uint8)
    label[2:8, 3:10] = 1                # 42 pixels of class 1
    label[10:18, 12:28] = 2             # 128 pixels of class 2: the default highlight
    return label


def _image(rng=None):
    if rng is None:
        return np.full((*SIZE, 3), 128, np.uint8)
    return rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def _panel(figure, box) -> np.ndarray:
    return np.asarray(figure)[box.top:box.bottom, box.left:box.right]


def _big(a, scale) -> np.ndarray:
    return a.repeat(scale, axis=0).repeat(scale, axis=1)


def _rows(n=100, validate_every=10):
    """Log rows as csv.DictReader gives them: strings, empty where nothing was validated."""
    rows = []
    for i in range(1, n + 1):
        it = 10 * i
        row = {"iteration": str(it), "loss": repr(1.4 * math.exp(-it / 250) + 0.02),
               "lr": "0.001", "mean_iou": ""}
        if i % validate_every == 0:
            row["mean_iou"] = repr(0.9 * (1 - math.exp(-it / 300)))
        rows.append(row)
    return rows


def _colour_rows(figure, box, colour):
    """Per column of ``box`` holding ``colour``: (column, mean row), in figure pixels."""
    hits = np.all(_panel(figure, box) == colour, axis=-1)                 # (h, w)
    cols = np.flatnonzero(hits.any(axis=0))
    rows = np.array([np.flatnonzero(hits[:, c]).mean() for c in cols])
    return cols + box.left, rows + box.top


# --- segmentation panels -----------------------------------------------------------------

def test_panels_png_size_and_prediction_colours(tmp_path, rng):
    image, label = _image(rng), _label()
    path = tmp_path / "panels.png"
    figure = segmentation_panels(image, label, palette=PALETTE, class_names=CLASS_NAMES,
                                 path=path)
    scale, boxes = panel_boxes(image.shape, 3)
    assert scale == math.ceil(256 / max(SIZE)) and len(boxes) == 3
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.mode == "RGB" and saved.size == figure.size
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(figure))
    assert figure.width > boxes[-1].right and figure.height > boxes[0].bottom
    prediction, blended, _ = (_panel(figure, box) for box in boxes)
    assert prediction.shape == (SIZE[0] * scale, SIZE[1] * scale, 3)
    np.testing.assert_array_equal(prediction, _big(PALETTE[label], scale))
    np.testing.assert_array_equal(prediction[5 * scale, 6 * scale], PALETTE[1])
    np.testing.assert_array_equal(prediction[14 * scale, 20 * scale], PALETTE[2])
    np.testing.assert_array_equal(blended, _big(overlay(image, label, PALETTE), scale))


@pytest.mark.parametrize("highlight, expected", [(None, 2), (1, 1), (0, 0)],
                         ids=["default-most-frequent", "class-1", "background"])
def test_mask_panel_highlights_exactly_the_class(highlight, expected):
    label = _label()
    figure = segmentation_panels(_image(), label, palette=PALETTE, class_names=CLASS_NAMES,
                                 highlight=highlight)
    scale, boxes = panel_boxes(SIZE, 3)
    mask = _panel(figure, boxes[2])
    inside = np.all(mask == 204, axis=-1)       # grey 128 under white at alpha 0.6
    outside = np.all(mask == 51, axis=-1)       # grey 128 darkened to 40 %
    np.testing.assert_array_equal(inside, _big(label == expected, scale))
    assert (inside | outside).all()


def test_default_highlight_without_foreground_is_background():
    figure = segmentation_panels(_image(), np.zeros(SIZE, np.uint8), palette=PALETTE,
                                 class_names=CLASS_NAMES)
    assert np.all(_panel(figure, panel_boxes(SIZE, 3)[1][2]) == 204)


def test_truth_panel_comes_first_and_legend_shows_present_classes(rng):
    label, truth = _label(), _label()
    truth[0:4, 20:26] = 3
    figure = segmentation_panels(_image(rng), label, palette=PALETTE, class_names=CLASS_NAMES,
                                 truth=truth)
    scale, boxes = panel_boxes(SIZE, 4)
    np.testing.assert_array_equal(_panel(figure, boxes[0]), _big(PALETTE[truth], scale))
    np.testing.assert_array_equal(_panel(figure, boxes[1]), _big(PALETTE[label], scale))
    legend = np.asarray(figure)[boxes[0].bottom:]
    for c in range(4):
        assert np.all(legend == PALETTE[c], axis=-1).sum() > 100, CLASS_NAMES[c]
    only_prediction = segmentation_panels(_image(rng), label, palette=PALETTE,
                                          class_names=CLASS_NAMES)
    legend = np.asarray(only_prediction)[boxes[0].bottom:]
    assert not np.all(legend == PALETTE[3], axis=-1).any()     # no triangle: no swatch


def test_large_images_are_not_enlarged():
    scale, boxes = panel_boxes((300, 400), 3)
    assert scale == 1 and boxes[0].right - boxes[0].left == 400
    assert boxes[1].left > boxes[0].right and boxes[0].bottom - boxes[0].top == 300


@pytest.mark.parametrize("change, match", [
    (dict(label=np.zeros((20, 29), np.uint8)), r"label must be \(H, W\) = \(20, 30\)"),
    (dict(truth=np.zeros((30, 20), np.uint8)), r"truth must be \(H, W\)"),
    (dict(label=np.zeros(SIZE, np.float32)), "label must be an \\(H, W\\) integer"),
    (dict(label=np.full(SIZE, 4, np.uint8)), "label holds class 4 but palette has only 4"),
    (dict(class_names=CLASS_NAMES[:2]), "label holds class 2 but class_names has only 2"),
    (dict(truth=np.full(SIZE, 255, np.uint8)), "truth holds class 255 but palette"),
    (dict(image=np.zeros((*SIZE, 3), np.float32)), "image must be a non-empty"),
    (dict(image=np.zeros(SIZE, np.uint8)), "image must be a non-empty"),
    (dict(highlight=4), r"highlight must be a class index in \[0, 4\), got 4"),
    (dict(highlight=-1), "highlight must be a class index"),
    (dict(highlight=1.0), "highlight must be a class index"),
    (dict(palette=PALETTE.astype(np.int64)), "palette must be a \\(P, 3\\) uint8"),
], ids=["label-shape", "truth-shape", "label-dtype", "past-palette", "past-names",
        "truth-ignore-label", "image-dtype", "image-2d", "highlight-high", "highlight-negative",
        "highlight-float", "palette-dtype"])
def test_panels_bad_arguments(change, match):
    kwargs = dict(image=_image(), label=_label(), palette=PALETTE, class_names=CLASS_NAMES)
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        segmentation_panels(kwargs.pop("image"), kwargs.pop("label"), **kwargs)


# --- overlay with a legend -----------------------------------------------------------------

def _swatches(figure, top, palette) -> list:
    """How many pixels below row ``top`` have each palette colour exactly."""
    legend = np.asarray(figure)[top:]
    return [int(np.all(legend == colour, axis=-1).sum()) for colour in palette]


def test_overlay_legend_lists_the_classes_present_below_the_overlay(rng):
    image, label = _image(rng), _label()
    figure = overlay_with_legend(image, label, palette=PALETTE, class_names=CLASS_NAMES)
    width, height = figure.size
    assert figure.mode == "RGB" and height >= SIZE[0] + 24 and width >= SIZE[1]
    np.testing.assert_array_equal(np.asarray(figure)[:SIZE[0], :SIZE[1]],
                                  overlay(image, label, PALETTE))
    counts = _swatches(figure, SIZE[0], PALETTE)
    assert all(n >= 15 * 15 for n in counts[:3]), counts       # background, disc, rectangle
    assert counts[3] == 0                                       # no triangle: no swatch


def test_overlay_legend_orders_by_share_and_caps_its_length():
    label = np.zeros((40, 60), np.uint8)
    label[:, :10], label[:, 10:40] = 1, 3                      # shares: 3, 0, 1
    figure = overlay_with_legend(np.zeros((40, 60, 3), np.uint8), label, palette=PALETTE,
                                 class_names=CLASS_NAMES, max_entries=2)
    legend = np.asarray(figure)[40:]
    where = [np.argwhere(np.all(legend == PALETTE[c], axis=-1)) for c in (3, 0, 1)]
    assert len(where[0]) and len(where[1]) and not len(where[2])    # class 1 left out
    assert tuple(where[0][0]) < tuple(where[1][0])       # largest share first (row, column)
    full = overlay_with_legend(np.zeros((40, 60, 3), np.uint8), label, palette=PALETTE,
                               class_names=CLASS_NAMES)
    assert _swatches(full, 40, PALETTE)[1] > 0


@pytest.mark.parametrize("change, match", [
    (dict(max_entries=0), "max_entries must be an integer >= 1, got 0"),
    (dict(class_names=CLASS_NAMES[:2]), "label holds class 2 but class_names has only 2"),
    (dict(label=np.zeros((20, 29), np.uint8)), r"label must be \(H, W\) = \(20, 30\)"),
], ids=["max-entries", "past-names", "label-shape"])
def test_overlay_legend_bad_arguments(change, match):
    kwargs = dict(image=_image(), label=_label(), palette=PALETTE, class_names=CLASS_NAMES)
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        overlay_with_legend(kwargs.pop("image"), kwargs.pop("label"), **kwargs)


# --- training curves ---------------------------------------------------------------------

def test_curves_from_a_log_file(tmp_path):
    log = tmp_path / "log.csv"
    with open(log, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS, restval="")
        writer.writeheader()
        writer.writerows(_rows(30, validate_every=7))
    rows = read_log(log)
    assert rows[0]["iteration"] == 10.0 and math.isnan(rows[0]["mean_iou"])
    assert set(rows[0]) == set(LOG_FIELDS) and rows[6]["mean_iou"] > 0
    path = tmp_path / "curves.png"
    figure = training_curves(rows, path, title="shapes", target=0.8)
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.size == CURVES_SIZE == figure.size


def test_loss_line_goes_down_left_to_right_on_the_log_axis():
    rows = _rows()
    figure = training_curves(rows)
    box = curves_layout(CURVES_SIZE)["loss"]
    cols, rows_px = _colour_rows(figure, box, LOSS_COLOUR)
    assert cols.min() - box.left < 0.02 * (box.right - box.left)       # first iteration, 10
    assert box.right - 1 - cols.max() <= 2                             # last, at the limit
    assert np.corrcoef(cols, rows_px)[0, 1] > 0.95                     # down, all the way
    losses = [float(r["loss"]) for r in rows]
    axis = log_axis(min(losses), max(losses))
    assert axis.log and (axis.lo, axis.hi) == (0.02, 2.0)
    expected = box.bottom - 1 - axis.unit(losses[0]) * (box.bottom - 1 - box.top)
    assert abs(rows_px[0] - expected) <= 3


def test_iou_line_goes_up_and_target_guide_is_drawn():
    figure = training_curves(_rows(), target=0.8)
    box = curves_layout(CURVES_SIZE)["mean_iou"]
    cols, rows_px = _colour_rows(figure, box, IOU_COLOUR)
    assert np.corrcoef(cols, rows_px)[0, 1] < -0.9
    guide_row = round(box.bottom - 1 - 0.8 * (box.bottom - 1 - box.top))
    panel = np.asarray(figure)
    dashes = np.all(panel[guide_row, box.left:box.right] == (120, 120, 120), axis=-1)
    assert 0.4 < dashes.mean() < 0.8                                   # dashed, not solid
    plain = np.asarray(training_curves(_rows()))
    assert not np.all(plain[guide_row, box.left:box.right] == (120, 120, 120), axis=-1).any()


@pytest.mark.parametrize("rows", [
    [{"iteration": 1, "loss": 1.4}],
    [{"iteration": "5", "loss": "0.9", "mean_iou": ""}, {"iteration": "6", "loss": "nan"},
     {"iteration": 7, "loss": float("inf"), "mean_iou": float("nan")},
     {"iteration": 8, "loss": 0.8, "mean_iou": None}],
    [{"iteration": 3, "loss": 0.0}, {"iteration": 4, "loss": 0.5, "mean_iou": 0.3}],
], ids=["single-row", "no-validation-and-gaps", "zero-loss-linear-axis"])
def test_curves_draw_sparse_logs(rows):
    figure = training_curves(rows)
    boxes = curves_layout(CURVES_SIZE)
    assert np.all(_panel(figure, boxes["loss"]) == LOSS_COLOUR, axis=-1).any()
    iou = np.all(_panel(figure, boxes["mean_iou"]) == IOU_COLOUR, axis=-1).any()
    assert iou == any(r.get("mean_iou") not in ("", None) and not math.isnan(
        float(r["mean_iou"])) for r in rows)


def test_nice_ticks():
    assert linear_axis(0.0, 1000.0).ticks == (0, 200, 400, 600, 800, 1000)
    assert linear_axis(0.0, 37.0).ticks == (0, 10, 20, 30, 40)
    assert linear_axis(0.0, 1.0).ticks == (0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert linear_axis(0.0, 0.0).ticks[-1] > 0                        # a single value
    assert log_axis(0.02, 1.4).ticks == (0.02, 0.05, 0.1, 0.2, 0.5, 1, 2)
    assert log_axis(1e-5, 3.0).ticks == (1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1)
    one = log_axis(1.0, 1.0)
    assert one.lo < 1.0 < one.hi


@pytest.mark.parametrize("rows, kwargs, error, match", [
    ([], {}, ValueError, "rows must hold a row with a finite iteration and loss"),
    ([{"iteration": "", "loss": "1"}], {}, ValueError, "none of the 1 rows"),
    ([{"iteration": 1, "loss": 1}, {"iteration": 2, "loss": "abc"}], {}, ValueError,
     r"rows\[1\]\['loss'\] must be a number or empty, got 'abc'"),
    ([{"iteration": 1, "loss": 1}], {"target": 1.5}, ValueError, r"target must be .* \[0, 1\]"),
    ({"iteration": 1, "loss": 1}, {}, TypeError, "rows must be a list of dicts"),
    ([[1, 1.0]], {}, TypeError, "rows must be a list of dicts"),
], ids=["empty", "no-finite-iteration", "not-a-number", "target", "a-dict", "not-dicts"])
def test_curves_bad_arguments(rows, kwargs, error, match):
    with pytest.raises(error, match=match):
        training_curves(rows, **kwargs)
