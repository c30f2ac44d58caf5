"""The minifcn command line: exit status 0 / 1 / 2, one-line user errors, no tracebacks."""
import subprocess
import sys

import numpy as np
import pytest

from minifcn import cli
from minifcn.backend import cupy_available
from minifcn.gradcheck import registry
from minifcn.ops import conv2d_backward, conv2d_forward


def run_cli(*args):
    """Run ``python -m minifcn ARGS`` as a user would; return (status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "minifcn", *args], capture_output=True,
                          text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def test_gradcheck_one_op_passes_and_prints_the_report():
    status, out, err = run_cli("gradcheck", "conv2d", "--stride", "2", "--dilation", "2")
    assert status == 0, err
    assert "gradcheck conv2d(stride=2, dilation=2): passed" in out
    assert "weight" in out and "bias" in out
    assert out.rstrip().endswith("gradcheck: 1 passed, 0 failed")


@pytest.mark.parametrize("algorithm", ["auto", "reference"])
def test_gradcheck_all_runs_every_registered_preset(capsys, algorithm):
    """Every op's gradient checks out, by the fast paths and by the readable reference."""
    from minifcn import ops
    with ops.using(algorithm):
        assert cli.main(["gradcheck", "all", "--quiet"]) == 0
    out = capsys.readouterr().out
    n_presets = sum(len(registry.entry(name).presets) for name in registry.registered())
    assert f"gradcheck: {n_presets} passed, 0 failed" in out


@pytest.mark.parametrize("args, message", [
    (["gradcheck", "no_such_op"], "unknown op 'no_such_op'"),
    (["gradcheck", "conv2d", "--stride", "0"], "stride must be positive"),
    (["gradcheck", "conv2d", "--stride", "two"], "invalid int value"),
    (["gradcheck", "conv2d", "--device", "gpu"], "device must be 'cpu', 'cuda' or 'cuda:N'"),
    (["gradcheck", "all", "--kernel", "3"], "takes no op options"),
    (["gradcheck", "conv2d", "--max-elements", "0"], "max_elements"),
    ([], "required"),
], ids=["unknown-op", "zero-stride", "non-int", "bad-device", "all-with-options",
        "bad-max-elements", "no-command"])
def test_user_errors_exit_2_with_one_line(args, message):
    status, out, err = run_cli(*args)
    assert status == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err


@pytest.mark.skipif(cupy_available(), reason="a GPU is usable here")
def test_cuda_without_cupy_exits_2_with_the_install_hint():
    status, _, err = run_cli("gradcheck", "conv2d", "--device", "cuda")
    assert status == 2 and "Traceback" not in err
    assert 'pip install "minifcn[gpu]"' in err


def test_a_failing_check_exits_1_and_prints_the_failing_report(monkeypatch, capsys):
    def wrong_backward(dy, cache):
        dx, dw, db = conv2d_backward(dy, cache)
        return dx, 1.01 * dw, db

    def broken_case(rng):
        x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
        return conv2d_forward, wrong_backward, [x, w, np.zeros(3)]

    monkeypatch.setitem(registry._REGISTRY, "broken",
                        registry.OpEntry("broken", broken_case, (), ({},)))
    assert cli.main(["gradcheck", "broken", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: weight" in out and "gradcheck: 0 passed, 1 failed" in out


def test_version():
    status, out, _ = run_cli("--version")
    assert status == 0 and out.startswith("minifcn ")
