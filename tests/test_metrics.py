"""ConfusionMatrix and the FCN paper's metrics, against numbers worked out by hand.

Each hand example writes its confusion matrix and figures as fractions in the test, so a
reader can check them with pencil and paper; a second check compares random label maps
with a plain-loop computation (``_loop_metrics``) written independently of the module.
"""
import math

import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.metrics import ConfusionMatrix, SegmentationMetrics, format_metrics


def _metrics(xp, pred, target, n_class, **kwargs):
    cm = ConfusionMatrix(n_class, **kwargs)
    cm.update(xp.asarray(np.array(pred)), xp.asarray(np.array(target)))
    return cm, cm.compute()


def _assert_figures(result, *, pixel, mean_acc, class_acc, class_iou, mean_iou, fw_iou):
    assert result.pixel_accuracy == pytest.approx(pixel, rel=1e-12)
    assert result.mean_accuracy == pytest.approx(mean_acc, rel=1e-12)
    np.testing.assert_allclose(result.class_accuracy, class_acc, rtol=1e-12)
    np.testing.assert_allclose(result.class_iou, class_iou, rtol=1e-12)
    assert result.mean_iou == pytest.approx(mean_iou, rel=1e-12)
    assert result.frequency_weighted_iou == pytest.approx(fw_iou, rel=1e-12)


# --- hand-computed examples ----------------------------------------------------------------

def test_hand_example_2x3(xp):
    # (target, pred) pixel pairs: (0,0) (0,1) (1,1) / (1,1) (2,2) (2,0)
    cm, result = _metrics(xp, pred=[[0, 1, 1], [1, 2, 0]], target=[[0, 0, 1], [1, 2, 2]],
                          n_class=3)
    assert cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0],     # rows: target
                                              [0, 2, 0],     # cols: prediction
                                              [1, 0, 1]])
    # hits n_ii = (1, 2, 1); in target t = (2, 2, 2); predicted p = (2, 3, 1); T = 6
    _assert_figures(result,
                    pixel=4 / 6,
                    class_acc=[1 / 2, 2 / 2, 1 / 2], mean_acc=2 / 3,
                    class_iou=[1 / 3, 2 / 3, 1 / 2], mean_iou=(1 / 3 + 2 / 3 + 1 / 2) / 3,
                    fw_iou=(2 / 6) * (1 / 3) + (2 / 6) * (2 / 3) + (2 / 6) * (1 / 2))


def test_hand_example_unbalanced_rows_and_columns(xp):
    # Rows and columns have different sums, so a transposed matrix gives other figures.
    # pairs: (0,0) (0,0) (0,0) (0,1) / (1,1) (2,1) (2,2) (2,0)
    cm, result = _metrics(xp, pred=[[0, 0, 0, 1], [1, 1, 2, 0]],
                          target=[[0, 0, 0, 0], [1, 2, 2, 2]], n_class=3)
    np.testing.assert_array_equal(cm.matrix, [[3, 1, 0], [0, 1, 0], [1, 1, 1]])
    # hits (3, 1, 1); t = (4, 1, 3); p = (4, 3, 1); T = 8
    _assert_figures(result,
                    pixel=5 / 8,
                    class_acc=[3 / 4, 1 / 1, 1 / 3], mean_acc=(3 / 4 + 1 + 1 / 3) / 3,
                    class_iou=[3 / 5, 1 / 3, 1 / 3], mean_iou=(3 / 5 + 1 / 3 + 1 / 3) / 3,
                    fw_iou=(4 / 8) * (3 / 5) + (1 / 8) * (1 / 3) + (3 / 8) * (1 / 3))


def test_ignore_index_pixels_are_skipped(xp):
    # The two 255 pixels carry wrong predictions; they must not count at all.
    cm, result = _metrics(xp, pred=[[0, 1, 2], [1, 0, 1]],
                          target=np.array([[0, 255, 255], [1, 0, 1]], dtype=np.uint8),
                          n_class=3)
    np.testing.assert_array_equal(cm.matrix, [[2, 0, 0], [0, 2, 0], [0, 0, 0]])
    assert result.pixel_accuracy == 1.0


def test_custom_and_no_ignore_index(xp):
    pred, target = [[0, 1], [1, 1]], [[0, -1], [1, 0]]
    cm, _ = _metrics(xp, pred, target, n_class=2, ignore_index=-1)
    np.testing.assert_array_equal(cm.matrix, [[1, 1], [0, 1]])
    cm, _ = _metrics(xp, pred, [[0, 1], [1, 0]], n_class=2, ignore_index=None)
    np.testing.assert_array_equal(cm.matrix, [[1, 1], [0, 2]])
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 2\), got 255"):
        _metrics(xp, [[0, 1]], [[0, 255]], n_class=2, ignore_index=None)


def test_class_absent_from_target_and_prediction_is_left_out(xp):
    # Same pixels as the 2x3 example, but with a 4th class that never appears.
    _, result = _metrics(xp, pred=[[0, 1, 1], [1, 2, 0]], target=[[0, 0, 1], [1, 2, 2]],
                         n_class=4)
    assert math.isnan(result.class_iou[3]) and math.isnan(result.class_accuracy[3])
    _assert_figures(result,
                    pixel=4 / 6,
                    class_acc=[1 / 2, 1, 1 / 2, np.nan], mean_acc=2 / 3,
                    class_iou=[1 / 3, 2 / 3, 1 / 2, np.nan], mean_iou=1.5 / 3,
                    fw_iou=1.5 / 3)


def test_class_only_in_prediction_has_iou_zero_and_counts(xp):
    # pairs: (0,0) (0,2) / (1,1) (1,1): class 2 is predicted once, never true.
    cm, result = _metrics(xp, pred=[[0, 2], [1, 1]], target=[[0, 0], [1, 1]], n_class=3)
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 1], [0, 2, 0], [0, 0, 0]])
    # hits (1, 2, 0); t = (2, 2, 0); p = (1, 2, 1); T = 4
    _assert_figures(result,
                    pixel=3 / 4,
                    class_acc=[1 / 2, 1, np.nan], mean_acc=(1 / 2 + 1) / 2,   # 2 left out
                    class_iou=[1 / 2, 1, 0], mean_iou=(1 / 2 + 1 + 0) / 3,    # 2 counts
                    fw_iou=(2 / 4) * (1 / 2) + (2 / 4) * 1)


@pytest.mark.parametrize("shape", [(5,), (4, 7), (3, 4, 5)], ids=["1d", "hw", "nhw"])
def test_perfect_prediction_gives_one_everywhere(xp, rng, shape):
    target = rng.integers(0, 4, size=shape)
    target.flat[:4] = np.arange(4)   # every class present
    _, result = _metrics(xp, target, target, n_class=4)
    np.testing.assert_array_equal(result.class_iou, 1.0)
    np.testing.assert_array_equal(result.class_accuracy, 1.0)
    assert (result.pixel_accuracy, result.mean_accuracy, result.mean_iou,
            result.frequency_weighted_iou) == (1.0, 1.0, 1.0, 1.0)


# --- against an independent computation ---------------------------------------------------

def _loop_metrics(pred, target, n_class, ignore):
    """The figures by plain loops over pixels and classes, without numpy's reductions."""
    counts = [[0] * n_class for _ in range(n_class)]
    for t, p in zip(np.ravel(target).tolist(), np.ravel(pred).tolist()):
        if t != ignore:
            counts[t][p] += 1
    total = sum(map(sum, counts))
    hits = [counts[i][i] for i in range(n_class)]
    true = [sum(counts[i]) for i in range(n_class)]
    predicted = [sum(counts[j][i] for j in range(n_class)) for i in range(n_class)]
    acc = [hits[i] / true[i] for i in range(n_class) if true[i] > 0]
    ious = {i: hits[i] / (true[i] + predicted[i] - hits[i])
            for i in range(n_class) if true[i] + predicted[i] > 0}
    return dict(matrix=counts, pixel=sum(hits) / total, mean_acc=sum(acc) / len(acc),
                ious=ious, mean_iou=sum(ious.values()) / len(ious),
                fw_iou=sum(true[i] / total * ious[i] for i in range(n_class) if true[i] > 0))


@pytest.mark.parametrize("n_class,seed", [(2, 0), (5, 1), (7, 2), (21, 3)])
def test_matches_loop_reference(xp, n_class, seed):
    rng = np.random.default_rng(seed)
    used = rng.choice(n_class, size=max(1, n_class - 2), replace=False)   # some classes absent
    target = rng.choice(np.append(used, 255), size=(3, 9, 11)).astype(np.uint8)
    pred = np.where(rng.random(target.shape) < 0.6, target % 255 % n_class,
                    rng.integers(0, n_class, size=target.shape)).astype(np.int64)
    want = _loop_metrics(pred, target, n_class, ignore=255)
    cm, result = _metrics(xp, pred, target, n_class)
    np.testing.assert_array_equal(cm.matrix, want["matrix"])
    assert result.pixel_accuracy == pytest.approx(want["pixel"], rel=1e-12)
    assert result.mean_accuracy == pytest.approx(want["mean_acc"], rel=1e-12)
    assert result.mean_iou == pytest.approx(want["mean_iou"], rel=1e-12)
    assert result.frequency_weighted_iou == pytest.approx(want["fw_iou"], rel=1e-12)
    assert set(np.flatnonzero(~np.isnan(result.class_iou)).tolist()) == set(want["ious"])
    for i, iou in want["ious"].items():
        assert result.class_iou[i] == pytest.approx(iou, rel=1e-12)


def test_accumulating_updates_equals_one_update_of_the_concatenation(xp, rng):
    target = rng.choice([0, 1, 2, 3, 255], size=(6, 5, 8))
    pred = rng.integers(0, 4, size=target.shape)
    whole = ConfusionMatrix(4)
    whole.update(xp.asarray(pred), xp.asarray(target))
    parts = ConfusionMatrix(4)
    parts.update(xp.asarray(pred[:1]), xp.asarray(target[:1]))          # (N, H, W)
    parts.update(xp.asarray(pred[1]), xp.asarray(target[1]))            # (H, W)
    parts.update(xp.asarray(pred[2:]), xp.asarray(target[2:]))
    np.testing.assert_array_equal(parts.matrix, whole.matrix)
    assert parts.compute().mean_iou == whole.compute().mean_iou
    parts.reset()
    assert parts.matrix.sum() == 0 and parts.matrix.shape == (4, 4)


def test_figures_come_from_the_pooled_matrix_not_per_image_means(xp):
    # Image 1: 1 pixel, wrong; image 2: 3 pixels, right. Pooled accuracy 3/4, not (0 + 1)/2.
    cm = ConfusionMatrix(2)
    cm.update(xp.asarray(np.array([1])), xp.asarray(np.array([0])))
    cm.update(xp.asarray(np.array([0, 0, 1])), xp.asarray(np.array([0, 0, 1])))
    assert cm.compute().pixel_accuracy == 3 / 4


# --- bad inputs -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,pred,target,value", [
    ("pred", [[0, 3]], [[0, 1]], 3),
    ("pred", [[-1, 0]], [[0, 1]], -1),
    ("target", [[0, 1]], [[0, 3]], 3),
    ("target", [[0, 1]], [[-2, 1]], -2),
], ids=["pred-high", "pred-negative", "target-high", "target-negative"])
def test_out_of_range_labels_raise_naming_the_value(xp, name, pred, target, value):
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=rf"{name} labels must lie in \[0, 3\).*got {value}"):
        cm.update(xp.asarray(np.array(pred)), xp.asarray(np.array(target)))
    assert cm.matrix.sum() == 0   # nothing half-counted


def test_shape_mismatch_names_both_shapes(xp):
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"same shape.*pred \(2, 3\).*target \(3, 2\)"):
        cm.update(xp.zeros((2, 3), dtype=xp.int64), xp.zeros((3, 2), dtype=xp.int64))


def test_non_integer_inputs_raise(xp):
    cm = ConfusionMatrix(3)
    with pytest.raises(TypeError, match=r"pred must be an integer label map.*float32.*argmax"):
        cm.update(xp.zeros((2, 2), dtype=xp.float32), xp.zeros((2, 2), dtype=xp.int64))
    with pytest.raises(TypeError, match=r"target must be a NumPy or CuPy integer array, got list"):
        cm.update(xp.zeros((2, 2), dtype=xp.int64), [[0, 0], [0, 0]])


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(n_class=0), ValueError, r"n_class must be positive, got 0"),
    (dict(n_class=2.0), TypeError, r"n_class must be an int"),
    (dict(n_class=2, ignore_index=0.5), TypeError, r"ignore_index must be an int or None"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ConfusionMatrix(**kwargs)


def test_compute_without_pixels_raises(xp):
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="no labelled pixels"):
        cm.compute()
    cm.update(xp.asarray(np.array([0, 1])), xp.asarray(np.array([255, 255])))
    with pytest.raises(ValueError, match="no labelled pixels"):
        cm.compute()


# --- the table ------------------------------------------------------------------------------

def test_format_metrics_table():
    cm = ConfusionMatrix(4)
    cm.update(np.array([[0, 1, 1], [1, 2, 0]]), np.array([[0, 0, 1], [1, 2, 2]]))
    result = cm.compute()
    assert isinstance(result, SegmentationMetrics)
    text = format_metrics(result, ["background", "circle", "square", "triangle"])
    lines = text.splitlines()
    assert lines[0].split() == ["class", "IoU"]
    assert lines[1].split() == ["background", "0.3333"]
    assert lines[4].split() == ["triangle", "-"]          # absent from both: undefined
    assert lines[-2].split() == ["mean", "IoU", "0.5000"]
    assert lines[-1].split() == ["frequency-weighted", "IoU", "0.5000"]
    assert "class 3" in format_metrics(result)
    with pytest.raises(ValueError, match=r"class_names must have one name per class \(4\), got 2"):
        format_metrics(result, ["a", "b"])


def test_matrix_is_on_the_host(xp):
    cm, _ = _metrics(xp, [[0, 1]], [[0, 1]], n_class=2)
    assert isinstance(cm.matrix, np.ndarray)
    np.testing.assert_array_equal(asnumpy(cm.matrix), np.eye(2))
