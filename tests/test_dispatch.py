"""The dispatcher: set_algorithm("reference") runs the readable code everywhere, on a whole
FCN-8s too, with the same numbers; explain says what runs and why; the setting's errors and
environment variables."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minifcn import memory, ops
from minifcn.models import FCN8s
from minifcn.ops import dispatch

from helpers import rel_error


def _fcn_step(seed=0):
    """Logits and every parameter gradient of a width-1/16 FCN-8s in float64."""
    rng = np.random.default_rng(seed)
    model = FCN8s(n_class=3, width=1 / 16, dropout=0.0, dtype=np.float64, rng=1)
    for _, p in model.named_parameters():
        p.data[...] = rng.standard_normal(p.data.shape) * 0.1
    x = rng.standard_normal((1, 3, 40, 36))
    logits = model.forward(x)
    model.zero_grad()
    dx = model.backward(np.ones_like(logits) / logits.size)
    return [logits, dx] + [p.grad.copy() for _, p in model.named_parameters()
                           if p.grad is not None]


def test_reference_everywhere_gives_the_same_fcn8s(monkeypatch):
    """Under "reference" no fast path runs (each is made to raise), and a whole FCN-8s
    forward and backward agrees with the fast paths to 1e-10."""
    fast = _fcn_step()

    def refuse(*args):
        raise AssertionError("a fast path ran under set_algorithm('reference')")
    monkeypatch.setattr(dispatch, "_paths", {piece: [p._replace(run=refuse) for p in paths]
                                             for piece, paths in dispatch._paths.items()})
    with ops.using("reference"):
        reference = _fcn_step()
    for got, want in zip(reference, fast):
        assert rel_error(got, want) < 1e-10
    with pytest.raises(AssertionError, match="a fast path ran"):     # the trap works
        _fcn_step()


def test_explain_names_the_path_and_why():
    wide = ops.explain("conv2d", (1, 256, 32, 32), (256, 256, 3, 3), padding=1)
    assert wide.choices == {"conv2d.forward": "winograd", "conv2d.input_grad": "correlation",
                            "conv2d.weight_grad": "winograd"}
    narrow = ops.explain("conv2d", (1, 64, 32, 32), (64, 64, 3, 3), padding=1)
    assert narrow.choices["conv2d.forward"] == "gemm"
    assert "(not winograd)" in str(narrow) and "at least 128 input channels" in str(narrow)
    assert ops.explain("conv2d", (1, 256, 32, 32), (256, 256, 3, 3), padding=1,
                       dtype="float64").choices["conv2d.forward"] == "gemm"
    assert ops.explain("conv2d", (1, 256, 32, 32), (256, 256, 3, 3), padding=1,
                       device="cuda").choices["conv2d.forward"] == "gemm"
    with ops.using("im2col"):
        assert ops.explain("conv2d", (1, 256, 32, 32), (256, 256, 3, 3),
                           padding=1).choices["conv2d.forward"] == "gemm"
    with ops.using("reference"):
        report = ops.explain("max_pool2d", (1, 8, 16, 16), kernel_size=2, stride=2)
        assert set(report.choices.values()) == {"reference"}
        assert "the algorithm is 'reference'" in str(report)
    assert ops.explain("max_pool2d", (1, 8, 16, 16), kernel_size=2).choices == {
        "max_pool2d.forward": "tiles", "max_pool2d.backward": "tiles"}
    assert ops.explain("conv_transpose2d", (1, 21, 8, 8), (21, 21, 16, 16), stride=8
                       ).choices["conv_transpose2d.forward"] == "phases"


def test_explain_follows_the_workspace_limit():
    """Winograd needs its transformed weights within the limit: under 1 MiB it gives way."""
    shapes = dict(x_shape=(1, 256, 32, 32), weight_shape=(256, 256, 3, 3), padding=1)
    with memory.limited("1MiB"):
        assert ops.explain("conv2d", **shapes).choices["conv2d.forward"] == "gemm"
    with memory.limited("64MiB"):
        assert ops.explain("conv2d", **shapes).choices["conv2d.forward"] == "winograd"


@pytest.mark.parametrize("call, message", [
    (lambda: ops.explain("conv3d", (1, 1, 4, 4)), "op must be one of"),
    (lambda: ops.explain("conv2d", (1, 1, 4, 4)), "conv2d needs weight_shape"),
    (lambda: ops.explain("max_pool2d", (1, 1, 4, 4)), "max_pool2d needs kernel_size"),
    (lambda: ops.explain("relu", (1, 1, 4, 4), dtype="int32"), "dtype must be float32"),
    (lambda: ops.explain("relu", (1, 1, 4, 4), device="gpu"), "device must be 'cpu'"),
    (lambda: ops.set_algorithm("fast"), "algorithm must be one of 'auto', 'im2col', 'reference'"),
    (lambda: ops.set_conv_algorithm("reference"), "algorithm must be one of 'auto', 'im2col'"),
])
def test_bad_arguments_say_what_was_expected(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_using_restores_the_previous_algorithm():
    before = ops.get_algorithm()
    with pytest.raises(RuntimeError):
        with ops.using("reference"):
            assert ops.get_algorithm() == "reference"
            raise RuntimeError
    assert ops.get_algorithm() == before


@pytest.mark.parametrize("variable, value, expected", [
    ("MINIFCN_ALGORITHM", "reference", "reference"),
    ("MINIFCN_CONV_ALGORITHM", "im2col", "im2col"),
    ("MINIFCN_ALGORITHM", "", "auto"),
])
def test_the_environment_chooses_the_algorithm(variable, value, expected):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MINIFCN_ALGORITHM", "MINIFCN_CONV_ALGORITHM")}
    env[variable] = value
    done = subprocess.run([sys.executable, "-c", "import minifcn.ops as o; "
                           "print(o.get_algorithm())"], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == expected, done.stderr
