"""Segment one image from Python and look at the result: class shares, label map, overlay.

What ``minifcn predict`` does, step by step: load a trained FCN from a weight file (its
metadata says which architecture, width, classes and input normalisation), run it on one
image, take the per-pixel argmax, and draw the result three ways.

Writes into the current folder (or ``--out``), for an image ``<stem>.png``:

- ``<stem>_labels.png``   a palette PNG: each pixel holds its class index (0, 1, 2, ...),
  shown in the VOC colours; ``np.array(Image.open(...))`` gives the label map back;
- ``<stem>_overlay.png``  the class colours blended over the image;
- ``<stem>_panels.png``   [ground truth |] prediction | overlay | one class's mask, over a
  legend (``minifcn.plot.segmentation_panels``).

Which weights: ``--weights W.npz`` if given; else ``shapes_fcn8s.npz`` (written by
``examples/train_shapes.py``) or ``minifcn-demo/model.npz`` (``minifcn demo``) in the
current folder; else a model is trained here for 100 iterations (about 30 s), which is
barely trained: expect it to call nearly everything background. For a good result run
``minifcn demo`` first (about 5 minutes), then this script from the same folder.

Which image: IMAGE if given (any size and mode), else a generated shapes image, saved first
as ``shapes_sample.png`` (its ground truth is then shown too).

Run: python examples/segment_image.py [IMAGE] [--weights W.npz] [--out DIR]
"""
import argparse
import os

import numpy as np
from PIL import Image

from minifcn.data import VOC_PALETTE, ShapesDataset, read_image
from minifcn.demo import RECIPE
from minifcn.plot import segmentation_panels
from minifcn.inference import class_names, class_shares, model_from_weights, overlay, predict

FOUND_IN_CWD = ("shapes_fcn8s.npz", os.path.join("minifcn-demo", "model.npz"))


def barely_trained_model(iters=100):
    """An FCN-8s trained here on the demo's recipe for ``iters`` iterations, and metadata
    like a weight file's."""
    from minifcn.train import train
    from minifcn.training_setup import TrainingSetup

    data = ShapesDataset(1_000_000, size=RECIPE["size"], n_shapes=RECIPE["n_shapes"],
                         scale=RECIPE["scale"], seed=0)
    setup = TrainingSetup.build(data, model="fcn8s", width=RECIPE["width"],
                                dropout=RECIPE["dropout"], lr=RECIPE["lr"], iters=iters,
                                batch_size=RECIPE["batch_size"],
                                preprocess=RECIPE["preprocess"])
    result = train(setup.model, setup.optimizer, setup.batches, iters=iters,
                   scheduler=setup.scheduler, progress=False)
    print(f"trained for {iters} iterations, last loss {result.loss:.3f}")
    return setup.model, {"classes": list(setup.class_names), "preprocess": "imagenet"}


def load_model(weights):
    """``(model, metadata, where from)``."""
    if weights is None:
        weights = next((path for path in FOUND_IN_CWD if os.path.exists(path)), None)
    if weights is not None:
        model, metadata = model_from_weights(weights, with_metadata=True)
        return model, metadata, weights
    print(f"no --weights and none of {', '.join(FOUND_IN_CWD)} here: training a small "
          f"model in-process (about 30 s).")
    model, metadata = barely_trained_model()
    return model, metadata, "trained here: BARELY TRAINED (100 iterations)"


def sample_image(path="shapes_sample.png"):
    """A generated shapes image (the demo's size and shape counts), saved as PNG first;
    returns the path and its ground-truth label map."""
    data = ShapesDataset(1, size=RECIPE["size"], n_shapes=RECIPE["n_shapes"],
                         scale=RECIPE["scale"], empty_fraction=0.0, seed=9)   # all 3 classes
    image, truth = data[0]
    Image.fromarray(image).save(path)
    print(f"no IMAGE given: generated {path} ({image.shape[1]}x{image.shape[0]}, "
          f"{len(data.scene(0))} shapes)")
    return path, truth


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", help="image to segment (default: a generated one)")
    parser.add_argument("--weights", metavar="W.npz", help="weight file written by minifcn")
    parser.add_argument("--out", default=".", help="folder for the PNGs (default: .)")
    args = parser.parse_args()
    for what, given in (("IMAGE", args.image), ("--weights", args.weights)):
        if given is not None and not os.path.isfile(given):
            parser.error(f"{what}: no such file: {given}")

    # 1. The model and what its weight file says about it.
    model, metadata, source = load_model(args.weights)
    preprocess = metadata.get("preprocess", "reference")   # how its inputs were normalised
    names = class_names(model.n_class, metadata)            # ('background', 'disc', ...)
    print(f"model: {type(model).__name__}, {model.n_class} classes, width {model.width:g}, "
          f"preprocess {preprocess!r}; weights: {source}")

    # 2. The image, as (H, W, 3) uint8 RGB whatever the file's mode.
    path, truth = (args.image, None) if args.image else sample_image()
    image = read_image(path)

    # 3. Segment: normalise, forward in eval mode, argmax over classes -> (H, W) uint8.
    label = predict(model, image, preprocess)
    print(f"classes found in {path}:")
    for name, share in class_shares(label, names):
        print(f"  {name:<12} {100 * share:5.1f}% of the pixels")
    if truth is not None:
        print(f"pixels right against the ground truth: {100 * np.mean(label == truth):.1f}% "
              f"(all 'background' would score {100 * np.mean(truth == 0):.1f}%)")

    # 4. Look at it. The label PNG stores class indices; its palette only colours them.
    os.makedirs(args.out, exist_ok=True)
    name = os.path.splitext(os.path.basename(path))[0]
    stem = os.path.normpath(os.path.join(args.out, name))    # out/<name>, "./" dropped
    labels_png = Image.frombytes("P", label.shape[::-1], label.tobytes())
    labels_png.putpalette(VOC_PALETTE.ravel().tolist())
    labels_png.save(f"{stem}_labels.png")
    Image.fromarray(overlay(image, label, VOC_PALETTE)).save(f"{stem}_overlay.png")
    segmentation_panels(image, label, palette=VOC_PALETTE, class_names=names, truth=truth,
                        path=f"{stem}_panels.png")
    same = np.array_equal(np.array(Image.open(f"{stem}_labels.png")), label)
    print(f"wrote {stem}_labels.png (class indices; read back equal: {same})")
    print(f"wrote {stem}_overlay.png")
    print(f"wrote {stem}_panels.png")


if __name__ == "__main__":
    main()
