"""Bad input to every subcommand, run as a user runs it (``python -m minifcn``): a user error
is one line on stderr, ``minifcn: error: ...``, exit status 2, never a traceback; a bug is a
traceback and exit status 1.

The files the commands are fed are made once per module, tiny: weights of an FCN-8s of width
1/16, a four-class VOC-layout folder of one 16x16 image per split, and broken variants of
each. A row's argv names them as ``{name}``."""
import concurrent.futures
import contextlib
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from minifcn.backend import cupy_available
from minifcn.io import save_weights
from minifcn.models import FCN8s

# Options that keep a command short should its check ever be lost (the last of a repeated
# option wins, so a row adds the bad one after these).
TRAIN = ("train --data-dir {voc} --n-class 4 --out {out} --width 0.0625 --batch-size 1 "
         "--iters 2 --no-progress --val-split none")
DEMO = "demo --iters 1 --test-images 1 --no-progress --out {out}"
BENCH = ("bench --size 16x16 --width 0.0625 --layers pool1 --repeat 1 --warmup 0 --min-time 0 "
         "--no-progress --no-torch")
NO_GPU = pytest.mark.skipif(cupy_available(), reason="a GPU is usable here")


def _voc(root, splits=("train", "val"), label_size=(16, 16)):
    """A VOC-layout folder with one 16x16 image 'a' (classes 0 and 3) listed in ``splits``."""
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(root, folder))
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(f"{root}/JPEGImages/a.jpg")
    label = np.zeros(label_size[::-1], np.uint8)
    label[:, : label_size[0] // 2] = 3
    Image.fromarray(label, "L").save(f"{root}/SegmentationClass/a.png")
    for split in splits:
        with open(f"{root}/ImageSets/Segmentation/{split}.txt", "w") as f:
            f.write("a\n")
    return root


def _bomb(weights, path):
    """``weights`` plus a member its table does not list: 80 MiB of zeros deflated."""
    shutil.copy(weights, path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("bomb.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (20 << 20,)})
            for _ in range(20):
                f.write(bytes(4 << 20))


def _torch_like(path):
    """A file laid out as torch.save writes one: a zip with ``<name>/data.pkl``."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps({"conv1_1.weight": None}, protocol=2))
        archive.writestr("model/version", "3\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> path of every file and folder the rows use."""
    root = tmp_path_factory.mktemp("bad_input")
    paths = {name: str(root / name) for name in (
        "weights.npz", "weights_3class.npz", "empty.npz", "text.npz", "model.pth", "image.png",
        "text.png", "truncated.png", "locked.png", "a_file", "folder", "missing")}
    save_weights(paths["weights.npz"], FCN8s(n_class=4, width=0.0625))
    save_weights(paths["weights_3class.npz"], FCN8s(n_class=3, width=0.0625))
    open(paths["empty.npz"], "wb").close()
    for name in ("text.npz", "text.png", "a_file"):
        with open(paths[name], "w") as f:
            f.write("these bytes are text\n")
    _torch_like(paths["model.pth"])
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(paths["image.png"])
    with open(paths["image.png"], "rb") as f:
        png = f.read()
    with open(paths["truncated.png"], "wb") as f:
        f.write(png[: len(png) // 2])
    with open(paths["locked.png"], "wb") as f:
        f.write(png)
    os.chmod(paths["locked.png"], 0)
    os.makedirs(paths["folder"])
    paths["voc"] = _voc(str(root / "voc"))
    paths["voc_no_val"] = _voc(str(root / "voc_no_val"), splits=("train",))
    paths["voc_bad_label"] = _voc(str(root / "voc_bad_label"), label_size=(12, 10))
    paths["voc_two"] = _voc(str(root / "voc_two"))            # 'a' twice in train.txt
    with open(f"{root}/voc_two/ImageSets/Segmentation/train.txt", "w") as f:
        f.write("a\na\n")
    paths["voc_latin1"] = _voc(str(root / "voc_latin1"))
    with open(f"{root}/voc_latin1/ImageSets/Segmentation/train.txt", "wb") as f:
        f.write(b"caf\xe9\n")
    paths["run"] = str(root / "run")
    from minifcn import cli
    assert cli.main(TRAIN.replace("{voc}", paths["voc_two"]).replace("{out}", paths["run"])
                    .split()) == 0
    _bomb(paths["weights.npz"], str(root / "bomb.npz"))
    paths["bomb.npz"] = str(root / "bomb.npz")
    for name, member in (("meta_list.npz", {"meta": np.array("[1, 2]")}),
                         ("iteration_vector.npz", {"iteration": np.arange(2)}),
                         ("int_weights.npz", {"model.x": np.arange(3)})):
        paths[name] = str(root / name)
        np.savez(paths[name], **{"model.x": np.zeros(3), "optimizer.y": np.zeros(1),
                                 "iteration": np.int64(1), "config": np.array("{}"),
                                 "meta": np.array("{}"), **member})
    paths["sparse.pth"] = str(root / "sparse.pth")
    with contextlib.suppress(ImportError):
        import torch
        torch.save({"a.weight": torch.zeros(2, 2).to_sparse()}, paths["sparse.pth"])
    paths["out"] = str(root / "out")
    paths["root"] = str(root)
    yield paths
    os.chmod(paths["locked.png"], 0o600)


def words(argv: str, files: dict) -> list:
    """The argv of a row, each ``{name}`` replaced by the path of that file."""
    return [re.sub(r"\{([^}]+)\}", lambda m: files[m.group(1)], word) for word in argv.split()]


def run_cli(argv, env=None, code=None, cwd=None):
    """``python -m minifcn ARGV`` (or ``python -c CODE ARGV``): (status, stdout, stderr)."""
    command = [sys.executable, "-m", "minifcn"] if code is None else [sys.executable, "-c", code]
    done = subprocess.run([*command, *argv], capture_output=True, text=True, timeout=120,
                          env=None if env is None else {**os.environ, **env}, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


class Launcher:
    """Runs the commands a few at a time in the background (each spends most of its half
    second importing NumPy), so that the table costs seconds, not a minute."""

    def __init__(self, files, workers: int = 4):
        self.files, self.jobs = files, {}
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)

    def start(self, argv: str, env=None, code=None):
        key = (argv, None if env is None else tuple(sorted(env.items())), code)
        if key not in self.jobs:
            self.jobs[key] = self.pool.submit(run_cli, words(argv, self.files), env, code,
                                              self.files["root"])   # stray outputs land there
        return self.jobs[key]

    def result(self, argv: str, env=None, code=None):
        return self.start(argv, env, code).result()


@pytest.fixture(scope="module")
def launcher(files, request):
    """A :class:`Launcher` that has already started the command of every selected test of
    this module."""
    launcher = Launcher(files)
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.module is request.module and "argv" in params:
            launcher.start(*_command(params))
    yield launcher
    launcher.pool.shutdown(cancel_futures=True)


def _command(params) -> tuple:
    """``(argv, env, code)`` of a test's parameters (a table row or a planted bug)."""
    if "target" in params:
        module, name = params["target"].rsplit(".", 1)
        error = params.get("error", 'RuntimeError("planted bug")')
        return params["argv"], None, PLANTED.format(module=module, name=name, error=error)
    return params["argv"], params["env"], None


def row(id, argv, message, env=None, marks=()):
    """A table row: argv with ``{name}`` for the files, a regex the stderr line must match,
    and extra environment variables."""
    return pytest.param(argv, message, env, id=id, marks=marks)


ROWS = [
    row("unknown-command", "nope", r"argument COMMAND: invalid choice: 'nope'"),
    # demo
    row("demo-negative-iters", DEMO + " --iters -1",
        r"demo: --iters and --test-images must be at least 1, got -1"),
    row("demo-out-is-a-file", DEMO + " --out {a_file}",
        r"demo: --out is a file, not a folder: "),
    # gradcheck
    row("gradcheck-negative-kernel", "gradcheck conv2d --kernel -1",
        r"gradcheck: --kernel must be at least 1, got -1"),
    row("gradcheck-negative-seed", "gradcheck relu --seed -1",
        r"gradcheck: --seed must be at least 0, got -1"),
    row("gradcheck-zero-eps", "gradcheck relu --eps 0", r"gradcheck relu: eps must be .*got 0"),
    row("gradcheck-bad-device-index", "gradcheck relu --device cuda:x",
        r"device must be 'cpu', 'cuda' or 'cuda:N', got 'cuda:x'"),
    # convert
    row("convert-missing-source", "convert {missing} {out}.npz",
        r"convert: SRC not found: .*missing$"),
    row("convert-folder-as-source", "convert {folder} {out}.npz",
        r"convert: SRC is a folder, not a file: .*folder$"),
    row("convert-into-missing-folder", "convert {model.pth} {missing}/x.npz",
        r"convert: cannot write .*x.npz: its folder .*missing does not exist$"),
    row("convert-into-a-folder", "convert {model.pth} {folder}",
        r"convert: cannot write .*folder: it is a folder"),
    # summary
    row("summary-zero-width", "summary --arch fcn8s --size 64 --width 0",
        r"summary: width must be a number in \(0, 1\], got 0"),
    # predict: the image
    row("predict-missing-image", "predict {missing} --weights {weights.npz}",
        r"predict: image not found: .*missing$"),
    row("predict-folder-as-image", "predict {folder} --weights {weights.npz}",
        r"predict: image is a folder, not a file: "),
    row("predict-text-as-png", "predict {text.png} --weights {weights.npz} --out {out}",
        r"predict: cannot read image file .*text.png"),
    row("predict-truncated-png", "predict {truncated.png} --weights {weights.npz} --out {out}",
        r"predict: cannot (read|decode) image( file)? .*truncated.png"),
    row("predict-unreadable-image", "predict {locked.png} --weights {weights.npz} --out {out}",
        r"predict: image cannot be read: .*locked.png \(Permission denied\)"),
    # predict: the weights
    row("predict-missing-weights", "predict {image.png} --weights {missing}",
        r"predict: weight file .*missing' does not exist"),
    row("predict-empty-weights", "predict {image.png} --weights {empty.npz}",
        r"predict: .*empty.npz' is not a readable .npz weight file"),
    row("predict-text-as-weights", "predict {image.png} --weights {text.npz}",
        r"predict: .*text.npz' is not a readable .npz weight file"),
    row("predict-pytorch-file-as-weights", "predict {image.png} --weights {model.pth}",
        r"predict: --weights .*model.pth is a PyTorch file .* minifcn convert "),
    row("predict-weights-of-another-arch", "predict {image.png} --weights {weights.npz} "
        "--arch fcn32s --out {out}", r"predict: .*weights.npz' does not fit fcn32s"),
    row("predict-weights-of-another-n-class", "predict {image.png} --weights {weights.npz} "
        "--n-class 5 --out {out}", r"predict: .*does not fit fcn8s \(n_class=5"),
    # predict: where and how
    row("predict-out-is-a-file", "predict {image.png} --weights {weights.npz} --out {a_file}",
        r"predict: --out is a file, not a folder: "),
    row("predict-unknown-device", "predict {image.png} --weights {weights.npz} --device tpu",
        r"argument --device: device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    row("predict-cuda-without-cupy", "predict {image.png} --weights {weights.npz} "
        "--device cuda", r'predict: .*CuPy is not installed.*pip install "minifcn\[gpu\]"',
        marks=NO_GPU),
    row("predict-workspace-too-small", "predict {image.png} --weights {weights.npz} "
        "--out {out}", r"workspace limit .*MINIFCN_WORKSPACE_LIMIT",
        env={"MINIFCN_WORKSPACE_LIMIT": "1KiB"}),
    row("workspace-variable-not-a-size", "summary --arch fcn8s --size 64",
        r"MINIFCN_WORKSPACE_LIMIT must be a number of bytes .* got 'lots'",
        env={"MINIFCN_WORKSPACE_LIMIT": "lots"}),
    # evaluate
    row("evaluate-weights-for-fewer-classes", "evaluate --weights {weights_3class.npz} "
        "--data-dir {voc}", r"evaluate: label .*a.png holds values \[3\] outside 0..2"),
    row("evaluate-empty-folder", "evaluate --weights {weights.npz} --data-dir {folder}",
        r"evaluate: split file not found: .*val.txt"),
    row("evaluate-label-size-mismatch", "evaluate --weights {weights.npz} "
        "--data-dir {voc_bad_label}", r"evaluate: label .*a.png is 12x10 \(WxH\) but its "
                                      r"image .*a.jpg is 16x16"),
    # train
    row("train-missing-data-dir", TRAIN + " --data-dir {missing}",
        r"train: --data-dir is not a folder: "),
    row("train-missing-val-split", TRAIN + " --data-dir {voc_no_val} --val-split val",
        r"train: split file not found: .*val.txt"),
    row("train-negative-iters", TRAIN + " --iters -1",
        r"train: --iters must be at least 1, got -1"),
    row("train-lr-not-a-number", TRAIN + " --lr abc",
        r"argument --lr: invalid float value: 'abc'"),
    row("train-zero-crop", TRAIN + " --crop 0x5",
        r"argument --crop: height and width must be positive, got '0x5'"),
    row("train-zero-log-every", TRAIN + " --log-every 0",
        r"train: --log-every must be at least 1, got 0"),
    row("train-init-fcn-weights", TRAIN + " --init {weights.npz}",
        r"train: expected VGG16 weights, got fcn8s weights"),
    row("train-resume-from-weights", TRAIN + " --resume {weights.npz}",
        r"train: .*weights.npz.* checkpoint"),
    row("train-init-pytorch-file", TRAIN + " --init {model.pth}",
        r"train: --init .*model.pth is a PyTorch file"),
    row("train-into-a-folder-holding-a-run", TRAIN + " --data-dir {voc_two} --out {run}",
        r"train: --out .*run already holds a run \(log.csv, last.npz, model.npz\): continue "
        r"it with --resume .*last.npz, replace it with --overwrite, or choose another --out"),
    row("train-resume-another-split", TRAIN + " --out {run} --resume {run}/last.npz",
        r"train: .*last.npz' is a checkpoint of another run: data.train: \{\"items\": 2, "
        r".* in the checkpoint, \{\"items\": 1, .* now.*or force it \(--force\)"),
    row("train-resume-another-lr-and-fewer-iters", TRAIN + " --data-dir {voc_two} --out {run} "
        "--resume {run}/last.npz --lr 0.5 --iters 1",
        r"train: .* iters: 2 in the checkpoint, 1 now; lr: 0.001 in the checkpoint, 0.5 now"),
    row("train-diverges", TRAIN + " --lr 1e37 --optimizer sgd --checkpoint-every 1 "
        "--out {root}/diverged", r"train: .*(became NaN or inf by iteration 1|the loss became)"
                                 r".*Try a lower learning rate\.$"),
    row("train-split-not-utf8", TRAIN + " --data-dir {voc_latin1}",
        r"train: split file .*voc_latin1/ImageSets/Segmentation/train.txt is not UTF-8 text"),
    row("train-resume-meta-a-list", TRAIN + " --resume {meta_list.npz}",
        r"train: .*meta_list.npz': its 'meta' entry must be a 0-d string holding a JSON "
        r"object"),
    row("train-resume-iteration-a-vector", TRAIN + " --resume {iteration_vector.npz}",
        r"train: .*its 'iteration' entry must be a 0-d integer of at least 0, but is <i8 "
        r"\(2,\)"),
    row("train-resume-int-parameters", TRAIN + " --resume {int_weights.npz}",
        r"train: .*int_weights.npz': model parameters must be float arrays, but x \(int64\)"),
    row("predict-zip-bomb", "predict {image.png} --weights {bomb.npz} --out {out}",
        r"predict: .*bomb.npz': its members declare \d+ bytes uncompressed in \d+ bytes on "
        r"disk, more than 16 times as much: refused unread"),
    row("convert-sparse-tensor", "convert {sparse.pth} {out}.npz",
        r"convert: .*sparse.pth': 'a.weight' is a torch.sparse_coo tensor; save it dense"),
    row("algorithm-variable-unknown", "summary --arch fcn8s --size 64",
        r"MINIFCN_CONV_ALGORITHM must be one of auto, im2col, reference, got 'banana'",
        env={"MINIFCN_CONV_ALGORITHM": "banana"}),
    row("result-pool-variable-unknown", "summary --arch fcn8s --size 64",
        r"MINIFCN_RESULT_POOL must be 1 or 0 \(or on/off, true/false, yes/no\), got 'banana'",
        env={"MINIFCN_RESULT_POOL": "banana"}),
    # bench
    row("bench-json-is-a-folder", BENCH + " --json {folder}",
        r"bench: --json names a folder, not a file: "),
    row("bench-min-time-nan", BENCH + " --min-time nan",
        r"bench: --min-time must be a finite number >= 0 seconds, got nan"),
]


@pytest.mark.parametrize("argv, message, env", ROWS)
def test_a_user_error_is_one_line_and_exit_2(launcher, files, argv, message, env):
    if "{locked.png}" in argv and os.access(files["locked.png"], os.R_OK):
        pytest.skip("this user reads files whatever their mode (root)")
    if "{sparse.pth}" in argv and not os.path.exists(files["sparse.pth"]):
        pytest.skip("torch is not installed")
    status, out, err = launcher.result(argv, env)
    assert "Traceback" not in err + out
    assert status == 2, err
    [line] = err.splitlines()
    assert line.startswith("minifcn: error: ")
    assert re.search(message, line), line


# Replaces one function with one that raises ``error`` (by default a bug), then runs the CLI.
PLANTED = """import sys
import {module} as target
from minifcn.data import DatasetError
def planted(*args, **kwargs):
    raise {error}
target.{name} = planted
from minifcn import cli
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("target, argv", [
    ("minifcn.inference.model_from_weights", "predict {image.png} --weights {weights.npz}"),
    ("minifcn.gradcheck.registry.build_case", "gradcheck relu"),
    ("minifcn.summary.format_summary", "summary --arch fcn8s --size 64"),
], ids=["predict-loading-weights", "gradcheck-building-the-case", "summary-formatting"])
def test_an_internal_error_is_a_traceback_and_exit_1(launcher, target, argv):
    status, _, err = launcher.result(*_command({"target": target, "argv": argv}))
    assert status == 1, err
    assert "Traceback" in err and 'RuntimeError: planted bug' in err
    assert err.rstrip().endswith("minifcn: internal error (the traceback above is a bug report)")


def test_a_message_over_several_lines_is_printed_on_one(launcher):
    """The library may put a newline in a message; the user still gets one line."""
    params = {"target": "minifcn.data.read_image", "argv": "predict {image.png} --weights "
              "{weights.npz} --out {out}", "error": 'DatasetError("first\\n  second")'}
    status, _, err = launcher.result(*_command(params))
    assert status == 2 and "Traceback" not in err
    assert err == "minifcn: error: predict: first second\n"
