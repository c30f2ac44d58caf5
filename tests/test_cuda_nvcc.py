"""The CUDA kernels compile with nvcc, for float and double, to PTX for sm_80 and sm_90.

Each ``ElementwiseKernel`` of ``minifcn/ops/fast/cuda.py`` is wrapped as CuPy wraps it: a
``__global__`` function looping ``i`` over a grid-stride range (CuPy's ``CUPY_FOR``), raw
parameters as arrays indexed by a flat ``ptrdiff_t`` and returning ``T&`` (CuPy's ``CArray``),
non-raw outputs as references to element ``i``, scalars by value, ``T`` and ``I`` typedefs.
``nvcc -ptx`` needs no GPU; with ``-Werror all-warnings`` a CUDA-only error (a host-only
function, an overflowing constant, a missing ``__device__`` helper) fails here, not on a
lent GPU. Skipped where nvcc is missing (MINIFCN_REQUIRE_NVCC=1 makes that an error).
"""
import os
import re
import shutil
import subprocess

import pytest

from cupy_emulation.kernels import C_TYPES, parse
from minifcn.ops.fast import cuda

NVCC = shutil.which("nvcc") or next(
    (p for p in (os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"),)
     if os.path.exists(p)), None)
if NVCC is None and os.environ.get("MINIFCN_REQUIRE_NVCC", "") not in ("", "0"):
    raise RuntimeError("MINIFCN_REQUIRE_NVCC is set but nvcc is not found")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA compiler) is not here")

ARCHES = ("sm_80", "sm_90")
DTYPES = {"float": "float32", "double": "float64"}
INDEX = "signed char"                  # I: argmax's int8 (index_dtype of every FCN pool)

PRELUDE = r"""
#include <cstddef>
template <typename T> struct RawArray {      // CuPy's CArray as a raw parameter sees it
  T* data_;
  __device__ T& operator[](ptrdiff_t i) const { return data_[i]; }
};
"""


def wrapper(name: str, in_params: str, out_params: str, body: str) -> str:
    """A ``__global__`` function in the form CuPy generates for an ElementwiseKernel."""
    params = parse(in_params) + parse(out_params)
    n_in = len(parse(in_params))
    args, refs = [], []
    for k, p in enumerate(params):
        ctype = C_TYPES.get(p.type, p.type)
        if p.raw:
            args.append(f"RawArray<{ctype}> {p.name}")
        elif k >= n_in:
            args.append(f"RawArray<{ctype}> _out_{p.name}")
            refs.append(f"    {ctype}& {p.name} = _out_{p.name}[i];")
        else:
            args.append(f"const {ctype} {p.name}")
    loop = ("  for (ptrdiff_t i = static_cast<ptrdiff_t>(blockIdx.x) * blockDim.x + "
            "threadIdx.x; i < _n; i += static_cast<ptrdiff_t>(blockDim.x) * gridDim.x) {")
    return (f"__global__ void minifcn_{name}({', '.join(args)}, ptrdiff_t _n) {{\n{loop}\n"
            + "\n".join(refs) + f"\n{body}\n  }}\n}}\n")


def source(kernels: dict) -> str:
    """Every kernel for every dtype, each dtype in its own namespace with its typedefs."""
    parts = [PRELUDE]
    for ctype in DTYPES:
        parts.append(f"namespace t_{ctype} {{\ntypedef {ctype} T;\ntypedef {INDEX} I;\n")
        parts += [wrapper(name, *spec) for name, spec in kernels.items()]
        parts.append("}\n")
    return "\n".join(parts)


def nvcc_ptx(text: str, arch: str, folder) -> subprocess.CompletedProcess:
    path = folder / f"kernels_{arch}.cu"
    path.write_text(text)
    return subprocess.run([NVCC, "-ptx", f"-arch={arch}", "-std=c++17", "-Werror",
                           "all-warnings", str(path), "-o", str(path.with_suffix(".ptx"))],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("arch", ARCHES)
def test_every_kernel_compiles_to_ptx_for_float_and_double(tmp_path, arch):
    done = nvcc_ptx(source(cuda.KERNELS), arch, tmp_path)
    assert done.returncode == 0, done.stderr
    ptx = (tmp_path / f"kernels_{arch}.ptx").read_text()
    assert f".target {arch}" in ptx
    entries = re.findall(r"\.entry\s+(\S+)\(", ptx)
    for ctype in DTYPES:                       # mangled: the namespace and the kernel's name
        for name in cuda.KERNELS:
            assert any(f"t_{ctype}" in e and f"minifcn_{name}" in e for e in entries), \
                (ctype, name, entries)
    assert len(entries) == len(DTYPES) * len(cuda.KERNELS)
    assert ".f64" in ptx and ".f32" in ptx          # both dtypes reached the code


PLANTS = {  # a body a CUDA compiler refuses, or warns about, where a host compiler would not
    "host-only function": ("__host__ float host_only(float v) { return v; }\n",
                           "    y = host_only(1.0f);"),
    "int overflow": ("", "    const int big = 2147483647 + 1;\n    y = (T)big;"),
}


@pytest.mark.parametrize("plant", PLANTS)
def test_a_cuda_only_error_fails_the_compile(tmp_path, plant):
    helper, body = PLANTS[plant]
    text = source({"plant": ("raw T x", "T y", body)}).replace(PRELUDE, PRELUDE + helper)
    done = nvcc_ptx(text, ARCHES[0], tmp_path)
    assert done.returncode != 0, f"nvcc accepted the planted {plant}"
