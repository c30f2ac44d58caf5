"""``minifcn gradcheck FILE.py:NAME``: the user's own layer, checked from the command line.

Each test writes the user's file under tmp_path and runs ``minifcn.cli.main`` in-process:
exit status 0 when the layer passes, 1 with the failing tensor named, 2 with one line for
every mistake in what was asked. Also: ``--help`` says which option each built-in op takes.
"""
import itertools
import pathlib
import textwrap

import pytest

from minifcn import cli
from minifcn.gradcheck import registry

LAYERS = '''
import numpy as np
from minifcn.nn import Module, Parameter


class ScaledTanh(Module):
    def __init__(self, channels=3, start=0.5):
        super().__init__()
        self.gain = Parameter(np.linspace(start, 1.5, channels))

    def forward(self, x):
        t = np.tanh(x)
        self.save_for_backward(t)
        return self.gain.data[:, None, None] * t

    def backward(self, dy):
        t, = self.saved()
        self.gain.accumulate((dy * t).sum(axis=(0, 2, 3)))
        return dy * self.gain.data[:, None, None] * (1 - t * t)


class GainOfFirstImage(ScaledTanh):
    def backward(self, dy):
        t, = self.saved()
        self.gain.accumulate((dy[0] * t[0]).sum(axis=(1, 2)))       # BUG: no sum over batch
        return dy * self.gain.data[:, None, None] * (1 - t * t)


class NeedsChannels(ScaledTanh):
    def __init__(self, channels):
        super().__init__(channels)


class Crashes(ScaledTanh):
    def backward(self, dy):
        return dy[7]


def make_layer():
    return ScaledTanh(4)


def cube_forward(x):
    return x ** 3, x


def cube_backward(dy, x):
    return (3 * x * x * dy,)


cube = (cube_forward, cube_backward)
layer = ScaledTanh(2)
not_a_layer = 42


class NotAModule:
    pass


class NoForward(Module):
    pass
'''


@pytest.fixture
def layers(tmp_path):
    path = tmp_path / "my_layers.py"
    path.write_text(LAYERS)
    return str(path)


def gradcheck(capsys, *args):
    """(exit status, stdout, stderr) of ``minifcn gradcheck ARGS``."""
    status = cli.main(["gradcheck", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def tensor_rows(report):
    """The rows of the report's tensor table."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("tensor ")) + 2
    return list(itertools.takewhile(lambda line: line[:1] not in ("", " "), lines[start:]))


# --- layers that pass and fail -------------------------------------------------------------

@pytest.mark.parametrize("name, extra, tensors", [
    ("ScaledTanh", [], ["input", "gain"]),
    ("ScaledTanh", ["--init-args", "3, start=0.25"], ["input", "gain"]),
    ("make_layer", ["--input-shape", "2x4x3x3"], ["input", "gain"]),
    ("layer", ["--input-shape", "1,2,3,3"], ["input", "gain"]),
    ("cube", [], ["x"]),
    ("cube_forward,cube_backward", ["--mode", "directional"], ["x"]),
], ids=["class", "init-args", "factory", "instance", "pair-attribute", "pair-names"])
def test_a_correct_layer_passes_with_the_report(capsys, layers, name, extra, tensors):
    shape = [] if "--input-shape" in extra else ["--input-shape", "2x3x4x4"]
    status, out, err = gradcheck(capsys, f"{layers}:{name}", *shape, *extra)
    assert (status, err) == (0, "")
    assert f"gradcheck {layers}:{name}: passed" in out
    assert [row.split()[0] for row in tensor_rows(out)] == tensors, out
    assert out.rstrip().endswith("gradcheck: 1 passed, 0 failed")


def test_a_planted_bug_exits_1_and_names_the_tensor(capsys, layers):
    status, out, _ = gradcheck(capsys, f"{layers}:GainOfFirstImage", "--input-shape",
                               "2x3x4x4", "--seed", "3")
    assert status == 1
    assert f"gradcheck {layers}:GainOfFirstImage: FAILED: gain" in out
    input_row, gain_row = tensor_rows(out)
    assert input_row.endswith(" ok") and gain_row.endswith(" FAIL") and "3/3" in gain_row
    assert "input=2x3x4x4" in out and "seed=3" in out
    assert "gradcheck: 0 passed, 1 failed" in out


def test_a_module_path_works_like_a_file(capsys, layers, monkeypatch):
    monkeypatch.chdir(pathlib.Path(layers).parent)      # found from the current folder
    status, out, _ = gradcheck(capsys, "my_layers:cube", "--input-shape", "5", "--quiet")
    assert status == 0 and out.startswith("ok    my_layers:cube")


def test_float32_and_options_reach_the_checker(capsys, layers):
    status, out, err = gradcheck(capsys, f"{layers}:ScaledTanh", "--input-shape", "1x3x5x5",
                                 "--dtype", "float32", "--max-elements", "4", "--rtol", "0.05")
    assert (status, err) == (0, "")
    assert "dtype=float32" in out and "rtol=0.05" in out and "4/75" in out


# --- what was asked cannot be checked: exit 2, one line --------------------------------------

def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.parametrize("target, extra, message", [
    ("{tmp}/missing.py:A", [], "file not found: {tmp}/missing.py"),
    ("{tmp}/notes.txt:A", [], "{tmp}/notes.txt is not a Python file: expected a .py file"),
    ("{tmp}:A", [], "is not a Python file"),
    ("{tmp}/raises.py:A", [], "importing {tmp}/raises.py raised ZeroDivisionError: division by "
                              "zero (raises.py, line 3)"),
    ("{tmp}/broken.py:A", [], "importing {tmp}/broken.py raised SyntaxError: "),
    ("{layers}:Nope", [], "has no 'Nope'; it defines Crashes, GainOfFirstImage, NeedsChannels"),
    ("{layers}:not_a_layer", [], "not_a_layer is of type int; expected a Module subclass"),
    ("{layers}:NotAModule", [], "NotAModule is a class but not a Module subclass"),
    ("{layers}:cube_forward", [], "for a functional pair name both, as "
                                  "cube_forward,cube_backward"),
    ("{layers}:NeedsChannels", [], "NeedsChannels(channels) cannot be called with no "
                                   "arguments: missing a required argument: 'channels'; give "
                                   "them with --init-args"),
    ("{layers}:NeedsChannels", ["--init-args", "3, 4"], "cannot be called with --init-args "
                                                        "'3, 4': too many positional"),
    ("{layers}:cube", ["--init-args", "3"], "a (forward, backward) pair takes none"),
    ("{layers}:cube_forward,not_a_layer", [], "the pair's backward must be a function"),
    ("{layers}:Crashes", [], "the layer raised IndexError: index 7 is out of bounds for axis 0 "
                             "with size 2 (my_layers.py, line {crash_line})"),
    ("{layers}:NoForward", [], "NoForward must define forward()"),
    ("{layers}:a,b,c", [], "NAME must be one Python name, or two as forward,backward"),
    ("{layers}", [], "got '{layers}'"),
    ("no_such_module_here:A", [], "no module named 'no_such_module_here'"),
    ("{layers}:ScaledTanh", ["--kernel", "3"], "--kernel: options of the built-in ops"),
    ("{layers}:ScaledTanh", ["--init-args", "x + 1"], "argument --init-args: expected Python "
                                                      "literals"),
    ("{layers}:ScaledTanh", ["--input-shape", "2x0"], "argument --input-shape: every size "
                                                      "must be at least 1"),
    ("{layers}:ScaledTanh", ["--input-shape", "2xa"], "argument --input-shape: expected a "
                                                      "shape such as 2x3x8x8"),
    ("{layers}:ScaledTanh", ["--input-shape", "2x5x4x4"], "could not be broadcast"),
], ids=["missing-file", "not-py", "folder", "import-raises", "syntax-error", "missing-name",
        "not-callable", "not-a-module-class", "lone-forward", "constructor-needs-args",
        "too-many-init-args", "init-args-for-a-pair", "pair-of-a-non-function", "layer-raises",
        "no-forward", "three-names", "no-name", "no-module", "op-option", "init-args-not-literal",
        "zero-size", "shape-not-ints", "shape-mismatch"])
def test_a_mistake_is_one_line_and_exit_2(capsys, tmp_path, layers, target, extra, message):
    write(tmp_path, "notes.txt", "not python")
    write(tmp_path, "raises.py", """\
        import numpy as np

        x = 1 / 0
        """)
    write(tmp_path, "broken.py", "def f(:\n")
    crash_line = LAYERS.splitlines().index("        return dy[7]") + 1
    names = dict(tmp=tmp_path, layers=layers, crash_line=crash_line)
    shape = [] if "--input-shape" in extra else ["--input-shape", "2x3x4x4"]
    status, out, err = gradcheck(capsys, target.format(**names), *shape, *extra)
    assert (status, out) == (2, "")
    [line] = err.splitlines()
    assert line.startswith("minifcn: error: ")
    assert message.format(**names) in line


def test_a_bug_in_minifcn_is_still_a_traceback_and_exit_1(capsys, layers, monkeypatch):
    from minifcn.gradcheck import user_layer

    def planted(*args, **kwargs):
        raise RuntimeError("planted bug")

    monkeypatch.setattr(user_layer, "check_layer", planted)
    status, _, err = gradcheck(capsys, f"{layers}:ScaledTanh", "--input-shape", "2x3x4x4")
    assert status == 1 and "RuntimeError: planted bug" in err and "Traceback" in err


def test_a_layer_needs_its_input_shape(capsys, layers):
    status, _, err = gradcheck(capsys, f"{layers}:ScaledTanh")
    assert status == 2 and "give the input's shape, such as --input-shape 2x3x8x8" in err


def test_a_built_in_op_refuses_the_layer_options(capsys):
    status, _, err = gradcheck(capsys, "relu", "--input-shape", "2x3")
    assert status == 2 and "--input-shape and --init-args are for your own layer" in err


def test_importing_the_file_runs_no_main_block(capsys, tmp_path):
    path = write(tmp_path, "guarded.py", """\
        import numpy as np

        def double_forward(x):
            return 2 * x, None

        def double_backward(dy, cache):
            return (2 * dy,)

        if __name__ == "__main__":
            raise SystemExit("ran as a script")
        """)
    status, out, err = gradcheck(capsys, f"{path}:double_forward,double_backward",
                                 "--input-shape", "3x2", "--quiet")
    assert (status, err) == (0, "")


# --- --help: which op takes which option ------------------------------------------------------

def test_help_lists_each_ops_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["gradcheck", "--help"])
    text = capsys.readouterr().out
    for name in registry.registered():
        [line] = [line for line in text.splitlines() if line.startswith(f"  {name} ")]
        flags = [word for word in line.split() if word.startswith("--")]
        assert flags == ["--" + o.replace("_", "-") for o in registry.entry(name).options]
    assert "--kernel [3] --stride [1] --padding [1] --dilation [1]" in text    # conv2d
    assert "FILE.py:NAME" in text and "--input-shape" in text
    assert "the op's" not in text


def test_an_option_the_op_does_not_take_is_a_usage_error(capsys):
    status, _, err = gradcheck(capsys, "relu", "--kernel", "3")
    assert status == 2
    assert "op relu does not take --kernel; it takes no options" in err
