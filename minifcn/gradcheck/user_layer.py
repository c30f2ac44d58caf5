"""Your own layer, named as ``WHERE:NAME``: what ``minifcn gradcheck my_layer.py:NAME`` checks.

WHERE is a Python file (``my_layer.py``; it is imported, not run as a script, so code under
``if __name__ == "__main__":`` does not run) or an importable module (``my_package.layers``,
found from the current folder too). NAME is one of

- a ``Module`` subclass, built as ``NAME(*args, **kwargs)`` (no arguments by default);
- a function returning a Module (a factory such as ``make_layer``), called the same way;
- a Module instance;
- a pair ``(forward, backward)`` of a functional op, or two names ``forward,backward``.

:func:`load_layer` returns a :class:`UserLayer`, ready for ``check_module`` (``.module``) or
``check_function`` (``.forward``, ``.backward``); :func:`check_layer` checks it at random
inputs of given shapes. Whatever goes wrong in loading is a :class:`LayerSpecError` whose
one-line message says what.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass

import numpy as np

from ..backend import to_device
from .checker import check_function
from .module_check import check_module

KINDS = ("a Module subclass, a function returning a Module, a Module instance or a "
         "(forward, backward) pair")
_MODULE_METHODS = ("forward", "backward", "named_parameters", "zero_grad", "to")


class LayerSpecError(ValueError):
    """``WHERE:NAME`` does not name a layer that can be checked; the message says why."""


@dataclass
class UserLayer:
    source: str             # the file holding the layer's code (to point at its errors)
    module: object = None   # a Module for check_module, or None for a functional pair
    forward: object = None
    backward: object = None


def load_layer(spec: str, args=(), kwargs=None) -> UserLayer:
    """The layer ``spec`` names; a Module class or factory is called with ``args, kwargs``."""
    where, names = split_spec(spec)
    code = import_source(where)
    source = getattr(code, "__file__", None) or where
    found = [_attribute(code, name, where) for name in names]
    if len(found) == 1 and isinstance(found[0], (tuple, list)) and len(found[0]) == 2:
        found = list(found[0])                      # NAME = (forward, backward)
    if len(found) == 2:
        if args or kwargs:
            raise LayerSpecError("--init-args builds a Module; a (forward, backward) pair "
                                 "takes none")
        return UserLayer(source, forward=_function(found[0], "forward"),
                         backward=_function(found[1], "backward"))
    return UserLayer(source, module=_module(found[0], names[0], tuple(args), kwargs or {},
                                            source))


def check_layer(layer: UserLayer, shapes, *, device="cpu", seed=0, **options):
    """The report on ``layer`` at standard normal inputs of ``shapes``, drawn from ``seed``
    on ``device``: a Module's by ``check_module``, a pair's by ``check_function``, each given
    ``seed`` and ``options``."""
    rng = np.random.default_rng(seed)
    inputs = [to_device(rng.standard_normal(shape), device) for shape in shapes]
    if layer.module is not None:
        return check_module(layer.module.to(device=device), *inputs, seed=seed, **options)
    return check_function(layer.forward, layer.backward, inputs, seed=seed, **options)


def split_spec(spec: str):
    """``"my_layer.py:A"`` -> ``("my_layer.py", ["A"])``; ``"m:f,b"`` -> ``("m", ["f", "b"])``."""
    where, colon, text = spec.rpartition(":")
    if not (colon and where and text):
        raise LayerSpecError(f"expected FILE.py:NAME or package.module:NAME, got {spec!r}")
    names = text.split(",")
    if len(names) > 2 or not all(name.isidentifier() for name in names):
        raise LayerSpecError(f"NAME must be one Python name, or two as forward,backward; "
                             f"got {text!r}")
    return where, names


def import_source(where: str):
    """The Python module of a file path (``*.py``, or any path with a folder) or a name."""
    if where.endswith(".py") or os.sep in where or "/" in where or os.path.isfile(where):
        return _import_file(where)
    return _import_module(where)


def failure(err: BaseException, layer: UserLayer):
    """What checking ``layer`` ran into, on one line: an error raised in the layer's own code
    (with its line), or the checker's word on the layer (a ValueError or TypeError, or
    Module's NotImplementedError for a missing forward); None for anything else."""
    if error_location(err, layer.source):
        return f"the layer raised {describe(err, layer.source)}"
    if isinstance(err, (ValueError, TypeError, NotImplementedError)):
        return " ".join(str(err).split())
    return None


def describe(err: BaseException, source: str) -> str:
    """``"ValueError: the message (my_layer.py, line 12)"``: the error on one line, and where
    in ``source`` it was raised when it was."""
    message = err.msg if isinstance(err, SyntaxError) else str(err)   # without its place
    text = f"{type(err).__name__}: {' '.join(str(message).split())}".rstrip(": ")
    where = error_location(err, source)
    return f"{text} ({where})" if where else text


def error_location(err: BaseException, source: str) -> str:
    """``"my_layer.py, line 12"``: the innermost line of ``source`` that ``err`` passed
    through, or ``""`` when it did not pass through that file."""
    if not source:
        return ""
    same = lambda path: os.path.normcase(os.path.abspath(path or "")) == \
        os.path.normcase(os.path.abspath(source))
    if isinstance(err, SyntaxError) and same(err.filename):
        return f"{os.path.basename(source)}, line {err.lineno}"
    lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__)
             if same(frame.filename)]
    return f"{os.path.basename(source)}, line {lines[-1]}" if lines else ""


def _import_file(path: str):
    if not os.path.exists(path):
        raise LayerSpecError(f"file not found: {path}")
    if not (os.path.isfile(path) and path.endswith(".py")):
        raise LayerSpecError(f"{path} is not a Python file: expected a .py file")
    stem = os.path.splitext(os.path.basename(path))[0]
    name = "_minifcn_user_layer_" + "".join(c if c.isalnum() else "_" for c in stem)
    spec = importlib.util.spec_from_file_location(name, path)
    code = importlib.util.module_from_spec(spec)
    sys.modules[name] = code            # dataclasses and pickle look classes up there
    try:
        with _on_path(os.path.dirname(os.path.abspath(path))):   # as `python FILE` would
            spec.loader.exec_module(code)
    except (Exception, SystemExit) as err:
        del sys.modules[name]
        raise LayerSpecError(f"importing {path} raised {describe(err, path)}") from None
    return code


def _import_module(name: str):
    try:
        with _on_path(os.getcwd()):
            return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            raise LayerSpecError(f"no module named {name!r} (for a file, give its path, "
                                 f"such as {name.replace('.', '/')}.py)") from None
        raise LayerSpecError(f"importing {name} raised {describe(err, '')}") from None
    except (Exception, SystemExit) as err:
        raise LayerSpecError(f"importing {name} raised {describe(err, '')}") from None


@contextlib.contextmanager
def _on_path(folder: str):
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added:
            sys.path.remove(folder)


def _attribute(code, name: str, where: str):
    if hasattr(code, name):
        return getattr(code, name)
    own = [n for n, v in vars(code).items() if not n.startswith("_")
           and getattr(v, "__module__", None) == code.__name__]
    raise LayerSpecError(f"{where} has no {name!r}; it defines "
                         + (", ".join(sorted(own)[:10]) or "no classes or functions"))


def _function(f, role: str):
    if not callable(f) or isinstance(f, type):
        raise LayerSpecError(f"the pair's {role} must be a function, got "
                             f"{f.__name__ if isinstance(f, type) else type(f).__name__}")
    return f


def _is_module(obj) -> bool:
    """A Module subclass or instance: what check_module needs (duck-typed, as it is)."""
    return all(callable(getattr(obj, m, None)) for m in _MODULE_METHODS)


def _module(obj, name: str, args: tuple, kwargs: dict, source: str):
    if _is_module(obj) and not isinstance(obj, type):           # an instance
        if args or kwargs:
            raise LayerSpecError(f"{name} is a Module instance, it takes no --init-args")
        return obj
    if not callable(obj) or (isinstance(obj, type) and not _is_module(obj)):
        what = ("a class but not a Module subclass" if isinstance(obj, type)
                else f"of type {type(obj).__name__}")
        raise LayerSpecError(f"{name} is {what}; expected {KINDS}")
    _check_call(obj, name, args, kwargs)
    try:
        made = obj(*args, **kwargs)
    except Exception as err:
        raise LayerSpecError(f"{name}({_call_text(args, kwargs)}) raised "
                             f"{describe(err, source)}") from None
    if not _is_module(made):
        raise LayerSpecError(f"{name}({_call_text(args, kwargs)}) returned an object of type "
                             f"{type(made).__name__}, not a Module; expected {KINDS}")
    return made


def _check_call(obj, name: str, args: tuple, kwargs: dict) -> None:
    """A LayerSpecError where the constructor or factory cannot take ``args, kwargs``."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):     # no signature to see: let the call decide
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        given = f"--init-args {_call_text(args, kwargs)!r}" if args or kwargs \
            else "no arguments"
        hint = ("; give them with --init-args, such as --init-args '3' or "
                "--init-args '3, gain=0.5'") if not (args or kwargs) else ""
        if name.endswith("_forward") and not isinstance(obj, type):
            hint = (f"; for a functional pair name both, as "
                    f"{name},{name[:-len('_forward')]}_backward")
        raise LayerSpecError(f"{name}{signature} cannot be called with {given}: {err}{hint}") \
            from None


def _call_text(args: tuple, kwargs: dict) -> str:
    return ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
