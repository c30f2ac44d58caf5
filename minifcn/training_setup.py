r"""Everything a training run needs, built from data sets and plain options.

``minifcn train`` and ``minifcn demo`` both come through here::

    setup = TrainingSetup.build(train_set, val_set, model="fcn8s", width=1 / 16,
                                lr=1e-3, iters=2000, batch_size=2)
    result = setup.run("runs/shapes", val_every=200)   # log.csv, last/best.npz, model.npz

It wires the pieces of :mod:`minifcn.train` together: the model (any of
:data:`minifcn.models.MODELS` from scratch, or a VGG16 FCN from VGG16 weights; see
:mod:`minifcn.training_models`), the optimiser (Adam, or SGD with the reference's 2x bias rate and no bias
decay), the learning-rate schedule, the augmenting :class:`~minifcn.train.BatchStream` and
the validation batches, and after training writes ``model.npz``: the best validated
weights (or the last ones), with metadata ``predict`` reads — the architecture, width,
class names and the input normalisation.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from .data.transforms import collate, normalize, random_flip, random_scale_crop
from .io import describe, write_weights
from .lr_schedule import LRScheduler
from .optim import SGD, Adam, fcn_param_groups
from .run_identity import data_fingerprint
from .train import BatchStream, evaluate, load_checkpoint, train
from .train_loss import AUX_WEIGHT, check_aux_weight
from .training_models import build_network, check_unet_sizes


class AugmentThenNormalize:
    """The training transform: random rescale and crop, random flip, then normalisation.

    A class rather than a closure, so a configuration reads back from ``repr``.
    """

    def __init__(self, crop=None, scale=(1.0, 1.0), flip=True, preprocess="reference"):
        self.crop, self.scale, self.flip, self.preprocess = crop, tuple(scale), flip, preprocess

    def __call__(self, image, label, rng):
        if self.crop is not None or self.scale != (1.0, 1.0):
            image, label = random_scale_crop(image, label, rng, scale=self.scale,
                                             crop=self.crop)
        if self.flip:
            image, label = random_flip(image, label, rng)
        return normalize(image, self.preprocess), label

    def __repr__(self):
        return (f"AugmentThenNormalize(crop={self.crop}, scale={self.scale}, "
                f"flip={self.flip}, preprocess={self.preprocess!r})")


class EvalBatches:
    """A re-iterable of normalised ``(images, labels)`` batches over a whole data set.

    Items are read when iterated, not held, so a large validation set costs one batch of
    memory. Consecutive items of the same size share a batch (up to ``batch_size``); an
    item of another size starts a new one, so nothing is padded.
    """

    def __init__(self, dataset, preprocess="reference", batch_size: int = 8):
        self.dataset, self.preprocess, self.batch_size = dataset, preprocess, batch_size

    def __iter__(self):
        pending = []
        for i in range(len(self.dataset)):
            image, label = self.dataset[i]
            item = (normalize(image, self.preprocess), label)
            if pending and (len(pending) == self.batch_size
                            or pending[0][1].shape != label.shape):
                yield collate(pending)
                pending = []
            pending.append(item)
        if pending:
            yield collate(pending)


class SetupResult(NamedTuple):
    """What :meth:`TrainingSetup.run` returns."""

    iteration: int
    loss: float
    best_mean_iou: float
    metrics: object            # SegmentationMetrics of the kept weights (None: no val)
    weights_path: str
    weights_from: str          # "best.npz (iteration N)" or "the last iteration"


class TrainingSetup(NamedTuple):
    """A model with its optimiser, schedule, batches and configuration, ready to train."""

    model: object
    optimizer: object
    scheduler: object
    batches: BatchStream
    val: EvalBatches | None
    config: dict
    class_names: tuple

    @classmethod
    def build(cls, train_set, val_set=None, *, model="fcn8s", width=1.0, init=None,
              device="cpu", batch_size=1, optimizer="adam", lr=1e-3, momentum=0.9,
              weight_decay=0.0, schedule="poly", warmup=0, iters=1000, dropout=0.5, crop=None,
              scale=(1.0, 1.0), flip=True, preprocess="reference", seed=0,
              val_batch_size=8, class_weight=None, betas=(0.9, 0.999), aux=True,
              aux_weight=AUX_WEIGHT, base=None, depth=4):
        """Build a run. ``train_set``/``val_set``: sequences of ``(image uint8 (H, W, 3),
        label (H, W))`` with ``n_class`` (and ``classes`` or ``class_names``) attributes.

        ``init``: a VGG16 weight file (``minifcn convert``) for the trunk and fc6/fc7, or
        None for Kaiming initialisation. ``optimizer``: ``"adam"`` or ``"sgd"`` (momentum,
        the reference's 2x learning rate and no decay for biases). ``schedule``: ``"poly"``
        (power 0.9 over ``iters``), ``"step"`` (x0.1 at 2/3 of ``iters``) or ``"constant"``,
        after ``warmup`` iterations of linear ramp. ``class_weight``: the loss's weight per
        class (e.g. against a background that covers most pixels), or None. ``betas``: Adam's
        moment decay rates.

        ``model`` is any name in :data:`minifcn.models.MODELS`. The ResNet-50 segmenters
        take ``width`` and ``aux`` (the auxiliary head, its loss weighted ``aux_weight``);
        U-Net takes ``base`` (default: 64 channels scaled by ``width``, as ``summary`` and
        ``bench`` scale it) and ``depth``; its sizes are checked here (the crop, else every
        training item, and every validation item: see
        :func:`~minifcn.training_models.check_unet_sizes`), and ``scale`` needs a ``crop``.
        ``init`` and ``dropout`` are the VGG16 FCNs' only.
        """
        n_class = train_set.n_class
        names = tuple(getattr(train_set, "classes", None)
                      or getattr(train_set, "class_names", None)
                      or (f"class{i}" for i in range(n_class)))
        net, family = build_network(model, n_class, width=width, init=init, dropout=dropout,
                                    seed=seed, aux=aux, base=base, depth=depth)
        train_items, val_items = train_set, val_set
        if model == "unet":
            train_items, val_items = check_unet_sizes(net, train_set, val_set, crop, scale)
        width = net.width if init is not None else width
        net.to(device)
        opt = _optimizer(net, optimizer, lr, momentum, weight_decay, betas)
        sched = LRScheduler(opt, schedule, warmup=warmup, **_schedule_options(schedule, iters))
        transform = AugmentThenNormalize(crop, scale, flip, preprocess)
        batches = BatchStream(train_items, batch_size, seed=np.random.default_rng([seed, 1]),
                              transform=transform)
        val = None if val_set is None else EvalBatches(val_items, preprocess, val_batch_size)
        config = {"model": model, "width": float(width), "n_class": int(n_class),
                  "classes": list(names), "init": None if init is None else os.fspath(init),
                  "device": device, "batch_size": int(batch_size), "optimizer": optimizer,
                  "lr": float(lr), "momentum": float(momentum),
                  "betas": [float(b) for b in betas],
                  "weight_decay": float(weight_decay), "schedule": schedule,
                  "warmup": int(warmup),
                  "iters": int(iters), "dropout": float(dropout),
                  "crop": None if crop is None else list(crop), "scale": list(scale),
                  "flip": bool(flip), "preprocess": preprocess, "seed": int(seed),
                  "class_weight": None if class_weight is None
                  else [float(w) for w in class_weight],
                  **family,
                  "data": {"train": data_fingerprint(train_set),
                           "val": data_fingerprint(val_set)}}
        if getattr(net, "aux", False):
            config["aux_weight"] = check_aux_weight(aux_weight)
        return cls(net, opt, sched, batches, val, config, names)

    def run(self, out, *, val_every=0, log_every=10, checkpoint_every=0, resume=None,
            progress=True, stop_after=None, stop_at=None, overwrite=False,
            force=False) -> SetupResult:
        """Train up to ``config["iters"]``, writing ``log.csv``, ``last.npz``, ``best.npz``
        (checkpoints) and ``model.npz`` (the weights kept: best validated, else last) into
        ``out``; ``stop_after`` and ``stop_at`` (a ``time.monotonic()`` deadline) leave
        earlier, as :func:`minifcn.train.train` says. A folder holding a run is refused
        unless ``resume`` continues it or ``overwrite`` (which removes its ``model.npz``
        too); ``force`` resumes a checkpoint whose configuration differs from ``config``."""
        weights = os.path.join(out, "model.npz")
        if overwrite and resume is None and os.path.lexists(weights):
            os.remove(weights)
        result = train(self.model, self.optimizer, self.batches, iters=self.config["iters"],
                       scheduler=self.scheduler, val=self.val, val_every=val_every,
                       log_every=log_every, checkpoint_dir=out,
                       checkpoint_every=checkpoint_every, resume=resume, config=self.config,
                       progress=progress, n_class=self.config["n_class"],
                       stop_after=stop_after, stop_at=stop_at,
                       class_weight=self.config.get("class_weight"), overwrite=overwrite,
                       force=force, aux_weight=self.config.get("aux_weight", AUX_WEIGHT))
        best = os.path.join(out, "best.npz")
        weights_from, metrics = "the last iteration", None
        if self.val is not None:
            kept = load_checkpoint(best, self.model).iteration if os.path.exists(best) else 0
            if kept:
                weights_from = f"best.npz, iteration {kept}"
            metrics = (result.validation if kept and kept == result.validated_at
                       else evaluate(self.model, self.val, self.config["n_class"]))
        self.save_weights(weights)
        return SetupResult(result.iteration, result.loss, result.best_mean_iou, metrics,
                           weights, weights_from)

    def save_weights(self, path) -> None:
        """The model's weights with the metadata ``minifcn predict`` reads."""
        write_weights(path, self.model.state_dict(), **describe(self.model),
                      classes=list(self.class_names), preprocess=self.config["preprocess"])


def _optimizer(model, name, lr, momentum, weight_decay, betas=(0.9, 0.999)):
    if name == "adam":
        return Adam(fcn_param_groups(model, lr, weight_decay, bias_lr_mult=1.0), lr=lr,
                    betas=betas)
    if name == "sgd":
        return SGD(fcn_param_groups(model, lr, weight_decay), lr=lr, momentum=momentum)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def _schedule_options(schedule, iters) -> dict:
    if schedule == "poly":
        return {"max_iter": iters, "power": 0.9}
    if schedule == "step":
        return {"step_size": max(1, 2 * iters // 3), "gamma": 0.1}
    return {}
