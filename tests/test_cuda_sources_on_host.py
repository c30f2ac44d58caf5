"""The CUDA kernels' index arithmetic, run on the CPU.

The bodies of the GPU kernels in ``minifcn/ops/_cuda.py`` are plain C. This test wraps each
body the way ``cupy.ElementwiseKernel`` does (thread ``i`` writes output element ``i``
through a reference), compiles it with the host's C++ compiler, runs it for every ``i`` and
compares with the NumPy path. It checks the kernels' logic on machines without a GPU; the
CuPy cases of the other tests check the real launches where a GPU is present.
"""
import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from minifcn.ops import _cuda, col2im, im2col
from minifcn.ops.im2col import _geometry

COMPILER = shutil.which("c++") or shutil.which("g++")
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C++ compiler on this machine")

KERNELS = {"im2col": ("img", "col", _cuda._IM2COL_BODY),
           "col2im": ("col", "img", _cuda._COL2IM_BODY)}


def _host_source() -> str:
    geometry = ", ".join(f"int {p.split()[1]}" for p in _cuda._GEOMETRY_PARAMS.split(","))
    parts = ["#include <cstddef>", "typedef double T;"]
    for name, (source, out, body) in KERNELS.items():
        parts.append(f'extern "C" void {name}(const T* {source}, {geometry}, T* out_, '
                     f"ptrdiff_t n) {{\n  for (ptrdiff_t i = 0; i < n; ++i) {{\n"
                     f"    T& {out} = out_[i];\n{body}\n  }}\n}}")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda_on_host")
    (folder / "kernels.cpp").write_text(_host_source())
    library = folder / "kernels.so"
    subprocess.run([COMPILER, "-O1", "-shared", "-fPIC", "-Wall", "-Werror",
                    str(folder / "kernels.cpp"), "-o", str(library)], check=True)
    return ctypes.CDLL(str(library))


def _call(function, source, x_shape, out_shape, options):
    kernel, stride, padding, dilation, out = _geometry(x_shape, *options)
    geometry = [*x_shape, *kernel, *out, *stride, *padding, *dilation]
    result = np.empty(out_shape)
    source = np.ascontiguousarray(source, dtype=np.float64)
    pointer = ctypes.POINTER(ctypes.c_double)
    function(source.ctypes.data_as(pointer), *[ctypes.c_int(v) for v in geometry],
             result.ctypes.data_as(pointer), ctypes.c_ssize_t(result.size))
    return result


CASES = [((2, 3, 7, 8), (3, 1, 1, 1)), ((1, 2, 9, 6), (3, 2, 1, 2)), ((3, 2, 13, 14), (7, 3, 3, 2)),
         ((2, 1, 5, 5), (2, 3, 0, 1)), ((1, 4, 6, 7), ((2, 3), (2, 1), (1, 0), (1, 2))),
         ((2, 2, 4, 4), (1, 2, 1, 1))]
IDS = [f"x{'x'.join(map(str, s))}-k{o[0]}s{o[1]}p{o[2]}d{o[3]}" for s, o in CASES]


@pytest.mark.parametrize("x_shape, options", CASES, ids=IDS)
def test_im2col_kernel_matches_numpy(host_kernels, rng, x_shape, options):
    x = rng.standard_normal(x_shape)
    want = im2col(x, *options)
    got = _call(host_kernels.im2col, x, x_shape, want.shape, options)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("x_shape, options", CASES, ids=IDS)
def test_col2im_gather_kernel_matches_numpy(host_kernels, rng, x_shape, options):
    col_shape = im2col(np.zeros(x_shape), *options).shape
    col = rng.standard_normal(col_shape)
    got = _call(host_kernels.col2im, col, x_shape, x_shape, options)
    np.testing.assert_allclose(got, col2im(col, x_shape, *options), rtol=1e-13, atol=1e-13)
