r"""Memory for the fast paths: the workspace limit, one chunk planner, scratch and results.

Reference ops (``minifcn/ops/reference/``) allocate with plain NumPy expressions. The fast
paths (``minifcn/ops/fast/``) allocate through this module only, in two kinds:

* **scratch** (``with scratch(xp, shape, dtype, what) as buf:``): a buffer that lives for
  one ``with`` block (an im2col ``col``, a col2im ``dcol``, Winograd's tiles). On the CPU it
  comes from a small pool of freed buffers, because a fresh multi-megabyte buffer costs a
  page fault per 4 KiB the first time it is written. Scratch is bounded by the **workspace
  limit**: every fast path plans its chunks with :func:`chunks` so that no scratch buffer
  exceeds it.
* **results** (``result(xp, shape, dtype, what)``): an array an op returns (an output, a
  gradient, a cache). On the CPU a result's memory is recycled once no array references it
  any more: NumPy points every view of a result at its block, so the block's reference
  count says when it is free.

>>> import minifcn
>>> minifcn.set_workspace_limit("256MiB")        # or MINIFCN_WORKSPACE_LIMIT=256MiB
>>> minifcn.get_workspace_limit()
268435456
>>> minifcn.set_workspace_limit(None)            # unlimited

The limit is :data:`DEFAULT_LIMIT` (64 MiB) unless ``MINIFCN_WORKSPACE_LIMIT`` says
otherwise (``none`` turns it off); ``MINIFCN_RESULT_POOL=0`` turns result recycling off
(:func:`result_pool_from_environment` lists the values it accepts).
On the GPU both kinds are plain ``cupy.empty``: CuPy's memory pool already recycles device
memory. What the pools save is measured in ``benchmarks/README.md``.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import sys
import threading

import numpy

ENV_VARIABLE = "MINIFCN_WORKSPACE_LIMIT"
RESULT_POOL_VARIABLE = "MINIFCN_RESULT_POOL"
DEFAULT_LIMIT = 64 * 2 ** 20          # the workspace limit unless the environment says
MAX_SCRATCH_BUFFERS = 4               # free scratch buffers kept at most
DEFAULT_SCRATCH_POOL_BYTES = 512 * 2 ** 20   # scratch kept without a workspace limit
SMALLEST_RESULT = 1 << 20             # smaller results are left to malloc
DEFAULT_RESULT_POOL_BYTES = 4 << 30   # free result bytes kept at most
RESULT_SLACK = 8                      # a block serves requests down to 1/(1 + 1/8) its size
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
    """A fast path cannot stay within the workspace limit: its smallest chunk needs more.

    ``needed`` is the bytes of that chunk's largest buffer, ``limit`` the limit in bytes.
    """

    def __init__(self, message: str, needed: int, limit: int):
        super().__init__(message)
        self.needed, self.limit = needed, limit


class WorkspaceMemoryError(MemoryError):
    """A buffer is larger than the memory the machine (or GPU) has available."""


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


# --- The workspace limit and the one chunk planner ------------------------------------------

class _Limits:
    limit = None                      # workspace limit in bytes, or None
    scratch_pool_limit = None         # None: three times the workspace limit
    scratch_pooled = True
    environment_error = None          # a MINIFCN_WORKSPACE_LIMIT that did not parse


_settings = _Limits()


def set_workspace_limit(limit) -> None:
    """Bound every scratch buffer of the fast paths to ``limit``: bytes (int), a string such
    as ``"256MiB"`` or ``"1.5GB"``, or None for no limit."""
    _settings.limit = parse_size(limit, "limit")
    _settings.environment_error = None
    _scratch_pool.trim()


def get_workspace_limit():
    """The workspace limit in bytes, or None when unlimited. A ``MINIFCN_WORKSPACE_LIMIT``
    that does not parse is raised here until :func:`set_workspace_limit` sets a limit."""
    if _settings.environment_error is not None:
        raise _settings.environment_error
    return _settings.limit


@contextlib.contextmanager
def limited(limit):
    """``with minifcn.memory.limited("64MiB"): ...``: a workspace limit for one block."""
    previous = _settings.limit
    set_workspace_limit(limit)
    try:
        yield
    finally:
        set_workspace_limit(previous)


def fits(nbytes: int, budget: int | None = None) -> bool:
    """Whether a scratch buffer of ``nbytes`` is within the workspace limit (and within
    ``budget``, a path's own smaller target such as a cache size, when given)."""
    limit = _effective(budget)
    return limit is None or nbytes <= limit


def _effective(budget):
    limit = get_workspace_limit()
    return budget if limit is None else limit if budget is None else min(limit, budget)


def chunks(count: int, cost, what: str = "", unit: str = "item", required: bool = True,
           budget: int | None = None):
    """Split ``range(count)`` into near-equal ``(start, stop)`` pieces, as few as possible,
    each piece of k items needing ``cost(k)`` bytes of scratch at most the workspace limit
    (or ``budget``, if smaller); ``cost`` grows with k. When not even one item fits: raise
    :class:`WorkspaceLimitError` naming ``what`` and the ``unit`` (e.g. "output row"), or
    return None when not ``required`` (the caller then splits finer)."""
    if fits(cost(count), budget):
        return [(0, count)]
    limit = _effective(budget)
    lo, hi = 0, count                 # the largest k with cost(k) <= limit, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= limit else (lo, mid - 1)
    if lo == 0:
        if not required:
            return None
        needed = cost(1)
        raise WorkspaceLimitError(
            f"{_named(what)} needs {_bytes(needed)} of workspace for a single {unit}, more than "
            f"the workspace limit of {_bytes(limit)}; raise it with "
            f"minifcn.set_workspace_limit", needed, limit)
    pieces = -(-count // lo)
    size = -(-count // pieces)
    return [(a, min(a + size, count)) for a in range(0, count, size)]


def _bytes(n: int) -> str:
    text = format_bytes(n)
    return text if n < 1024 else f"{text} ({n} bytes)"


def _limit_from_environment():
    value = os.environ.get(ENV_VARIABLE, "")
    return parse_size(value, ENV_VARIABLE) if value.strip() else DEFAULT_LIMIT


# --- Allocation, checked against the memory available ----------------------------------------

_context = threading.local()


@contextlib.contextmanager
def purpose(what: str):
    """``with purpose("conv2d backward (dx)"):`` names the op that the block's allocations
    serve, so that a refusal says which step of the user's op ran out (its fast path may
    compute it as another op: dx as a convolution of dy)."""
    previous = getattr(_context, "what", None)
    _context.what = what
    try:
        yield
    finally:
        _context.what = previous


def _named(what) -> str:
    """``what`` (a string, or a function giving one: built only for a message), prefixed by
    the op it serves (:func:`purpose`)."""
    what = what() if callable(what) else what
    outer = getattr(_context, "what", None)
    return what if outer is None or what.startswith(outer) else f"{outer} computed as {what}"


def _allocate(xp, shape, dtype, what: str = "workspace"):
    """The one place a scratch buffer is allocated (tests wrap it to see every size)."""
    return _new_array(xp, shape, dtype, False, lambda nbytes: f"{_named(what)} needs a "
                      f"{format_bytes(nbytes)} buffer", _ADVICE)


def _new_array(xp, shape, dtype, zeros, described, advice):
    """``xp.empty`` (or ``xp.zeros``), refused with WorkspaceMemoryError when larger than
    MemAvailable or when the allocation fails; ``described(nbytes)`` starts the message."""
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


# --- Scratch ---------------------------------------------------------------------------------

class _ScratchPool:
    """Free CPU buffers (1-D uint8; any dtype is a view), smallest first, and those lent."""

    def __init__(self):
        self._free, self._lent = [], {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def take(self, nbytes: int, what: str):
        with self._lock:
            fits_ = [i for i, b in enumerate(self._free) if b.nbytes >= nbytes]
            buffer = self._free.pop(fits_[0]) if fits_ else None    # the smallest that fits
            if buffer is None:
                self._free.clear()    # all smaller: free them before allocating
                self.misses += 1
            else:
                self.hits += 1
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
        """Drop free buffers until their count and bytes fit: the smallest first, except a
        buffer larger than the byte limit on its own."""
        with self._lock:
            cap = scratch_pool_limit()
            while len(self._free) > MAX_SCRATCH_BUFFERS:
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


_scratch_pool = _ScratchPool()


@contextlib.contextmanager
def scratch(xp, shape, dtype, what: str = "workspace"):
    """``with scratch(xp, shape, dtype, what) as buf:`` an uninitialised buffer, the pool's
    again when the block ends. Never return it or a view of it: it will be handed out again."""
    shape = tuple(int(s) for s in shape)
    if xp is not numpy or not _settings.scratch_pooled:
        yield _allocate(xp, shape, dtype, what)
        return
    nbytes = math.prod(shape) * numpy.dtype(dtype).itemsize
    buffer = _scratch_pool.take(nbytes, what)
    try:
        yield buffer[:nbytes].view(dtype).reshape(shape)
    finally:
        _scratch_pool.give(buffer)


def set_scratch_pool_limit(limit) -> None:
    """Bytes of free scratch kept between calls (int, a string like ``"1GiB"``, or None for
    the default: three times the workspace limit, or 512 MiB without one)."""
    _settings.scratch_pool_limit = parse_size(limit, "limit")
    _scratch_pool.trim()


def scratch_pool_limit() -> int:
    """The bytes of free scratch kept at most, under the current settings."""
    if _settings.scratch_pool_limit is not None:
        return _settings.scratch_pool_limit
    return 3 * _settings.limit if _settings.limit is not None else DEFAULT_SCRATCH_POOL_BYTES


def in_scratch(array) -> bool:
    """True when ``array`` shares memory with a scratch buffer (free or lent): no output,
    cache or gradient may."""
    if not isinstance(array, numpy.ndarray):
        return False
    return any(numpy.may_share_memory(array, b) for b in _scratch_pool.buffers())


# --- Results ---------------------------------------------------------------------------------

class _ResultPool:
    """Blocks (1-D uint8 arrays), least recently handed out first. A block is free when only
    the pool refers to it; the reference count of such a block is measured once, here."""

    def __init__(self):
        self._lock = threading.Lock()
        self._blocks, self._sizes = [], []
        try:
            self.enabled, self.environment_error = result_pool_from_environment(), None
        except ValueError as error:   # raised on first use, so that `import minifcn` works
            self.enabled, self.environment_error = True, error
        self.limit = DEFAULT_RESULT_POOL_BYTES
        self.hits = self.misses = 0
        self._blocks.append(numpy.empty(1, numpy.uint8))
        self._unreferenced = self._references(0)
        self._blocks.clear()

    def _references(self, i: int) -> int:
        return sys.getrefcount(self._blocks[i])

    def _is_free(self, i: int) -> bool:
        return self._references(i) <= self._unreferenced

    def take(self, nbytes: int, allocate):
        """A free block of ``nbytes`` to ``nbytes * (1 + 1/RESULT_SLACK)`` bytes, or a new one
        from ``allocate(nbytes)`` (free blocks are dropped first if that fails)."""
        with self._lock:
            best = None
            for i, size in enumerate(self._sizes):
                if nbytes <= size <= nbytes + nbytes // RESULT_SLACK and self._is_free(i) \
                        and (best is None or size < self._sizes[best]):
                    best = i
            if best is not None:
                self.hits += 1
                self._blocks.append(self._blocks.pop(best))          # most recently used
                self._sizes.append(self._sizes.pop(best))
                return self._blocks[-1]
            self.misses += 1
            # Requests grow as a backward pass climbs back to the large maps: the smaller
            # free blocks would otherwise sit beside the new large ones at the step's peak.
            self._drop({i for i in self._free() if self._sizes[i] < nbytes})
        try:
            block = allocate(nbytes)
        except MemoryError:
            self.clear()
            block = allocate(nbytes)
        with self._lock:
            self._blocks.append(block)
            self._sizes.append(nbytes)
            self._trim(self.limit)
        return block

    def _free(self) -> list:
        return [i for i in range(len(self._blocks)) if self._is_free(i)]

    def _drop(self, drop) -> None:
        keep = [i for i in range(len(self._blocks)) if i not in drop]
        self._blocks = [self._blocks[i] for i in keep]
        self._sizes = [self._sizes[i] for i in keep]

    def _trim(self, limit: int) -> None:
        """Drop the least recently used free blocks until the free ones fit ``limit``."""
        free = self._free()
        excess = sum(self._sizes[i] for i in free) - limit
        drop = set()
        for i in free:
            if excess <= 0:
                break
            drop.add(i)
            excess -= self._sizes[i]
        self._drop(drop)

    def clear(self) -> None:
        with self._lock:
            self._trim(0)
            self.hits = self.misses = 0

    def holds(self, array) -> bool:
        base = getattr(array, "base", None)
        with self._lock:
            return any(base is block for block in self._blocks)

    def stats(self) -> dict:
        with self._lock:
            free = self._free()
            return {"blocks": len(self._blocks), "bytes": sum(self._sizes),
                    "free_blocks": len(free), "free_bytes": sum(self._sizes[i] for i in free),
                    "hits": self.hits, "misses": self.misses}


def result_pool_from_environment() -> bool:
    """Whether ``MINIFCN_RESULT_POOL`` leaves result recycling on: unset, empty, ``1``,
    ``on``, ``true`` or ``yes`` mean on, ``0``, ``off``, ``false`` or ``no`` off (any case);
    anything else is a ValueError naming the variable."""
    raw = os.environ.get(RESULT_POOL_VARIABLE, "")
    value = raw.strip().lower()
    if value in ("", "1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"{RESULT_POOL_VARIABLE} must be 1 or 0 (or on/off, true/false, yes/no), "
                     f"got {raw!r}")


_result_pool = _ResultPool()


def result(xp, shape, dtype, what: str, zeros: bool = False):
    """An array for an op's result, uninitialised (or zeros): on the CPU a view of a recycled
    block (never scratch), on the GPU ``cupy.empty``/``cupy.zeros``. A result larger than
    the available memory raises :class:`WorkspaceMemoryError` naming ``what``."""
    shape = tuple(int(s) for s in shape)
    dtype = numpy.dtype(dtype)

    def described(nbytes):
        return f"{_named(what)} needs {format_bytes(nbytes)} for its result {shape} {dtype}"
    if xp is not numpy:
        return _new_array(xp, shape, dtype, zeros, described, _RESULT_ADVICE)
    nbytes = math.prod(shape) * dtype.itemsize

    def allocate(n):
        return _new_array(numpy, (max(n, 1),), numpy.uint8, False, described, _RESULT_ADVICE)
    if _result_pool.environment_error is not None:
        raise _result_pool.environment_error
    if not _result_pool.enabled or nbytes < SMALLEST_RESULT:
        block = allocate(nbytes)
    else:
        block = _result_pool.take(nbytes, allocate)
    array = block[:nbytes].view(dtype).reshape(shape)
    if zeros:
        array.fill(0)
    return array


def set_result_pool_limit(limit) -> None:
    """Bytes of free result blocks kept at most (an int, a string such as ``"2GiB"``), then
    trims to it; 0 keeps none (every result is then fresh memory)."""
    size = parse_size(limit, "limit") if limit not in (0, "0") else 0
    if size is None:
        raise ValueError("limit must be a size such as '2GiB' or 0, got None")
    with _result_pool._lock:
        _result_pool.limit = size
        _result_pool._trim(size)


def result_pool_limit() -> int:
    """The free result bytes kept at most."""
    return _result_pool.limit


def in_results(array) -> bool:
    """True when ``array`` is (a view of) a result block the pool tracks."""
    return _result_pool.holds(array)


# --- Both pools --------------------------------------------------------------------------------

@contextlib.contextmanager
def pooling(scratch: bool | None = None, results: bool | None = None):
    """``with minifcn.memory.pooling(scratch=False, results=False): ...`` allocates fresh
    memory inside the block for the kinds switched off (None leaves a kind as it is), e.g.
    to measure what the pools save."""
    previous = _settings.scratch_pooled, _result_pool.enabled
    if scratch is not None:
        _settings.scratch_pooled = bool(scratch)
    if results is not None:
        _result_pool.enabled = bool(results)
    try:
        yield
    finally:
        _settings.scratch_pooled, _result_pool.enabled = previous


def clear() -> None:
    """Free every pooled buffer and block no array uses, and reset the hit counts."""
    _scratch_pool.clear()
    _result_pool.clear()


def stats() -> dict:
    """``{"scratch": {...}, "results": {...}}``: free and lent buffers, bytes, hits, misses."""
    return {"scratch": _scratch_pool.stats(), "results": _result_pool.stats()}


try:
    _settings.limit = _limit_from_environment()
except ValueError as _error:           # reported on first use, so `import minifcn` works
    _settings.limit, _settings.environment_error = DEFAULT_LIMIT, _error
