"""What a run must never do to what a user has: overwrite a run by accident, write a
checkpoint holding inf, resume another run's checkpoint, take a checkpoint's word for what
its members are, or append to a file a link points at."""
import json
import math
import os
import warnings

import numpy as np
import pytest

import minifcn.train
import minifcn.train_loss
from minifcn.checkpoint import (CheckpointError, ResumeMismatch, checkpoint_config,
                                load_checkpoint, save_checkpoint)
from minifcn.data import ShapesDataset
from minifcn.io import read_archive, write_archive
from minifcn.models import FCN8s
from minifcn.optim import SGD
from minifcn.run_log import RunExistsError
from minifcn.train import BatchStream, TrainingDiverged, train
from minifcn.training_setup import TrainingSetup


def tiny(n=8, **options):
    model = FCN8s(n_class=4, width=1 / 32, dropout=0.0, rng=0)
    opt = SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batches = BatchStream(ShapesDataset(n, size=24, seed=0), 2, seed=0)
    return dict(model=model, optimizer=opt, batches=batches, progress=False, **options)


def rows(path):
    return [line.split(",")[0] for line in path.read_text().splitlines()[1:]]


# --- a folder holding a run ---------------------------------------------------------------

def test_a_second_run_into_a_folder_holding_one_is_refused_and_changes_nothing(tmp_path):
    train(**tiny(), iters=2, log_every=1, checkpoint_dir=tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("log.csv", "last.npz")}
    with pytest.raises(RunExistsError, match=r"already holds a run \(log.csv, last.npz\): "
                                             r"continue it with resume \(--resume .*last.npz"
                                             r"\), replace it with overwrite=True"):
        train(**tiny(), iters=3, checkpoint_dir=tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    train(**tiny(), iters=3, log_every=3, checkpoint_dir=tmp_path, overwrite=True)
    assert rows(tmp_path / "log.csv") == ["3"]                 # the old rows are gone
    assert checkpoint_config(tmp_path / "last.npz")[0] == 3


def test_resuming_from_another_folder_into_one_holding_a_run_is_refused(tmp_path):
    for name in ("a", "b"):
        train(**tiny(), iters=2, checkpoint_dir=tmp_path / name)
    with pytest.raises(RunExistsError, match="b already holds a run"):
        train(**tiny(), iters=3, checkpoint_dir=tmp_path / "b",
              resume=tmp_path / "a" / "last.npz")


def test_a_log_behind_a_link_is_replaced_by_a_file_not_written_through(tmp_path):
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("kept\n")
    run = tmp_path / "run"
    run.mkdir()
    train(**tiny(), iters=2, log_every=1, checkpoint_dir=run)
    (run / "log.csv").unlink()
    (run / "log.csv").symlink_to(outside)
    train(**tiny(), iters=3, log_every=1, checkpoint_dir=run, resume=run / "last.npz")
    assert outside.read_text() == "kept\n"
    assert not (run / "log.csv").is_symlink() and rows(run / "log.csv") == ["3"]


def test_the_setup_refuses_too_and_overwrite_removes_the_old_weights(tmp_path):
    data = ShapesDataset(4, size=(32, 32), seed=0)
    build = dict(width=1 / 32, iters=1, batch_size=2, dropout=0.0)
    TrainingSetup.build(data, **build).run(tmp_path, progress=False)
    with pytest.raises(RunExistsError):
        TrainingSetup.build(data, **build).run(tmp_path, progress=False)
    calls = []
    real = minifcn.train.train_step
    minifcn.train.train_step = lambda *a, **k: calls.append(
        (tmp_path / "model.npz").exists()) or real(*a, **k)
    try:
        TrainingSetup.build(data, **build).run(tmp_path, progress=False, overwrite=True)
    finally:
        minifcn.train.train_step = real
    assert calls == [False]                    # removed before training, written at the end


# --- finite by construction ---------------------------------------------------------------

def test_an_update_to_inf_keeps_the_last_finite_checkpoint_and_says_so(tmp_path, monkeypatch):
    """Iteration 3's update overflows (its loss, computed before it, is finite): no
    checkpoint of 3 is written, the message names last.npz and its iteration 2, and NumPy's
    overflow warnings stay quiet."""
    real, calls = minifcn.train.train_step, []

    def huge_rate_at_3(model, optimizer, *args):
        calls.append(1)
        if len(calls) == 3:
            for group in optimizer.param_groups:
                group["lr"] = 1e300
        return real(model, optimizer, *args)

    monkeypatch.setattr(minifcn.train, "train_step", huge_rate_at_3)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDiverged, match=r"became NaN or inf by iteration 3; the "
                                                   r"last good checkpoint is .*last.npz' "
                                                   r"\(iteration 2\), left as it was"):
            train(**tiny(), iters=6, log_every=1, checkpoint_every=1, checkpoint_dir=tmp_path)
    assert [w for w in shown if issubclass(w.category, RuntimeWarning)] == []
    arrays = read_archive(tmp_path / "last.npz").arrays
    assert int(arrays["iteration"]) == 2
    assert all(np.isfinite(a).all() for k, a in arrays.items() if a.dtype.kind == "f")
    assert rows(tmp_path / "log.csv") == ["1", "2"]


def test_a_run_that_diverged_before_logging_leaves_no_run_behind(tmp_path, monkeypatch):
    """A loss that is NaN from iteration 1 leaves only log.csv's header: a retry into the
    same folder (say with a lower rate) is a new run, not one to resume or overwrite."""
    real = minifcn.train_loss.softmax_cross_entropy_forward

    def nan_loss(*args, **kwargs):
        loss, cache = real(*args, **kwargs)
        return loss * np.nan, cache

    monkeypatch.setattr(minifcn.train_loss, "softmax_cross_entropy_forward", nan_loss)
    with pytest.raises(TrainingDiverged, match="the loss became nan at iteration 1; no "
                                               "checkpoint was written"):
        train(**tiny(), iters=3, log_every=1, checkpoint_dir=tmp_path)
    assert rows(tmp_path / "log.csv") == [] and sorted(os.listdir(tmp_path)) == ["log.csv"]
    monkeypatch.setattr(minifcn.train_loss, "softmax_cross_entropy_forward", real)
    train(**tiny(), iters=2, log_every=1, checkpoint_dir=tmp_path)
    assert rows(tmp_path / "log.csv") == ["1", "2"]


def test_save_checkpoint_refuses_non_finite_state(tmp_path):
    setup = tiny()
    setup["model"].fc6.weight.data[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="refusing to write checkpoint .*fc6.weight hold NaN"):
        save_checkpoint(tmp_path / "c.npz", setup["model"], setup["optimizer"], 1)
    assert not (tmp_path / "c.npz").exists()


# --- resuming the same run ----------------------------------------------------------------

def _setup(data, **changes):
    options = {**dict(width=1 / 32, iters=4, batch_size=2, dropout=0.0), **changes}
    return TrainingSetup.build(data, **options)


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=4), "batch_size: 2 in the checkpoint, 4 now"),
    (dict(data=8), r'data.train: {"items": 6, .* in the checkpoint, {"items": 8, .* now'),
    (dict(lr=1e-2), "lr: 0.001 in the checkpoint, 0.01 now"),
    (dict(iters=6), "iters: 4 in the checkpoint, 6 now"),
], ids=["batch-size", "data", "lr", "iters"])
def test_a_resume_with_other_settings_names_them_and_force_resumes(tmp_path, change, message):
    change = dict(change)
    data = ShapesDataset(change.pop("data", 6), size=(32, 32), seed=0)
    _setup(ShapesDataset(6, size=(32, 32), seed=0)).run(tmp_path, progress=False,
                                                        stop_after=2)
    with pytest.raises(ResumeMismatch, match=r"last.npz' is a checkpoint of another run: "
                                             + message):
        _setup(data, **change).run(tmp_path, resume=tmp_path / "last.npz", progress=False)
    result = _setup(data, **change).run(tmp_path, resume=tmp_path / "last.npz",
                                        progress=False, force=True)
    assert result.iteration == change.get("iters", 4)


def test_the_same_settings_resume_and_iters_below_the_checkpoint_are_refused(tmp_path):
    data = ShapesDataset(6, size=(32, 32), seed=0)
    _setup(data, schedule="constant").run(tmp_path, progress=False, stop_after=3)
    with pytest.raises(ValueError, match=r"iters \(2\) is below the iteration of the "
                                         r"checkpoint resumed \(3\)"):
        _setup(data, schedule="constant", iters=2).run(
            tmp_path, resume=tmp_path / "last.npz", progress=False)
    result = _setup(data, schedule="constant", iters=3).run(
        tmp_path, resume=tmp_path / "last.npz", progress=False)
    assert result.iteration == 3 and math.isfinite(result.loss)   # nothing to do, loss kept


# --- what a checkpoint holds --------------------------------------------------------------

def _edited(path, out, **members):
    arrays = read_archive(path).arrays
    arrays.update(members)
    write_archive(out, arrays, {"kind": "checkpoint"})
    return out


@pytest.mark.parametrize("member, value, message", [
    ("model.fc6.bias", "int", r"model parameters must be float arrays, but fc6.bias \(int64"),
    ("model.fc6.bias", "bool", r"fc6.bias \(bool\)"),
    ("model.fc6.bias", "complex", r"fc6.bias \(complex128\)"),
    ("meta", np.array(json.dumps([1, 2])), "its 'meta' entry must be a 0-d string holding a "
                                           "JSON object"),
    ("iteration", np.array([1, 2]), r"its 'iteration' entry must be a 0-d integer of at "
                                    r"least 0, but is <i8 \(2,\)"),
    ("config", np.array(3), "its 'config' entry must be a 0-d string"),
    ("log.window", np.int64(2), "'log.loss_sum' entry must be a 0-d float"),
], ids=["int", "bool", "complex", "meta-list", "iteration-vector", "config-number",
        "window-without-sum"])
def test_a_checkpoint_member_of_the_wrong_kind_is_refused(tmp_path, member, value, message):
    setup = tiny()
    train(**setup, iters=1, checkpoint_dir=tmp_path / "run")
    if isinstance(value, str):
        bias = read_archive(tmp_path / "run" / "last.npz").arrays[member]
        value = bias.astype({"int": np.int64, "bool": bool, "complex": np.complex128}[value])
    path = _edited(tmp_path / "run" / "last.npz", tmp_path / "edited.npz", **{member: value})
    before = setup["model"].fc6.bias.data.copy()
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, setup["model"], setup["optimizer"])
    np.testing.assert_array_equal(setup["model"].fc6.bias.data, before)
    os.remove(path)
