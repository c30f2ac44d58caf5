r"""CPU memory for op results, recycled once no array references it.

A training step allocates the same large arrays every time: each layer's output, its
backward's input gradient, the weight gradients. A fresh NumPy array of 100 MB costs the OS
a page fault per 4 KiB page the first time it is written, and with NumPy's default advice
for huge pages a fault can also wait for the kernel to compact memory. On the project's
2-core machine these faults took more than a second of FCN-8s's 10 s step at 500x500
(benchmarks/README.md, "Recycled results").

The pool keeps the memory of large results (from :data:`SMALLEST` bytes) as 1-D uint8
*blocks*, and hands out a result as a view of a block. NumPy points every view of that
result at the block itself (``y[0].base is block``), so the block's reference count says
whether any array can still read it: when only the pool refers to it, it is free, and the
next request of a fitting size (up to 1/8 larger) gets it back. Nothing is freed early:
an array that a caller keeps, or any view, slice or ``torch.from_numpy`` of it, keeps its
block out of the pool. The reference count the pool compares with is measured once, on a
block nobody else holds, through the same code path, so it holds for the running Python.

Free blocks are retained up to :func:`limit` bytes (by default :data:`DEFAULT_LIMIT`; the
least recently used go first); ``MINIFCN_RESULT_POOL=0`` in the environment, or
``with minifcn.result_pool.enabled(False):``, turns recycling off, and :func:`clear` drops
every free block. On the GPU results are plain ``cupy.empty``: CuPy's memory pool already
recycles device memory.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

import numpy

SMALLEST = 1 << 20                    # smaller results are left to malloc
DEFAULT_LIMIT = 4 << 30               # free bytes retained at most
SLACK = 8                             # a block serves requests down to 1/(1 + 1/SLACK) its size
ENV_VARIABLE = "MINIFCN_RESULT_POOL"


class _Pool:
    """Blocks (1-D uint8 arrays), least recently handed out first."""

    def __init__(self):
        self._lock = threading.Lock()
        self._blocks = []
        self._sizes = []
        self.enabled = os.environ.get(ENV_VARIABLE, "1").strip().lower() not in ("0", "off",
                                                                                  "false")
        self.limit = DEFAULT_LIMIT
        self.hits = self.misses = 0
        self._blocks.append(numpy.empty(1, numpy.uint8))
        self._unreferenced = self._references(0)         # the count of a block only we hold
        self._blocks.clear()

    def _references(self, i: int) -> int:
        return sys.getrefcount(self._blocks[i])

    def _is_free(self, i: int) -> bool:
        return self._references(i) <= self._unreferenced

    def take(self, nbytes: int, allocate):
        """A free block of ``nbytes`` to ``nbytes * (1 + 1/SLACK)`` bytes, or a new one from
        ``allocate(nbytes)`` (free blocks are dropped first if that fails)."""
        with self._lock:
            best = None
            for i in range(len(self._blocks)):
                size = self._sizes[i]
                if nbytes <= size <= nbytes + nbytes // SLACK and self._is_free(i) \
                        and (best is None or size < self._sizes[best]):
                    best = i
            if best is not None:
                self.hits += 1
                return self._move_to_end(best)
            self.misses += 1
            self._drop_free_below(nbytes)
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

    def _move_to_end(self, i: int):
        block, size = self._blocks.pop(i), self._sizes.pop(i)
        self._blocks.append(block)
        self._sizes.append(size)
        return block

    def _free(self) -> list:
        """Indices of the free blocks, least recently used first."""
        return [i for i in range(len(self._blocks)) if self._is_free(i)]

    def _drop(self, drop) -> None:
        """Forget the blocks at the indices ``drop``."""
        keep = [i for i in range(len(self._blocks)) if i not in drop]
        self._blocks = [self._blocks[i] for i in keep]
        self._sizes = [self._sizes[i] for i in keep]

    def _drop_free_below(self, nbytes: int) -> None:
        """Before a new block: drop the free blocks too small for this request. Requests
        grow as a backward pass climbs back to the large maps, so the small blocks freed on
        the way would otherwise sit beside the new large ones at the step's peak."""
        self._drop({i for i in self._free() if self._sizes[i] < nbytes})

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

    def stats(self) -> dict:
        with self._lock:
            free = self._free()
            return {"blocks": len(self._blocks), "bytes": sum(self._sizes),
                    "free_blocks": len(free), "free_bytes": sum(self._sizes[i] for i in free),
                    "hits": self.hits, "misses": self.misses}


_pool = _Pool()


def empty(shape, dtype, nbytes: int, allocate):
    """An uninitialised NumPy array of ``shape`` and ``dtype`` (``nbytes`` bytes) for a
    result: a view of a recycled block, or ``allocate(nbytes)``'s new block. Small arrays,
    and every array while recycling is off, come straight from ``allocate``."""
    if not _pool.enabled or nbytes < SMALLEST:
        return allocate(nbytes)[:nbytes].view(dtype).reshape(shape)
    return _pool.take(nbytes, allocate)[:nbytes].view(dtype).reshape(shape)


def set_limit(limit) -> None:
    """Bytes of free blocks the pool retains at most (an int, a string such as ``"2GiB"``),
    then trims to it; 0 keeps none (every result is then fresh memory)."""
    from .workspace import parse_size

    size = parse_size(limit, "limit") if limit not in (0, "0") else 0
    if size is None:
        raise ValueError("limit must be a size such as '2GiB' or 0, got None")
    with _pool._lock:
        _pool.limit = size
        _pool._trim(size)


def limit() -> int:
    """The free bytes the pool retains at most."""
    return _pool.limit


@contextlib.contextmanager
def enabled(flag: bool = True):
    """``with minifcn.result_pool.enabled(False): ...``: every result inside the block is
    fresh memory (to measure what recycling saves)."""
    previous, _pool.enabled = _pool.enabled, bool(flag)
    try:
        yield
    finally:
        _pool.enabled = previous


def clear() -> None:
    """Drop every free block (blocks that arrays still use stay until they are free) and
    reset the hit and miss counts."""
    _pool.clear()


def stats() -> dict:
    """Blocks and bytes the pool tracks, how many are free, hits and misses."""
    return _pool.stats()


def holds(array) -> bool:
    """True when ``array`` is (a view of) a block the pool tracks."""
    base = getattr(array, "base", None)
    with _pool._lock:
        return any(base is block for block in _pool._blocks)
