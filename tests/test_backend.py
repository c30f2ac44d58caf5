"""Tests of minifcn.backend: choosing the array module, devices, and the optional CuPy."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import minifcn.backend as backend
from minifcn.backend import (INSTALL_HINT, array_module_of, asnumpy, cupy_available,
                             device_of, get_array_module, parse_device, to_device)
from minifcn.ops import conv2d_forward

CUPY_INSTALLED = importlib.util.find_spec("cupy") is not None


@pytest.mark.parametrize("args", [(np.zeros(2),), (None,), (1.0, 2), (), (np.float32(1.0),),
                                  (np.zeros(2), None, np.ones((1, 3)), 3)],
                         ids=["array", "none", "scalars", "nothing", "numpy-scalar", "mixed"])
def test_get_array_module_on_cpu_values_is_numpy(args):
    assert get_array_module(*args) is np


def test_asnumpy_and_device_of_on_cpu():
    a = np.arange(3.0)
    assert asnumpy(a) is a
    np.testing.assert_array_equal(asnumpy([1, 2]), [1, 2])
    assert device_of(a) == "cpu"
    assert to_device(a, "cpu") is a
    assert isinstance(to_device([1.0, 2.0], "cpu"), np.ndarray)


@pytest.mark.parametrize("device, parsed", [("cpu", ("cpu", None)), ("cuda", ("cuda", None)),
                                            ("cuda:0", ("cuda", 0)), ("cuda:1", ("cuda", 1))])
def test_parse_device_accepts(device, parsed):
    assert parse_device(device) == parsed


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0", "CUDA", "cuda:", "cuda:-1",
                                    "cpu\n", " cpu", "", None, 0])
def test_parse_device_rejects_and_names_the_device(device):
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'") as info:
        parse_device(device)
    assert f"got {device!r}" in str(info.value)


def test_to_device_rejects_a_bad_device_before_looking_for_cupy():
    with pytest.raises(ValueError, match="'gpu'"):
        to_device(np.zeros(2), "gpu")


@pytest.mark.skipif(cupy_available(), reason="a GPU is usable here")
def test_to_cuda_without_a_gpu_says_what_is_missing():
    with pytest.raises(RuntimeError) as info:
        to_device(np.zeros(2), "cuda")
    if not CUPY_INSTALLED:
        assert 'pip install "minifcn[gpu]"' in str(info.value)
        assert INSTALL_HINT in str(info.value)
    else:
        assert "no CUDA GPU" in str(info.value)


def test_cupy_available_is_a_bool():
    assert cupy_available() in (True, False)


def test_importing_and_running_on_cpu_never_imports_cupy(tmp_path):
    # A fake, importable cupy shadows any real one: the check means the same with or
    # without CuPy installed, and an import that swallows ImportError is caught too.
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text("")
    code = ("import sys, numpy as np, minifcn\n"
            "from minifcn.nn import Conv2d\n"
            "Conv2d(1, 1, 1)(np.ones((1, 1, 2, 2), dtype=np.float32))\n"
            "assert 'cupy' not in sys.modules, 'cupy in sys.modules'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": ""}, timeout=60)
    assert result.returncode == 0, result.stderr


# --- mixing devices ------------------------------------------------------------------------

@pytest.fixture
def fake_gpu(monkeypatch):
    """Arrays registered in the returned dict report that device, as CuPy arrays would."""
    fake = {}
    real = backend.device_of
    monkeypatch.setattr(backend, "device_of", lambda a: fake.get(id(a)) or real(a))
    return fake


def test_mixing_devices_names_the_arguments_and_devices(fake_gpu):
    x, weight = np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1))
    fake_gpu[id(weight)] = "cuda:0"
    with pytest.raises(ValueError) as info:
        conv2d_forward(x, weight)
    message = str(info.value)
    assert "arrays must be on one device" in message
    assert "x is on cpu, weight is on cuda:0" in message
    assert "minifcn.backend.to_device" in message
    with pytest.raises(ValueError, match="argument 0 is on cpu, argument 1 is on cuda:0"):
        get_array_module(x, weight)


def test_two_gpus_do_not_mix(fake_gpu):
    a, b = np.ones(2), np.ones(2)
    fake_gpu[id(a)], fake_gpu[id(b)] = "cuda:0", "cuda:1"
    with pytest.raises(ValueError, match="a is on cuda:0, b is on cuda:1"):
        array_module_of(a=a, b=b, c=None)


@pytest.mark.parametrize("xp", ["cupy"], indirect=True)
def test_mixing_numpy_and_cupy_in_conv2d(xp):
    x = np.ones((1, 1, 3, 3))
    weight = xp.ones((1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"x is on cpu, weight is on cuda:\d"):
        conv2d_forward(x, weight)
    assert get_array_module(weight) is xp and device_of(weight).startswith("cuda:")
    assert isinstance(asnumpy(weight), np.ndarray) and to_device(x, "cuda").device == weight.device
