r"""``minifcn demo``: train a narrow FCN-8s on generated shapes and show what it learned.

The whole pipeline, on one machine, from nothing but this package:

1. a :class:`~minifcn.data.ShapesDataset` stream of training images (generated on the fly,
   never repeated; flat, gradient and textured backgrounds, a noise level drawn per image),
   a validation set that picks the best weights, and a separate held-out test set that is
   only scored at the end;
2. an FCN-8s narrower than the paper's, Kaiming-initialised, score layers at zero with the
   coarse score's bias at the log class frequencies (so training starts from the prior, not
   from a plateau of "all background"), frozen bilinear upsampling, no dropout, trained with
   Adam (its second moment averaged over ~100 steps, beta2 = 0.99) on a class-weighted loss
   (the rare shape classes weigh more): a linear warm-up, then a poly decay;
3. a **time budget**, not an iteration count: a few calibration steps measure the step time
   on this machine, and the schedule spans the iterations that fit in the budget (the
   evaluation and figures included); ``iters`` fixes the count instead (the same seed and
   count give the same weights, bit for bit on one machine);
4. into ``out/``: ``metrics.txt`` (the test set's confusion-matrix figures),
   ``curves.png`` (training loss and validation mean IoU), ``examples/*.png`` (ground truth
   | prediction | overlay | one class's predicted mask), ``samples/*.png`` (test images for
   ``minifcn predict``), ``model.npz`` (the weights), the training run's ``log.csv`` and its
   checkpoints ``best.npz`` and ``last.npz`` (``resume=True`` continues from the latter).

The recipe is :data:`RECIPE`; the experiments behind it are in ``benchmarks/README.md``.
"""
from __future__ import annotations

import os
import time
from typing import NamedTuple

import numpy as np

from .backend import to_device
from .data.shapes import ShapesDataset
from .metrics import format_metrics
from .training_setup import TrainingSetup

RECIPE = {
    "size": (192, 192), "n_shapes": (2, 6), "scale": (0.06, 0.15),
    "backgrounds": ("flat", "gradient", "texture"), "noise": (0.0, 16.0),
    "n_val": 32, "n_test": 200, "n_examples": 4,
    "model": "fcn8s", "width": 1 / 16, "dropout": 0.0, "prior_bias": True,
    "class_balance": 0.5,
    "optimizer": "adam", "lr": 6e-3, "betas": (0.9, 0.99), "schedule": "poly", "warmup": 50,
    "batch_size": 2,
    "seconds": 280, "val_every": 100, "preprocess": "imagenet",
}
TRAIN_STREAM = 1_000_000   # generated on demand: each training image is seen once
CALIBRATION_STEPS = (2, 4)  # warm-up steps, then timed steps, on a throwaway model
MARGIN_SECONDS = 8         # what the budget keeps back for start-up noise and the figures
STREAMS = {"train": 0, "val": 1, "test": 2}


class DemoResult(NamedTuple):
    """What :func:`run_demo` returns."""

    metrics: object        # SegmentationMetrics on the held-out test set
    seconds: float         # wall time, generation and evaluation included
    files: dict            # what was written: name -> path
    iterations: int        # the iterations trained
    planned: int           # the iterations the schedule spans (more when time ran out)


def run_demo(out="minifcn-demo", *, device="cpu", iters=None, seconds=None, seed=0,
             resume=False, progress=True, echo=print, **overrides) -> DemoResult:
    """Run the demo into ``out``; see the module docstring.

    Parameters
    ----------
    out : folder to write into (created; files from an earlier run are replaced)
    device : "cpu", "cuda" or "cuda:N"
    iters : training iterations; default: as many as fit in ``seconds``
    seconds : the whole run's wall-time budget (default ``RECIPE["seconds"]``)
    seed : seeds the data, the initialisation and the batch order
    resume : continue the run in ``out`` from its ``last.npz`` (after an interruption):
        its recipe, seed and iteration count come from the checkpoint
    progress : show tqdm bars
    echo : where the step-by-step lines go (``print``; ``lambda *a: None`` for silence)
    **overrides : any other :data:`RECIPE` entry (e.g. ``size=(96, 96)``, ``n_test=20``)
    """
    start = time.monotonic()
    unknown = sorted(set(overrides) - set(RECIPE))
    if unknown:
        raise TypeError(f"unknown demo settings {unknown}; known: {sorted(RECIPE)}")
    recipe = {**RECIPE, **overrides, **({} if seconds is None else {"seconds": seconds})}
    checkpoint = os.path.join(out, "last.npz")
    if resume:
        recipe, seed, iters = _resumed(checkpoint)
    os.makedirs(out, exist_ok=True)
    train_set, val_set, test_set = (_shapes(recipe, seed, stream, n) for stream, n in (
        ("train", TRAIN_STREAM), ("val", recipe["n_val"]), ("test", recipe["n_test"])))
    prior, deadline = _prior(train_set), None
    if iters is None:
        iters, deadline = _plan(recipe, train_set, val_set, prior, device, seed, start, echo)
    echo(f"training {recipe['model']} (width {recipe['width']:g}) on generated "
         f"{recipe['size'][0]}x{recipe['size'][1]} shapes for {iters} iterations of "
         f"{recipe['batch_size']} images on {device}")
    setup = _setup(recipe, train_set, val_set, prior, device, seed, iters)
    if not resume:
        _remove_stale_run(out)
    result = setup.run(out, val_every=recipe["val_every"], log_every=10, progress=progress,
                       resume=checkpoint if resume else None, stop_at=deadline)
    if result.iteration < iters:
        echo(f"the time budget ran out after {result.iteration} of {iters} iterations")
    echo(f"kept the weights of {result.weights_from}; scoring {len(test_set)} held-out "
         f"images")
    metrics, files = _report(out, setup, test_set, recipe, result, device, seed)
    seconds_taken = time.monotonic() - start
    echo(format_metrics(metrics, ShapesDataset.class_names))
    echo(f"held-out mean IoU {metrics.mean_iou:.3f} after {seconds_taken:.0f} s")
    return DemoResult(metrics, seconds_taken, files, result.iteration, iters)


def _shapes(recipe, seed, stream, n):
    return ShapesDataset(n, size=recipe["size"], n_shapes=tuple(recipe["n_shapes"]),
                         scale=tuple(recipe["scale"]), seed=seed * 3 + STREAMS[stream],
                         backgrounds=tuple(recipe["backgrounds"]), noise=tuple(recipe["noise"]))


def _setup(recipe, train_set, val_set, prior, device, seed, iters):
    """The training run, with the demo's recipe: the class prior in the coarse score's bias
    and class weights of ``prior ** -class_balance`` in the loss."""
    weight = prior ** -recipe["class_balance"]
    weight /= (weight * prior).sum()                       # the average pixel's weight is 1
    setup = TrainingSetup.build(
        train_set, val_set, model=recipe["model"], width=recipe["width"], device=device,
        batch_size=recipe["batch_size"], optimizer=recipe["optimizer"], lr=recipe["lr"],
        betas=tuple(recipe["betas"]),
        weight_decay=0.0, schedule=recipe["schedule"], warmup=recipe["warmup"], iters=iters,
        dropout=recipe["dropout"], flip=True, preprocess=recipe["preprocess"], seed=seed,
        class_weight=weight if recipe["class_balance"] else None)
    if recipe["prior_bias"]:
        bias = setup.model.score_fr.bias
        bias.data[...] = to_device(np.log(prior).astype(bias.data.dtype), device)
    setup.config["demo"] = {k: (list(v) if isinstance(v, tuple) else v)
                            for k, v in recipe.items()}
    return setup


def _prior(dataset, n=64):
    """Each class's share of the pixels of the first ``n`` training images (never 0).

    Its log is the coarse score's bias, so that the first prediction is the prior, not a
    uniform guess (the bilinear upsamplings carry a constant score through unchanged);
    background covers most pixels, and without it training first spends hundreds of steps
    learning to answer "background" everywhere."""
    counts = np.ones(dataset.n_class)
    for i in range(min(n, len(dataset))):
        counts += np.bincount(dataset[i][1].ravel(), minlength=dataset.n_class)
    return counts / counts.sum()


def _plan(recipe, train_set, val_set, prior, device, seed, start, echo):
    """The iterations that fit in the budget, measured on this machine, and the deadline
    training must stop by so that the evaluation and figures still fit."""
    step, image = _calibrate(recipe, train_set, val_set, prior, device, seed)
    scoring = (recipe["n_test"] + recipe["n_examples"]) * image + MARGIN_SECONDS
    left = recipe["seconds"] - (time.monotonic() - start) - scoring
    per_iteration = step + recipe["n_val"] * image / recipe["val_every"]
    iters = max(1, int(left / per_iteration))
    echo(f"a step takes {step:.3f} s here and scoring an image {image:.3f} s: {iters} "
         f"iterations fit in the {recipe['seconds']:g} s budget")
    return iters, start + recipe["seconds"] - scoring


def _calibrate(recipe, train_set, val_set, prior, device, seed):
    """Median seconds of a training step, and of scoring one image, on a throwaway copy of
    the run (its steps do not count: the real run starts from the same seed)."""
    from .train import train_step
    from .training_setup import EvalBatches

    setup = _setup(recipe, train_set, None, prior, device, seed, 1000)
    batches, times = iter(setup.batches), []
    warm, timed = CALIBRATION_STEPS
    for _ in range(warm + timed):
        begin = time.perf_counter()
        float(train_step(setup.model, setup.optimizer, *next(batches), setup.scheduler))
        times.append(time.perf_counter() - begin)
    images, _ = next(iter(EvalBatches(val_set, recipe["preprocess"])))
    begin = time.perf_counter()
    setup.model.eval()
    float(setup.model(to_device(images, device)).sum())
    return float(np.median(times[warm:])), (time.perf_counter() - begin) / len(images)


def _resumed(checkpoint):
    """The recipe, seed and iteration count of the run whose checkpoint this is."""
    from .train import checkpoint_config

    _, config = checkpoint_config(checkpoint)
    saved = config.get("demo")
    if not isinstance(saved, dict) or set(saved) != set(RECIPE):
        raise ValueError(f"{checkpoint} is not a checkpoint of minifcn demo (no demo recipe "
                         f"in it); resume it with minifcn train --resume")
    saved = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()}
    return saved, int(config["seed"]), int(config["iters"])


def _report(out, setup, test_set, recipe, result, device, seed):
    """Score the test set; write metrics.txt, curves.png, examples/ and samples/."""
    from .plot import read_log, training_curves
    from .train import evaluate
    from .training_setup import EvalBatches

    names = ShapesDataset.class_names
    metrics = evaluate(setup.model, EvalBatches(test_set, recipe["preprocess"]),
                       ShapesDataset.n_class)
    files = {"model": result.weights_path, "log": os.path.join(out, "log.csv"),
             "metrics": os.path.join(out, "metrics.txt"),
             "curves": os.path.join(out, "curves.png")}
    for name in ("best", "last"):
        if os.path.exists(os.path.join(out, f"{name}.npz")):
            files[name] = os.path.join(out, f"{name}.npz")
    _write_text(files["metrics"], f"minifcn demo: {recipe['model']}, width "
                f"{recipe['width']:g}, {result.iteration} iterations, {device}, seed {seed}; "
                f"held-out test set of {len(test_set)} images\n\n"
                f"{format_metrics(metrics, names)}\n")
    training_curves(read_log(files["log"]), files["curves"],
                    title=f"{recipe['model']} width {recipe['width']:g} on shapes, seed {seed}")
    files.update(_write_examples(out, setup.model, test_set, recipe, names,
                                 ShapesDataset.palette))
    return metrics, files


def _write_examples(out, model, test_set, recipe, names, palette) -> dict:
    """Panels and sample PNGs for the first ``n_examples`` test images."""
    from PIL import Image

    from .inference import predict
    from .io import atomic_open
    from .plot import segmentation_panels

    files = {}
    for folder in ("examples", "samples"):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    for i in range(min(recipe["n_examples"], len(test_set))):
        image, truth = test_set[i]
        label = predict(model, image, recipe["preprocess"])
        files[f"example{i}"] = os.path.join(out, "examples", f"test_{i:03d}.png")
        segmentation_panels(image, label, palette=palette, class_names=names, truth=truth,
                            path=files[f"example{i}"])
        files[f"sample{i}"] = os.path.join(out, "samples", f"test_{i:03d}.png")
        with atomic_open(files[f"sample{i}"]) as f:
            Image.fromarray(image).save(f, format="PNG")
    return files


def _remove_stale_run(out) -> None:
    """A new demo starts a new log and new checkpoints (they would otherwise be appended
    to, or resumed from)."""
    for name in ("log.csv", "last.npz", "best.npz"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            os.remove(path)


def _write_text(path, text: str) -> None:
    from .io import atomic_open

    with atomic_open(path) as f:
        f.write(text.encode())

