"""The CUDA kernels' index arithmetic, run on the CPU.

The bodies of the GPU kernels in ``minifcn/ops/fast/cuda.py`` are plain C. This test wraps each
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

from minifcn.ops import col2im, im2col, max_pool2d_backward, max_pool2d_forward
from minifcn.ops.arguments import conv_geometry
from minifcn.ops.fast import cuda, windows

COMPILER = shutil.which("c++") or shutil.which("g++")
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C++ compiler on this machine")

KERNELS = {"im2col": ("img", "col", cuda._IM2COL_BODY),
           "col2im": ("col", "img", cuda._COL2IM_BODY)}


def _host_source() -> str:
    geometry = ", ".join(f"int {p.split()[1]}" for p in cuda._GEOMETRY_PARAMS.split(","))
    parts = ["#include <cstddef>", "typedef double T;"]
    for name, (source, out, body) in KERNELS.items():
        parts.append(f'extern "C" void {name}(const T* {source}, {geometry}, T* out_, '
                     f"ptrdiff_t n) {{\n  for (ptrdiff_t i = 0; i < n; ++i) {{\n"
                     f"    T& {out} = out_[i];\n{body}\n  }}\n}}")
    return "\n".join(parts)


def _pool_host_source() -> str:
    """The max-pooling kernels, T = double and I = signed char (CuPy's int8)."""
    pool = ", ".join(f"int {p.split()[1]}" for p in cuda._POOL_PARAMS.split(","))
    loop = "  for (ptrdiff_t i = 0; i < n; ++i) {{\n{refs}\n{body}\n  }}\n"
    forward = loop.format(refs="    T& y = y_[i]; I& argmax = argmax_[i];",
                          body=cuda._MAX_POOL_FORWARD_BODY)
    backward = loop.format(refs="    T& dx = dx_[i];", body=cuda._MAX_POOL_BACKWARD_BODY)
    return "\n".join([
        "#include <algorithm>", "#include <cmath>", "using std::max; using std::min;",
        "using std::isnan;", "typedef signed char I;",
        f'extern "C" void max_pool2d_forward(const T* x, {pool}, T* y_, I* argmax_, '
        f"ptrdiff_t n) {{\n{forward}}}",
        f'extern "C" void max_pool2d_backward(const T* dy, const I* argmax, {pool}, T* dx_, '
        f"ptrdiff_t n) {{\n{backward}}}"])


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda_on_host")
    (folder / "kernels.cpp").write_text(_host_source() + "\n" + _pool_host_source())
    library = folder / "kernels.so"
    subprocess.run([COMPILER, "-O1", "-shared", "-fPIC", "-Wall", "-Werror",
                    str(folder / "kernels.cpp"), "-o", str(library)], check=True)
    return ctypes.CDLL(str(library))


def _call(function, source, x_shape, out_shape, options):
    kernel, stride, padding, dilation, out = conv_geometry(x_shape, *options)
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


# --- Max pooling: forward one thread per output, backward one thread per input pixel ---------

POOL_CASES = [((2, 3, 7, 8), (2, 2, 0, True)), ((1, 2, 6, 5), (3, 2, 1, True)),
              ((2, 2, 7, 8), (3, 1, 1, False)), ((1, 2, 4, 7), (2, 3, 1, True)),
              ((2, 1, 9, 6), ((3, 2), (1, 2), (1, 0), True)), ((1, 3, 5, 5), (1, 2, 0, True))]
POOL_IDS = [f"x{'x'.join(map(str, s))}-k{o[0]}s{o[1]}p{o[2]}-{'ceil' if o[3] else 'floor'}"
            for s, o in POOL_CASES]


def _pool_inputs(rng, x_shape):
    """Ties (values from {0, 1, 2}), -inf and NaN, so the host kernel must follow the rule."""
    x = rng.integers(0, 3, x_shape).astype(np.float64)
    x[rng.random(x_shape) < 0.1] = -np.inf
    x[rng.random(x_shape) < 0.05] = np.nan
    return x


def _pool_call(function, arrays, x_shape, cache, outputs):
    """Call a host pool kernel: arrays are the raw inputs, outputs (shape, ctype) pairs."""
    kernel, stride, padding = cache.kernel, cache.stride, cache.padding
    geometry = [*x_shape, *kernel, *cache.argmax.shape[2:], *stride, *padding]
    results = [np.empty(shape, dtype) for shape, dtype in outputs]
    pointers = [np.ascontiguousarray(a).ctypes.data_as(ctypes.c_void_p) for a in arrays]
    function(*pointers, *[ctypes.c_int(v) for v in geometry],
             *[r.ctypes.data_as(ctypes.c_void_p) for r in results],
             ctypes.c_ssize_t(results[0].size))
    return results


@pytest.mark.parametrize("x_shape, options", POOL_CASES, ids=POOL_IDS)
def test_max_pool2d_forward_kernel_matches_numpy(host_kernels, rng, x_shape, options):
    x = _pool_inputs(rng, x_shape)
    want_y, cache = max_pool2d_forward(x, *options)
    y, argmax = _pool_call(host_kernels.max_pool2d_forward, [x], x_shape, cache,
                           [(want_y.shape, np.float64), (want_y.shape, np.int8)])
    np.testing.assert_array_equal(y, want_y)            # NaNs in the same places
    np.testing.assert_array_equal(argmax, cache.argmax)


@pytest.mark.parametrize("x_shape, options", POOL_CASES, ids=POOL_IDS)
def test_max_pool2d_backward_gather_kernel_matches_numpy(host_kernels, rng, x_shape, options):
    y, cache = max_pool2d_forward(_pool_inputs(rng, x_shape), *options)
    dy = rng.standard_normal(y.shape)
    dx, = _pool_call(host_kernels.max_pool2d_backward, [dy, cache.argmax], x_shape, cache,
                     [(x_shape, np.float64)])
    # the gather sums in the NumPy path's order of kernel offsets: bit for bit equal
    np.testing.assert_array_equal(dx, max_pool2d_backward(dy, cache))


# --- Chunks of output rows, as minifcn/ops/fast/gemm.py runs them on the GPU ------------------

CHUNK_CASES = [  # x shape, (kernel, stride, padding, dilation), chunk (n0, n1, r0, r1)
    ((2, 3, 9, 8), (3, 1, 1, 1), (0, 2, 3, 6)), ((1, 2, 11, 7), (3, 2, 3, 2), (0, 1, 4, 7)),
    ((2, 2, 13, 6), (5, 1, 4, 1), (1, 2, 0, 2)), ((1, 2, 9, 8), (1, 2, 1, 1), (0, 1, 4, 6)),
    ((1, 2, 10, 9), (2, 3, 0, 2), (0, 1, 1, 3)), ((2, 1, 6, 6), (4, 2, 1, 1), (0, 2, 2, 3))]
CHUNK_IDS = [f"x{'x'.join(map(str, s))}-k{o[0]}s{o[1]}p{o[2]}d{o[3]}-rows{c[2]}:{c[3]}"
             for s, o, c in CHUNK_CASES]


def _chunk_call(function, source, shape, geometry, out_shape):
    result = np.empty(out_shape)
    source = np.ascontiguousarray(source, dtype=np.float64)
    pointer = ctypes.POINTER(ctypes.c_double)
    function(source.ctypes.data_as(pointer), *[ctypes.c_int(int(v)) for v in geometry],
             result.ctypes.data_as(pointer), ctypes.c_ssize_t(result.size))
    return result


@pytest.mark.parametrize("x_shape, options, chunk", CHUNK_CASES, ids=CHUNK_IDS)
def test_chunk_geometry_of_the_gpu_kernels(host_kernels, rng, x_shape, options, chunk):
    """The im2col kernel with a negative top offset, and the col2im gather over the rows
    ``windows._gather_rows`` picks, give the chunk's slice of the whole-image results."""
    kernel, stride, padding, dilation, out = conv_geometry(x_shape, *options)
    (n0, n1, r0, r1), (N, C, H, W) = chunk, x_shape
    offset = (padding[0] - r0 * stride[0], padding[1])
    col_shape = (C, *kernel, n1 - n0, r1 - r0, out[1])
    x = rng.standard_normal(x_shape)
    geometry = [n1 - n0, C, H, W, *kernel, r1 - r0, out[1], *stride, *offset, *dilation]
    col = _chunk_call(host_kernels.im2col, x[n0:n1], x_shape, geometry, col_shape)
    whole = im2col(x, *options).reshape(C, *kernel, N, *out)
    np.testing.assert_array_equal(col, whole[:, :, :, n0:n1, r0:r1])

    dcol = rng.standard_normal(col_shape)
    lo, hi, sub_offset = windows._gather_rows(H, col_shape, stride, offset, dilation)
    geometry = [n1 - n0, C, hi - lo, W, *kernel, r1 - r0, out[1], *stride, *sub_offset,
                *dilation]
    rows = _chunk_call(host_kernels.col2im, dcol, None, geometry, (n1 - n0, C, hi - lo, W))
    want = np.zeros((n1 - n0, C, H, W))
    windows.col2im_add(dcol, want, stride, offset, dilation)      # NumPy: the CPU body
    np.testing.assert_allclose(rows, want[:, :, lo:hi], rtol=1e-13, atol=1e-13)
    assert not want[:, :, :lo].any() and not want[:, :, hi:].any()   # nothing outside lo:hi
