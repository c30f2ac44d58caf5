"""``minifcn demo``: train a narrow FCN-8s on generated shapes, score it, draw the results."""
from __future__ import annotations

from .common import UserError, add_device_argument, check_device, check_out_folder


def add(commands):
    from ..demo import RECIPE

    p = commands.add_parser(
        "demo", help="train a narrow FCN-8s on generated shapes and show the results",
        description="Generate a shapes data set, train an FCN-8s of width 1/16 on it, score "
                    "it on held-out images and write into --out: metrics.txt, curves.png "
                    "(loss and validation mean IoU), examples/*.png (ground truth | "
                    "prediction | overlay | mask), samples/*.png (images to try 'minifcn "
                    "predict' on), model.npz, log.csv and checkpoints. About 5 minutes on "
                    "2 CPU cores.")
    p.add_argument("--out", default="minifcn-demo", metavar="DIR",
                   help="output folder (default ./minifcn-demo)")
    add_device_argument(p)
    p.add_argument("--iters", type=int, default=RECIPE["iters"],
                   help=f"training iterations (default {RECIPE['iters']})")
    p.add_argument("--test-images", type=int, default=RECIPE["n_test"], metavar="N",
                   help=f"held-out images scored at the end (default {RECIPE['n_test']})")
    p.add_argument("--seed", type=int, default=0, help="data, initialisation and order")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    import os

    from ..demo import run_demo

    if args.iters < 1 or args.test_images < 1:
        raise UserError(f"demo: --iters and --test-images must be at least 1, got "
                        f"{args.iters} and {args.test_images}")
    if args.seed < 0:
        raise UserError(f"demo: --seed must be non-negative, got {args.seed}")
    check_out_folder(args.out, "demo")
    check_device(args.device, "demo")
    try:
        result = run_demo(args.out, device=args.device, iters=args.iters, seed=args.seed,
                          n_test=args.test_images, progress=not args.no_progress)
    except OSError as err:
        raise UserError(f"demo: cannot write into {args.out}: {err.strerror or err}") \
            from None
    out = args.out
    print(f"wrote into {os.path.abspath(out)}:")
    for what, name in (("metrics", "metrics.txt"), ("loss and mean IoU curves", "curves.png"),
                       ("ground truth | prediction | overlay | mask", "examples/"),
                       ("the weights", "model.npz"), ("the training log", "log.csv")):
        print(f"  {os.path.join(out, name):<32} {what}")
    sample = result.files.get("sample0")
    if sample:
        print(f"try: minifcn predict {sample} --weights {result.files['model']} --out "
              f"{os.path.join(out, 'predicted')}")
    return 0
