"""Run a benchmark plan: the op cases and whole networks it asks for, on each device, one
task at a time, with a progress bar on stderr.

    sections = prepare(Plan(groups=("ops",), size=(64, 64)))   # checks everything first
    sections = prepare(Plan(net="unet", size=(188, 188)))      # U-Net's layers
    for item in run(sections):       # a Section, then its Rows, then Finished; per section
        ...

:func:`prepare` raises before anything is timed: ValueError for a size, width or op the
network cannot take, RuntimeError (with the install hint) when CUDA is asked for and CuPy
or a GPU is missing.
"""
from __future__ import annotations

import functools
import sys
import time
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from .compare import import_torch
from .machine import cpu_seconds, other_load
from .measure import make_timer, measure_case
from .net_cases import op_cases
from .network import NetworkSpec, measure_network, network_flops

PHASES = {"ops": ("forward", "backward"), "fcn": ("forward", "step")}


class Plan(NamedTuple):
    """What to measure, and how often."""
    groups: tuple = ("ops",)
    devices: tuple = ("cpu",)
    size: tuple = (500, 500)       # the input image (H, W): the ops' shapes in ``net``
    width: float = 1.0
    n_class: int = 21
    dtype: str = "float32"
    net: str = "fcn8s"             # whose layers the ops are (net_cases.NETS)
    ops: tuple | None = None       # the ops to time (None: the net's default ones)
    archs: tuple = ("fcn8s",)
    ops_repeat: int = 5            # timed calls per figure
    fcn_repeat: int = 3
    warmup: int = 1                # untimed calls first
    min_time: float = 0.05         # ops: time more calls until they fill this many seconds
    torch: bool = True             # compare with torch where it is installed
    batch: int = 1                 # images per step of the networks ('fcn')


class Section(NamedTuple):
    """One group on one device: what it is compared with, how it is timed, the phases its
    rows hold, its tasks (``(label, callable returning a Row)``)."""
    group: str
    device: str
    phases: tuple
    xp: object                     # numpy or cupy
    torch: object                  # the module set up for the device, or None
    torch_note: str                # why torch is missing ("" when it is not)
    repeat: int
    warmup: int
    min_time: float
    tasks: tuple
    labels: tuple = ()             # ops: (name, shape) of each case, for the columns' widths


class Finished(NamedTuple):
    """The end of a section, with the CPU time other processes used meanwhile."""
    section: Section
    other_load: str


def prepare(plan: Plan) -> list:
    """The plan's sections (each group on each device, in that order), with every case
    built and every device found: nothing is timed yet."""
    xps = {device: _array_module(device) for device in plan.devices}
    cases = op_cases(plan.net, plan.size, plan.width, plan.n_class, plan.ops) \
        if "ops" in plan.groups else {}
    specs = [NetworkSpec(arch, tuple(plan.size), plan.width, plan.n_class, "cpu", plan.dtype,
                         plan.fcn_repeat, plan.warmup, plan.batch)
             for arch in (plan.archs if "fcn" in plan.groups else ())]
    for spec in specs:
        network_flops(spec)                         # a size the network cannot take raises
    sections = []
    for group in plan.groups:
        for device, xp in xps.items():
            torch, note = import_torch(device, skip=not plan.torch)
            if group == "ops":
                timer = make_timer(repeat=plan.ops_repeat, warmup=plan.warmup, xp=xp,
                                   min_time=plan.min_time)
                tasks = tuple((f"{device} {name}", functools.partial(
                    measure_case, case, timer, phases=PHASES["ops"], device=device,
                    dtype=plan.dtype, torch=torch)) for name, case in cases.items())
                repeat, min_time = plan.ops_repeat, plan.min_time
            else:
                tasks = tuple((f"{device} {spec.arch}", functools.partial(
                    measure_network, spec._replace(device=device), torch is not None))
                    for spec in specs)
                repeat, min_time = plan.fcn_repeat, 0.0
            labels = tuple((case.name, case.shape) for case in cases.values()) \
                if group == "ops" else ()
            sections.append(Section(group, device, PHASES[group], xp, torch, note or "",
                                    repeat, plan.warmup, min_time, tasks, labels))
    return sections


def _array_module(device: str):
    """NumPy for ``"cpu"``; CuPy for ``"cuda"``, or RuntimeError saying what is missing."""
    if device == "cpu":
        return np
    from ..backend import import_cupy

    return import_cupy()


def run(sections, progress: bool = True):
    """Measure every task of ``sections``; yield each :class:`Section` as it starts, each
    :class:`~minifcn.bench.results.Row` as it is measured, and :class:`Finished` at each
    section's end. The progress bar (tqdm, on stderr) counts tasks; print lines meanwhile
    with ``tqdm.write`` so that they land above it."""
    total = sum(len(section.tasks) for section in sections)
    with tqdm(total=total, file=sys.stderr, disable=not progress, unit="case",
              leave=False, dynamic_ncols=True) as bar:
        for section in sections:
            yield section
            start, started = cpu_seconds(), time.perf_counter()
            for label, task in section.tasks:
                bar.set_description(label)
                row = task()
                bar.update()
                yield row
            yield Finished(section, other_load(start, time.perf_counter() - started))
