"""``minifcn train --data-dir D``: train a segmentation network (the VGG16 FCNs, the
ResNet-50 segmenters, U-Net) on a VOC-layout folder, with checkpoints."""
from __future__ import annotations

import math
import os

from .common import (UserError, add_device_argument, check_device, check_out_folder,
                     height_width, reject_torch_file, require_file)

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("poly", "step", "constant")
DEFAULT_LR = {"adam": 1e-3, "sgd": 1e-4}


def add(commands):
    from ..models import MODELS
    from ..train_loss import AUX_WEIGHT

    p = commands.add_parser(
        "train", help="train a network on a VOC-layout folder (checkpoints, log, resume)",
        description="Train a network (--arch) on DIR/ImageSets/Segmentation/<split>.txt, validate on the "
                    "val split every --val-every iterations, and write into --out: log.csv, "
                    "last.npz and best.npz (checkpoints: --resume continues one exactly, and "
                    "refuses one of other settings unless --force) and model.npz (the best "
                    "weights, for predict and evaluate). A folder that holds a run is "
                    "refused unless --resume continues it or --overwrite replaces it.")
    p.add_argument("--data-dir", required=True, metavar="D",
                   help="folder holding JPEGImages/, SegmentationClass/, ImageSets/")
    p.add_argument("--split", default="train", help="training split (default train)")
    p.add_argument("--val-split", default="val",
                   help="validation split (default val; 'none' for no validation)")
    p.add_argument("--n-class", type=int, metavar="K",
                   help="number of classes; label values K..254 are an error (default: "
                        "the number of --classes, else 21 as in VOC)")
    p.add_argument("--classes", type=_names, metavar="A,B,...",
                   help="class names in index order, comma-separated (default: the VOC "
                        "names for 21 classes, else class0, class1, ...); recorded in "
                        "model.npz for predict")
    p.add_argument("--out", default="minifcn-train", metavar="DIR",
                   help="output folder (default ./minifcn-train)")
    p.add_argument("--arch", "--model", dest="arch", choices=tuple(MODELS),
                   default="fcn8s", metavar="ARCH",
                   help=", ".join(MODELS) + " (default fcn8s; --model is a deprecated "
                        "alias of --arch, accepted for one release)")
    p.add_argument("--width", type=float, default=1.0,
                   help="channel width in (0, 1] (default 1: the paper's network; unet: "
                        "its base of 64 channels scaled)")
    p.add_argument("--no-aux", action="store_true",
                   help="fcn_resnet50, deeplabv3_resnet50: no auxiliary head")
    p.add_argument("--aux-weight", type=float, default=AUX_WEIGHT, metavar="W",
                   help="fcn_resnet50, deeplabv3_resnet50: the auxiliary loss's weight "
                        f"(default {AUX_WEIGHT:g}, torchvision's recipe)")
    p.add_argument("--depth", type=int, default=4,
                   help="unet: the number of 2x2 pools (default 4, the paper's)")
    p.add_argument("--init", metavar="VGG16.npz",
                   help="start trunk and fc6/fc7 from VGG16 weights converted with "
                        "'minifcn convert' (sets the width); default: from scratch (Kaiming)")
    add_device_argument(p)
    p.add_argument("--iters", type=int, default=1000, help="iterations in all (default 1000)")
    p.add_argument("--batch-size", type=int, default=1, help="default 1")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default adam")
    p.add_argument("--lr", type=float, help="learning rate (default: "
                   + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items()) + ")")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4,
                   help="L2 decay of weights, not biases (default 5e-4)")
    p.add_argument("--schedule", choices=SCHEDULES, default="poly",
                   help="learning-rate schedule (default poly, power 0.9)")
    p.add_argument("--warmup", type=int, default=0, metavar="N",
                   help="linear learning-rate warm-up over the first N iterations (default 0)")
    p.add_argument("--dropout", type=float, default=0.5, help="drop6/drop7 rate (default 0.5)")
    p.add_argument("--crop", type=height_width, metavar="HxW",
                   help="random crop of each training image, HxW or N for NxN (after a "
                        "random rescale by --scale); default: whole images")
    p.add_argument("--scale", type=float, nargs=2, default=(1.0, 1.0), metavar=("LOW", "HIGH"),
                   help="random rescale range for training (default 1 1: none)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--preprocess", choices=("reference", "imagenet"), default="reference",
                   help="input normalisation (default reference: BGR minus the mean; "
                        "recorded in model.npz for predict)")
    p.add_argument("--val-every", type=int, default=0, metavar="N",
                   help="validate every N iterations (default: only at the end)")
    p.add_argument("--log-every", type=int, default=10, metavar="N", help="default 10")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="also write last.npz every N iterations (default: at validation "
                        "and at the end)")
    p.add_argument("--resume", metavar="CKPT.npz",
                   help="continue a run from its checkpoint (e.g. OUT/last.npz); the run's "
                        "settings and data must be those the checkpoint records")
    p.add_argument("--force", action="store_true",
                   help="with --resume: continue even where the settings or data differ "
                        "from those the checkpoint records (a changed data set starts a new "
                        "epoch)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its log.csv, last.npz, best.npz "
                        "and model.npz); without it, train refuses a folder that holds one")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="leave after N iterations of this run, writing last.npz, with the "
                        "schedule still spanning --iters; continue with --resume (for "
                        "time-limited jobs)")
    p.add_argument("--seed", type=int, default=0, help="initialisation, order, augmentation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..data import DatasetError, VOCSegmentation
    from ..io import WeightsError
    from ..metrics import format_metrics
    import sys

    from ..train import CheckpointError, TrainingDiverged, TrainingInterrupted
    from ..training_setup import TrainingSetup

    _check(args)
    try:
        classes = dict(classes=args.classes, n_class=args.n_class)
        train_set = VOCSegmentation(args.data_dir, args.split, **classes)
        val_set = (None if args.val_split == "none"
                   else VOCSegmentation(args.data_dir, args.val_split, **classes))
        setup = TrainingSetup.build(
            train_set, val_set, model=args.arch, width=args.width, init=args.init,
            device=args.device, batch_size=args.batch_size, optimizer=args.optimizer,
            lr=args.lr if args.lr is not None else DEFAULT_LR[args.optimizer],
            momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
            warmup=args.warmup,
            iters=args.iters, dropout=args.dropout, crop=args.crop, scale=tuple(args.scale),
            flip=not args.no_flip, preprocess=args.preprocess, seed=args.seed,
            **_family_options(args))
        result = setup.run(args.out, val_every=args.val_every, log_every=args.log_every,
                           checkpoint_every=args.checkpoint_every, resume=args.resume,
                           progress=not args.no_progress, stop_after=args.stop_after,
                           overwrite=args.overwrite, force=args.force)
    except (DatasetError, WeightsError, CheckpointError, TrainingDiverged, ValueError) as err:
        raise UserError(f"train: {err}") from None
    except TrainingInterrupted as stop:
        print(f"minifcn: train: interrupted after iteration {stop.iteration}; "
              f"{stop.checkpoint} holds it. Continue with the same command and --resume "
              f"{stop.checkpoint}", file=sys.stderr)
        return 130
    except OSError as err:
        raise UserError(f"train: cannot write into {args.out}: {err.strerror or err}") \
            from None
    loss = f"; last loss {result.loss:.4f}" if result.loss == result.loss else ""
    print(f"trained {args.arch} for {result.iteration} iterations{loss}")
    if result.iteration < args.iters:
        print(f"stopped after {result.iteration} of {args.iters} iterations; continue with "
              f"the same command and --resume {os.path.join(args.out, 'last.npz')}")
    if result.metrics is not None:
        print(format_metrics(result.metrics, train_set.classes))
    print(f"wrote {os.path.join(args.out, 'model.npz')} ({result.weights_from}), "
          f"log.csv, last.npz" + (", best.npz" if result.metrics is not None else "")
          + f" into {args.out}")
    return 0


def _check(args) -> None:
    """Argument checks argparse cannot do, before any data is read."""
    if args.n_class is None:
        args.n_class = None if args.classes else 21
    elif args.classes and len(args.classes) != args.n_class:
        raise UserError(f"train: --n-class {args.n_class} does not match the "
                        f"{len(args.classes)} names given by --classes")
    _check_family_options(args)
    for name, least in (("iters", 1), ("batch_size", 1), ("n_class", 1), ("stop_after", 1),
                        ("depth", 1),
                        ("log_every", 1), ("val_every", 0), ("checkpoint_every", 0),
                        ("seed", 0)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            raise UserError(f"train: --{name.replace('_', '-')} must be at least {least}, "
                            f"got {getattr(args, name)}")
    for option, path in (("--init", args.init), ("--resume", args.resume)):
        if path is not None:
            require_file(path, f"{option} file", "train")
            reject_torch_file(path, option, "train")
    if not os.path.isdir(args.data_dir):
        raise UserError(f"train: --data-dir is not a folder: {args.data_dir}")
    check_out_folder(args.out, "train")
    _check_no_other_run(args)
    check_device(args.device, "train")


def _family_options(args) -> dict:
    """The options of the chosen network's family (the others are refused by _check)."""
    from ..models import RESNET_MODELS

    if args.arch in RESNET_MODELS:
        return {"aux": not args.no_aux, "aux_weight": args.aux_weight}
    return {"depth": args.depth} if args.arch == "unet" else {}


def _check_family_options(args) -> None:
    """Options of one family of networks given for another: an error, not ignored."""
    from ..models import ARCHITECTURES, RESNET_MODELS
    from ..train_loss import AUX_WEIGHT

    given = [(option, family) for option, family, default in (
        ("--no-aux", RESNET_MODELS, False), ("--aux-weight", RESNET_MODELS, AUX_WEIGHT),
        ("--depth", ("unet",), 4), ("--init", ARCHITECTURES, None),
        ("--dropout", ARCHITECTURES, 0.5))
        if getattr(args, option[2:].replace("-", "_")) != default and args.arch not in family]
    if given:
        option, family = given[0]
        raise UserError(f"train: {option} applies to {', '.join(family)}, not --arch "
                        f"{args.arch}")
    if args.arch == "unet" and args.crop is None and tuple(args.scale) != (1.0, 1.0):
        raise UserError("train: --scale without --crop gives U-Net rescaled sizes, most of "
                        "which it cannot take; give --crop (a size it takes) too")
    if not math.isfinite(args.aux_weight) or args.aux_weight < 0:
        raise UserError(f"train: --aux-weight must be at least 0, got {args.aux_weight}")


def _check_no_other_run(args) -> None:
    """A UserError where --out holds a run that this command would overwrite."""
    from ..run_log import RUN_FILES, existing_run

    if args.force and args.resume is None:
        raise UserError("train: --force goes with --resume (it resumes a checkpoint whose "
                        "settings differ)")
    continues = args.resume is not None and os.path.dirname(os.path.abspath(args.resume)) \
        == os.path.abspath(args.out)
    found = existing_run(args.out, RUN_FILES + ("model.npz",))
    if found and not continues and not args.overwrite:
        last = os.path.join(args.out, "last.npz")
        resume = (f"continue it with --resume {last}, " if "last.npz" in found else "")
        raise UserError(f"train: --out {args.out} already holds a run ({', '.join(found)}): "
                        f"{resume}replace it with --overwrite, or choose another --out")


def _names(text: str) -> tuple:
    """'background,disc' -> ('background', 'disc'); argparse reports the error."""
    import argparse

    names = tuple(name.strip() for name in text.split(","))
    if len(names) < 2 or not all(names):
        raise argparse.ArgumentTypeError(f"expected at least two comma-separated names, "
                                         f"got {text!r}")
    return names
