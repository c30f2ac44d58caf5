r"""``minifcn demo``: train a narrow FCN-8s on generated shapes and show what it learned.

The whole pipeline, on one machine, from nothing but this package:

1. a :class:`~minifcn.data.ShapesDataset` stream of training images (generated on the fly,
   never repeated), a validation set that picks the best weights, and a separate held-out
   test set that is only scored at the end;
2. an FCN-8s at 1/16 of the paper's width (4 to 256 channels instead of 64 to 4096),
   Kaiming-initialised, score layers at zero, frozen bilinear upsampling, no dropout,
   trained with Adam and a poly learning-rate decay;
3. into ``out/``: ``metrics.txt`` (the test set's confusion-matrix figures),
   ``curves.png`` (training loss and validation mean IoU), ``examples/*.png`` (ground truth
   | prediction | overlay | one class's mask), ``samples/*.png`` (test images for
   ``minifcn predict``), ``model.npz`` (the weights), and the training run's ``log.csv``
   and checkpoints.

The recipe is :data:`RECIPE`; the reasons for its choices are in the README's demo section.
Every number is reproducible: on the CPU the same seed gives the same weights bit for bit.
"""
from __future__ import annotations

import os
import time
from typing import NamedTuple

from .data.shapes import ShapesDataset
from .metrics import format_metrics
from .training_setup import TrainingSetup

# Measured on the project's 2-core machine (issue notes): FCN pads conv1_1 by 100, so at
# this width the padded border dominates the cost: a step of two 192x192 images took
# 0.19 s, one of eight 96x96 images 0.45 s, for the same number of labelled pixels. Adam
# at 6e-3 beat 3e-3 (held-out mean IoU 0.61 against 0.58 after 1500 steps); 1.2e-2 and
# 2.4e-2 never left the all-background answer in 800 steps, even with warm-up.
RECIPE = {
    "size": (192, 192), "n_shapes": (2, 6), "scale": (0.06, 0.15),
    "n_val": 32, "n_test": 200, "n_examples": 4,
    "model": "fcn8s", "width": 1 / 16, "dropout": 0.0,
    "optimizer": "adam", "lr": 6e-3, "schedule": "poly", "warmup": 0, "batch_size": 2,
    "iters": 1500, "val_every": 100, "preprocess": "imagenet",
}
TRAIN_STREAM = 1_000_000   # generated on demand: each training image is seen once


class DemoResult(NamedTuple):
    """What :func:`run_demo` returns."""

    metrics: object        # SegmentationMetrics on the held-out test set
    seconds: float         # wall time, generation and evaluation included
    files: dict            # what was written: name -> path


def run_demo(out="minifcn-demo", *, device="cpu", iters=None, seed=0, progress=True,
             echo=print, **overrides) -> DemoResult:
    """Run the demo into ``out``; see the module docstring.

    Parameters
    ----------
    out : folder to write into (created; files from an earlier run are replaced)
    device : "cpu", "cuda" or "cuda:N"
    iters : training iterations (default ``RECIPE["iters"]``)
    seed : seeds the data, the initialisation and the batch order
    progress : show tqdm bars
    echo : where the step-by-step lines go (``print``; ``lambda *a: None`` for silence)
    **overrides : any other :data:`RECIPE` entry (e.g. ``size=(96, 96)``, ``n_test=20``)
    """
    from .plot import read_log, training_curves
    from .train import evaluate
    from .training_setup import EvalBatches

    unknown = sorted(set(overrides) - set(RECIPE))
    if unknown:
        raise TypeError(f"unknown demo settings {unknown}; known: {sorted(RECIPE)}")
    recipe = {**RECIPE, **overrides, **({} if iters is None else {"iters": iters})}
    start = time.perf_counter()
    os.makedirs(out, exist_ok=True)

    def shapes(n, stream):
        return ShapesDataset(n, size=recipe["size"], n_shapes=recipe["n_shapes"],
                             scale=recipe["scale"], seed=seed * 3 + stream)

    train_set, val_set, test_set = shapes(TRAIN_STREAM, 0), shapes(recipe["n_val"], 1), \
        shapes(recipe["n_test"], 2)
    names, palette = ShapesDataset.class_names, ShapesDataset.palette
    echo(f"training {recipe['model']} (width {recipe['width']:g}) on generated "
         f"{recipe['size'][0]}x{recipe['size'][1]} shapes for {recipe['iters']} iterations "
         f"of {recipe['batch_size']} images on {device}")
    setup = TrainingSetup.build(
        train_set, val_set, model=recipe["model"], width=recipe["width"], device=device,
        batch_size=recipe["batch_size"], optimizer=recipe["optimizer"], lr=recipe["lr"],
        weight_decay=0.0, schedule=recipe["schedule"], warmup=recipe["warmup"],
        iters=recipe["iters"],
        dropout=recipe["dropout"], flip=True, preprocess=recipe["preprocess"], seed=seed)
    _remove_stale_run(out)
    result = setup.run(out, val_every=recipe["val_every"], log_every=10, progress=progress)
    echo(f"kept the weights of {result.weights_from}; scoring {len(test_set)} held-out "
         f"images")

    metrics = evaluate(setup.model, EvalBatches(test_set, recipe["preprocess"]),
                       ShapesDataset.n_class)
    files = {"model": result.weights_path, "log": os.path.join(out, "log.csv"),
             "metrics": os.path.join(out, "metrics.txt"),
             "curves": os.path.join(out, "curves.png")}
    table = format_metrics(metrics, names)
    _write_text(files["metrics"], f"minifcn demo: {recipe['model']}, width "
                f"{recipe['width']:g}, {result.iteration} iterations, {device}, seed {seed}; "
                f"held-out test set of {len(test_set)} images\n\n{table}\n")
    training_curves(read_log(files["log"]), files["curves"],
                    title=f"{recipe['model']} width {recipe['width']:g} on shapes",
                    target=0.85)
    files.update(_write_examples(out, setup.model, test_set, recipe, names, palette))
    seconds = time.perf_counter() - start
    echo(table)
    echo(f"held-out mean IoU {metrics.mean_iou:.3f} after {seconds:.0f} s")
    return DemoResult(metrics, seconds, files)


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
