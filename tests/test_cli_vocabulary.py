"""One vocabulary across the subcommands: ``--arch`` (``train --model`` as its deprecated
alias), ``--size HxW`` or ``N`` (``summary --input`` as its alias), and ``--device cpu |
cuda | cuda:N`` declared, checked and refused the same way by every command that takes it
(``bench`` adds ``both``). Run in this process; nothing is trained or timed."""
import os
import types

import pytest

import minifcn.backend
import minifcn.bench.runner
from minifcn import cli
from minifcn.backend import cupy_available
from minifcn.cli.common import height_width

# Each command that takes --device, with what gets it past its other checks to the device's.
DEVICE_COMMANDS = {
    "train": "train --data-dir {folder} --out {out}",
    "predict": "predict {image} --weights {missing} --out {out}",
    "evaluate": "evaluate --weights {missing} --data-dir {folder}",
    "demo": "demo --out {out}",
    "gradcheck": "gradcheck relu",
    "bench": "bench --no-progress --no-torch",
}


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "image.png").write_bytes(b"not read: the device is checked first")
    (tmp_path / "folder").mkdir()
    return {"folder": str(tmp_path / "folder"), "out": str(tmp_path / "out"),
            "image": str(tmp_path / "image.png"), "missing": str(tmp_path / "missing.npz")}


def main(capsys, argv: str, paths=None):
    """``minifcn ARGV`` in this process: (status, stdout, stderr)."""
    status = cli.main(argv.format(**(paths or {})).split())
    out, err = capsys.readouterr()
    return status, out, err


def device_errors(capsys, paths, device: str) -> dict:
    """command -> the one-line error of ``COMMAND ... --device DEVICE``, less the
    ``minifcn: error: COMMAND:`` that starts it."""
    errors = {}
    for command, argv in DEVICE_COMMANDS.items():
        status, out, err = main(capsys, f"{argv} --device {device}", paths)
        assert status == 2 and out == "" and err.count("\n") == 1, (command, err)
        prefix = f"minifcn: error: {command}: "
        assert err.startswith(prefix), err
        errors[command] = err[len(prefix):].strip()
    return errors


@pytest.mark.skipif(cupy_available(), reason="a GPU is usable here")
def test_every_command_refuses_cuda_0_without_a_gpu_with_the_same_message(capsys, paths):
    errors = device_errors(capsys, paths, "cuda:0")
    assert len(set(errors.values())) == 1, errors
    assert "CuPy" in errors["bench"] and 'pip install "minifcn[gpu]"' in errors["bench"]


def fake_cupy(n_gpus: int):
    """A stand-in for CuPy that sees ``n_gpus`` GPUs and records the current one."""
    cupy = types.SimpleNamespace(current=[0])

    class Device:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            cupy.current.append(self.index)

        def __exit__(self, *exc):
            cupy.current.pop()

    cupy.cuda = types.SimpleNamespace(
        Device=Device, runtime=types.SimpleNamespace(getDeviceCount=lambda: n_gpus))
    return cupy


def test_every_command_takes_cuda_n_and_names_a_missing_gpu_the_same_way(
        capsys, paths, monkeypatch):
    monkeypatch.setattr(minifcn.backend, "import_cupy", lambda: fake_cupy(n_gpus=1))
    errors = device_errors(capsys, paths, "cuda:3")
    assert set(errors.values()) == {"device 'cuda:3' does not exist: 1 GPU(s) are visible "
                                    "(cuda:0 to cuda:0)"}, errors


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_a_misspelt_device_names_the_option_and_what_it_takes(capsys, paths, command):
    status, out, err = main(capsys, f"{DEVICE_COMMANDS[command]} --device gpu", paths)
    expected = "'cpu', 'cuda', 'cuda:N' or 'both'" if command == "bench" else \
        "'cpu', 'cuda' or 'cuda:N'"
    assert status == 2 and err.count("\n") == 1
    assert f"device must be {expected}, got 'gpu'" in err, err


def test_every_device_option_has_the_same_help():
    helps = {command: _option(command, "--device").help for command in DEVICE_COMMANDS}
    assert helps.pop("bench") == helps["train"] + ", or both"
    assert len(set(helps.values())) == 1, helps


def _option(command: str, flag: str):
    """The argparse action of ``minifcn COMMAND``'s option ``flag``."""
    commands = next(a for a in cli.build_parser()._actions if a.dest == "==SUPPRESS==" and
                    getattr(a, "choices", None))
    return next(a for a in commands.choices[command]._actions if flag in a.option_strings)


@pytest.mark.parametrize("visible, expected", [(None, "1"), ("4,7", "7")])
def test_bench_runs_the_gpu_side_on_gpu_n(capsys, monkeypatch, visible, expected):
    cupy, seen = fake_cupy(n_gpus=2), []
    monkeypatch.setattr(minifcn.backend, "import_cupy", lambda: cupy)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)

    def prepare(plan):
        seen.append((plan.devices, cupy.current[-1], os.environ.get("CUDA_VISIBLE_DEVICES")))
        return []
    monkeypatch.setattr(minifcn.bench.runner, "prepare", prepare)
    status, _, err = main(capsys, "bench --device cuda:1 --no-torch --no-progress")
    assert status == 0, err
    assert seen == [(("cuda",), 1, expected)]          # children see GPU 1 as their only one
    assert cupy.current == [0] and os.environ.get("CUDA_VISIBLE_DEVICES") == visible


@pytest.mark.parametrize("text, expected", [("64", (64, 64)), ("64x48", (64, 48)),
                                            ("64X48", (64, 48))])
def test_a_size_is_hxw_or_one_number(text, expected):
    assert height_width(text) == expected


@pytest.mark.parametrize("text", ["", "x", "64x", "1x2x3", "big", "6.5"])
def test_a_size_that_is_neither_says_what_was_expected(text):
    with pytest.raises(Exception, match=r"expected HxW such as 500x300, or N for NxN, got"):
        height_width(text)


@pytest.mark.parametrize("command, flag, dest", [
    ("bench", "--size", "size"), ("summary", "--size", "size"), ("train", "--crop", "crop")])
def test_n_is_n_by_n_in_every_command(command, flag, dest):
    required = {"train": ["--data-dir", "d"], "summary": ["--arch", "fcn8s"]}.get(command, [])
    parse = cli.build_parser().parse_args
    square = parse([command, *required, flag, "64"])
    assert getattr(square, dest) == getattr(parse([command, *required, flag, "64x64"]), dest)
    assert getattr(square, dest) == (64, 64)


def test_summary_size_64_prints_what_size_64x64_and_the_old_spelling_print(capsys):
    outs = [main(capsys, argv) for argv in ("summary --arch fcn8s --size 64",
                                            "summary --arch fcn8s --size 64x64",
                                            "summary fcn8s --input 64x64",
                                            "summary fcn8s --arch fcn8s --size 64")]
    assert all(status == 0 for status, _, _ in outs), outs
    assert len({out for _, out, _ in outs}) == 1
    assert outs[0][1].startswith("fcn8s, width 1, n_class 21, input 1x3x64x64 (64x64)")


@pytest.mark.parametrize("argv, message", [
    ("summary fcn8s --arch fcn16s --size 64",
     "summary: --arch fcn16s and ARCH fcn8s name different networks; give one"),
    ("summary --size 64", "summary: --arch is required: one of fcn32s, fcn16s, fcn8s"),
])
def test_summary_arch_given_twice_or_not_at_all_is_a_user_error(capsys, argv, message):
    status, out, err = main(capsys, argv)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_train_model_is_an_alias_of_arch_and_its_help_says_so():
    parse = cli.build_parser().parse_args
    assert parse(["train", "--data-dir", "d", "--model", "fcn32s"]).arch == "fcn32s"
    assert parse(["train", "--data-dir", "d", "--arch", "fcn16s"]).arch == "fcn16s"
    assert parse(["train", "--data-dir", "d"]).arch == "fcn8s"
    option = _option("train", "--arch")
    assert option.option_strings == ["--arch", "--model"]
    assert "deprecated alias of --arch" in option.help
