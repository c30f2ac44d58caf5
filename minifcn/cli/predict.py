"""``minifcn predict IMAGE... --weights W`` and ``minifcn evaluate --weights W --data-dir D``."""
from __future__ import annotations

from .common import (UserError, add_device_argument, check_device, check_out_folder,
                     reject_torch_file, require_file)


def _add_model_options(p):
    """Options shared by predict and evaluate: the weights and where/how to run them."""
    from ..models import MODELS

    p.add_argument("--weights", required=True, metavar="W.npz",
                   help="a weight file written by minifcn (train, convert, save_weights)")
    add_device_argument(p)
    p.add_argument("--preprocess", choices=("reference", "imagenet"),
                   help="the normalisation the model was trained with (default: the one "
                        "the weight file records, else reference)")
    p.add_argument("--arch", choices=tuple(MODELS),
                   help="for a weight file that records no architecture: one without "
                        "minifcn metadata, or converted FCN-8s weights (which fit fcn8s "
                        "and fcn8s-atonce alike)")
    p.add_argument("--n-class", type=int, metavar="K",
                   help="only for a weight file without minifcn metadata")
    p.add_argument("--width", type=float, help="only for a weight file without metadata")


def _load_model(args, command):
    """``(model, class names)`` from ``--weights``; a file or device problem is a UserError."""
    from ..io import WeightsError
    from ..inference import class_names, model_from_weights

    reject_torch_file(args.weights, "--weights", command)
    check_device(args.device, command)
    try:
        model, metadata = model_from_weights(args.weights, arch=args.arch,
                                             n_class=args.n_class, width=args.width,
                                             device=args.device, with_metadata=True)
    except WeightsError as err:
        raise UserError(f"{command}: {err}") from None
    if args.preprocess is None:
        args.preprocess = metadata.get("preprocess", "reference")
        if args.preprocess not in ("reference", "imagenet"):
            raise UserError(f"{command}: {args.weights} records an unknown preprocess "
                            f"{args.preprocess!r}; pass --preprocess reference or imagenet")
    return model, class_names(model.n_class, metadata)


def add_predict(commands):
    p = commands.add_parser(
        "predict", help="segment images: label PNGs, overlays and class shares",
        description="For each IMAGE (any size and mode; EXIF orientation applied) write "
                    "OUT/<stem>_labels.png (a palette PNG of class indices, VOC colours) and "
                    "OUT/<stem>_overlay.png (the colours blended over the image), and print "
                    "the classes found with their share of the pixels.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model_options(p)
    p.add_argument("--out", default=".", metavar="DIR", help="output folder (default: .)")
    p.set_defaults(run=run_predict)


def run_predict(args) -> int:
    import os

    from ..data import DatasetError

    stems = [os.path.splitext(os.path.basename(path))[0] for path in args.images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise UserError(f"predict: images share the name {clash[0]!r}; their outputs "
                        "would overwrite each other (predict them into different --out)")
    for path in args.images:
        require_file(path, "image", "predict")
    check_out_folder(args.out, "predict")
    model, names = _load_model(args, "predict")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise UserError(f"predict: cannot create --out {args.out}: {err.strerror or err}") \
            from None
    for path, stem in zip(args.images, stems):
        try:
            written = _predict_one(model, path, os.path.join(args.out, stem), args.preprocess,
                                   names)
        except DatasetError as err:
            raise UserError(f"predict: {err}") from None
        except OSError as err:
            raise UserError(f"predict: cannot write into {args.out}: "
                            f"{err.strerror or err}") from None
        print(f"{path} -> {', '.join(written[:2])}")
        for name, share in written[2]:
            print(f"  {name} {100 * share:.1f}%")
    return 0


def _predict_one(model, path, prefix, preprocess, names):
    """Predict one image file; write its label PNG and overlay; return (files, shares)."""
    from PIL import Image

    from ..data import VOC_PALETTE, read_image
    from ..atomic import atomic_write_all
    from ..inference import class_shares, predict
    from ..plot import overlay_with_legend

    image = read_image(path)
    label = predict(model, image, preprocess)                     # (H, W) uint8
    label_png = Image.frombytes("P", label.shape[::-1], label.tobytes())
    label_png.putpalette(VOC_PALETTE.ravel().tolist())
    blended = overlay_with_legend(image, label, palette=VOC_PALETTE, class_names=names)
    files = (prefix + "_labels.png", prefix + "_overlay.png")
    atomic_write_all([(file, lambda f, picture=picture: picture.save(f, format="PNG"))
                      for file, picture in zip(files, (label_png, blended))])
    return files + (class_shares(label, names),)


def add_evaluate(commands):
    p = commands.add_parser(
        "evaluate", help="score a model on a VOC-layout set: IoU per class and totals",
        description="Predict every image of a split of a PASCAL VOC-layout folder and print "
                    "per-class IoU, pixel and mean accuracy, mean and frequency-weighted "
                    "IoU, all from one confusion matrix over the whole split.")
    _add_model_options(p)
    p.add_argument("--data-dir", required=True, metavar="D",
                   help="folder holding JPEGImages/, SegmentationClass/, ImageSets/")
    p.add_argument("--split", default="val", help="ImageSets/Segmentation/<split>.txt "
                                                  "(default val)")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from ..data import DatasetError, VOCSegmentation
    from ..metrics import format_metrics
    from ..inference import evaluate

    model, names = _load_model(args, "evaluate")
    try:
        dataset = VOCSegmentation(args.data_dir, args.split, classes=names)
        metrics = evaluate(model, dataset, args.preprocess)
    except (DatasetError, ValueError) as err:
        raise UserError(f"evaluate: {err}") from None
    print(f"{args.weights} on {args.data_dir} ({args.split}, {len(dataset)} images)")
    print(format_metrics(metrics, names))
    return 0
