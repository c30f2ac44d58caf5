"""Write ``cupy_names.json``: the names real CuPy exposes, read from an installed CuPy.

Run it with a Python where CuPy is installed (no GPU needed: ``import cupy`` works without
one), e.g. in a throwaway environment::

    python3 -m venv /tmp/cupyenv && /tmp/cupyenv/bin/pip install cupy-cuda12x
    /tmp/cupyenv/bin/python tests/cupy_emulation/make_names.py

The emulation exposes only these names, and checks the keywords of every call against the
parameters recorded here. A parameter list is read from ``inspect.signature`` or, for
CuPy's compiled methods, from the signature line their docstrings start with; ``null``
where neither gives one (then only NumPy's own signature checks the call).
"""
from __future__ import annotations

import importlib
import inspect
import json
import pathlib
import re
import sys

MODULES = ("cupy", "cupy.random", "cupy.linalg", "cupy.fft", "cupy.testing", "cupy.cuda",
           "cupy.cuda.runtime", "cupyx", "cupyx.profiler", "cupyx.scipy", "cupyx.scipy.special",
           "cupyx.scipy.ndimage")          # cupyx.scipy.linalg needs cuBLAS to import
CLASSES = ("cupy.ndarray", "cupy.ufunc", "cupy.ElementwiseKernel", "cupy.RawKernel",
           "cupy.random.Generator", "cupy.random.RandomState", "cupy.cuda.Device",
           "cupy.cuda.Stream", "cupy.cuda.Event", "cupy.cuda.MemoryPool",
           "cupy.cuda.PinnedMemoryPool", "cupy.flatiter")
# A ufunc's __call__ is compiled and takes **kwargs; it pops these and refuses the rest
# ("Wrong arguments"), so a NumPy-only keyword such as where= fails on the GPU.
UFUNC_KEYWORDS = ["out", "dtype", "casting"]
OUTPUT = pathlib.Path(__file__).with_name("cupy_names.json")


def _params_from_signature(signature: inspect.Signature) -> list[str]:
    out = []
    for p in signature.parameters.values():
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        out.append(prefix + p.name)
    return [p for p in out if p != "self"]


def _params_from_doc(obj) -> list[str] | None:
    """Cython methods: 'Name.method(self, a, b=None, *, c) -> type' on the first line."""
    first = (getattr(obj, "__doc__", None) or "").strip().splitlines()[:1]
    name = getattr(obj, "__name__", "")
    match = re.match(rf"[\w.]*\b{re.escape(name)}\((.*)\)", first[0]) if first else None
    if not match:
        return None
    params = []
    for part in (p.strip() for p in match.group(1).split(",")):
        part = part.split("=")[0].split(":")[0].strip()
        if part and part not in ("self", "/"):
            params.append(part)
    return params


def params(obj) -> list[str] | None:
    if type(obj).__name__ == "ufunc":
        return ["*args"] + UFUNC_KEYWORDS
    try:
        return _params_from_signature(inspect.signature(obj))
    except (TypeError, ValueError):
        return _params_from_doc(obj)


def describe(obj) -> dict:
    kind = type(obj).__name__
    if inspect.ismodule(obj):
        return {"kind": "module"}
    if inspect.isclass(obj):
        return {"kind": "class"}
    if kind == "ufunc":
        return {"kind": "ufunc", "params": params(obj)}
    if callable(obj):
        return {"kind": "function", "params": params(obj)}
    return {"kind": "value", "type": kind}


def lazy_names(module) -> dict:
    """Names a module provides through its __getattr__ (cupy.random.Generator): the string
    constants of that function which it answers, or answers with an ImportError (a library
    such as cuBLAS that this machine lacks)."""
    lazy = getattr(module, "__getattr__", None)
    out = {}
    for key in getattr(getattr(lazy, "__code__", None), "co_consts", ()):
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
            continue
        try:
            out[key] = describe(getattr(module, key))
        except ImportError:
            out[key] = {"kind": "module"}
        except AttributeError:
            pass
    return out


def module_names(name: str) -> dict:
    module = importlib.import_module(name)
    public = [n for n in dir(module) if not n.startswith("_")]
    public += [n for n in ("__version__",) if hasattr(module, n)]
    return {**lazy_names(module), **{n: describe(getattr(module, n)) for n in sorted(public)}}


def class_names(path: str) -> dict:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    out = {}
    for attr in sorted(dir(cls)):
        if attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__")):
            continue
        value = getattr(cls, attr, None)
        if value is None:
            out[attr] = {"kind": "none"}              # e.g. __hash__ = None
        elif isinstance(value, property) or type(value).__name__ == "getset_descriptor":
            out[attr] = {"kind": "property"}
        elif callable(value):
            out[attr] = {"kind": "method", "params": params(value)}
        else:
            out[attr] = {"kind": "value", "type": type(value).__name__}
    return out


def main() -> int:
    import cupy
    table = {"cupy_version": cupy.__version__, "python": sys.version.split()[0],
             "modules": {m: module_names(m) for m in MODULES},
             "classes": {c: class_names(c) for c in CLASSES}}
    OUTPUT.write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT}: CuPy {cupy.__version__}, "
          f"{sum(map(len, table['modules'].values()))} module names, "
          f"{sum(map(len, table['classes'].values()))} class attributes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
