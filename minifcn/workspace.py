r"""Scratch memory for the convolutions: a workspace limit and a pool of reusable buffers.

**The limit.** A convolution's im2col buffer holds ``C*KH*KW`` values per output pixel:
1.07 GiB for FCN-8s's conv1_2 at 500x500 in float32. With a limit set,

>>> import minifcn
>>> minifcn.set_workspace_limit("256MiB")        # or MINIFCN_WORKSPACE_LIMIT=256MiB
>>> minifcn.get_workspace_limit()
268435456
>>> minifcn.set_workspace_limit(None)            # unlimited

The default is :data:`DEFAULT_LIMIT`, 64 MiB. On the project's 2-core machine a limit of
256 MiB first made FCN-8s's conv1_2 at 500x500 faster than no limit (forward 420 -> 349 ms,
backward 882 -> 769 ms; the chunks fit the cache) and the training step's peak memory
smaller (3.07 -> 2.37 GiB). Once Winograd took over the convolutions from 128 channels up
and results were recycled, 64 MiB gave the same step time (6.0 s against 6.0-6.1 s, one
interleaved run) with a lower peak (2.30 against 2.44 GiB). ``MINIFCN_WORKSPACE_LIMIT=none``
(or ``set_workspace_limit(None)``) turns it off.

``conv2d`` and ``conv_transpose2d`` (forward and backward) split their GEMMs over images and,
within an image, over output rows, so that no workspace buffer they allocate is larger than
the limit. The results equal the unchunked ones up to the order of float additions. When a
single output row needs more than the limit, :class:`WorkspaceLimitError` says how much.

**The pool.** On the CPU a fresh multi-megabyte buffer costs a page fault per 4 KiB the
first time it is written (about 40% of im2col's time on conv1_2). The pool keeps a few
freed buffers and hands them out again: only true scratch borrows from it (the im2col
``col`` of a forward, the ``dcol`` of an input gradient), for the length of one GEMM, and a
borrowed buffer goes back to the pool only when the ``with`` block that borrowed it ends.
Nothing returned to a caller (outputs, caches, gradients) ever lives in pooled memory. On
the GPU the pool passes through to ``cupy.empty``: CuPy's own memory pool already recycles
device memory without the OS.

The pool retains at most :data:`MAX_BUFFERS` free buffers and at most the pool limit in
bytes (:func:`set_pool_limit`; by default three times the workspace limit, or 512 MiB
without one); a request that no free buffer can hold frees the smaller ones first.
:func:`clear` empties it; ``with enabled(False):`` bypasses it (to measure what it saves).
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import threading

import numpy

from . import result_pool

ENV_VARIABLE = "MINIFCN_WORKSPACE_LIMIT"
DEFAULT_LIMIT = 64 * 2 ** 20          # the workspace limit unless the environment says
MAX_BUFFERS = 4                       # free buffers the pool keeps at most
DEFAULT_POOL_BYTES = 512 * 2 ** 20    # what the pool retains without a workspace limit
_CHECK_MEMORY_ABOVE = 64 * 2 ** 20    # allocations from this size on are checked first

_UNITS = {"": 1, "b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
_SIZE_PATTERN = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")
_UNLIMITED_WORDS = ("none", "unlimited")
_ADVICE = (f"bound it with minifcn.set_workspace_limit('256MiB') (or the environment variable "
           f"{ENV_VARIABLE}), which makes convolutions work in chunks")
_RESULT_ADVICE = (f"results are not split by the workspace limit (minifcn.set_workspace_limit, "
                  f"{ENV_VARIABLE}, which bounds only scratch buffers): use a smaller batch "
                  f"or image")


class WorkspaceLimitError(MemoryError):
    """A convolution cannot stay within the workspace limit: one output row needs more.

    ``needed`` is the bytes of the largest buffer that one output row of one image needs,
    ``limit`` the limit in bytes.
    """

    def __init__(self, message: str, needed: int, limit: int):
        super().__init__(message)
        self.needed, self.limit = needed, limit


class WorkspaceMemoryError(MemoryError):
    """A workspace buffer is larger than the memory the machine (or GPU) has available."""


# --- Sizes ---------------------------------------------------------------------------------

def parse_size(value, name: str = "limit"):
    """Bytes from an int or a string such as ``"256MiB"``, ``"1.5GB"``, ``"4096"``.

    ``None``, ``"none"`` and ``"unlimited"`` give None. Units are case-insensitive:
    B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024).
    """
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        size = int(value)
    elif isinstance(value, str):
        if value.strip().lower() in _UNLIMITED_WORDS:
            return None
        match = _SIZE_PATTERN.fullmatch(value)
        if match is None or match.group(2).lower() not in _UNITS:
            raise ValueError(f"{name} must be a number of bytes or a size such as '256MiB' "
                             f"or '1.5GB' (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), "
                             f"or None for no limit; got {value!r}")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    else:
        raise TypeError(f"{name} must be an int (bytes), a string such as '256MiB', or None; "
                        f"got {type(value).__name__} {value!r}")
    if size < 1:
        raise ValueError(f"{name} must be at least 1 byte, got {value!r}")
    return size


def format_bytes(n: int) -> str:
    """``1073741824`` -> ``'1.00 GiB'``; plain bytes below 1 KiB."""
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


# --- The limit -----------------------------------------------------------------------------

class _Settings:
    limit = None                      # workspace limit in bytes, or None
    pool_limit = None                 # pool limit in bytes, or None for the default rule
    pool_enabled = True
    environment_error = None          # a MINIFCN_WORKSPACE_LIMIT that did not parse


_settings = _Settings()


def set_workspace_limit(limit) -> None:
    """Bound every convolution workspace buffer to ``limit``: bytes (int), a string such as
    ``"256MiB"`` or ``"1.5GB"``, or None for no limit. The pool then trims itself to its
    new limit (:func:`pool_limit`)."""
    _settings.limit = parse_size(limit, "limit")
    _settings.environment_error = None
    _pool.trim()


def get_workspace_limit():
    """The workspace limit in bytes, or None when unlimited.

    A ``MINIFCN_WORKSPACE_LIMIT`` that does not parse is raised here (a ValueError naming
    the variable), until :func:`set_workspace_limit` sets a limit.
    """
    if _settings.environment_error is not None:
        raise _settings.environment_error
    return _settings.limit


@contextlib.contextmanager
def limited(limit):
    """``with minifcn.workspace.limited("64MiB"): ...``: a workspace limit for one block."""
    previous = _settings.limit
    set_workspace_limit(limit)
    try:
        yield
    finally:
        set_workspace_limit(previous)


def set_pool_limit(limit) -> None:
    """Bytes the pool may retain between calls (int, a string like ``"1GiB"``, or None for
    the default: three times the workspace limit, or 512 MiB without one)."""
    _settings.pool_limit = parse_size(limit, "limit")
    _pool.trim()


def pool_limit() -> int:
    """The bytes the pool retains at most, under the current settings."""
    if _settings.pool_limit is not None:
        return _settings.pool_limit
    return 3 * _settings.limit if _settings.limit is not None else DEFAULT_POOL_BYTES


def _limit_from_environment():
    value = os.environ.get(ENV_VARIABLE, "")
    return parse_size(value, ENV_VARIABLE) if value.strip() else DEFAULT_LIMIT


# --- The pool ------------------------------------------------------------------------------

def _allocate(xp, shape, dtype, what: str = "workspace"):
    """The one place a workspace buffer is allocated (tests wrap it to see every size)."""
    return _new_array(xp, shape, dtype, False, lambda nbytes: f"{what} needs a "
                      f"{format_bytes(nbytes)} buffer", _ADVICE)


def result_array(xp, shape, dtype, what: str, zeros: bool = False):
    """An array for an op's result, uninitialised (or zeros): on the CPU from the result
    pool (:mod:`minifcn.result_pool`, memory no other array references), never from the
    workspace pool; on the GPU ``cupy.empty``/``cupy.zeros``.

    Checked like a workspace buffer: a result larger than the available memory, or an
    allocation the machine (or GPU) refuses, raises :class:`WorkspaceMemoryError` naming
    ``what`` and the sizes, instead of the process being killed later. A result is not
    chunked, so the advice is a smaller batch or image (the workspace limit bounds only the
    scratch around it).
    """
    shape = tuple(int(s) for s in shape)
    dtype = numpy.dtype(dtype)

    def described(nbytes):
        return f"{what} needs {format_bytes(nbytes)} for its result {shape} {dtype}"
    if xp is not numpy:
        return _new_array(xp, shape, dtype, zeros, described, _RESULT_ADVICE)
    array = result_pool.empty(shape, dtype, math.prod(shape) * dtype.itemsize, lambda n: (
        _new_array(numpy, (max(n, 1),), numpy.uint8, False, described, _RESULT_ADVICE)))
    if zeros:
        array.fill(0)
    return array


def _new_array(xp, shape, dtype, zeros, described, advice):
    """``xp.empty`` (or ``xp.zeros``), refused with WorkspaceMemoryError when larger than
    MemAvailable or when the allocation fails; ``described(nbytes)`` starts the message
    (built only then)."""
    nbytes = math.prod(shape) * numpy.dtype(dtype).itemsize
    if xp is numpy and nbytes >= _CHECK_MEMORY_ABOVE:
        available = _available_memory()
        if available is not None and nbytes > available:
            raise WorkspaceMemoryError(f"{described(nbytes)}, but only "
                                       f"{format_bytes(available)} of memory is available; "
                                       f"{advice}")
    try:
        return (xp.zeros if zeros else xp.empty)(shape, dtype=dtype)
    except MemoryError as err:        # numpy's, and CuPy's OutOfMemoryError (a subclass)
        where = "GPU" if xp is not numpy else "machine"
        raise WorkspaceMemoryError(f"{described(nbytes)}, more than the {where} can give "
                                   f"({err}); {advice}") from err


def _available_memory():
    """MemAvailable from /proc/meminfo in bytes, or None where there is no such file."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class _Pool:
    """Free CPU buffers (1-D uint8, any dtype is a view) and the ones lent out."""

    def __init__(self):
        self._free = []               # buffers, smallest first
        self._lent = {}               # id -> buffer, while borrowed
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def take(self, nbytes: int, what: str):
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if b.nbytes >= nbytes]
            if fits:
                buffer = self._free.pop(fits[0])              # the smallest that fits
                self.hits += 1
            else:
                self._free.clear()    # all smaller: a size change; free them before allocating
                self.misses += 1
                buffer = None
        if buffer is None:
            buffer = _allocate(numpy, (max(nbytes, 1),), numpy.uint8, what)
        with self._lock:
            self._lent[id(buffer)] = buffer
        return buffer

    def give(self, buffer) -> None:
        with self._lock:
            del self._lent[id(buffer)]
            self._free.append(buffer)
            self._free.sort(key=lambda b: b.nbytes)
        self.trim()

    def trim(self) -> None:
        """Drop free buffers until the pool's count and bytes fit its limits: the smallest
        first, except a buffer larger than the byte limit on its own."""
        with self._lock:
            cap = pool_limit()
            while len(self._free) > MAX_BUFFERS:
                self._free.pop(0)
            while self._free and sum(b.nbytes for b in self._free) > cap:
                self._free.pop(-1 if self._free[-1].nbytes > cap else 0)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self.hits = self.misses = 0

    def buffers(self) -> list:
        with self._lock:
            return list(self._free) + list(self._lent.values())

    def stats(self) -> dict:
        with self._lock:
            return {"free_buffers": len(self._free),
                    "free_bytes": sum(b.nbytes for b in self._free),
                    "lent": len(self._lent), "hits": self.hits, "misses": self.misses}


_pool = _Pool()


@contextlib.contextmanager
def borrow(xp, shape, dtype, what: str = "workspace"):
    """``with borrow(xp, shape, dtype) as buf:`` an uninitialised scratch array, the pool's
    until the block ends. Never return it or a view of it: it will be handed out again."""
    shape = tuple(int(s) for s in shape)
    if xp is not numpy or not _settings.pool_enabled:
        yield _allocate(xp, shape, dtype, what)
        return
    nbytes = math.prod(shape) * numpy.dtype(dtype).itemsize
    buffer = _pool.take(nbytes, what)
    try:
        yield buffer[:nbytes].view(dtype).reshape(shape)
    finally:
        _pool.give(buffer)


def clear() -> None:
    """Free every buffer the pool keeps (borrowed ones return to an empty pool)."""
    _pool.clear()


@contextlib.contextmanager
def enabled(flag: bool = True):
    """``with minifcn.workspace.enabled(False): ...`` allocates fresh scratch buffers inside
    the block (the behaviour without a pool), e.g. to measure what the pool saves."""
    previous = _settings.pool_enabled
    _settings.pool_enabled = bool(flag)
    try:
        yield
    finally:
        _settings.pool_enabled = previous


def holds(array) -> bool:
    """True when ``array`` shares memory with a pooled buffer (free or lent): no output,
    cache or gradient may."""
    if not isinstance(array, numpy.ndarray):
        return False
    return any(numpy.may_share_memory(array, b) for b in _pool.buffers())


def stats() -> dict:
    """Free buffers and bytes the pool holds, buffers lent out, hits and misses."""
    return _pool.stats()


try:
    _settings.limit = _limit_from_environment()
except ValueError as _error:           # reported on first use, so `import minifcn` works
    _settings.limit, _settings.environment_error = DEFAULT_LIMIT, _error
