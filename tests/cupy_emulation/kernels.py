"""``cupy.ElementwiseKernel`` emulated: the CUDA body compiled with the host's C++ compiler.

CuPy runs the body once per output element, thread ``i`` seeing non-raw parameters as
element ``i`` (inputs by value, outputs by reference) and ``raw`` ones as whole arrays
indexed by flat C-order position. Here a C++ loop over ``i`` does the same: raw parameters
are pointers, type placeholders (``T``, ``I``) are bound from the arguments' dtypes as CuPy
binds them, and scalars must fit their declared types. Each source is compiled once per
machine (cached by its hash); ``-Wall -Werror``, as the CUDA bodies are held to elsewhere.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from typing import NamedTuple

import numpy

from .convert import host_array_error, is_device, to_device

C_TYPES = {"bool": "bool", "int8": "signed char", "int16": "short", "int32": "int",
           "int64": "long long", "uint8": "unsigned char", "uint16": "unsigned short",
           "uint32": "unsigned int", "uint64": "unsigned long long", "float32": "float",
           "float64": "double"}
FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Werror")
PREAMBLE = ("#include <cmath>\n#include <cstddef>\n#include <algorithm>\n"
            "using std::max; using std::min; using std::isnan; using std::isinf;\n")


def compiler() -> str | None:
    return shutil.which("c++") or shutil.which("g++")


class Param(NamedTuple):
    raw: bool
    type: str      # a dtype name ("int32") or a placeholder ("T")
    name: str

    @property
    def fixed(self) -> bool:
        return self.type in C_TYPES


def parse(params: str) -> list[Param]:
    out = []
    for part in filter(None, (p.strip() for p in params.split(","))):
        words = part.split()
        raw = words[0] == "raw"
        if raw:
            words = words[1:]
        if len(words) != 2 or not re.fullmatch(r"\w+", words[1]):
            raise ValueError(f"Syntax error: {part!r} (cupy emulation)")
        out.append(Param(raw, words[0], words[1]))
    return out


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", no_return=False, return_tuple=False, **kwargs):
        if set(kwargs) - {"options", "loop_prep", "after_loop"}:
            raise TypeError(f"ElementwiseKernel: unexpected keywords {sorted(kwargs)}")
        self.in_params, self.out_params = parse(in_params), parse(out_params)
        self.operation, self.name, self.preamble = operation, name, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        self.nin, self.nout = len(self.in_params), len(self.out_params)

    def __call__(self, *args, size=None, block_size=None, stream=None):
        if len(args) not in (self.nin, self.nin + self.nout):
            raise TypeError(f"Wrong number of arguments for {self.name!r}: {len(args)}, "
                            f"expected {self.nin} or {self.nin + self.nout}")
        types = self._bind(args)
        params = self.in_params + self.out_params
        shape = _shape(a for p, a in zip(params, args) if not p.raw and is_device(a))
        outs = list(args[self.nin:]) or [_allocate(p, types, shape) for p in self.out_params]
        if shape is None and size is None:
            raise ValueError("Loop size is undecided (all arrays raw; give size=)")
        n = int(size) if size is not None else int(numpy.prod(shape))
        run(self._source(types), self.name, params, list(args[:self.nin]) + outs, types, n,
            shape, self.nin)
        if self.no_return:
            return None
        result = tuple(to_device(o._a, outs) for o in outs)
        return result if self.return_tuple or len(result) > 1 else result[0]

    def _bind(self, args) -> dict[str, numpy.dtype]:
        types = {}
        for p, a in zip(self.in_params + self.out_params, args):
            if isinstance(a, numpy.ndarray):
                raise host_array_error("<class 'numpy.ndarray'>", f"kernel {self.name}, {p.name}")
            if p.fixed or not is_device(a):
                continue
            if types.setdefault(p.type, a.dtype) != a.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a.dtype} {types[p.type]} "
                                f"(kernel {self.name}; cupy emulation)")
        for p, a in zip(self.in_params + self.out_params, args):
            if p.fixed and is_device(a) and a.dtype != numpy.dtype(p.type):
                raise TypeError(f"{p.name} is {p.type} but got {a.dtype} (kernel {self.name})")
        return types

    def _source(self, types) -> str:
        typedefs = "".join(f"typedef {C_TYPES[numpy.dtype(t).name]} {k};\n"
                           for k, t in types.items())
        return PREAMBLE + typedefs + self.preamble + "\n" + _function(
            self.name, self.in_params, self.out_params, self.operation)


def _function(name, in_params, out_params, operation) -> str:
    """``extern "C" void name(void** _p, ptrdiff_t _n, int _b0, ...)``: the body in a loop
    over i; ``_bk`` says that non-raw input k is one scalar, read at index 0."""
    head, loop = [], []
    for k, p in enumerate(in_params + out_params):
        ctype = C_TYPES.get(p.type, p.type)
        if p.raw:
            head.append(f"  {ctype}* {p.name} = ({ctype}*)_p[{k}]; (void){p.name};")
        elif k >= len(in_params):
            loop.append(f"    {ctype}& {p.name} = (({ctype}*)_p[{k}])[i];")
        else:
            loop.append(f"    const {ctype} {p.name} = ((const {ctype}*)_p[{k}])[_b{k} ? 0 : i];"
                        f" (void){p.name};")
    flags = ", ".join(f"int _b{k}" for k in range(len(in_params) + len(out_params)))
    return (f'extern "C" void {name}(void** _p, ptrdiff_t _n, {flags}) {{\n' + "\n".join(head)
            + "\n  for (ptrdiff_t i = 0; i < _n; ++i) {\n" + "\n".join(loop)
            + f"\n{operation}\n  }}\n}}\n")


def _shape(arrays):
    shapes = [a.shape for a in arrays]
    return numpy.broadcast_shapes(*shapes) if shapes else None


def _allocate(p: Param, types, shape):
    from .device_array import ndarray
    if shape is None:
        raise ValueError(f"output {p.name}: its shape is undecided (all inputs raw)")
    return ndarray(shape, numpy.dtype(p.type) if p.fixed else types[p.type])


def run(source, name, params, args, types, n, shape, nin) -> None:
    """Call the compiled body for i in [0, n): arrays through C-contiguous buffers (copied
    back into raw and output arguments that are not C-contiguous), scalars checked against
    their declared types."""
    buffers, writes, flags = [], [], []
    for k, (p, a) in enumerate(zip(params, args)):
        if is_device(a):
            data = a._a if p.raw or shape is None else numpy.broadcast_to(a._a, shape)
            buf = numpy.ascontiguousarray(data)
            if (p.raw or k >= nin) and not numpy.may_share_memory(buf, a._a):
                writes.append((a._a, buf))
            flags.append(0)
        else:
            dtype = numpy.dtype(p.type) if p.fixed else types.get(p.type, numpy.float64)
            buf = numpy.array([_fits(a, dtype, p.name)], dtype)
            flags.append(1)
        buffers.append(buf)
    pointers = (ctypes.c_void_p * len(buffers))(*[b.ctypes.data for b in buffers])
    _library(source, name)(pointers, ctypes.c_ssize_t(n), *flags)
    for target, buf in writes:
        if target.flags.writeable and buf.shape == target.shape:
            target[...] = buf


def _fits(value, dtype, name):
    if dtype.kind in "iu" and not numpy.iinfo(dtype).min <= int(value) <= numpy.iinfo(dtype).max:
        raise OverflowError(f"{name}={value} does not fit {dtype} (cupy emulation)")
    return value


@functools.lru_cache(maxsize=None)
def _library(source: str, name: str):
    """The compiled function ``name`` of ``source``, built once per machine."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("the cupy emulation compiles kernels with a C++ compiler; none found")
    folder = os.environ.get("MINIFCN_EMULATION_CACHE") or os.path.join(
        tempfile.gettempdir(), f"minifcn-cupy-emulation-{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha1((cc + " ".join(FLAGS) + source).encode()).hexdigest()[:20]
    library = os.path.join(folder, f"{digest}.so")
    if not os.path.exists(library):
        src, partial = (os.path.join(folder, f"{digest}.{os.getpid()}{ext}")
                        for ext in (".cpp", ".so.partial"))
        with open(src, "w") as f:
            f.write(source)
        done = subprocess.run([cc, *FLAGS, src, "-o", partial], capture_output=True, text=True)
        os.remove(src)
        if done.returncode != 0:
            raise RuntimeError(f"kernel {name} does not compile (host C++ compiler, cupy "
                               f"emulation):\n{done.stderr}")
        os.replace(partial, library)
    function = getattr(ctypes.CDLL(library), name)
    function.restype = None
    return function
