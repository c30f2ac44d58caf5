r"""Training: a batch stream, the training loop, validation, checkpoints and the loss guard.

One iteration is forward, softmax cross-entropy (pixels labelled 255 ignored), backward,
``optimizer.step()``, ``scheduler.step()``::

    data = ShapesDataset(512, size=(64, 64), seed=0)
    model = FCN8s(n_class=data.n_class, width=1 / 16)
    opt = Adam(model.parameters(), lr=1e-3)
    batches = BatchStream(data, batch_size=8, seed=0)
    result = train(model, opt, batches, iters=1000, val=val_batches, val_every=200,
                   checkpoint_dir="run", log_path="run/log.csv")
    # later, or after a crash: continue exactly where ``run/last.npz`` stopped
    train(model, opt, batches, iters=2000, resume="run/last.npz", checkpoint_dir="run",
          log_path="run/log.csv")

The loss stays on the device between logged steps: it is summed there and read once per
logged step (a single host synchronisation), and the logged figure is the mean over the
steps since the last one. A NaN or inf anywhere in that window raises
:class:`TrainingDiverged` before any checkpoint is written, so ``last.npz`` and
``best.npz`` always hold finite parameters.

A checkpoint is an ``.npz`` written atomically and read with ``allow_pickle=False`` by
:func:`minifcn.io.write_archive` / :func:`minifcn.io.read_archive`, so every member's dtype,
shape and CRC-32 are recorded in its ``__minifcn__`` member and verified on load. Its
members:

====================  ===================================================================
``model.NAME``        every parameter, by dotted name
``optimizer.KEY``     ``optimizer.state_dict()`` (options, moment buffers, step counts)
``scheduler.KEY``     ``scheduler.state_dict()`` (absent without a scheduler)
``data.rng``          the batch stream's ``bit_generator.state`` as JSON (0-d string)
``data.order``        the current epoch's order and ``data.position`` the next index in it
``dropout.NAME``      each dropout layer's ``bit_generator.state`` as JSON
``iteration``         0-d int64: iterations done
``config``            0-d string: JSON of the run's configuration (free-form)
``meta``              0-d string: JSON ``{"format", "minifcn", "best_mean_iou", "metrics"}``
====================  ===================================================================

Resuming restores all of it into fresh objects, so ``K + M`` iterations in one run equal
``K``, checkpoint, resume, ``M`` bit for bit on the CPU.
"""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import threading
import time
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from ._version import __version__
from .backend import asnumpy, to_device
from .data.transforms import collate, normalize
from .metrics import ConfusionMatrix, SegmentationMetrics
from .io import WeightsError, read_archive, write_archive
from .nn.activation import Dropout
from ._validate import positive_int
from .ops.loss import softmax_cross_entropy_backward, softmax_cross_entropy_forward

IGNORE_INDEX = 255
CHECKPOINT_FORMAT = 1
LOG_FIELDS = ("iteration", "loss", "lr", "pixel_accuracy", "mean_accuracy", "mean_iou",
              "frequency_weighted_iou")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the message names the iteration and the last good
    checkpoint, which was left as it was."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training between two iterations; ``iteration`` is the last
    one completed and ``checkpoint`` the ``last.npz`` written for it (resume from it)."""

    def __init__(self, iteration: int, checkpoint: str):
        super().__init__(f"interrupted after iteration {iteration}; {checkpoint} holds it: "
                         f"continue with resume={checkpoint!r} (--resume)")
        self.iteration, self.checkpoint = iteration, checkpoint


class _DeferredInterrupt:
    """While active (main thread only), a first SIGINT only sets ``requested``: the loop
    stops at the end of the iteration in progress, so no checkpoint ever holds a model
    updated halfway. A second SIGINT raises ``KeyboardInterrupt`` at once."""

    def __init__(self, active: bool):
        self.active = active and threading.current_thread() is threading.main_thread()
        self.requested, self.previous = False, None

    def __enter__(self):
        if self.active:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc_info):
        if self.active:
            signal.signal(signal.SIGINT, self.previous)


class CheckpointError(WeightsError):
    """A checkpoint that cannot be read (damaged, truncated, failing its checksums) or does
    not fit the objects; names the file. A :class:`minifcn.io.WeightsError`."""


# --- batches ------------------------------------------------------------------------------

def default_transform(image, label, rng):
    """``(H, W, 3)`` uint8 RGB, ``(H, W)`` label -> ``(3, H, W)`` float32 (ImageNet
    normalisation), label; draws nothing from ``rng``."""
    return normalize(image), label


class BatchStream:
    """An endless, seeded, resumable stream of ``(images, labels)`` batches.

    Each epoch visits the data set in an order drawn from ``rng``; every item goes through
    ``transform(image, label, rng)`` and each batch through
    :func:`minifcn.data.transforms.collate`. An epoch's last, short batch is dropped, so
    every batch holds ``batch_size`` items. The stream's whole state (generator, epoch
    order, position) is in :meth:`state_dict`, which checkpoints keep.

    Parameters
    ----------
    dataset : sequence of ``(image, label)`` (``len`` and ``[i]``), e.g. ``ShapesDataset``
    batch_size : int, at most ``len(dataset)``
    seed : int or numpy.random.Generator; shuffles, and feeds random transforms
    transform : callable ``(image, label, rng) -> (image (3, H, W) float, label (H, W))``;
        default :func:`default_transform`

    Yields
    ------
    images : ndarray (N, 3, H, W) float; labels : ndarray (N, H, W) int64
    """

    def __init__(self, dataset, batch_size: int, seed=0, transform=default_transform):
        self.dataset = dataset
        self.batch_size = positive_int("batch_size", batch_size)
        if self.batch_size > len(dataset):
            raise ValueError(f"batch_size must be at most the data set's size "
                             f"({len(dataset)}), got {batch_size}")
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.transform = transform
        self.order = np.zeros(0, dtype=np.int64)   # the current epoch's order
        self.position = 0                          # next index into ``order``

    def __iter__(self):
        return self

    def __next__(self):
        if self.position + self.batch_size > len(self.order):
            self.order = self.rng.permutation(len(self.dataset)).astype(np.int64)
            self.position = 0
        indices = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return collate([self.transform(*self.dataset[int(i)], self.rng) for i in indices])

    def state_dict(self) -> dict:
        return {"rng": _rng_json(self.rng), "order": self.order.copy(),
                "position": np.int64(self.position)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = json.loads(str(np.asarray(state["rng"])[()]))
        self.order = np.asarray(state["order"], dtype=np.int64).copy()
        self.position = int(np.asarray(state["position"]))


# --- one step, validation -----------------------------------------------------------------

def _device(model) -> str:
    params = model.parameters()
    return params[0].device if params else "cpu"


def train_step(model, optimizer, images, labels, scheduler=None, class_weight=None):
    """One iteration on one batch; returns the loss as a 0-d array on the model's device
    (not read, so no host synchronisation). ``class_weight``: the loss's weight per class
    (an array of the model's dtype on its device), or None."""
    device = _device(model)
    x, t = to_device(images, device), to_device(labels, device)
    optimizer.zero_grad()
    scores = model(x)                                           # (N, C, H, W)
    loss, cache = softmax_cross_entropy_forward(scores, t, weight=class_weight,
                                                ignore_index=IGNORE_INDEX)
    dscores, _, _ = softmax_cross_entropy_backward(1.0, cache)  # (N, C, H, W)
    model.backward(dscores)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss


def evaluate(model, batches, n_class: int) -> SegmentationMetrics:
    """Metrics of ``model`` (in eval mode) over ``batches`` of ``(images, labels)``;
    pixels labelled 255 are ignored. The model's training mode is restored afterwards."""
    device, was_training = _device(model), model.training
    matrix = ConfusionMatrix(n_class, ignore_index=IGNORE_INDEX)
    model.eval()
    try:
        for images, labels in batches:
            scores = model(to_device(images, device))                 # (N, C, H, W)
            matrix.update(scores.argmax(axis=1), to_device(labels, device))
    finally:
        model.train(was_training)
    return matrix.compute()


# --- checkpoints --------------------------------------------------------------------------

def _rng_json(rng) -> np.ndarray:
    return np.array(json.dumps(rng.bit_generator.state))


def _dropout_generators(model):
    """``(name, Generator)`` of every dropout layer that draws from a NumPy Generator."""
    return [(name, m.rng) for name, m in model.named_modules()
            if isinstance(m, Dropout) and isinstance(m.rng, np.random.Generator)]


def save_checkpoint(path, model, optimizer, iteration: int, *, scheduler=None, batches=None,
                    config=None, best_mean_iou: float = float("nan"), metrics=None) -> None:
    """Write everything a resume needs to ``path`` atomically (members: module docstring)."""
    arrays = {f"model.{k}": asnumpy(v) for k, v in model.state_dict().items()}
    arrays.update({f"optimizer.{k}": np.asarray(v) for k, v in optimizer.state_dict().items()})
    if scheduler is not None:
        arrays.update({f"scheduler.{k}": np.asarray(v)
                       for k, v in scheduler.state_dict().items()})
    if batches is not None:
        arrays.update({f"data.{k}": np.asarray(v) for k, v in batches.state_dict().items()})
    for name, rng in _dropout_generators(model):
        arrays[f"dropout.{name}"] = _rng_json(rng)
    meta = {"format": CHECKPOINT_FORMAT, "minifcn": __version__,
            "best_mean_iou": _json_float(best_mean_iou), "metrics": metrics}
    arrays.update(iteration=np.int64(iteration), config=np.array(json.dumps(config or {})),
                  meta=np.array(json.dumps(meta)))
    write_archive(path, arrays, {"kind": "checkpoint"})


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns besides the objects it restored."""

    iteration: int
    config: dict
    best_mean_iou: float   # NaN before the first validation
    metrics: dict | None   # the last validation's figures, if any


def load_checkpoint(path, model, optimizer=None, scheduler=None, batches=None) -> Checkpoint:
    """Restore a checkpoint into ``model`` and whichever of the others are given.

    The parameters, the dropout generators, the optimiser's and scheduler's state and the
    batch stream's generator and position are all restored. Raises
    :class:`CheckpointError` (naming ``path``) on an unreadable file or one that does not
    fit, before anything is changed when the file itself is bad.
    """
    path = os.fspath(path)
    arrays = _read_npz(path)
    sections = {}
    for key, value in arrays.items():
        head, _, rest = key.partition(".")
        sections.setdefault(head, {})[rest] = value
    for required in ("model", "optimizer", "iteration", "config", "meta"):
        if required not in sections:
            raise CheckpointError(f"{path!r} is not a minifcn checkpoint: no {required!r} entry")
    meta = json.loads(str(sections["meta"][""][()]))
    if meta.get("format", 0) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path!r} has checkpoint format {meta['format']}, newer "
                              f"than this minifcn reads ({CHECKPOINT_FORMAT}); upgrade minifcn")
    try:
        model.load_state_dict(sections["model"], strict=True)
        for name, rng in _dropout_generators(model):
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
            batches.load_state_dict(sections["data"])
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path!r} does not fit: {err}") from None
    return Checkpoint(int(sections["iteration"][""]), json.loads(str(sections["config"][""][()])),
                      _float_or_nan(meta.get("best_mean_iou")), meta.get("metrics"))


def checkpoint_config(path) -> tuple[int, dict]:
    """The iteration and the run's configuration stored in a checkpoint, without a model
    (what a resume needs to rebuild the run). Raises :class:`CheckpointError` as
    :func:`load_checkpoint` does."""
    path = os.fspath(path)
    arrays = _read_npz(path)
    if "iteration" not in arrays or "config" not in arrays:
        raise CheckpointError(f"{path!r} is not a minifcn checkpoint: no iteration or config")
    try:
        config = json.loads(str(arrays["config"][()]))
        iteration = int(np.asarray(arrays["iteration"]).reshape(-1)[0])
    except (ValueError, TypeError, IndexError) as err:
        raise CheckpointError(f"{path!r} holds an unreadable iteration or config: {err}") \
            from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path!r} holds a config that is not a JSON object")
    return iteration, config


def _read_npz(path: str) -> dict:
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        return read_archive(path, what="checkpoint").arrays
    except WeightsError as err:
        raise CheckpointError(str(err)) from None


def _json_float(value):
    return None if value is None or not math.isfinite(value) else float(value)


def _float_or_nan(value) -> float:
    return float("nan") if value is None else float(value)


# --- the loop -----------------------------------------------------------------------------

class TrainResult(NamedTuple):
    """What :func:`train` returns."""

    iteration: int          # iterations done in all (including those before a resume)
    loss: float             # the last logged loss
    best_mean_iou: float    # NaN if never validated
    metrics: dict | None    # the last validation's figures
    validated_at: int = 0   # the iteration of the last validation in this call (0: none)
    validation: object = None   # its SegmentationMetrics (per-class IoU included)


def train(model, optimizer, batches, *, iters: int, scheduler=None, val=None,
          val_every: int = 0, log_every: int = 10, log_path=None, checkpoint_dir=None,
          checkpoint_every: int = 0, resume=None, config=None, progress: bool = True,
          n_class: int | None = None, stop_after: int | None = None,
          stop_at: float | None = None, class_weight=None) -> TrainResult:
    """Train ``model`` until ``iters`` iterations are done in all.

    Parameters
    ----------
    model : an FCN (any Module taking (N, 3, H, W) and giving (N, C, H, W) scores)
    optimizer : minifcn.optim.Optimizer over the model's parameters
    batches : iterator of ``(images, labels)``; a :class:`BatchStream` is saved in
        checkpoints, so a resume continues its sequence
    iters : the total iteration count to reach (a resumed run continues up to it)
    scheduler : minifcn.lr_schedule.LRScheduler or None
    val : re-iterable of ``(images, labels)`` batches (e.g. a list), or None
    val_every : validate every this many iterations and at the end (0: only at the end,
        if ``val`` is given)
    log_every : read, show and log the loss every this many iterations (and at every
        validation, checkpoint and the last iteration)
    log_path : CSV file (``log.csv``) that rows are appended to, or None; default
        ``checkpoint_dir/log.csv`` when a ``checkpoint_dir`` is given
    checkpoint_dir : folder for ``last.npz`` (at every validation, every
        ``checkpoint_every`` iterations and at the end) and ``best.npz`` (best mean IoU)
    resume : a checkpoint to restore into all of the above before training
    config : JSON-serialisable dict stored in checkpoints
    progress : show a tqdm bar (loss, lr, it/s); nothing else is printed
    n_class : classes for validation; default ``model.n_class``
    stop_after : leave after this many iterations of this call, as an interruption would
        (``last.npz`` is written there), without changing the schedule's ``iters``; a
        later call with ``resume`` continues (for time-limited jobs)
    stop_at : a ``time.monotonic()`` deadline: the first iteration to end past it is the
        last of this call, as with ``stop_after``
    class_weight : the loss's weight per class (``n_class`` values), or None

    Raises
    ------
    TrainingDiverged
        When a logged loss is NaN or inf; no checkpoint is written after it.
    TrainingInterrupted
        On Ctrl-C (SIGINT) with a ``checkpoint_dir``: the iteration in progress finishes,
        ``last.npz`` is written for it, and resuming from it continues exactly. Without a
        ``checkpoint_dir`` Ctrl-C raises ``KeyboardInterrupt`` as usual.
    """
    iters = positive_int("iters", iters)
    if stop_after is not None:
        stop_after = positive_int("stop_after", stop_after)
    n_class = n_class if n_class is not None else model.n_class
    class_weight = _class_weight(class_weight, model, n_class)
    start, best, metrics = 0, float("nan"), None
    if resume is not None:
        start, _, best, metrics = load_checkpoint(resume, model, optimizer, scheduler,
                                                  batches if isinstance(batches, BatchStream)
                                                  else None)
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        if log_path is None:
            log_path = os.path.join(checkpoint_dir, "log.csv")
    last_good = resume
    loss_sum, window, logged = None, 0, float("nan")
    validated_at, validation = 0, None

    def checkpoint(name, it):
        save_checkpoint(os.path.join(checkpoint_dir, name), model, optimizer, it,
                        scheduler=scheduler, batches=batches if isinstance(batches, BatchStream)
                        else None, config=config, best_mean_iou=best, metrics=metrics)

    stop = iters if stop_after is None else min(iters, start + stop_after)
    model.train()
    interrupt = _DeferredInterrupt(active=checkpoint_dir is not None)
    with interrupt, tqdm(total=iters, initial=start, disable=not progress, unit="it",
                         dynamic_ncols=True) as bar:
        for it in range(start + 1, stop + 1):
            if interrupt.requested:                    # Ctrl-C during the last iteration
                checkpoint("last.npz", it - 1)
                raise TrainingInterrupted(it - 1, os.path.join(checkpoint_dir, "last.npz"))
            lr = optimizer.param_groups[0]["lr"]       # the rate this step uses
            images, labels = next(batches)
            loss = train_step(model, optimizer, images, labels, scheduler, class_weight)
            loss_sum, window = (loss if loss_sum is None else loss_sum + loss), window + 1
            bar.update(1)
            if stop_at is not None and it < stop and time.monotonic() >= stop_at:
                stop = it                              # out of time: leave as stop_after does
            validate = val is not None and ((val_every and it % val_every == 0) or it == iters)
            save = checkpoint_dir is not None and (
                validate or it == stop or (checkpoint_every and it % checkpoint_every == 0))
            if not (validate or save or it % log_every == 0 or it == stop):
                continue
            logged = float(loss_sum) / window            # the one host read of the window
            if not math.isfinite(logged):
                where = (f"the last good checkpoint is {last_good!r}, left as it was"
                         if last_good else "no checkpoint was written")
                raise TrainingDiverged(
                    f"the loss became {logged} between iterations {it - window + 1} and "
                    f"{it}; {where}. Try a lower learning rate.")
            loss_sum, window = None, 0
            row = {"iteration": it, "loss": logged, "lr": lr}
            if validate:
                result = evaluate(model, val, n_class)
                validated_at, validation = it, result
                metrics = {k: float(getattr(result, k)) for k in LOG_FIELDS[3:]}
                row.update(metrics)
                if result.mean_iou > best or (math.isnan(best) and
                                              not math.isnan(result.mean_iou)):
                    best = float(result.mean_iou)
                    if checkpoint_dir is not None:
                        checkpoint("best.npz", it)
            shown = {"loss": f"{logged:.4f}", "lr": f"{lr:.3g}"}
            if validation is not None:
                shown["val mIoU"] = f"{validation.mean_iou:.3f}"
            bar.set_postfix(shown)
            if log_path is not None:
                _append_row(log_path, row)
            if save:
                checkpoint("last.npz", it)
                last_good = os.path.join(checkpoint_dir, "last.npz")
            if it == stop:
                break
    return TrainResult(max(start, stop), logged, best, metrics, validated_at, validation)


def _class_weight(weight, model, n_class):
    """The loss's class weights as an array of the model's dtype on its device, or None."""
    if weight is None:
        return None
    values = np.asarray(weight, dtype=np.float64).reshape(-1)
    if values.size != n_class or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"class_weight must be {n_class} finite non-negative numbers, one "
                         f"per class, got {weight!r}")
    dtype = next(iter(model.parameters())).data.dtype
    return to_device(values.astype(dtype), _device(model))


def _append_row(path, row: dict) -> None:
    """Append one row to the CSV log, writing the header first into a new or empty file."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)
