"""SIGKILL at chosen and at random points of a run, resume, again and again: the log and the
weights equal those of a run never interrupted; so do a Ctrl-C and a stop_after midway.

A killed run is a forked child of this process (no interpreter to start), training a tiny
FCN-8s: 12 iterations, a row every 2, a checkpoint every 3, validation every 6. The chosen
points are the seams: right after a row that a checkpoint follows, right after a
checkpoint (before the next row), right after best.npz (before last.npz).
"""
import os
import signal
import time
import traceback

import numpy as np
import pytest

import minifcn.checkpoint
import minifcn.train
from minifcn.data import ShapesDataset
from minifcn.io import read_archive
from minifcn.lr_schedule import LRScheduler
from minifcn.models import FCN8s
from minifcn.optim import Adam
from minifcn.train import BatchStream, train

ITERS = 12
posix_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks and SIGKILLs")


def run(folder, resume=None, **options):
    model = FCN8s(n_class=4, width=1 / 32, dropout=0.5, rng=0)
    opt = Adam(model.parameters(), lr=1e-3)
    sched = LRScheduler(opt, "poly", max_iter=ITERS)
    batches = BatchStream(ShapesDataset(8, size=24, seed=0), 2, seed=0)
    val = [next(BatchStream(ShapesDataset(2, size=24, seed=9), 2, seed=0))]
    return train(model, opt, batches, iters=ITERS, scheduler=sched, val=val, val_every=6,
                 log_every=2, checkpoint_every=3, checkpoint_dir=folder, progress=False,
                 resume=resume, **options)


def outcome(folder):
    """The log's text and the arrays of both checkpoints."""
    return ((folder / "log.csv").read_text(), read_archive(folder / "last.npz").arrays,
            read_archive(folder / "best.npz").arrays)


def assert_same(got, want):
    assert got[0] == want[0]                               # the log, byte for byte
    for got_arrays, want_arrays in zip(got[1:], want[1:]):
        assert got_arrays.keys() == want_arrays.keys()
        for name in want_arrays:
            np.testing.assert_array_equal(got_arrays[name], want_arrays[name], err_msg=name)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight")
    run(folder)
    return outcome(folder)


def _die_after(event):
    """SIGKILL this process right after the write ``event`` names: ``("row", N)``, the row
    of iteration N appended to the log, or ``("last.npz", N)`` / ``("best.npz", N)``, that
    checkpoint of iteration N renamed into place."""
    kind, iteration = event
    real_row, real_archive = minifcn.train.append_row, minifcn.checkpoint.write_archive

    def row(path, values, **options):
        real_row(path, values, **options)
        if kind == "row" and values["iteration"] == iteration:
            os.kill(os.getpid(), signal.SIGKILL)

    def archive(path, arrays, metadata=None):
        real_archive(path, arrays, metadata)
        if os.path.basename(path) == kind and int(arrays["iteration"]) == iteration:
            os.kill(os.getpid(), signal.SIGKILL)

    minifcn.train.append_row, minifcn.checkpoint.write_archive = row, archive


def _child(folder, kill):
    """Fork a child that resumes (or starts) the run and dies as ``kill`` says."""
    pid = os.fork()
    if pid == 0:                                           # the child: never returns
        status = 1
        try:
            if kill is not None:
                _die_after(kill)
            last = folder / "last.npz"               # none: killed before the first one
            run(folder, resume=last if last.exists() else None, overwrite=not last.exists())
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    return pid


def _wait(pid, after=None):
    """The child's fate: 'done', or 'killed' (by itself, or by us ``after`` seconds)."""
    if after is not None:
        time.sleep(after)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        assert os.WEXITSTATUS(status) == 0, "the child failed"
        return "done"
    assert os.WTERMSIG(status) == signal.SIGKILL
    return "killed"


SEAMS = [("last.npz", 3),     # anew: row 3 and checkpoint 3 written, row 4 not
         ("row", 4),           # from 3: a row that no checkpoint follows
         ("best.npz", 6),      # from 3: row 6 and best.npz written, last.npz not
         ("row", 6),           # from 3: row 6 written, neither checkpoint
         ("last.npz", 9)]      # from 3: through 6, then row 9 and checkpoint 9, not row 10


@posix_only
@pytest.mark.slow
def test_sigkill_at_the_seams_and_at_random_then_resume_equals_one_run(tmp_path, straight):
    folder, fates = tmp_path / "killed", []
    for kill in SEAMS:
        fates.append(_wait(_child(folder, kill)))
    rng = np.random.default_rng(0)
    for _ in range(6):
        fates.append(_wait(_child(folder, None), after=float(rng.uniform(0.0, 0.6))))
    while fates[-1] != "done":
        fates.append(_wait(_child(folder, None)))
    assert fates[:len(SEAMS)] == ["killed"] * len(SEAMS)
    assert_same(outcome(folder), straight)


def test_ctrl_c_midway_then_resume_equals_one_run(tmp_path, straight, monkeypatch):
    """SIGINT during iteration 5 (a logging window of 5 and 6 open): the resumed run logs
    row 6 as the mean of both, as an uninterrupted run does."""
    real, calls = minifcn.train.train_step, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(minifcn.train, "train_step", interrupted)
    with pytest.raises(minifcn.train.TrainingInterrupted) as stopped:
        run(tmp_path)
    assert stopped.value.iteration == 5
    monkeypatch.setattr(minifcn.train, "train_step", real)
    run(tmp_path, resume=tmp_path / "last.npz")
    assert_same(outcome(tmp_path), straight)


def test_stop_after_midway_then_resume_equals_one_run(tmp_path, straight):
    """A call that stops at iteration 5 logs a provisional row there; the resume replaces
    it, and the window it left open closes at 6 as in one run."""
    result = run(tmp_path, stop_after=5)
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert result.iteration == 5 and rows[-1].startswith("5,")
    run(tmp_path, resume=tmp_path / "last.npz")
    assert_same(outcome(tmp_path), straight)
