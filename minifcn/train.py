r"""Training: the training loop, validation, checkpoints, the log and the divergence guard.

One iteration is forward, softmax cross-entropy (pixels labelled 255 ignored), backward,
``optimizer.step()``, ``scheduler.step()``::

    data = ShapesDataset(512, size=(64, 64), seed=0)
    model = FCN8s(n_class=data.n_class, width=1 / 16)
    opt = Adam(model.parameters(), lr=1e-3)
    batches = BatchStream(data, batch_size=8, seed=0)
    result = train(model, opt, batches, iters=1000, val=val_batches, val_every=200,
                   checkpoint_dir="run")
    # later, or after a crash: continue exactly where ``run/last.npz`` stopped
    train(model, opt, batches, iters=1000, resume="run/last.npz", checkpoint_dir="run")

The loss stays on the device between logged steps: it is summed there and read once per
logged step (a single host synchronisation), and the logged figure is the mean over the
steps since the last row. A NaN or inf in that window, or in the parameters or optimiser
state when a checkpoint or validation is due (checked after the update, before anything
is written), raises :class:`TrainingDiverged` naming the last good checkpoint and its
iteration, left as it was: ``last.npz`` and ``best.npz`` only ever hold finite numbers
(:mod:`minifcn.checkpoint`). NumPy's overflow warnings on the way are not shown.

The folder and the log (:mod:`minifcn.run_log`): a new run into a folder that holds one is
refused unless ``overwrite``; each row is written before the checkpoint that follows it,
and a resume keeps the rows up to the checkpoint's last logged iteration, so the log of a
run killed and resumed any number of times equals that of a run never interrupted, rows
and averages alike. A resume checks that the checkpoint was written by the same run
(:mod:`minifcn.run_identity`) unless ``force``.

Resuming restores everything into fresh objects, so ``K + M`` iterations in one run equal
``K``, checkpoint, resume, ``M`` bit for bit on the CPU.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from .backend import to_device
from .batch_stream import BatchStream, default_transform  # noqa: F401  (this module's API)
from .checkpoint import (CHECKPOINT_FORMAT, Checkpoint, CheckpointError,  # noqa: F401
                         ResumeMismatch, checkpoint_config, load_checkpoint, nonfinite,
                         save_checkpoint)
from .metrics import ConfusionMatrix, SegmentationMetrics
from .run_log import LOG_FIELDS, RunExistsError, append_row, prepare_folder, start_log  # noqa: F401
from ._validate import positive_int
from .train_loss import (AUX_WEIGHT, IGNORE_INDEX, check_aux_weight, loss_and_gradients,
                         output_labels)


class TrainingDiverged(RuntimeError):
    """The loss, a parameter or an optimiser buffer became NaN or inf; the message names
    the iteration and the last good checkpoint (and its iteration), left as it was."""


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


# --- one step, validation -----------------------------------------------------------------

def _device(model) -> str:
    params = model.parameters()
    return params[0].device if params else "cpu"


def train_step(model, optimizer, images, labels, scheduler=None, class_weight=None,
               aux_weight=AUX_WEIGHT):
    """One iteration on one batch; returns the loss as a 0-d array on the model's device
    (not read, so no host synchronisation). ``class_weight``: the loss's weight per class
    (an array of the model's dtype on its device), or None. A model with auxiliary scores
    is trained on the main loss plus ``aux_weight`` times theirs, and a model whose output
    is smaller than its input against the labels under it (:mod:`minifcn.train_loss`)."""
    device = _device(model)
    x, t = to_device(images, device), to_device(labels, device)
    optimizer.zero_grad()
    scores = model(x)                                           # (N, C, OH, OW)
    loss, dscores, daux = loss_and_gradients(model, scores, t, class_weight, aux_weight)
    if daux is None:
        model.backward(dscores)
    else:
        model.backward(dscores, daux)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss


def evaluate(model, batches, n_class: int) -> SegmentationMetrics:
    """Metrics of ``model`` (in eval mode) over ``batches`` of ``(images, labels)``;
    pixels labelled 255 are ignored, and the labels are cropped to an output smaller than
    the input as for the loss. The model's training mode is restored afterwards."""
    device, was_training = _device(model), model.training
    matrix = ConfusionMatrix(n_class, ignore_index=IGNORE_INDEX)
    model.eval()
    try:
        for images, labels in batches:
            scores = model(to_device(images, device))                 # (N, C, OH, OW)
            matrix.update(scores.argmax(axis=1),
                          output_labels(model, to_device(labels, device), scores))
    finally:
        model.train(was_training)
    return matrix.compute()


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
          stop_at: float | None = None, class_weight=None, overwrite: bool = False,
          force: bool = False, aux_weight: float = AUX_WEIGHT) -> TrainResult:
    """Train ``model`` until ``iters`` iterations are done in all.

    Parameters
    ----------
    model : any of :data:`minifcn.models.MODELS` (a Module taking (N, C_in, H, W) and giving
        (N, C, OH, OW) scores; auxiliary scores in ``aux_output``, if any)
    optimizer : minifcn.optim.Optimizer over the model's parameters
    batches : iterator of ``(images, labels)``; a :class:`BatchStream` is saved in
        checkpoints, so a resume continues its sequence
    iters : the total iteration count to reach (a resumed run continues up to it; below
        the checkpoint's iteration is an error)
    scheduler : minifcn.lr_schedule.LRScheduler or None
    val : re-iterable of ``(images, labels)`` batches (e.g. a list), or None
    val_every : validate every this many iterations and at the end (0: only at the end,
        if ``val`` is given)
    log_every : read, show and log the loss every this many iterations (and at every
        validation, checkpoint and the last iteration)
    log_path : CSV file (``log.csv``) of the rows, or None; default
        ``checkpoint_dir/log.csv`` when a ``checkpoint_dir`` is given
    checkpoint_dir : folder for ``last.npz`` (at every validation, every
        ``checkpoint_every`` iterations and at the end) and ``best.npz`` (best mean IoU);
        one that holds a run already is refused unless ``resume`` continues it from there
        or ``overwrite``
    resume : a checkpoint to restore into all of the above before training
    config : JSON-serialisable dict stored in checkpoints; on resume, compared with the
        checkpoint's (:class:`~minifcn.checkpoint.ResumeMismatch` names the differences)
    progress : show a tqdm bar (loss, lr, it/s); nothing else is printed
    n_class : classes for validation; default ``model.n_class``
    stop_after : leave after this many iterations of this call, as an interruption would
        (``last.npz`` is written there), without changing the schedule's ``iters``; a
        later call with ``resume`` continues (for time-limited jobs)
    stop_at : a ``time.monotonic()`` deadline: the first iteration to end past it is the
        last of this call, as with ``stop_after``
    class_weight : the loss's weight per class (``n_class`` values), or None
    overwrite : remove the run already in ``checkpoint_dir`` (log, checkpoints) and start anew
    force : resume even where ``config`` differs from the checkpoint's (a changed data set
        then starts a new epoch)
    aux_weight : the auxiliary loss's weight, for a model with auxiliary scores (0.5:
        torchvision's recipe)

    Raises
    ------
    TrainingDiverged
        When the loss, a parameter or an optimiser buffer is NaN or inf; nothing is written
        after it.
    TrainingInterrupted
        On Ctrl-C (SIGINT) with a ``checkpoint_dir``: the iteration in progress finishes,
        ``last.npz`` is written for it, and resuming from it continues exactly. Without a
        ``checkpoint_dir`` Ctrl-C raises ``KeyboardInterrupt`` as usual.
    RunExistsError, ResumeMismatch
        A ValueError and a CheckpointError: the folder holds another run; the checkpoint
        is of another run.
    """
    iters = positive_int("iters", iters)
    aux_weight = check_aux_weight(aux_weight)
    if stop_after is not None:
        stop_after = positive_int("stop_after", stop_after)
    n_class = n_class if n_class is not None else model.n_class
    class_weight = _class_weight(class_weight, model, n_class)
    if checkpoint_dir is not None and log_path is None:
        log_path = os.path.join(checkpoint_dir, "log.csv")
    prepare_folder(checkpoint_dir, log_path, resume, overwrite)
    run = _Run(model, optimizer, scheduler, batches, config, checkpoint_dir, log_path)
    start = run.resume(resume, force) if resume is not None else 0
    if start > iters:
        raise ValueError(f"iters ({iters}) is below the iteration of the checkpoint resumed "
                         f"({start}): there is nothing to train; give iters of at least "
                         f"{start}")
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
    if log_path is not None:
        start_log(log_path, keep_through=None if resume is None else start - run.window)
    stop = iters if stop_after is None else min(iters, start + stop_after)
    model.train()
    interrupt = _DeferredInterrupt(active=checkpoint_dir is not None)
    with interrupt, np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
            tqdm(total=iters, initial=start, disable=not progress, unit="it",
                 dynamic_ncols=True) as bar:
        for it in range(start + 1, stop + 1):
            if interrupt.requested:                    # Ctrl-C during the last iteration
                run.save_interrupted(it - 1)
                raise TrainingInterrupted(it - 1, os.path.join(checkpoint_dir, "last.npz"))
            lr = optimizer.param_groups[0]["lr"]       # the rate this step uses
            images, labels = next(batches)
            run.add(train_step(model, optimizer, images, labels, scheduler, class_weight,
                               aux_weight))
            bar.update(1)
            if stop_at is not None and it < stop and time.monotonic() >= stop_at:
                stop = it                              # out of time: leave as stop_after does
            validate = val is not None and ((val_every and it % val_every == 0) or it == iters)
            saving = bool(checkpoint_every) and it % checkpoint_every == 0
            regular = validate or saving or it % log_every == 0 or it == iters
            if regular or it == stop:
                run.log_point(it, lr, regular=regular, save=saving or validate or it == stop,
                              val=val if validate else None, n_class=n_class, bar=bar)
            if it == stop:
                break
    return TrainResult(max(start, stop), run.logged, run.best, run.metrics, run.validated_at,
                       run.validation)


class _Run:
    """One call of :func:`train`: the open logging window, the best score, the last good
    checkpoint, and the order in which rows and checkpoints are written."""

    def __init__(self, model, optimizer, scheduler, batches, config, folder, log_path):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.stream = batches if isinstance(batches, BatchStream) else None
        self.config, self.folder, self.log_path = config, folder, log_path
        self.loss_sum, self.window, self.logged = None, 0, float("nan")
        self.best, self.metrics = float("nan"), None
        self.validated_at, self.validation = 0, None
        self.last_good = None                  # (path, iteration) of a finite checkpoint

    def resume(self, path, force: bool) -> int:
        saved = load_checkpoint(path, self.model, self.optimizer, self.scheduler, self.stream,
                                expect_config=self.config, force=force)
        self.best, self.metrics, self.logged = saved.best_mean_iou, saved.metrics, saved.loss
        self.window = saved.window
        if saved.window:
            self.loss_sum = to_device(saved.loss_sum, _device(self.model))
        self.last_good = (os.fspath(path), saved.iteration)
        return saved.iteration

    def add(self, loss) -> None:
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.window += 1

    def log_point(self, it, lr, *, regular, save, val, n_class, bar) -> None:
        """Read the window's loss; check; validate; then the row, best.npz, last.npz, in
        that order (a kill between them leaves rows a resume drops, never a gap)."""
        self.logged = self._window_loss(it)
        save = save and self.folder is not None
        if save or val is not None:
            self._require_finite(it)
        if regular:
            self.loss_sum, self.window = None, 0
        row, improved = {"iteration": it, "loss": self.logged, "lr": lr}, False
        if val is not None:
            result = evaluate(self.model, val, n_class)
            self.validated_at, self.validation = it, result
            self.metrics = {k: float(getattr(result, k)) for k in LOG_FIELDS[3:]}
            row.update(self.metrics)
            improved = result.mean_iou > self.best or (math.isnan(self.best)
                                                       and not math.isnan(result.mean_iou))
            if improved:
                self.best = float(result.mean_iou)
        shown = {"loss": f"{self.logged:.4f}", "lr": f"{lr:.3g}"}
        if self.validation is not None:
            shown["val mIoU"] = f"{self.validation.mean_iou:.3f}"
        bar.set_postfix(shown)
        if self.log_path is not None:
            append_row(self.log_path, row, durable=save or improved)
        if improved and self.folder is not None:
            self._checkpoint("best.npz", it)
        if save:
            self._checkpoint("last.npz", it)

    def save_interrupted(self, it) -> None:
        """last.npz for a Ctrl-C after iteration ``it``, its logging window left open."""
        if self.window:
            self._window_loss(it)
        self._require_finite(it)
        self._checkpoint("last.npz", it)

    def _window_loss(self, it) -> float:
        loss = float(self.loss_sum) / self.window           # the one host read of the window
        if not math.isfinite(loss):
            when = (f"at iteration {it}" if self.window == 1 else
                    f"between iterations {it - self.window + 1} and {it}")
            raise TrainingDiverged(f"the loss became {loss} {when}; {self._kept()}. "
                                   "Try a lower learning rate.")
        return loss

    def _require_finite(self, it) -> None:
        bad = nonfinite(self.model, self.optimizer)
        if bad:
            raise TrainingDiverged(f"{', '.join(bad[:3])}{' and others' if len(bad) > 3 else ''}"
                                   f" became NaN or inf by iteration {it}; {self._kept()}. "
                                   "Try a lower learning rate.")

    def _kept(self) -> str:
        if self.last_good is None:
            return "no checkpoint was written"
        path, iteration = self.last_good
        return f"the last good checkpoint is {path!r} (iteration {iteration}), left as it was"

    def _checkpoint(self, name, it) -> None:
        path = os.path.join(self.folder, name)
        save_checkpoint(path, self.model, self.optimizer, it, scheduler=self.scheduler,
                        batches=self.stream, config=self.config, best_mean_iou=self.best,
                        metrics=self.metrics, loss=self.logged, window=self.window,
                        loss_sum=self.loss_sum)
        if name == "last.npz":
            self.last_good = (path, it)


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
