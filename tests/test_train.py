"""Training loop: loss goes down, exact resume, NaN guard, checkpoints and the CSV log."""
import csv
import math
import os

import numpy as np
import pytest

from minifcn.data import ShapesDataset
from minifcn.lr_schedule import LRScheduler
from minifcn.models import FCN8s
from minifcn.optim import SGD, Adam
from minifcn.train import (BatchStream, CheckpointError, TrainingDiverged, evaluate,
                           load_checkpoint, save_checkpoint, train)


def tiny_run(seed=0, size=24, width=1 / 32, lr=1e-3, iters=6):
    """Fresh model (dropout on), Adam with a poly schedule, and a batch stream."""
    data = ShapesDataset(12, size=size, seed=seed)
    model = FCN8s(n_class=4, width=width, dropout=0.5, rng=seed)
    opt = Adam(model.parameters(), lr=lr)
    sched = LRScheduler(opt, "poly", max_iter=iters)
    return model, opt, sched, BatchStream(data, 2, seed=seed)


def val_batches(n=4, size=24):
    data = ShapesDataset(n, size=size, seed=99)
    return list(BatchStream(data, 2, seed=0).__next__() for _ in range(n // 2))


def read_log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_loss_goes_down_by_half(tmp_path):
    """60 Adam steps (lr 1e-3, batch 2) at width 1/16 on 32x32 shapes: the mean of the
    last five logged losses falls below half the first (ln 4 -> about 0.47 measured)."""
    data = ShapesDataset(64, size=32, seed=0)
    model = FCN8s(n_class=4, width=1 / 16, rng=0)
    opt = Adam(model.parameters(), lr=1e-3)
    log = tmp_path / "log.csv"
    train(model, opt, BatchStream(data, 2, seed=0), iters=60, log_every=1, log_path=log,
          progress=False)
    losses = [float(r["loss"]) for r in read_log(log)]
    assert len(losses) == 60
    assert losses[0] == pytest.approx(math.log(4), rel=1e-5)   # zero-initialised scores
    assert np.mean(losses[-5:]) < 0.5 * losses[0]


def test_resume_is_exact(tmp_path):
    """3 + 3 iterations with a checkpoint between equal 6 in one run, bit for bit,
    with dropout on, a schedule and Adam's moments."""
    model, opt, sched, batches = tiny_run()
    train(model, opt, batches, iters=6, scheduler=sched, progress=False)
    straight = {k: v.copy() for k, v in model.state_dict().items()}

    model, opt, sched, batches = tiny_run()
    train(model, opt, batches, iters=3, scheduler=sched, checkpoint_dir=tmp_path,
          progress=False)
    model, opt, sched, batches = tiny_run(seed=0)
    result = train(model, opt, batches, iters=6, scheduler=sched,
                   resume=tmp_path / "last.npz", progress=False)
    assert result.iteration == 6
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, straight[name], err_msg=name)


def test_checkpoint_round_trip(tmp_path):
    model, opt, sched, batches = tiny_run()
    train(model, opt, batches, iters=2, scheduler=sched, progress=False)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, 2, scheduler=sched, batches=batches,
                    config={"lr": 1e-3, "arch": "fcn8s"}, best_mean_iou=0.25,
                    metrics={"mean_iou": 0.25})
    with np.load(path, allow_pickle=False) as f:
        names = set(f.files)
        assert int(f["iteration"]) == 2
        assert f["data.rng"].dtype.kind == "U" and f["data.rng"].ndim == 0
    assert {"model.fc6.weight", "optimizer.groups.0.lr", "optimizer.state.0.exp_avg",
            "scheduler.iteration", "data.order", "data.position", "dropout.drop6",
            "config", "meta"} <= names

    fresh, opt2, sched2, _ = tiny_run(seed=1)
    batches2 = BatchStream(batches.dataset, 2, seed=5)         # same data, other shuffle
    info = load_checkpoint(path, fresh, opt2, sched2, batches2)
    assert info.iteration == 2 and info.config == {"lr": 1e-3, "arch": "fcn8s"}
    assert info.best_mean_iou == 0.25 and info.metrics == {"mean_iou": 0.25}
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[name], value, err_msg=name)
    assert opt2.state[0]["step"] == 2
    np.testing.assert_array_equal(opt2.state[0]["exp_avg"], opt.state[0]["exp_avg"])
    assert sched2.iteration == 2 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert batches2.rng.bit_generator.state == batches.rng.bit_generator.state
    assert batches2.position == batches.position
    assert fresh.drop6.rng.bit_generator.state == model.drop6.rng.bit_generator.state
    for (x1, y1), (x2, y2) in zip([next(batches) for _ in range(3)],
                                  [next(batches2) for _ in range(3)]):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_load_checkpoint_errors(tmp_path):
    model, opt, _, _ = tiny_run()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.npz", model, opt)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="junk.npz.*not a readable"):
        load_checkpoint(tmp_path / "junk.npz", model, opt)
    save_checkpoint(tmp_path / "c.npz", model, opt, 0)
    other = FCN8s(n_class=5, width=1 / 32, rng=0)
    with pytest.raises(CheckpointError, match="does not fit.*score_fr"):
        load_checkpoint(tmp_path / "c.npz", other)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # overflow on the way to NaN
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, opt, sched, batches = tiny_run(lr=1e6, iters=50)
    with pytest.raises(TrainingDiverged, match=r"nan.*iterations? .*last\.npz.*left as it was"):
        train(model, opt, batches, iters=50, scheduler=sched, checkpoint_dir=tmp_path,
              checkpoint_every=1, log_every=1, progress=False)
    info = load_checkpoint(tmp_path / "last.npz", *tiny_run()[:3])
    assert info.iteration >= 1
    fresh = tiny_run()[0]
    load_checkpoint(tmp_path / "last.npz", fresh)
    assert all(np.isfinite(v).all() for v in fresh.state_dict().values())
    rows = read_log(tmp_path / "log.csv")
    assert int(rows[-1]["iteration"]) == info.iteration     # nothing logged after it
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_nan_loss_before_any_checkpoint(tmp_path, monkeypatch):
    import minifcn.train_loss as train_module
    real = train_module.softmax_cross_entropy_forward

    def nan_loss(*args, **kwargs):
        loss, cache = real(*args, **kwargs)
        return loss * np.nan, cache

    monkeypatch.setattr(train_module, "softmax_cross_entropy_forward", nan_loss)
    model, opt, sched, batches = tiny_run()
    with pytest.raises(TrainingDiverged, match="between iterations 1 and 3; no checkpoint"):
        train(model, opt, batches, iters=6, log_every=3, checkpoint_dir=tmp_path,
              progress=False)
    assert not (tmp_path / "last.npz").exists()


def test_log_validation_and_checkpoints(tmp_path):
    model, opt, sched, batches = tiny_run(iters=6)
    result = train(model, opt, batches, iters=6, scheduler=sched, val=val_batches(),
                   val_every=3, log_every=2, checkpoint_dir=tmp_path, progress=False)
    rows = read_log(tmp_path / "log.csv")
    assert [int(r["iteration"]) for r in rows] == [2, 3, 4, 6]
    assert list(rows[0]) == ["iteration", "loss", "lr", "pixel_accuracy", "mean_accuracy",
                             "mean_iou", "frequency_weighted_iou"]
    assert rows[0]["mean_iou"] == "" and rows[1]["mean_iou"] != ""
    assert float(rows[0]["lr"]) == pytest.approx(1e-3 * (1 - 1 / 6) ** 0.9)   # step 2's lr
    ious = [float(r["mean_iou"]) for r in rows if r["mean_iou"]]
    assert result.best_mean_iou == max(ious)
    assert float(rows[-1]["loss"]) == pytest.approx(result.loss)
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "last.npz", "log.csv"]   # no temps
    best = load_checkpoint(tmp_path / "best.npz", tiny_run()[0])
    assert best.best_mean_iou == max(ious)
    assert best.iteration == [3, 6][ious.index(max(ious))]
    assert load_checkpoint(tmp_path / "last.npz", tiny_run()[0]).iteration == 6
    # the metrics stored equal a fresh evaluation of the best model
    fresh = tiny_run()[0]
    load_checkpoint(tmp_path / "last.npz", fresh)
    assert evaluate(fresh, val_batches(), 4).mean_iou == pytest.approx(ious[-1])
    assert model.training                                  # evaluation restored the mode


def test_resume_appends_to_the_log(tmp_path):
    model, opt, sched, batches = tiny_run()
    train(model, opt, batches, iters=3, scheduler=sched, log_every=1, checkpoint_dir=tmp_path,
          progress=False)
    model, opt, sched, batches = tiny_run()
    train(model, opt, batches, iters=6, scheduler=sched, log_every=1, checkpoint_dir=tmp_path,
          resume=tmp_path / "last.npz", progress=False)
    assert [int(r["iteration"]) for r in read_log(tmp_path / "log.csv")] == [1, 2, 3, 4, 5, 6]


def test_progress_bar_goes_to_stderr_only(tmp_path, capsys):
    model, _, _, batches = tiny_run()
    train(model, SGD(model.parameters(), lr=1e-3), batches, iters=2, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "2/2" in err
    train(model, SGD(model.parameters(), lr=1e-3), batches, iters=4, progress=False,
          resume=None)
    assert capsys.readouterr() == ("", "")


def test_batch_stream():
    data = ShapesDataset(5, size=16, seed=0)
    stream = BatchStream(data, 2, seed=3)
    seen = [next(stream) for _ in range(4)]          # 2 batches per epoch, last item dropped
    assert seen[0][0].shape == (2, 3, 16, 16) and seen[0][1].dtype == np.int64
    again = BatchStream(data, 2, seed=3)
    for (x1, y1), (x2, y2) in zip(seen, [next(again) for _ in range(4)]):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    with pytest.raises(ValueError, match="batch_size must be at most the data set's size"):
        BatchStream(data, 6)
    with pytest.raises(ValueError, match="batch_size"):
        BatchStream(data, 0)


def test_class_weight_reaches_the_loss():
    """train_step's class_weight is the loss's weight: the step's loss equals the weighted
    cross-entropy of the same scores, and differs from the unweighted one."""
    from minifcn.ops import softmax_cross_entropy_forward
    from minifcn.train import train_step

    rng = np.random.default_rng(0)
    model = FCN8s(n_class=4, width=1 / 32, dropout=0.0, rng=0)
    opt = SGD(model.parameters(), lr=0.0)                     # the weights stay put
    model.score_fr.bias.data[...] = [2.0, -1.0, 0.0, 1.0]     # scores that differ by class
    x = rng.standard_normal((2, 3, 24, 24)).astype(np.float32)
    t = rng.integers(0, 4, (2, 24, 24))
    w = np.array([0.2, 1.0, 3.0, 0.5], np.float32)
    scores = model(x)
    weighted = float(train_step(model, opt, x, t, class_weight=w))
    assert weighted == pytest.approx(float(softmax_cross_entropy_forward(scores, t, w)[0]),
                                     rel=1e-6)
    assert weighted != pytest.approx(float(train_step(model, opt, x, t)), rel=1e-3)


@pytest.mark.parametrize("weight", [[1.0, 2.0], [1, 1, 1, float("nan")], [1, -1, 1, 1]],
                         ids=["too-few", "nan", "negative"])
def test_bad_class_weight_is_refused_by_name(weight):
    model, opt, _, batches = tiny_run()
    with pytest.raises(ValueError, match="class_weight must be 4 finite non-negative"):
        train(model, opt, batches, iters=1, progress=False, class_weight=weight)
