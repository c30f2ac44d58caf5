r"""Training checkpoints: everything a resume needs, finite, checked when read back.

A checkpoint is an ``.npz`` written atomically and read with bounded reads, no pickles, by
:func:`minifcn.io.write_archive` / :func:`minifcn.io.read_archive`, so every member's dtype,
shape and CRC-32 are recorded in its ``__minifcn__`` member and verified on load. Its
members:

====================  ===================================================================
``model.NAME``        every parameter and buffer, by dotted name (float arrays, BatchNorm's
                      int64 ``num_batches_tracked`` aside, as in weight files)
``optimizer.KEY``     ``optimizer.state_dict()`` (options, moment buffers, step counts)
``scheduler.KEY``     ``scheduler.state_dict()`` (absent without a scheduler)
``data.rng``          the batch stream's ``bit_generator.state`` as JSON (0-d string)
``data.order``        the current epoch's order and ``data.position`` the next index in it
``dropout.NAME``      each dropout layer's ``bit_generator.state`` as JSON
``log.window``        0-d int64: iterations since the last row of ``log.csv`` (0 after a row)
``log.loss_sum``      0-d: the sum of their losses, in the loss's dtype (absent when 0)
``iteration``         0-d int64: iterations done
``config``            0-d string: JSON of the run's configuration (what a resume compares)
``meta``              0-d string: JSON ``{"format", "minifcn", "best_mean_iou", "metrics",
                      "loss"}`` (``loss``: the last logged loss)
====================  ===================================================================

**Finite by construction.** :func:`save_checkpoint` refuses parameters or optimiser state
holding NaN or inf (:func:`nonfinite`), so no checkpoint ever holds a diverged model.
"""
from __future__ import annotations

import json
import math
import os
from typing import NamedTuple

import numpy as np

from ._version import __version__
from .backend import asnumpy, get_array_module
from .io import WeightsError, read_archive, require_float_arrays, write_archive
from .nn.activation import Dropout
from .run_identity import differences

CHECKPOINT_FORMAT = 1


class CheckpointError(WeightsError):
    """A checkpoint that cannot be read (damaged, truncated, failing its checksums) or does
    not fit the objects; names the file. A :class:`minifcn.io.WeightsError`."""


class ResumeMismatch(CheckpointError):
    """A checkpoint written by a run configured otherwise than the one resuming it."""


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns besides the objects it restored."""

    iteration: int
    config: dict
    best_mean_iou: float   # NaN before the first validation
    metrics: dict | None   # the last validation's figures, if any
    loss: float = float("nan")    # the last logged loss
    window: int = 0               # iterations since the last logged row
    loss_sum: object = None       # their losses' sum (0-d array), None when window is 0


def rng_json(rng) -> np.ndarray:
    """A generator's state as a 0-d JSON string, as checkpoints store it."""
    return np.array(json.dumps(rng.bit_generator.state))


def dropout_generators(model):
    """``(name, Generator)`` of every dropout layer that draws from a NumPy Generator."""
    return [(name, m.rng) for name, m in model.named_modules()
            if isinstance(m, Dropout) and isinstance(m.rng, np.random.Generator)]


def nonfinite(model, optimizer=None) -> list:
    """The names of the parameters (and optimiser buffers) holding NaN or inf.

    A float64 sum of a float32 array cannot overflow, so a finite sum means finite
    elements; only a non-finite sum (or a float64 array summing past 1.8e308) is checked
    element by element. One pass over the data, no boolean copy of it."""
    arrays = [(name, p.data) for name, p in model.named_parameters()]
    if optimizer is not None:
        arrays += [(f"optimizer state {i}.{key}", value)
                   for i, state in sorted(optimizer.state.items())
                   for key, value in state.items() if hasattr(value, "dtype")]
    bad = []
    for name, a in arrays:
        if a.dtype.kind != "f" or math.isfinite(float(a.sum(dtype=np.float64))):
            continue
        if not bool(get_array_module(a).isfinite(a).all()):
            bad.append(name)
    return bad


def save_checkpoint(path, model, optimizer, iteration: int, *, scheduler=None, batches=None,
                    config=None, best_mean_iou: float = float("nan"), metrics=None,
                    loss: float = float("nan"), window: int = 0, loss_sum=None) -> None:
    """Write everything a resume needs to ``path`` atomically (members: module docstring).
    Raises ValueError, writing nothing, where a parameter or optimiser buffer is not finite."""
    bad = nonfinite(model, optimizer)
    if bad:
        raise ValueError(f"refusing to write checkpoint {os.fspath(path)!r}: "
                         f"{', '.join(bad[:4])} hold NaN or inf")
    arrays = {f"model.{k}": asnumpy(v) for k, v in model.state_dict().items()}
    arrays.update({f"optimizer.{k}": np.asarray(v) for k, v in optimizer.state_dict().items()})
    if scheduler is not None:
        arrays.update({f"scheduler.{k}": np.asarray(v)
                       for k, v in scheduler.state_dict().items()})
    if batches is not None:
        arrays.update({f"data.{k}": np.asarray(v) for k, v in batches.state_dict().items()})
    for name, rng in dropout_generators(model):
        arrays[f"dropout.{name}"] = rng_json(rng)
    arrays["log.window"] = np.int64(window)
    if window:
        arrays["log.loss_sum"] = np.asarray(asnumpy(loss_sum))
    meta = {"format": CHECKPOINT_FORMAT, "minifcn": __version__,
            "best_mean_iou": _json_float(best_mean_iou), "metrics": metrics,
            "loss": _json_float(loss)}
    arrays.update(iteration=np.int64(iteration), config=np.array(json.dumps(config or {})),
                  meta=np.array(json.dumps(meta)))
    write_archive(path, arrays, {"kind": "checkpoint"})


def load_checkpoint(path, model, optimizer=None, scheduler=None, batches=None, *,
                    expect_config=None, force: bool = False) -> Checkpoint:
    """Restore a checkpoint into ``model`` and whichever of the others are given.

    The parameters, the dropout generators, the optimiser's and scheduler's state and the
    batch stream's generator and position are all restored. With ``expect_config`` (the
    resuming run's configuration), a checkpoint whose recorded configuration differs raises
    :class:`ResumeMismatch` naming the differences, unless ``force``; a forced resume whose
    data set no longer fits the saved order starts a new epoch. Raises
    :class:`CheckpointError` (naming ``path``) on an unreadable file or one that does not
    fit, before anything is changed when the file itself is bad or of another run.
    """
    path = os.fspath(path)
    sections = _sections(path, _read_npz(path))
    for required in ("model", "optimizer", "iteration", "config", "meta"):
        if required not in sections:
            raise CheckpointError(f"{path!r} is not a minifcn checkpoint: no {required!r} entry")
    iteration, config = _iteration(path, sections["iteration"].get("")), \
        _json_object(path, sections["config"], "config")
    meta = _json_object(path, sections["meta"], "meta")
    if not isinstance(meta.get("format", 0), int) or meta.get("format", 0) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path!r} has checkpoint format {meta.get('format')!r}, newer "
                              f"than this minifcn reads ({CHECKPOINT_FORMAT}); upgrade minifcn")
    try:
        require_float_arrays(path, sections["model"], "model parameters")
    except WeightsError as err:
        raise CheckpointError(str(err)) from None
    if expect_config is not None and not force:
        found = differences(config, expect_config)
        if found:
            raise ResumeMismatch(f"{path!r} is a checkpoint of another run: "
                                 + "; ".join(found) + ". Resume with the settings it was "
                                 "written with, or force it (--force)")
    window, loss_sum = _window(path, sections.get("log", {}))
    _restore(path, sections, model, optimizer, scheduler, batches, strict_data=not force)
    return Checkpoint(iteration, config, _float_or_nan(meta.get("best_mean_iou")),
                      meta.get("metrics"), _float_or_nan(meta.get("loss")), window, loss_sum)


def _restore(path, sections, model, optimizer, scheduler, batches, strict_data) -> None:
    try:
        model.load_state_dict(sections["model"], strict=True)
        for name, rng in dropout_generators(model):
            if name in sections.get("dropout", {}):
                rng.bit_generator.state = json.loads(str(sections["dropout"][name][()]))
        if optimizer is not None:
            optimizer.load_state_dict(sections["optimizer"])
        if scheduler is not None:
            if "scheduler" not in sections:
                raise ValueError("it holds no scheduler state, but a scheduler was given")
            scheduler.load_state_dict(sections["scheduler"])
        if batches is not None:
            if "data" not in sections:
                raise ValueError("it holds no batch stream state, but batches were given")
            batches.load_state_dict(sections["data"], strict=strict_data)
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise CheckpointError(f"checkpoint {path!r} does not fit: {err}") from None


def checkpoint_config(path) -> tuple[int, dict]:
    """The iteration and the run's configuration stored in a checkpoint, without a model
    (what a resume needs to rebuild the run). Raises :class:`CheckpointError` as
    :func:`load_checkpoint` does."""
    path = os.fspath(path)
    arrays = _read_npz(path)
    if "iteration" not in arrays or "config" not in arrays:
        raise CheckpointError(f"{path!r} is not a minifcn checkpoint: no iteration or config")
    return _iteration(path, arrays["iteration"]), _json_object(path, {"": arrays["config"]},
                                                               "config")


def _read_npz(path: str) -> dict:
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        return read_archive(path, what="checkpoint").arrays
    except WeightsError as err:
        raise CheckpointError(str(err)) from None


def _sections(path, arrays: dict) -> dict:
    sections = {}
    for key, value in arrays.items():
        head, _, rest = key.partition(".")
        sections.setdefault(head, {})[rest] = value
    return sections


def _iteration(path, value, key: str = "iteration") -> int:
    """A 0-d non-negative integer member (``iteration``, ``log.window``)."""
    if value is None or value.shape != () or value.dtype.kind not in "iu" or int(value) < 0:
        found = "missing" if value is None else f"{value.dtype.str} {value.shape}"
        raise CheckpointError(f"{path!r}: its {key!r} entry must be a 0-d integer of at "
                              f"least 0, but is {found}")
    return int(value)


def _json_object(path, section: dict, key: str) -> dict:
    """The 0-d string member ``key`` holding a JSON object."""
    value, parsed = section.get(""), None
    if value is not None and value.shape == () and value.dtype.kind == "U":
        try:
            parsed = json.loads(str(value[()]))
        except ValueError:
            pass
    if not isinstance(parsed, dict):
        raise CheckpointError(f"{path!r}: its {key!r} entry must be a 0-d string holding a "
                              f"JSON object, but is not")
    return parsed


def _window(path, section: dict):
    """``(window, loss_sum)`` of the logging window open at the checkpoint."""
    window = section.get("window")
    if window is None:                      # written before the window was kept
        return 0, None
    count = _iteration(path, window, "log.window")
    loss_sum = section.get("loss_sum")
    if count and (loss_sum is None or loss_sum.shape != () or loss_sum.dtype.kind != "f"):
        raise CheckpointError(f"{path!r}: its 'log.loss_sum' entry must be a 0-d float when "
                              f"'log.window' is {count}")
    return count, (loss_sum if count else None)


def _json_float(value):
    return None if value is None or not math.isfinite(value) else float(value)


def _float_or_nan(value) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")
