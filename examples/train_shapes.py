"""The demo, in code: train an FCN-8s on generated shapes with every piece written out.

``minifcn demo`` wires these same pieces together behind one call (``minifcn.demo``, via
``TrainingSetup``). Here each one is spelled out, in the order a training run uses them:

1. data: an endless stream of generated 192x192 shape images (discs, rectangles,
   triangles), augmented (random flip), normalised and batched, two images a batch;
2. the model: FCN-8s at 1/16 of the paper's width (4 to 256 channels), no dropout, the
   coarse score's bias at the log class frequencies (training starts from the prior);
3. Adam with a warm-up and a "poly" learning-rate decay to zero at the last iteration;
4. the training loop itself: forward, softmax cross-entropy weighted by class (the rare
   shapes weigh more than the background), its gradient, the hand-written backward through
   the whole network, the optimiser's step (what ``train_step`` does);
5. scoring on held-out images (another seed: never trained on) with one confusion matrix;
6. saving the weights with the metadata that ``minifcn predict`` and
   ``examples/segment_image.py`` read: ``shapes_fcn8s.npz`` in the current folder.

The default run is short (250 iterations, about a minute on 2 CPU cores) so that it can be
read while it runs, and it does NOT reach the demo's quality: the network finds discs first
and tells rectangles from triangles last. ``minifcn demo`` trains for a time budget (about
1100-1300 iterations in its 280 s on the project's 2-core machine, held-out mean IoU
0.61-0.71 for seeds 0-2, plus validation, curves and pictures); ``--iters 1200`` here trains
about as long.

Run: python examples/train_shapes.py [--iters N] [--print-every K] [--test-images M]
                                     [--seed S] [--out shapes_fcn8s.npz]
"""
import argparse
import time

import numpy as np

from minifcn.data import ShapesDataset, normalize
from minifcn.demo import RECIPE

DEMO_ITERS = 1200      # about what the demo's time budget fits on a 2-core machine
from minifcn.io import describe, write_weights
from minifcn.lr_schedule import LRScheduler
from minifcn.metrics import ConfusionMatrix, format_metrics
from minifcn.models import FCN8s
from minifcn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from minifcn.optim import Adam
from minifcn.train import BatchStream
from minifcn.training_setup import AugmentThenNormalize

IGNORE = 255        # the "void" label: such pixels count in neither the loss nor the metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=250,
                        help=f"training iterations (default 250; the demo: about {DEMO_ITERS})")
    parser.add_argument("--print-every", type=int, default=25, metavar="K")
    parser.add_argument("--test-images", type=int, default=24, metavar="M",
                        help="held-out images scored at the end (default 24)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="shapes_fcn8s.npz", help="weight file to write")
    args = parser.parse_args()
    if min(args.iters, args.print_every, args.test_images) < 1 or args.seed < 0:
        parser.error("--iters, --print-every and --test-images must be >= 1, --seed >= 0")
    start = time.perf_counter()

    # 1. Data. A ShapesDataset makes item i from (seed, i) alone, on demand: a "million
    #    images" set costs nothing until read, and each training image is seen once. The
    #    held-out set uses another seed, so it shares no image with training.
    def shapes(n, seed):
        return ShapesDataset(n, size=RECIPE["size"], n_shapes=RECIPE["n_shapes"],
                             scale=RECIPE["scale"], seed=seed)

    train_set, test_set = shapes(1_000_000, 3 * args.seed), shapes(args.test_images,
                                                                  3 * args.seed + 2)
    preprocess = RECIPE["preprocess"]               # "imagenet": (x/255 - mean) / std, RGB
    batches = BatchStream(train_set, batch_size=RECIPE["batch_size"],
                          seed=np.random.default_rng([args.seed, 1]),
                          transform=AugmentThenNormalize(flip=True, preprocess=preprocess))
    images, labels = next(batches)
    print(f"a batch: images {images.shape} {images.dtype}, labels {labels.shape} "
          f"{labels.dtype}, classes {list(ShapesDataset.class_names)}")

    # 2. The model. Trunk and head start Kaiming-normal, the score layers at zero, the
    #    bilinear upsampling layers are fixed (requires_grad=False).
    model = FCN8s(n_class=ShapesDataset.n_class, width=RECIPE["width"],
                  dropout=RECIPE["dropout"], rng=np.random.default_rng([args.seed, 0]))
    #    The coarse score's bias starts at the log of each class's share of the pixels: the
    #    bilinear upsamplings carry a constant score through, so the first answer is the
    #    prior, not a uniform guess. The loss weighs each class by share ** -0.5.
    counts = np.ones(ShapesDataset.n_class)
    for i in range(64):
        counts += np.bincount(train_set[i][1].ravel(), minlength=ShapesDataset.n_class)
    prior = counts / counts.sum()                       # (4,): ~0.88 is background
    model.score_fr.bias.data[...] = np.log(prior)
    class_weight = prior ** -RECIPE["class_balance"]
    class_weight = (class_weight / (class_weight * prior).sum()).astype(np.float32)
    n_params = sum(p.data.size for p in model.parameters() if p.requires_grad)
    print(f"FCN-8s, width {RECIPE['width']:g}: {n_params:,} trainable parameters")

    # 3. Adam, and a schedule that sets lr = base_lr * (1 - it / iters) ** 0.9 each step.
    optimizer = Adam(model.parameters(), lr=RECIPE["lr"])
    scheduler = LRScheduler(optimizer, "poly", max_iter=args.iters, power=0.9,
                            warmup=RECIPE["warmup"])

    # 4. The loop: minifcn.train.train_step's body, written out.
    print(f"training for {args.iters} iterations of {RECIPE['batch_size']} images "
          f"(the demo trains about {DEMO_ITERS})")
    model.train()
    window, tic = [], time.perf_counter()
    for it in range(1, args.iters + 1):
        lr = optimizer.param_groups[0]["lr"]            # the rate this step uses
        if it > 1:
            images, labels = next(batches)              # (N, 3, H, W) float32, (N, H, W) int64
        optimizer.zero_grad()                           # every Parameter.grad to zero
        scores = model(images)                          # (N, 4, H, W) class scores
        loss, cache = softmax_cross_entropy_forward(scores, labels, class_weight,
                                                    ignore_index=IGNORE)
        dscores, _, _ = softmax_cross_entropy_backward(1.0, cache)   # dL/dscores (N, 4, H, W)
        model.backward(dscores)                         # fills every Parameter.grad
        optimizer.step()                                # p -= lr * m / (sqrt(v) + eps)
        scheduler.step()                                # lr for the next iteration
        window.append(float(loss))
        if it % args.print_every == 0 or it == args.iters:
            seconds = time.perf_counter() - tic
            print(f"iteration {it:5d}  loss {np.mean(window):.4f}  lr {lr:.2e}  "
                  f"({seconds / len(window):.2f} s/it)")
            window, tic = [], time.perf_counter()

    # 5. Held-out score: one confusion matrix over every pixel of every test image, the
    #    figures computed once from it (as the FCN paper's score.py does).
    model.eval()                                        # dropout off (a no-op at rate 0)
    matrix = ConfusionMatrix(ShapesDataset.n_class, ignore_index=IGNORE)
    for i in range(len(test_set)):
        image, truth = test_set[i]                      # (H, W, 3) uint8, (H, W) uint8
        scores = model(normalize(image, preprocess)[None])   # (1, 4, H, W)
        matrix.update(scores.argmax(axis=1), truth[None])
    metrics = matrix.compute()
    print(f"\nheld-out test set: {len(test_set)} images never trained on")
    print(format_metrics(metrics, ShapesDataset.class_names))
    shapes_iou = np.nanmean(metrics.class_iou[1:])
    background = matrix.matrix[0].sum() / matrix.matrix.sum()
    if shapes_iou < 0.1:
        print(f"the shapes' IoUs are still near 0: the network has learned the first, easy "
              f"answer, 'background' ({100 * background:.0f}% of the pixels), and not yet "
              f"the shapes.")
    if args.iters < DEMO_ITERS:
        print(f"note: {args.iters} iterations is a short run: it does not reach the demo's "
              f"quality. 'minifcn demo' (or --iters {DEMO_ITERS} here) trains about "
              f"{DEMO_ITERS} iterations.")

    # 6. The weights, with what a reader needs to rebuild the model and feed it.
    write_weights(args.out, model.state_dict(), **describe(model),
                  classes=list(ShapesDataset.class_names), preprocess=preprocess)
    print(f"\nwrote {args.out} (weights + metadata: {describe(model)}, preprocess "
          f"{preprocess!r}) after {time.perf_counter() - start:.0f} s")
    print(f"next: python examples/segment_image.py --weights {args.out}")
    print(f"  or: minifcn predict IMAGE.png --weights {args.out}")


if __name__ == "__main__":
    main()
