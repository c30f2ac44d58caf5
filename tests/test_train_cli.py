"""``minifcn train`` and ``minifcn demo`` end to end, at tiny sizes, as a user runs them."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from minifcn import cli
from minifcn.data.shapes import write_voc
from minifcn.io import read_weights
from minifcn.inference import model_from_weights

TINY = ["--width", "0.0625", "--batch-size", "2", "--no-progress"]
SHAPES = ["--classes", "background,disc,rectangle,triangle"]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_voc(root, {"train": 8, "val": 4}, size=(48, 48), seed=0)
    return str(root)


def interrupt_after_rows(command, log, rows):
    """Start ``command``, send it SIGINT once ``log`` holds ``rows`` rows below its header
    (or after 120 s), and return its exit status and stderr."""
    import signal
    import time

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while (not log.exists() or log.read_text().count("\n") < rows + 1) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def run_cli(*args, cwd=None):
    done = subprocess.run([sys.executable, "-m", "minifcn", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def test_train_writes_log_checkpoints_and_weights_with_metadata(shapes_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--data-dir", shapes_dir, *SHAPES, *TINY, "--iters", "4",
                     "--val-every", "2", "--log-every", "1", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "trained fcn8s for 4 iterations" in printed and "mean IoU" in printed
    assert sorted(os.listdir(out)) == ["best.npz", "last.npz", "log.csv", "model.npz"]
    with open(os.path.join(out, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert rows[1]["mean_iou"] and not rows[0]["mean_iou"]       # validated at 2 and 4
    metadata = read_weights(os.path.join(out, "model.npz")).metadata
    assert metadata["arch"] == "fcn8s" and metadata["n_class"] == 4
    assert metadata["classes"] == ["background", "disc", "rectangle", "triangle"]
    assert metadata["preprocess"] == "reference"


def test_train_resumed_equals_one_run_bit_for_bit(shapes_dir, tmp_path):
    common = ["train", "--data-dir", shapes_dir, *SHAPES, *TINY, "--val-split", "none",
              "--scale", "0.8", "1.2", "--crop", "40x40"]
    assert cli.main([*common, "--iters", "5", "--out", str(tmp_path / "once")]) == 0
    assert cli.main([*common, "--iters", "5", "--stop-after", "2",
                     "--out", str(tmp_path / "twice")]) == 0
    assert cli.main([*common, "--iters", "5", "--out", str(tmp_path / "twice"),
                     "--resume", str(tmp_path / "twice" / "last.npz")]) == 0
    once = read_weights(tmp_path / "once" / "model.npz").arrays
    twice = read_weights(tmp_path / "twice" / "model.npz").arrays
    assert once.keys() == twice.keys()
    for name in once:
        np.testing.assert_array_equal(once[name], twice[name], err_msg=name)


def test_trained_weights_feed_predict_and_evaluate(shapes_dir, tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", "--data-dir", shapes_dir, *SHAPES, *TINY, "--iters", "2",
                     "--preprocess", "imagenet", "--out", str(out)]) == 0
    model, metadata = model_from_weights(out / "model.npz", with_metadata=True)
    assert metadata["preprocess"] == "imagenet" and model.n_class == 4
    image = os.path.join(shapes_dir, "JPEGImages", "shapes_000000.jpg")
    status, printed, err = run_cli("predict", image, "--weights", str(out / "model.npz"),
                                   "--out", str(tmp_path / "pred"))
    assert status == 0, err
    assert "%" in printed and (tmp_path / "pred" / "shapes_000000_labels.png").exists()
    status, printed, err = run_cli("evaluate", "--weights", str(out / "model.npz"),
                                   "--data-dir", shapes_dir, "--split", "val")
    assert status == 0, err
    assert "triangle" in printed and "mean IoU" in printed


@pytest.mark.parametrize("extra, message", [
    (["--iters", "0"], "--iters must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--stop-after", "0"], "--stop-after must be at least 1, got 0"),
    (["--n-class", "3"], "--n-class 3 does not match the 4 names given by --classes"),
    (["--init", "no_such.npz"], "--init file not found: no_such.npz"),
    (["--resume", "no_such.npz"], "--resume file not found: no_such.npz"),
    (["--device", "tpu"], "device must be 'cpu', 'cuda' or 'cuda:N'"),
    (["--split", "nope"], "nope.txt"),
    (["--crop", "40x"], "expected HxW such as 500x300, or N for NxN, got '40x'"),
    (["--width", "2"], "width"),
    (["--batch-size", "64"], "batch_size must be at most the data set's size (8)"),
])
def test_train_user_errors_exit_2_with_one_line(shapes_dir, tmp_path, capsys, extra, message):
    status = cli.main(["train", "--data-dir", shapes_dir, *SHAPES, *TINY, "--iters", "2",
                       "--out", str(tmp_path / "run"), *extra])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and err.count("\n") == 1, err


def test_train_labels_outside_the_classes_name_the_file(shapes_dir, tmp_path, capsys):
    status = cli.main(["train", "--data-dir", shapes_dir, "--n-class", "2", *TINY,
                       "--iters", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and "SegmentationClass" in err and "outside 0..1" in err, err


def test_train_resume_from_another_architecture_is_a_user_error(shapes_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--data-dir", shapes_dir, *SHAPES, *TINY, "--iters", "1",
                     "--val-split", "none", "--out", out]) == 0
    again = ["train", "--data-dir", shapes_dir, *SHAPES, *TINY, "--iters", "1",
             "--val-split", "none", "--arch", "fcn32s", "--out", out, "--resume",
             f"{out}/last.npz"]
    status = cli.main(again)
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert ('is a checkpoint of another run: model: "fcn8s" in the checkpoint, "fcn32s" '
            'now. Resume with the settings it was written with, or force it (--force)') in err
    assert cli.main([*again, "--force"]) == 2                  # forced, the shapes still differ
    err = capsys.readouterr().err
    assert "does not fit" in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_demo_writes_what_it_promises(tmp_path):
    status, printed, err = run_cli("demo", "--iters", "2", "--test-images", "3",
                                   "--no-progress", "--out", "demo", cwd=tmp_path)
    assert status == 0, err
    out = tmp_path / "demo"
    for name in ("metrics.txt", "curves.png", "model.npz", "log.csv", "best.npz", "last.npz"):
        assert (out / name).exists(), name
        assert f"demo/{name}" in printed, f"{name} is written but not listed"
    examples = sorted(os.listdir(out / "examples"))
    assert examples == ["test_000.png", "test_001.png", "test_002.png"]
    assert sorted(os.listdir(out / "samples")) == examples
    assert "demo/examples/" in printed and "demo/samples/" in printed
    with Image.open(out / "examples" / examples[0]) as panel:
        assert panel.width > 3 * panel.height             # panels side by side
    with Image.open(out / "curves.png") as curves:
        assert curves.mode == "RGB" and min(curves.size) > 200
    metrics = (out / "metrics.txt").read_text()
    assert "held-out test set of 3 images" in metrics and "mean IoU" in metrics
    assert "mean IoU" in printed and "try: minifcn predict" in printed
    sample = next(line for line in printed.splitlines() if line.startswith("try: "))
    status, predicted, err = run_cli(*sample.split()[2:], cwd=tmp_path)
    assert status == 0, err                               # the printed command works
    assert "background" in predicted


@pytest.mark.slow
def test_demo_trains_for_a_time_budget(tmp_path):
    """Without --iters the demo measures its step here and plans the iterations that fit;
    metrics.txt records how many ran (no time is asserted: the machine is shared)."""
    status, printed, err = run_cli("demo", "--seconds", "20", "--test-images", "2",
                                   "--no-progress", "--out", "demo", cwd=tmp_path)
    assert status == 0, err
    planned = next(line for line in printed.splitlines() if "fit in the 20 s budget" in line)
    iters = int(planned.split(": ")[-1].split()[0])
    assert iters >= 1
    metrics = (tmp_path / "demo" / "metrics.txt").read_text()
    ran = int(metrics.split(" iterations")[0].split()[-1])
    assert 1 <= ran <= iters


@pytest.mark.slow
def test_demo_ctrl_c_saves_and_resume_finishes_the_same_run(tmp_path):
    """SIGINT during the demo: exit 130 with the command that resumes; --resume then ends
    with the weights of a run never interrupted."""
    common = [sys.executable, "-m", "minifcn", "demo", "--iters", "60", "--test-images", "2",
              "--no-progress", "--seed", "1"]
    out = tmp_path / "cut"
    status, err = interrupt_after_rows([*common, "--out", str(out)], out / "log.csv", 2)
    assert status == 130, err
    assert f"minifcn demo --out {out} --resume" in err
    assert cli.main(["demo", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert cli.main(["demo", "--iters", "60", "--test-images", "2", "--no-progress", "--seed",
                     "1", "--out", str(tmp_path / "whole")]) == 0
    resumed = read_weights(out / "model.npz").arrays
    whole = read_weights(tmp_path / "whole" / "model.npz").arrays
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)


def test_demo_user_errors(tmp_path, capsys):
    assert cli.main(["demo", "--iters", "0", "--out", str(tmp_path)]) == 2
    assert "--iters and --test-images must be at least 1" in capsys.readouterr().err
    assert cli.main(["demo", "--device", "cuda:x", "--out", str(tmp_path)]) == 2
    assert "device" in capsys.readouterr().err
    assert cli.main(["demo", "--seconds", "0", "--out", str(tmp_path)]) == 2
    assert "--seconds must be a positive number" in capsys.readouterr().err
    assert cli.main(["demo", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "--resume needs" in capsys.readouterr().err


def test_ctrl_c_saves_the_iteration_and_resume_continues_exactly(shapes_dir, tmp_path):
    """SIGINT mid-run: exit 130, last.npz holds the last whole iteration, and resuming
    from it gives the same weights as a run never interrupted."""

    common = ["train", "--data-dir", shapes_dir, *SHAPES, *TINY, "--val-split", "none",
              "--iters", "400", "--log-every", "1"]
    out = tmp_path / "cut"
    status, err = interrupt_after_rows([sys.executable, "-m", "minifcn", *common, "--out",
                                        str(out)], out / "log.csv", 3)
    assert status == 130, err
    assert "interrupted after iteration" in err and "--resume" in err and err.count("\n") == 1
    from minifcn.train import load_checkpoint
    from minifcn.models import FCN8s
    stopped = load_checkpoint(out / "last.npz", FCN8s(n_class=4, width=0.0625)).iteration
    assert 3 <= stopped < 400
    assert cli.main([*common, "--stop-after", "3", "--out", str(out),
                     "--resume", str(out / "last.npz")]) == 0
    assert cli.main([*common, "--stop-after", str(stopped + 3),
                     "--out", str(tmp_path / "whole")]) == 0
    resumed = read_weights(out / "model.npz").arrays
    whole = read_weights(tmp_path / "whole" / "model.npz").arrays
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)
