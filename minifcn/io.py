r"""Weight files: ``save_weights`` / ``load_weights``, and the atomic writer beneath them.

A weight file is an ``.npz`` archive, the format of ``numpy.savez``: one ``.npy`` member
per parameter, named by its dotted name (``conv1_1.weight``), plus one metadata member,
``__minifcn__``, a 0-d unicode array holding a JSON object::

    {"format": 1, "arch": "fcn8s", "n_class": 21, "width": 1.0,
     "minifcn": "0.1.0", "dtype": "float32"}

So ``numpy.load("fcn8s.npz")["fc6.weight"]`` works anywhere, without minifcn.

Reading never unpickles (``numpy.load(..., allow_pickle=False)``): an object array is
refused, so a weight file cannot run code. A plain ``.npz`` of float arrays without the
metadata member (weights a user converted with their own script) loads too, as long as its
names and shapes fit the model.

Writing is atomic and durable (:func:`atomic_open`): the archive goes to a temporary file
in the target's folder, is flushed and fsynced, and is then renamed onto the target with
``os.replace``, and the folder is fsynced. After a crash or an error the target is the old
file or the new one, never a mix, and no temporary file is left behind.
"""
from __future__ import annotations

import contextlib
import json
import numbers
import os
import secrets
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from . import __version__
from .backend import asnumpy

FORMAT_VERSION = 1
METADATA_KEY = "__minifcn__"

# What a damaged archive raises inside numpy.load and zipfile: bad magic or header
# (ValueError), a cut or corrupt zip (BadZipFile, EOFError, zlib.error), an unreadable file
# (OSError), a zip feature zipfile lacks (NotImplementedError).
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
                NotImplementedError)


class WeightsError(ValueError):
    """A weight file that cannot be read, or that does not fit the model; names the file."""


class WeightsFile(NamedTuple):
    """What :func:`read_weights` returns."""

    arrays: dict     # dotted name -> NumPy array, in the file's order
    metadata: dict   # the ``__minifcn__`` entry; {} for a plain .npz


# --- atomic, durable writes ---------------------------------------------------------------

@contextlib.contextmanager
def atomic_open(path):
    """Open a temporary binary file beside ``path``; on a clean exit it becomes ``path``.

    The file is flushed and fsynced, renamed onto ``path`` with ``os.replace`` (atomic on
    POSIX and Windows), then the folder is fsynced so that the rename survives a crash. If
    the ``with`` block raises, the temporary file is removed and ``path`` is untouched. The
    new file's permissions follow the umask, as ``open(path, "wb")`` would give.

    >>> with atomic_open("model.npz") as f:        # doctest: +SKIP
    ...     f.write(payload)
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _fsync_folder(folder)


def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a binary file object and make the result ``path`` atomically."""
    with atomic_open(path) as f:
        write(f)


def _fsync_folder(folder: str) -> None:
    """Make a rename durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- arrays <-> .npz ----------------------------------------------------------------------

def write_weights(path, arrays, **metadata) -> None:
    """Write ``arrays`` (name -> array on any device) and ``metadata`` to an .npz, atomically.

    ``metadata`` (JSON-serialisable values) is stored with the format version, the minifcn
    version and the arrays' dtype. Object arrays are refused: the file never holds pickles.
    """
    if METADATA_KEY in arrays:
        raise ValueError(f"{METADATA_KEY!r} is reserved for the metadata entry")
    host = {str(name): asnumpy(a) for name, a in arrays.items()}     # copies from the GPU
    entry = {"format": FORMAT_VERSION, "minifcn": __version__, "dtype": _dtype_name(host),
             **{k: _plain(v) for k, v in metadata.items()}}
    members = [(METADATA_KEY, np.array(json.dumps(entry))), *host.items()]

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, a in members:
                with archive.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, a, allow_pickle=False)

    atomic_write(path, write)


def read_weights(path) -> WeightsFile:
    """Read every array and the metadata of a weight file, or raise :class:`WeightsError`.

    All members are read and checked here (float arrays, valid metadata), so a damaged file
    fails before anything is done with it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsError(f"weight file {path!r} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except _READ_ERRORS as err:
        raise WeightsError(f"{path!r} is not a readable .npz weight file: {err}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise WeightsError(f"{path!r} holds a single array ({type(loaded).__name__}), not "
                           "an .npz archive of named arrays")
    with loaded:
        arrays = {name: _read_member(path, loaded, name) for name in loaded.files}
    entry = arrays.pop(METADATA_KEY, None)
    metadata = {} if entry is None else _parse_metadata(path, entry)
    not_float = [f"{k} ({a.dtype})" for k, a in arrays.items() if a.dtype.kind != "f"]
    if not_float:
        raise WeightsError(f"{path!r}: weights must be float arrays, but "
                           + ", ".join(not_float[:5]) + _more(not_float, 5) + " are not")
    return WeightsFile(arrays, metadata)


def _read_member(path, loaded, name):
    try:
        value = loaded[name]
    except _READ_ERRORS as err:
        raise WeightsError(f"{path!r} is damaged or truncated: member {name!r} cannot be "
                           f"read ({type(err).__name__}: {err})") from None
    if not isinstance(value, np.ndarray):
        raise WeightsError(f"{path!r}: member {name!r} is not a .npy array")
    return value


def _parse_metadata(path, entry) -> dict:
    metadata = None
    if entry.dtype.kind == "U" and entry.ndim == 0:
        with contextlib.suppress(ValueError):
            metadata = json.loads(str(entry[()]))
    if not isinstance(metadata, dict) or not isinstance(metadata.get("format"), int):
        raise WeightsError(f"{path!r}: the {METADATA_KEY!r} entry is not minifcn metadata "
                           "(a JSON object with a 'format' number)")
    if metadata["format"] > FORMAT_VERSION:
        raise WeightsError(f"{path!r} has weight-file format {metadata['format']}, newer than "
                           f"this minifcn ({__version__}) reads (format {FORMAT_VERSION}); "
                           "upgrade minifcn")
    return metadata


# --- models -------------------------------------------------------------------------------

def describe(model) -> dict:
    """The metadata stored for ``model``: ``arch`` (``model.arch``, else the class name),
    and ``n_class`` / ``width`` where the model has them."""
    metadata = {"arch": getattr(model, "arch", None) or type(model).__name__}
    for key in ("n_class", "width"):
        if getattr(model, key, None) is not None:
            metadata[key] = _plain(getattr(model, key))
    return metadata


def save_weights(path, model) -> None:
    """Save every parameter of ``model`` (on any device) to the .npz file ``path``, atomically.

    ``path`` is written exactly as given (no ``.npz`` is appended). See the module docstring
    for the format.
    """
    write_weights(path, model.state_dict(), **describe(model))


def load_weights(path, model, strict: bool = True):
    """Load a weight file into ``model``; returns ``(missing, unexpected)`` key lists.

    Everything is checked before any parameter changes: the file must be a readable .npz of
    float arrays, every name must have the parameter's shape and, when ``strict``, the names
    must match exactly. Any failure raises :class:`WeightsError` naming the file and the
    offending keys and shapes, and leaves every parameter as it was.

    Each array is cast to its parameter's dtype and moved to its device: float32 weights
    loaded into a float64 model give float64 parameters. The architecture in the metadata
    is reported in errors but not enforced; names and shapes decide, so FCN-8s weights load
    into ``FCN8sAtOnce``, and converted VGG16 weights into any FCN with ``strict=False``.
    """
    path = os.fspath(path)
    arrays, metadata = read_weights(path)
    names = [name for name, _ in model.named_parameters()]
    if not strict and names and not set(names) & set(arrays):
        raise WeightsError(f"{path!r} shares no parameter name with {type(model).__name__} "
                           f"(file: {_few(arrays)}; model: {_few(names)})")
    try:
        return model.load_state_dict(arrays, strict=strict)
    except ValueError as err:
        raise WeightsError(f"{path!r} ({_summary(metadata)}) does not fit the model "
                           f"({_summary(describe(model))}): {err}") from None


# --- small helpers ------------------------------------------------------------------------

def _dtype_name(arrays: dict) -> str:
    return ",".join(sorted({str(a.dtype) for a in arrays.values()})) or "none"


def _plain(value):
    """A JSON-friendly copy of a metadata value (NumPy scalars become Python numbers)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _summary(metadata: dict) -> str:
    if not metadata:
        return "no minifcn metadata"
    details = [f"{k}={metadata[k]}" for k in ("n_class", "width") if k in metadata]
    return ", ".join([str(metadata.get("arch", "unknown architecture")), *details])


def _few(names, n: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:n]) + _more(names, n) if names else "nothing"


def _more(items, n: int) -> str:
    return f" (and {len(items) - n} more)" if len(items) > n else ""
