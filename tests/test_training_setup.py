"""TrainingSetup's pieces: lazy validation batches, and the metrics of the weights it keeps."""
import numpy as np
import pytest

from minifcn.data.shapes import ShapesDataset
from minifcn.train import evaluate
from minifcn.training_setup import EvalBatches, TrainingSetup


class Sizes:
    """Items of the given sizes, labelled by their index, to see how they are batched."""

    n_class = 2

    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        h, w = self.sizes[i]
        return np.full((h, w, 3), 128, np.uint8), np.full((h, w), i % 2, np.uint8)


def test_eval_batches_group_consecutive_items_of_one_size_without_padding():
    sizes = [(8, 8), (8, 8), (8, 8), (6, 9), (8, 8), (8, 8)]
    batches = list(EvalBatches(Sizes(sizes), "imagenet", batch_size=2))
    assert [images.shape for images, _ in batches] == [
        (2, 3, 8, 8), (1, 3, 8, 8), (1, 3, 6, 9), (2, 3, 8, 8)]
    assert all((labels != 255).all() for _, labels in batches)           # nothing padded
    first = np.concatenate([labels[:, 0, 0] for _, labels in batches])
    np.testing.assert_array_equal(first, [i % 2 for i in range(len(sizes))])   # in order
    assert len(list(EvalBatches(Sizes(sizes), batch_size=2))) == 4      # re-iterable


@pytest.mark.parametrize("val_every", [0, 2])
def test_run_reports_the_metrics_of_the_weights_it_keeps(tmp_path, val_every):
    """Whether the kept (best) weights are the last ones or earlier ones, the metrics
    returned are those of the weights in model.npz, as a fresh evaluation gives them."""
    data = ShapesDataset(8, size=(32, 32), seed=0)
    setup = TrainingSetup.build(data, ShapesDataset(3, size=(32, 32), seed=1), width=1 / 16,
                                iters=5, batch_size=2, dropout=0.0, lr=1e-2,
                                preprocess="imagenet")
    result = setup.run(tmp_path, val_every=val_every, progress=False)
    fresh = evaluate(setup.model, setup.val, data.n_class)
    np.testing.assert_array_equal(result.metrics.class_iou, fresh.class_iou)
    assert result.metrics.mean_iou == fresh.mean_iou
    assert result.weights_from.startswith("best.npz, iteration ")


@pytest.mark.parametrize("trend, reused", [(+1, True), (-1, False)])
def test_run_reuses_the_last_validation_only_when_it_scored_the_kept_weights(
        tmp_path, monkeypatch, trend, reused):
    """Rising scores: best == last, so the last validation is returned, not recomputed.
    Falling scores: best.npz is iteration 1, so the kept weights are scored afresh."""
    import minifcn.train
    import minifcn.training_setup
    from minifcn.metrics import SegmentationMetrics

    calls = []

    def scripted(model, batches, n_class):
        calls.append(1)
        score = 0.5 + trend * 0.1 * len(calls)
        return SegmentationMetrics(score, score, score, score, np.full(n_class, score),
                                   np.full(n_class, score))

    fresh = object()
    monkeypatch.setattr(minifcn.train, "evaluate", scripted)
    monkeypatch.setattr(minifcn.training_setup, "evaluate", lambda *a: fresh)
    data = ShapesDataset(4, size=(32, 32), seed=0)
    setup = TrainingSetup.build(data, data, width=1 / 16, iters=3, batch_size=2,
                                dropout=0.0)
    result = setup.run(tmp_path, val_every=1, progress=False)
    assert result.weights_from == f"best.npz, iteration {3 if reused else 1}"
    if reused:
        assert result.metrics is not fresh and result.metrics.mean_iou == pytest.approx(0.8)
    else:
        assert result.metrics is fresh


def test_adam_takes_its_betas_and_the_config_records_them():
    data = ShapesDataset(4, size=24, seed=0)
    setup = TrainingSetup.build(data, model="fcn32s", width=1 / 32, betas=(0.8, 0.99))
    assert {(g["beta1"], g["beta2"]) for g in setup.optimizer.param_groups} == {(0.8, 0.99)}
    assert setup.config["betas"] == [0.8, 0.99]
    default = TrainingSetup.build(data, model="fcn32s", width=1 / 32)
    assert {g["beta2"] for g in default.optimizer.param_groups} == {0.999}


def test_a_shapes_set_with_other_settings_has_another_fingerprint():
    """A resume compares data fingerprints built from the data set's repr."""
    from minifcn.run_identity import data_fingerprint

    base = dict(n=10, size=24, seed=0)
    prints = {data_fingerprint(ShapesDataset(**base, **extra))["sha256"] for extra in (
        {}, {"backgrounds": ("flat",)}, {"noise": (0.0, 4.0)}, {"scale": (0.1, 0.2)})}
    assert len(prints) == 4
