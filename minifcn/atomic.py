r"""Atomic, durable file writes, and the clean-up of what a killed writer leaves behind.

:func:`atomic_open` writes into a temporary file beside the target, named
``.NAME.XXXXXXXXXXXX.tmp`` (12 hex digits), flushes and fsyncs it, renames it onto the target
with ``os.replace`` and fsyncs the folder. After a crash, a power cut or a SIGKILL the target
is the old file or the new one, never a mix.

A writer killed in the middle (SIGKILL, the out-of-memory killer, a power cut) cannot remove
its temporary file. While it writes, it holds an exclusive ``flock`` on that file, which the
operating system drops when the process dies. So the next successful write of the same
target removes the temporaries of that target which no process holds
(:func:`remove_stale_temporaries`); a write still in progress in another process keeps its
own. Reading a file never looks at temporaries. Without ``fcntl`` (Windows) nothing is
locked and nothing is cleaned up.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets

try:
    import fcntl
except ImportError:          # Windows
    fcntl = None

_SUFFIX = re.compile(r"[0-9a-f]{12}\.tmp")     # what follows ".NAME." in a temporary's name


@contextlib.contextmanager
def atomic_open(path):
    """Open a temporary binary file beside ``path``; on a clean exit it becomes ``path``.

    The file is flushed and fsynced, renamed onto ``path`` with ``os.replace`` (atomic on
    POSIX and Windows), then the folder is fsynced so that the rename survives a crash. If
    the ``with`` block raises, the temporary file is removed and ``path`` is untouched. The
    new file's permissions follow the umask, as ``open(path, "wb")`` would give. After the
    rename, temporaries of ``path`` left by killed writers are removed.

    >>> with atomic_open("model.npz") as f:        # doctest: +SKIP
    ...     f.write(payload)
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o666)
    try:
        _lock(fd)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:     # POSIX: rename while still holding the lock
                os.replace(temporary, path)
        if fcntl is None:             # Windows cannot rename an open file
            os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _fsync_folder(folder)
    remove_stale_temporaries(path)


def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a binary file object and make the result ``path`` atomically."""
    with atomic_open(path) as f:
        write(f)


def atomic_write_all(writes) -> None:
    """Write several files as one: ``writes`` is ``[(path, write), ...]``, each
    ``write(f)`` filling a binary file. Every temporary is written, flushed and fsynced
    before the first rename, so a failure while writing (a full disk) leaves every target
    as it was, never a new file beside an old one."""
    with contextlib.ExitStack() as stack:
        for path, write in writes:
            f = stack.enter_context(atomic_open(path))
            write(f)
            f.flush()
            os.fsync(f.fileno())


def remove_stale_temporaries(path) -> list:
    """Remove the temporaries of ``path`` whose writer has died; return the paths removed.

    Only names of the form ``.NAME.XXXXXXXXXXXX.tmp`` beside ``path`` are considered, and
    only those that no process holds a lock on (a writer holds one until its rename). Errors
    (a folder that cannot be listed, a file of another user) leave the file where it is.
    """
    if fcntl is None:
        return []
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    prefix = f".{name}."
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    candidates = [os.path.join(folder, entry) for entry in sorted(entries)
                  if entry.startswith(prefix) and _SUFFIX.fullmatch(entry[len(prefix):])]
    return [candidate for candidate in candidates if _remove_if_abandoned(candidate)]


def _lock(fd: int) -> None:
    """Hold an exclusive lock on a new temporary: it marks the writer as alive."""
    if fcntl is not None:
        with contextlib.suppress(OSError):     # a file system without locks: no marker
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _remove_if_abandoned(candidate: str) -> bool:
    """Remove ``candidate`` if a lock on it can be taken (its writer is gone)."""
    try:
        fd = os.open(candidate, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not os.path.samestat(os.fstat(fd), os.stat(candidate)):
            return False                       # renamed or replaced since it was listed
        os.remove(candidate)
        return True
    except OSError:                            # held by a live writer, or gone meanwhile
        return False
    finally:
        os.close(fd)


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
