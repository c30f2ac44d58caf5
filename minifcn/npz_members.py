r"""Reading the arrays of an .npz from a stranger without letting it exhaust memory.

An .npz is a zip archive of ``.npy`` members. A small file can declare members of many
gigabytes (zeros deflate about 1000 to 1: a 4 GiB member fits in 4 MB), so nothing here
decompresses a byte before the declared sizes are known to be reasonable:

1. **The zip directory** (read by the standard library's :mod:`zipfile`; no member is
   opened): every name ends in ``.npy`` and occurs once, and the declared uncompressed sizes
   add up to at most :data:`MAX_RATIO` times the file's size on disk, or
   :data:`SMALL_FILE_BUDGET` for small files. A file written by ``numpy.savez`` or minifcn
   (stored, not compressed) is never refused by this; weights saved with
   ``numpy.savez_compressed`` shrink by about 10%, far from the limit.
2. **Each member's .npy header** (at most 10,000 bytes, NumPy's own limit), when that
   member is read: a plain dtype without Python objects, and a shape whose bytes plus the
   header are exactly the size the directory declares. A caller that knows what to expect
   (the checksum table of minifcn's files) checks the header against it first, and refuses
   names outside it without opening them.
3. **The data** is read through zipfile's stream, which stops at the declared size and
   checks the zip CRC at the end, in chunks, into an array allocated at the size the header
   and the directory agree on. A lying header or directory can make a read fail, never make
   it read more.

So reading a file costs at most its declared size, which is bounded by its size on disk.
"""
from __future__ import annotations

import math
import os
import zipfile

import numpy as np

MAX_RATIO = 16                     # declared bytes per byte on disk, at most
SMALL_FILE_BUDGET = 64 << 20       # what any file may declare, whatever its size
_CHUNK = 16 << 20                  # bytes decompressed per read
_SUFFIX = ".npy"


class MemberError(ValueError):
    """An archive or member that is malformed or declares too much; the message names the
    member but not the file (the caller adds it)."""


class PickledMember(MemberError):
    """A member whose header declares Python objects (reading them would unpickle)."""


class NpzMembers:
    """The members of an .npz archive, checked as the module docstring says.

    ``with NpzMembers(path) as npz: npz.names; npz.header(name); npz.read(name)``.
    Opening checks the zip directory (step 1); zipfile's own errors (``BadZipFile``,
    ``OSError``...) propagate for the caller to report.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._zip = zipfile.ZipFile(self.path)
        try:
            self._infos = self._check_directory(os.path.getsize(self.path))
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._zip.close()

    @property
    def names(self) -> list:
        """Member names without ``.npy``, in the archive's order."""
        return list(self._infos)

    def _check_directory(self, size_on_disk: int) -> dict:
        infos = {}
        for info in self._zip.infolist():
            if not info.filename.endswith(_SUFFIX):
                raise MemberError(f"member {info.filename!r} is not an .npy array")
            name = info.filename[:-len(_SUFFIX)]
            if name in infos:
                raise MemberError(f"member {name!r} occurs twice")
            infos[name] = info
        declared = sum(info.file_size for info in infos.values())
        budget = max(SMALL_FILE_BUDGET, MAX_RATIO * size_on_disk)
        if declared > budget:
            raise MemberError(
                f"its members declare {declared} bytes uncompressed in {size_on_disk} bytes "
                f"on disk, more than {MAX_RATIO} times as much: refused unread as a possible "
                f"zip bomb (weights saved with numpy.savez are never refused)")
        return infos

    def header(self, name: str):
        """``(dtype, shape, fortran_order)`` of member ``name``, read from its header alone."""
        with self._zip.open(self._infos[name]) as member:
            return _read_header(name, member)[:3]

    def read(self, name: str, expect=None) -> np.ndarray:
        """The array of member ``name``. ``expect(dtype, shape)``, if given, is called with
        the header's declaration before any data is read (to refuse what the caller did not
        expect); then the declared sizes must agree, and exactly that many bytes are read."""
        info = self._infos[name]
        with self._zip.open(info) as member:
            dtype, shape, fortran_order, header_bytes = _read_header(name, member)
            if expect is not None:
                expect(dtype, shape)
            count = math.prod(shape)
            if header_bytes + count * dtype.itemsize != info.file_size:
                raise MemberError(
                    f"member {name!r} declares {info.file_size} bytes in the zip directory, "
                    f"but its .npy header ({dtype.str} {shape}) makes "
                    f"{header_bytes + count * dtype.itemsize}")
            flat = np.empty(count, dtype)
            _read_exactly(name, member, flat.view(np.uint8) if count else None)
            if member.read(1):            # the end: zipfile checks the CRC here at the latest
                raise MemberError(f"member {name!r} holds more bytes than it declares")
        return flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)


def _read_header(name, member):
    """``(dtype, shape, fortran_order, header bytes)`` from the start of an .npy member."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]} (1.0 and 2.0 "
                             "are read)")
    except (ValueError, SyntaxError, EOFError, OverflowError) as err:
        raise MemberError(f"member {name!r} has no valid .npy header ({err})") from None
    if dtype.hasobject:
        raise PickledMember(f"member {name!r} is a pickled object array")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise MemberError(f"member {name!r} has a structured dtype ({dtype}), not a plain one")
    return dtype, tuple(shape), bool(fortran_order), member.tell()


def _read_exactly(name, member, buffer) -> None:
    """Fill ``buffer`` (a uint8 view, or None for no bytes) from ``member``, chunk by chunk."""
    if buffer is None:
        return
    view, done = memoryview(buffer), 0
    while done < len(view):
        got = member.readinto(view[done:done + _CHUNK])
        if not got:
            raise MemberError(f"member {name!r} ends after {done} of its {len(view)} bytes")
        done += got
