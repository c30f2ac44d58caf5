"""The CuPy emulation refuses what CuPy refuses, and its kernels compute what CuPy's would.

Each refusal below is a mistake the emulation exists to catch before a GPU is lent; the
names and signatures come from ``tests/cupy_emulation/cupy_names.json`` (CuPy 14.2.0).
"""
import json
import subprocess
import sys

import numpy as np
import pytest

import cupy_emulation
from minifcn.backend import asnumpy, device_of, to_device

pytestmark = pytest.mark.skipif(cupy_emulation.compiler() is None, reason="no C++ compiler")


@pytest.fixture
def cp(emulated_cupy):
    return emulated_cupy


def test_arrays_are_cuda_0_and_round_trip(cp):
    a = to_device(np.arange(6.0).reshape(2, 3), "cuda")
    assert device_of(a) == "cuda:0" and isinstance(a, cp.ndarray)
    assert type(a.sum()) is cp.ndarray and a.sum().ndim == 0        # 0-d, not a scalar
    assert type(a[0, 1]) is cp.ndarray
    np.testing.assert_array_equal(asnumpy(cp.exp(a)), np.exp(np.arange(6.0).reshape(2, 3)))
    assert f"{a.sum():.1f}" == "15.0"                   # CuPy formats through the host


@pytest.mark.parametrize("mistake", [
    pytest.param(lambda cp, a: cp.errstate, id="numpy-only-function"),
    pytest.param(lambda cp, a: a.ctypes, id="numpy-only-attribute"),
    pytest.param(lambda cp, a: a.resize((3, 2)), id="numpy-only-method"),
])
def test_a_name_cupy_lacks_fails(cp, mistake):
    a = cp.zeros((2, 3))
    with pytest.raises(AttributeError, match="no attribute"):
        mistake(cp, a)


@pytest.mark.parametrize("mistake", [
    pytest.param(lambda cp, a: cp.maximum(a, 0, where=a > 0), id="ufunc-where"),
    pytest.param(lambda cp, a: a.max(initial=0), id="max-initial"),
    pytest.param(lambda cp, a: cp.sum(a, where=a > 0), id="sum-where"),
    pytest.param(lambda cp, a: cp.random.default_rng(0).random(2, dtype=cp.float32, x=1),
                 id="generator"),
])
def test_a_keyword_cupy_does_not_take_fails(cp, mistake):
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        mistake(cp, cp.ones((2, 3)))


@pytest.mark.parametrize("mistake", [
    pytest.param(lambda cp, a, h: a + h, id="operator"),
    pytest.param(lambda cp, a, h: h * a, id="reflected-operator"),
    pytest.param(lambda cp, a, h: cp.maximum(a, h), id="ufunc"),
    pytest.param(lambda cp, a, h: cp.matmul(a, h.T), id="function"),
    pytest.param(lambda cp, a, h: a.__setitem__(0, h[0]), id="setitem"),
])
def test_a_host_array_in_a_device_operation_fails(cp, mistake):
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        mistake(cp, cp.ones((2, 3)), np.ones((2, 3)))


def test_a_device_array_given_to_the_host_without_asnumpy_fails(cp, tmp_path):
    from PIL import Image
    a = cp.zeros((4, 4), dtype=cp.uint8)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(a)
    with pytest.raises(TypeError):
        memoryview(a)                                    # no buffer protocol
    np.save(tmp_path / "a.npy", a)     # as with CuPy: numpy.save dispatches to cupy.save
    with pytest.raises(AttributeError):
        Image.fromarray(a)
    with pytest.raises(TypeError):
        json.dumps(a.sum())
    with pytest.raises(TypeError):
        range(a.sum())                                   # a 0-d array has no __index__
    Image.fromarray(asnumpy(a))                          # the right way


def test_the_kernels_bind_types_and_refuse_host_arrays(cp):
    kernel = cp.ElementwiseKernel("raw T x, int32 n", "T y", "y = x[n - 1 - i];", "reverse")
    x = cp.arange(5, dtype=cp.float32)
    np.testing.assert_array_equal(asnumpy(kernel(x, 5, cp.empty(5, cp.float32))),
                                  [4, 3, 2, 1, 0])
    with pytest.raises(TypeError, match="Type is mismatched"):
        kernel(x, 5, cp.empty(5, cp.float64))
    with pytest.raises(TypeError, match="Unsupported type"):
        kernel(np.arange(5.0), 5, cp.empty(5))
    with pytest.raises(OverflowError):
        kernel(x, 2**31, cp.empty(5, cp.float32))


def test_a_kernel_that_does_not_compile_says_so(cp):
    kernel = cp.ElementwiseKernel("T x", "T y", "y = undefined_helper(x);", "broken")
    with pytest.raises(RuntimeError, match="does not compile"):
        kernel(cp.ones(3))


def test_the_name_table_is_cupys():
    table = json.loads(cupy_emulation.names.TABLE.read_text())
    assert table["cupy_version"] == "14.2.0"
    assert {"ElementwiseKernel", "asnumpy", "ndarray"} <= set(table["modules"]["cupy"])
    assert "errstate" not in table["modules"]["cupy"]


def test_the_shim_makes_import_cupy_load_the_emulation_in_a_child_process():
    shim = cupy_emulation.names.TABLE.parent / "shim"
    code = "import cupy; print(cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(shim), "PATH": ""}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "emulation" in done.stdout
