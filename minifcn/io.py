r"""Weight files: ``save_weights`` / ``load_weights``, checked by checksums, written atomically.

A weight file is an ``.npz`` archive, the format of ``numpy.savez``: one ``.npy`` member
per parameter, named by its dotted name (``conv1_1.weight``), plus one metadata member,
``__minifcn__``, a 0-d unicode array holding a JSON object (format 2)::

    {"format": 2, "minifcn": "0.1.0", "dtype": "float32",
     "arch": "fcn8s", "n_class": 21, "width": 1.0,
     "arrays": {"conv1_1.weight": {"dtype": "<f4", "shape": [64, 3, 3, 3],
                                   "crc32": "5f3c0a91"}, ...},
     "crc32": "0be1c7d4"}

So ``numpy.load("fcn8s.npz")["fc6.weight"]`` works anywhere, without minifcn.

**Checksums.** ``arrays`` records every other member's dtype (``numpy.dtype.str``), shape
and the CRC-32 of its bytes in C order; the last ``crc32`` is that of the metadata itself
(its JSON with sorted keys and compact separators, without this one key). Reading checks
all of them before returning anything, so a truncated file, a flipped bit, a member swapped
or dropped is reported as :class:`WeightsError` naming the file and the array, and
:func:`load_weights` changes no parameter. (The zip layer's own CRC catches most flips in a
member's bytes as well; the table also catches what it cannot: a member rewritten with a
fresh zip CRC, a changed header that makes NumPy read fewer bytes, a missing member.)
Format-1 files (no checksums) and plain ``.npz`` files without the metadata member (weights
a user converted with their own script) still load, checked by the zip CRC only.

Reading never unpickles: a member whose ``.npy`` header declares Python objects is refused,
so a weight file cannot run code. Reading is bounded (:mod:`minifcn.npz_members`): names are
checked against the table and sizes against the zip directory and the ``.npy`` headers before
anything is decompressed, so a zip bomb is refused unread. A PyTorch file (:func:`is_torch_file`) given
as a weight file is refused with the command that converts it (``minifcn convert``).

Writing is atomic and durable (:func:`minifcn.atomic.atomic_open`, also importable from
here): a temporary file in the target's folder, fsynced and renamed onto the target, the
folder fsynced. After a crash or a kill the target is the old file or the new one.

Checkpoints (:mod:`minifcn.train`) are written and read by the same :func:`write_archive`
and :func:`read_archive`, so they carry the same checksums.
"""
from __future__ import annotations

import contextlib
import json
import numbers
import os
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from ._version import __version__
from .atomic import atomic_open, atomic_write  # noqa: F401  (part of this module's API)
from .backend import asnumpy
from .npz_members import MemberError, NpzMembers, PickledMember

FORMAT_VERSION = 2        # 1: no checksums (still read); 2: "arrays" table and "crc32"
METADATA_KEY = "__minifcn__"
BATCH_COUNTER = "num_batches_tracked"     # BatchNorm's int64 buffer, the one integer array
_TABLE, _OWN_CRC = "arrays", "crc32"      # metadata keys the writer computes

# What a damaged archive raises inside zipfile and NumPy's header reader is varied: bad
# magic or header (ValueError, SyntaxError or tokenize.TokenError), a cut
# or corrupt zip (BadZipFile, EOFError, zlib.error), an unreadable file (OSError), a member
# flagged as encrypted (RuntimeError), a declared shape too large (MemoryError). The bytes
# are untrusted input, so any Exception while parsing them means the file is bad.
_READ_ERRORS = (Exception,)


class WeightsError(ValueError):
    """A weight file that cannot be read, or that does not fit the model; names the file."""


class WeightsFile(NamedTuple):
    """What :func:`read_weights` returns."""

    arrays: dict     # dotted name -> NumPy array, in the file's order
    metadata: dict   # the ``__minifcn__`` entry without its checksums; {} for a plain .npz


# --- arrays <-> .npz ----------------------------------------------------------------------

def write_archive(path, arrays, metadata=None) -> None:
    """Write ``arrays`` (name -> array on any device, any non-object dtype) and the
    ``metadata`` dict to an .npz with the checksum table, atomically.

    The format version, the minifcn version (unless given) and the checksums are added to
    ``metadata``; given values for ``format``, ``arrays`` and ``crc32`` are replaced, so
    the metadata read from one file can be passed on to write another.
    """
    if METADATA_KEY in arrays:
        raise ValueError(f"{METADATA_KEY!r} is reserved for the metadata entry")
    host = {str(name): asnumpy(a) for name, a in arrays.items()}     # copies from the GPU
    objects = [name for name, a in host.items() if a.dtype.hasobject]
    if objects:
        raise ValueError(f"arrays must not hold Python objects (they would be pickled), but "
                         f"{_few(objects)} do")
    given = {k: _plain(v) for k, v in (metadata or {}).items() if k != _OWN_CRC}
    entry = {"minifcn": __version__, **given, "format": FORMAT_VERSION,
             _TABLE: {k: _record(a) for k, a in host.items()}}
    entry[_OWN_CRC] = _metadata_crc(entry)
    members = [(METADATA_KEY, np.array(json.dumps(entry))), *host.items()]

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, a in members:
                with archive.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, a, allow_pickle=False)

    atomic_write(path, write)


def read_archive(path, what: str = "weight file") -> WeightsFile:
    """Read every array and the metadata of an .npz and verify its checksums, or raise
    :class:`WeightsError` naming the file (``what`` names the kind of file in messages).

    Everything is read and checked before this returns, so a damaged file fails before
    anything is done with it. Nothing is decompressed before its declared size is checked
    (:mod:`minifcn.npz_members`): members the checksum table does not list are refused
    unread, and a file cannot make this read more than 16 times its size on disk.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsError(f"{what} {path!r} does not exist")
    _check_magic(path, what)
    try:
        npz = NpzMembers(path)
    except MemberError as err:
        raise WeightsError(f"{path!r}: {err}") from None
    except _READ_ERRORS as err:
        raise WeightsError(f"{path!r} is not a readable .npz {what}: {err}") from None
    with npz:
        metadata = _read_metadata(path, npz)
        table = _verify_metadata(path, metadata)
        names = [name for name in npz.names if name != METADATA_KEY]
        if table is not None:
            _check_names(path, names, table)
        arrays = {name: _read_member(path, npz, name, table) for name in names}
    _verify_arrays(path, arrays, table)
    return WeightsFile(arrays, metadata)


def _check_magic(path, what: str) -> None:
    """Refuse a file that is not a zip archive before zipfile reads it, saying what it is."""
    try:
        with open(path, "rb") as f:
            start = f.read(6)
    except OSError as err:
        raise WeightsError(f"{path!r} is not a readable .npz {what}: {err}") from None
    if start.startswith(b"\x93NUMPY"):
        raise WeightsError(f"{path!r} holds a single array (.npy), not an .npz archive of "
                           "named arrays")
    if not start.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        kind = "is empty" if not start else f"starts with {start!r}"
        raise WeightsError(f"{path!r} is not a readable .npz {what}: an .npz is a zip "
                           f"archive, and this file {kind}")


def write_weights(path, arrays, **metadata) -> None:
    """Write ``arrays`` (name -> array on any device) and ``metadata`` to an .npz, atomically.

    ``metadata`` (JSON-serialisable values) is stored with the format version, the minifcn
    version, the arrays' dtype and the checksums (module docstring). Object arrays are
    refused: the file never holds pickles.
    """
    host = {str(name): asnumpy(a) for name, a in arrays.items()}
    write_archive(path, host, {"dtype": _dtype_name(host), **metadata})


def read_weights(path) -> WeightsFile:
    """Read every array and the metadata of a weight file, or raise :class:`WeightsError`.

    All members are read and checked here (checksums, float arrays, valid metadata), so a
    damaged file fails before anything is done with it. A PyTorch file is refused with the
    command that converts it.
    """
    path = os.fspath(path)
    if os.path.isfile(path) and is_torch_file(path):
        raise WeightsError(f"{path!r} is {torch_file_advice(path)}")
    arrays, metadata = read_archive(path)
    if metadata.get("kind") == "checkpoint":
        raise WeightsError(f"{path!r} is a training checkpoint, not a weight file: use the "
                           "model.npz that train writes beside it (or load_checkpoint)")
    require_float_arrays(path, arrays)
    return WeightsFile(arrays, metadata)


def require_float_arrays(path, arrays: dict, what: str = "weights") -> None:
    """A :class:`WeightsError` naming ``path`` unless every array is a real float array
    (what weight files and checkpoints' parameters hold; int, bool and complex are not),
    BatchNorm's ``num_batches_tracked`` counters excepted: those must be int64 scalars, as
    PyTorch saves them (:func:`is_batch_counter`), and nothing else."""
    counters = [k for k in arrays if k.rsplit(".", 1)[-1] == BATCH_COUNTER]
    bad_counters = [f"{k} ({arrays[k].dtype} {arrays[k].shape})" for k in counters
                    if not is_batch_counter(k, arrays[k])]
    if bad_counters:
        raise WeightsError(f"{path!r}: {what}: BatchNorm's {BATCH_COUNTER} must be an int64 "
                           "scalar, but " + ", ".join(bad_counters[:5])
                           + _more(bad_counters, 5) + " are not")
    not_float = [f"{k} ({a.dtype})" for k, a in arrays.items()
                 if a.dtype.kind != "f" and not is_batch_counter(k, a)]
    if not_float:
        raise WeightsError(f"{path!r}: {what} must be float arrays, but "
                           + ", ".join(not_float[:5]) + _more(not_float, 5) + " are not")


def is_batch_counter(name, array) -> bool:
    """Whether ``name``/``array`` is BatchNorm's batch counter: named ``...num_batches_tracked``
    and an int64 0-d array (PyTorch's ``torch.long`` scalar): the one integer array a weight
    file may hold."""
    return (name.rsplit(".", 1)[-1] == BATCH_COUNTER and array.dtype == np.int64
            and array.shape == ())


def torch_file_advice(path) -> str:
    """What to say of a PyTorch file given as a weight file, after "PATH is": the way out."""
    return (f"a PyTorch file (torch.save), not minifcn's .npz; convert it first: "
            f"minifcn convert {os.fspath(path)} OUT.npz")


def is_torch_file(path) -> bool:
    """Whether ``path`` was written by ``torch.save``: a zip archive holding
    ``<name>/data.pkl``, or a bare pickle (the format before PyTorch 1.6). An .npz is a zip
    of .npy members and never holds a pickle. Reads a few bytes and the zip's directory;
    False for anything unreadable."""
    try:
        with open(path, "rb") as f:
            if f.read(1) == b"\x80":               # the PROTO opcode a pickle starts with
                return True
        with zipfile.ZipFile(path) as archive:
            return any(name.rsplit("/", 1)[-1] == "data.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _read_member(path, npz, name, table=None):
    """One member's array; with a checksum table, its header must match its record."""
    def expect(dtype, shape):
        record = table[name]
        if not isinstance(record, dict) or record.get("dtype") != dtype.str \
                or record.get("shape") != list(shape):
            raise WeightsError(f"{path!r} is damaged: array {name!r} fails its checksum "
                               f"(recorded {_describe(record)}, found {dtype.str} {shape} "
                               "in its .npy header)")

    try:
        return npz.read(name, expect if table is not None else None)
    except WeightsError:
        raise
    except PickledMember:
        raise WeightsError(f"{path!r}: member {name!r} is a pickled object array; minifcn "
                           "never unpickles (allow_pickle=False), since loading a pickle "
                           "can run code from the file") from None
    except MemberError as err:
        raise WeightsError(f"{path!r} is damaged or altered: {err}") from None
    except _READ_ERRORS as err:
        raise _damaged(path, name, err) from None


def _damaged(path, name, err) -> WeightsError:
    return WeightsError(f"{path!r} is damaged or truncated: member {name!r} cannot be read "
                        f"({type(err).__name__}: {err})")


def _read_metadata(path, npz) -> dict:
    """The ``__minifcn__`` entry (a 0-d string holding JSON), or {} where there is none."""
    if METADATA_KEY not in npz.names:
        return {}

    def expect(dtype, shape):
        if dtype.kind != "U" or shape != ():
            raise WeightsError(f"{path!r}: the {METADATA_KEY!r} entry is not minifcn "
                               f"metadata (a 0-d string of JSON), but {dtype.str} {shape}")

    try:
        entry = npz.read(METADATA_KEY, expect)
    except WeightsError:
        raise
    except _READ_ERRORS as err:
        raise _damaged(path, METADATA_KEY, err) from None
    return _parse_metadata(path, entry)


def _parse_metadata(path, entry) -> dict:
    metadata = None
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


# --- checksums ----------------------------------------------------------------------------

def _record(a) -> dict:
    """What the checksum table holds for one array."""
    data = np.ascontiguousarray(a).reshape(-1).view(np.uint8)    # its bytes, C order
    return {"dtype": a.dtype.str, "shape": list(a.shape), "crc32": f"{zlib.crc32(data):08x}"}


def _metadata_crc(entry: dict) -> str:
    """CRC-32 of the metadata as canonical JSON (sorted keys, compact), without its own."""
    plain = json.loads(json.dumps({k: v for k, v in entry.items() if k != _OWN_CRC}))
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    return f"{zlib.crc32(text.encode()):08x}"


def _verify_metadata(path, metadata: dict):
    """Check the metadata's own checksum; remove it and the table from ``metadata`` and
    return the table (None where the file has none: format 1 and plain .npz files).

    A table or metadata checksum present in any format is checked, so a flipped format
    number cannot skip the check.
    """
    if not metadata or (metadata["format"] < 2 and _TABLE not in metadata
                        and _OWN_CRC not in metadata):
        return None
    stored = metadata.pop(_OWN_CRC, None)
    if stored != _metadata_crc(metadata):
        raise WeightsError(f"{path!r} is damaged: its metadata ({METADATA_KEY!r}) fails its "
                           f"checksum (CRC-32 {_metadata_crc(metadata)}, recorded {stored})")
    table = metadata.pop(_TABLE, None)
    if not isinstance(table, dict):
        raise WeightsError(f"{path!r}: the {METADATA_KEY!r} entry has no checksum table")
    return table


def _check_names(path, names, table: dict) -> None:
    """Every member listed in the table and every listed member there, before any is read."""
    missing = [name for name in table if name not in names]
    unlisted = [name for name in names if name not in table]
    if missing or unlisted:
        raise WeightsError(f"{path!r} is damaged or altered: " + "; ".join(
            ([f"{_few(missing)} listed in its metadata missing"] if missing else [])
            + ([f"{_few(unlisted)} not listed in its metadata (not read)"]
               if unlisted else [])))


def _verify_arrays(path, arrays: dict, table) -> None:
    """Each array's dtype, shape and CRC-32 against the table (where there is one)."""
    for name, a in arrays.items() if table is not None else ():
        found = _record(a)
        if table[name] != found:
            raise WeightsError(f"{path!r} is damaged: array {name!r} fails its checksum "
                               f"(recorded {_describe(table[name])}, found {_describe(found)})")


def _describe(record) -> str:
    if not isinstance(record, dict):
        return repr(record)
    return (f"{record.get('dtype')} {tuple(record.get('shape') or ())} "
            f"CRC-32 {record.get('crc32')}")


# --- models -------------------------------------------------------------------------------

def describe(model) -> dict:
    """The metadata stored for ``model``: ``arch`` (``model.arch``, else the class name),
    and ``n_class``, ``width``, ``aux``, ``in_channels``, ``base``, ``depth`` where the
    model has them."""
    metadata = {"arch": getattr(model, "arch", None) or type(model).__name__}
    for key in ("n_class", "width", "aux", "in_channels", "base", "depth"):
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
    """The arrays' dtypes, BatchNorm's int64 counters aside: the dtype of the weights."""
    return ",".join(sorted({str(a.dtype) for k, a in arrays.items()
                            if not is_batch_counter(k, a)})) or "none"


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
