"""The rows of a benchmark run, their derived figures (ratio, GFLOP/s, GB/s), and the JSON
file they go into, written atomically."""
from __future__ import annotations

import json
from typing import NamedTuple

from ..io import atomic_open

FORMAT = "minifcn-bench/1"
SIDES = ("minifcn", "torch")


class Row(NamedTuple):
    """One op or network on one device: each side's timings per phase and the work done.

    ``minifcn`` and ``torch`` map a phase (``"forward"``, ``"backward"``,
    ``"forward_backward"``, ``"step"``) to a :class:`~minifcn.bench.timing.Timing` in
    seconds; ``torch`` is None where torch was not measured. ``flops`` and ``bytes`` map the
    same phases to the work of one call (None where it is not defined). ``peak`` maps a
    side to its peak memory in bytes (``{"rss": ..., "gpu": ...}``) where it was measured;
    ``error`` maps what was compared (``"forward"``, ``"backward"``) to
    ``max|minifcn - torch| / max|torch|``.
    """
    group: str                 # "ops" or "fcn"
    device: str                # "cpu" or "cuda"
    name: str                  # "conv1_2", "fcn8s"
    shape: str                 # what was measured, in short
    minifcn: dict
    torch: dict | None
    flops: dict
    bytes: dict
    peak: dict | None = None
    error: dict | None = None

    @property
    def phases(self) -> tuple:
        return tuple(self.minifcn)

    def seconds(self, phase: str, side: str = "minifcn"):
        """The median time of one call of ``phase`` on ``side``, or None if not measured."""
        timings = getattr(self, side)
        return None if timings is None else timings[phase].median

    def ratio(self, phase: str):
        """minifcn's median time / torch's (above 1: minifcn is slower); None without torch."""
        if self.torch is None:
            return None
        return self.seconds(phase) / self.seconds(phase, "torch")

    def gflops(self, phase: str, side: str = "minifcn"):
        """GFLOP/s of ``side``'s median call, or None where FLOPs are not defined."""
        flops, seconds = self.flops.get(phase), self.seconds(phase, side)
        return None if flops is None or seconds is None else flops / seconds / 1e9

    def gbps(self, phase: str, side: str = "minifcn"):
        """GB/s of the bytes ``phase`` moves (the simple model of ``bytes``), or None."""
        moved, seconds = self.bytes.get(phase), self.seconds(phase, side)
        return None if moved is None or seconds is None else moved / seconds / 1e9

    def peak_ratio(self, kind: str = "rss"):
        """minifcn's peak memory / torch's, or None where either was not measured."""
        if not self.peak or "torch" not in self.peak:
            return None
        mine, theirs = self.peak["minifcn"].get(kind), self.peak["torch"].get(kind)
        return None if not mine or not theirs else mine / theirs

    @property
    def spread(self) -> float:
        """The widest interquartile range of the row's timings, as a fraction of its median."""
        sides = [t for t in (self.minifcn, self.torch) if t is not None]
        return max(timing.spread for timings in sides for timing in timings.values())

    def to_dict(self) -> dict:
        """The row for JSON: every timing in seconds, with the derived figures beside it."""
        sides = {side: None if getattr(self, side) is None else
                 {phase: timing._asdict() for phase, timing in getattr(self, side).items()}
                 for side in SIDES}
        return {
            "group": self.group, "device": self.device, "name": self.name, "shape": self.shape,
            **sides,
            "ratio": None if self.torch is None else {p: self.ratio(p) for p in self.phases},
            "flops": dict(self.flops), "bytes": dict(self.bytes),
            "gflops": {side: {p: self.gflops(p, side) for p in self.phases}
                       for side in SIDES if sides[side] is not None},
            "gbps": {side: {p: self.gbps(p, side) for p in self.phases}
                     for side in SIDES if sides[side] is not None},
            "peak": self.peak, "error": self.error,
        }


def record(rows, *, command: str, settings: dict, machine: dict, devices: dict,
           started: str, seconds: float) -> dict:
    """Everything a run's JSON file holds: what ran (``command``, ``settings``), where
    (``machine``; ``devices``: per device, torch's version or why it is missing, and the
    clock), when and how long, and every row."""
    return {"format": FORMAT, "command": command, "started": started, "seconds": seconds,
            "settings": settings, "machine": machine, "devices": devices,
            "rows": [row.to_dict() for row in rows]}


def write_json(path, data: dict) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically: a run interrupted before or
    while writing leaves no file (or the previous one), never half of one."""
    with atomic_open(path) as f:
        f.write(json.dumps(data, indent=1, allow_nan=False).encode() + b"\n")
