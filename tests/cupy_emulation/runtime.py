"""``cupy.cuda`` emulated: one GPU (device 0), a null stream, host-clock events, and a
memory pool that counts the bytes the emulated arrays hold.

Nothing here is asynchronous: an emulated kernel has finished when its call returns, so a
missing ``synchronize`` cannot be caught, and event times are host-clock times.
"""
from __future__ import annotations

import os
import time
import types
import weakref

DEVICE_COUNT = 1
_current = [0]


class CUDARuntimeError(RuntimeError):
    pass


class Device:
    """``cupy.cuda.Device(i)``: a context manager making GPU ``i`` current."""

    def __init__(self, device=None):
        self.id = _current[-1] if device is None else int(device)
        if not 0 <= self.id < DEVICE_COUNT:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal "
                                   "(cupy emulation: one GPU)")

    def __enter__(self):
        _current.append(self.id)
        return self

    def __exit__(self, *exc):
        _current.pop()

    def use(self):
        _current[-1] = self.id

    def synchronize(self):
        pass

    compute_capability = property(lambda self: "90")
    mem_info = property(lambda self: memGetInfo())

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def getDeviceCount():  # noqa: N802 -- CUDA's names
    return DEVICE_COUNT


def getDevice():  # noqa: N802
    return _current[-1]


def setDevice(device):  # noqa: N802
    _current[-1] = Device(device).id


def getDeviceProperties(device):  # noqa: N802
    Device(device)
    return {"name": b"CuPy emulation (NumPy on the CPU)", "totalGlobalMem": memGetInfo()[1],
            "multiProcessorCount": os.cpu_count() or 1, "major": 9, "minor": 0,
            "warpSize": 32, "maxThreadsPerBlock": 1024, "l2CacheSize": 0}


def memGetInfo():  # noqa: N802
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(total - POOL.used_bytes(), 0), total


def deviceSynchronize():  # noqa: N802
    pass


def runtimeGetVersion():  # noqa: N802
    return 13000


driverGetVersion = runtimeGetVersion


class Stream:
    """The null stream: work is done when its call returns."""
    ptr = 0
    done = True

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        pass

    def synchronize(self):
        pass

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


_STREAM = Stream()


def get_current_stream(device_id=None):
    return _STREAM


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        pass

    done = property(lambda self: self.time is not None)


def get_elapsed_time(start_event, end_event):
    return 1e3 * (end_event.time - start_event.time)


class MemoryPool:
    """Counts the bytes of live emulated arrays that own their data. ``total_bytes`` is what
    the pool would hold: the most used since the last ``free_all_blocks``."""

    def __init__(self, allocator=None):
        self._used = self._total = 0
        self._limit = 0

    def used_bytes(self):
        return self._used

    def total_bytes(self):
        return self._total

    def free_bytes(self):
        return self._total - self._used

    def n_free_blocks(self):
        return 0

    def free_all_blocks(self, stream=None):
        self._total = self._used

    def set_limit(self, size=None, fraction=None):
        self._limit = int(size or 0)

    def get_limit(self):
        return self._limit

    def _add(self, nbytes):
        self._used += nbytes
        self._total = max(self._total, self._used)
        if self._limit and self._used > self._limit:
            self._used -= nbytes
            raise MemoryError(f"Out of memory allocating {nbytes} bytes (the pool's limit is "
                              f"{self._limit}; cupy emulation)")

    def _release(self, nbytes):
        self._used -= nbytes


POOL = MemoryPool()
PINNED_POOL = MemoryPool()


def track(array) -> None:
    """Count an emulated array's bytes while it lives, if it owns its data."""
    if array._a.flags.owndata and array._a.nbytes:
        POOL._add(array._a.nbytes)
        weakref.finalize(array, POOL._release, array._a.nbytes)


class Flags(types.SimpleNamespace):
    def __init__(self, flags):
        super().__init__(c_contiguous=flags.c_contiguous, f_contiguous=flags.f_contiguous,
                         owndata=flags.owndata)

    def __getitem__(self, key):
        return getattr(self, {"C_CONTIGUOUS": "c_contiguous", "F_CONTIGUOUS": "f_contiguous",
                              "OWNDATA": "owndata"}[key])


class MemoryPointer(types.SimpleNamespace):
    def __init__(self, ptr):
        super().__init__(ptr=ptr, device=Device(0))
