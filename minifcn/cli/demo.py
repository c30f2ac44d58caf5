"""``minifcn demo``: train a narrow FCN-8s on generated shapes, score it, draw the results."""
from __future__ import annotations

from .common import UserError, add_device_argument, check_device, check_out_folder


def add(commands):
    from ..demo import RECIPE

    p = commands.add_parser(
        "demo", help="train a narrow FCN-8s on generated shapes and show the results",
        description="Generate a shapes data set, train an FCN-8s of width 1/16 on it for a "
                    "time budget (or --iters), score it on held-out images and write into "
                    "--out: metrics.txt, curves.png (loss and validation mean IoU), "
                    "examples/*.png (ground truth | prediction | overlay | predicted mask), "
                    "samples/*.png (images to try 'minifcn predict' on), model.npz, log.csv "
                    "and the checkpoints best.npz and last.npz. Ctrl-C saves last.npz; "
                    "--resume continues from it.")
    p.add_argument("--out", default="minifcn-demo", metavar="DIR",
                   help="output folder (default ./minifcn-demo)")
    add_device_argument(p)
    p.add_argument("--seconds", type=float, default=RECIPE["seconds"], metavar="S",
                   help=f"wall-time budget of the whole run, scoring and figures included "
                        f"(default {RECIPE['seconds']:g}); the iterations that fit are "
                        f"measured on this machine")
    p.add_argument("--iters", type=int, default=None,
                   help="train exactly this many iterations instead of a time budget")
    p.add_argument("--test-images", type=int, default=RECIPE["n_test"], metavar="N",
                   help=f"held-out images scored at the end (default {RECIPE['n_test']})")
    p.add_argument("--seed", type=int, default=0, help="data, initialisation and order")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted demo in --out from its last.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    import sys

    from ..train import CheckpointError, TrainingInterrupted

    _check(args)
    try:
        result = _run(args)
    except TrainingInterrupted as stop:
        print(f"minifcn: demo: interrupted after iteration {stop.iteration}; "
              f"{stop.checkpoint} holds it. Continue with: minifcn demo --out {args.out} "
              f"--resume", file=sys.stderr)
        return 130
    except (CheckpointError, ValueError) as err:
        raise UserError(f"demo: {err}") from None
    except OSError as err:
        raise UserError(f"demo: cannot write into {args.out}: {err.strerror or err}") \
            from None
    _print_files(args.out, result)
    return 0


def _check(args) -> None:
    import math
    import os

    if args.iters is not None and args.iters < 1 or args.test_images < 1:
        raise UserError(f"demo: --iters and --test-images must be at least 1, got "
                        f"{args.iters} and {args.test_images}")
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise UserError(f"demo: --seconds must be a positive number, got {args.seconds:g}")
    if args.seed < 0:
        raise UserError(f"demo: --seed must be non-negative, got {args.seed}")
    check_out_folder(args.out, "demo")
    check_device(args.device, "demo")
    if args.resume and not os.path.exists(os.path.join(args.out, "last.npz")):
        raise UserError(f"demo: --resume needs {os.path.join(args.out, 'last.npz')}, which "
                        f"does not exist; run minifcn demo --out {args.out} first")


def _run(args):
    from ..demo import run_demo
    from ..run_log import RUN_FILES, existing_run

    found = [] if args.resume else existing_run(args.out, RUN_FILES + ("model.npz",))
    if found:
        print(f"replacing the earlier demo run in {args.out} ({', '.join(found)}); "
              f"--resume continues an interrupted demo instead")
    return run_demo(args.out, device=args.device, iters=args.iters, seconds=args.seconds,
                    seed=args.seed, resume=args.resume, n_test=args.test_images,
                    progress=not args.no_progress)


def _print_files(out, result) -> None:
    import os

    files = result.files
    examples = sum(name.startswith("example") for name in files)
    samples = sum(name.startswith("sample") for name in files)
    listed = [("metrics", "metrics.txt", "the held-out test set's IoU per class"),
              ("curves", "curves.png", "training loss and validation mean IoU"),
              ("example0", "examples/", f"{examples} x ground truth | prediction | overlay | "
                                        f"predicted mask"),
              ("sample0", "samples/", f"{samples} test images to try minifcn predict on"),
              ("model", "model.npz", "the weights kept (best validation mean IoU)"),
              ("best", "best.npz", "checkpoint of the best validation"),
              ("last", "last.npz", "checkpoint of the last iteration (--resume)"),
              ("log", "log.csv", "the training log")]
    print(f"wrote into {os.path.abspath(out)}:")
    for key, name, what in listed:
        if key in files:
            print(f"  {os.path.join(out, name):<32} {what}")
    if "sample0" in files:
        print(f"try: minifcn predict {files['sample0']} --weights {files['model']} --out "
              f"{os.path.join(out, 'predicted')}")
