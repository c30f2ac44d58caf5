"""A writer killed with SIGKILL in the middle of a checkpoint write loses nothing: the previous
checkpoint still loads, verifies and resumes, and the next write removes the dead writer's
temporary file (but never the temporary of a writer still alive)."""
import math
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from minifcn.atomic import atomic_open, atomic_write, remove_stale_temporaries
from minifcn.data import ShapesDataset
from minifcn.io import read_archive
from minifcn.lr_schedule import LRScheduler
from minifcn.models import FCN8s
from minifcn.optim import Adam
from minifcn.train import BatchStream, load_checkpoint, train

posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL") or os.name != "posix",
                                reason="SIGKILL and flock are POSIX")

TINY_RUN = """
from minifcn.data import ShapesDataset
from minifcn.lr_schedule import LRScheduler
from minifcn.models import FCN8s
from minifcn.optim import Adam
from minifcn.train import BatchStream, load_checkpoint, save_checkpoint

model = FCN8s(n_class=4, width=1 / 32, dropout=0.5, rng=1)
opt = Adam(model.parameters(), lr=1e-3)
sched = LRScheduler(opt, "poly", max_iter=6)
batches = BatchStream(ShapesDataset(8, size=24, seed=0), 2, seed=1)
"""

# Rewrites the checkpoint it was given, unchanged, again and again; in the third rewrite it
# stops after 20 members, says so through the file PAUSED, and waits to be killed.
PAUSED_WRITER = TINY_RUN + """
import sys, time
import numpy as np

path, paused = sys.argv[1:]
saved = load_checkpoint(path, model, opt, sched, batches)
real_write_array, writes, members = np.lib.format.write_array, 0, 0

def write_array(f, array, **options):
    global members
    members += 1
    if writes == 2 and members == 20:
        open(paused, "w").close()
        time.sleep(120)
    real_write_array(f, array, **options)

np.lib.format.write_array = write_array
while True:
    members = 0
    save_checkpoint(path, model, opt, 2, scheduler=sched, batches=batches, loss=saved.loss,
                    window=saved.window, loss_sum=saved.loss_sum)
    writes += 1
"""

# Writes the ~100 MB checkpoint of an FCN-8s at width 1/4 with Adam's moments, iteration
# 1, 2, 3, ... to the same path, as fast as it can.
LARGE_WRITER = """
import sys
from minifcn.train import save_checkpoint
sys.path.insert(0, sys.argv[2])
from test_kill_during_write import large_model

model, opt = large_model()
iteration = 0
while True:
    iteration += 1
    save_checkpoint(sys.argv[1], model, opt, iteration)
"""


def large_model():
    """FCN-8s, width 1/4 (8.4 M parameters), after one Adam step: the same in any process."""
    model = FCN8s(n_class=21, width=1 / 4, rng=0)
    opt = Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = np.full_like(p.data, 1e-3)
    opt.step()
    return model, opt


def _tiny_run(seed=0):
    model = FCN8s(n_class=4, width=1 / 32, dropout=0.5, rng=seed)
    opt = Adam(model.parameters(), lr=1e-3)
    return (model, opt, LRScheduler(opt, "poly", max_iter=6),
            BatchStream(ShapesDataset(8, size=24, seed=0), 2, seed=seed))


def _temporaries(folder, name):
    """Temporary files of the target ``name``: ``.NAME.<12 hex digits>.tmp``."""
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp")
    return sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name))


def _start(script, *args):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_until(condition, child, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if child.poll() is not None:
            pytest.fail(f"the writer exited ({child.returncode}): "
                        f"{child.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the writer never reached the point to kill it at")
        time.sleep(0.005)


def _kill(child):
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def _assert_same_arrays(got, want):
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@posix_only
def test_sigkill_mid_write_keeps_the_checkpoint_and_resuming_from_it_works(tmp_path):
    run = tmp_path / "run"
    model, opt, sched, batches = _tiny_run()
    train(model, opt, batches, iters=2, scheduler=sched, checkpoint_dir=run, progress=False)
    path, paused = run / "last.npz", tmp_path / "paused"
    before = read_archive(path).arrays
    child = _start(PAUSED_WRITER, path, paused)
    try:
        _wait_until(paused.exists, child)
    finally:
        _kill(child)

    _assert_same_arrays(read_archive(path).arrays, before)     # verified against its table
    [in_progress] = _temporaries(run, "last.npz")              # the dead writer's, cut short
    assert in_progress.stat().st_size > 0
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(in_progress)

    model, opt, sched, batches = _tiny_run(seed=1)
    result = train(model, opt, batches, iters=3, scheduler=sched, checkpoint_dir=run,
                   resume=path, progress=False)
    assert result.iteration == 3 and math.isfinite(result.loss)
    assert load_checkpoint(path, _tiny_run(seed=2)[0]).iteration == 3
    assert _temporaries(run, "last.npz") == []       # removed by the successful write


@posix_only
def test_sigkill_halfway_through_a_large_checkpoint_write(tmp_path):
    path = tmp_path / "last.npz"
    child = _start(LARGE_WRITER, path, os.path.dirname(__file__))

    sizes = set()

    def halfway_through_a_rewrite():
        if not path.exists():
            return False
        sizes.add(path.stat().st_size)
        assert len(sizes) == 1, f"the checkpoint was seen at sizes {sorted(sizes)}"
        temporaries = _temporaries(tmp_path, "last.npz")
        return bool(temporaries) and temporaries[0].stat().st_size > path.stat().st_size / 2

    try:
        _wait_until(halfway_through_a_rewrite, child)
    finally:
        _kill(child)
    model, opt = large_model()
    fresh = FCN8s(n_class=21, width=1 / 4, rng=1)
    fresh_opt = Adam(fresh.parameters(), lr=1e-3)
    assert load_checkpoint(path, fresh, fresh_opt).iteration >= 1
    for (name, p), q in zip(fresh.named_parameters(), model.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    np.testing.assert_array_equal(fresh_opt.state[5]["exp_avg_sq"], opt.state[5]["exp_avg_sq"])
    assert path.stat().st_size > 100e6
    [cut_short] = _temporaries(tmp_path, "last.npz")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(cut_short)


# --- stale temporaries --------------------------------------------------------------------

@posix_only
def test_a_write_removes_only_the_abandoned_temporaries_of_its_own_target(tmp_path):
    target = tmp_path / "w.npz"
    stale = tmp_path / ".w.npz.0123456789ab.tmp"          # as a killed writer leaves it
    kept = [tmp_path / ".w.npz.notes.tmp", tmp_path / ".v.npz.0123456789ab.tmp",
            tmp_path / "w.npz.0123456789ab.tmp"]
    for p in [stale, *kept]:
        p.write_bytes(b"partial")
    with atomic_open(target) as live:                 # a writer still at work holds its lock
        live.write(b"first")
        [live_temporary] = set(_temporaries(tmp_path, "w.npz")) - {stale}
        atomic_write(target, lambda f: f.write(b"second"))
        assert not stale.exists() and live_temporary.exists()
        assert all(p.exists() for p in kept)
    assert target.read_bytes() == b"first"            # the live writer finished normally
    assert _temporaries(tmp_path, "w.npz") == []
    assert remove_stale_temporaries(target) == []


@posix_only
def test_reading_leaves_temporaries_alone(tmp_path):
    path = tmp_path / "w.npz"
    atomic_write(path, lambda f: np.savez(f, a=np.zeros(2)))
    stale = tmp_path / ".w.npz.0123456789ab.tmp"
    stale.write_bytes(b"partial")
    read_archive(path)
    assert stale.exists()
    assert remove_stale_temporaries(path) == [str(stale)]
