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
                    "the classes found, each as name(index): its confidence (the mean "
                    "softmax probability over its pixels, in percent) and its share of the "
                    "pixels.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model_options(p)
    p.add_argument("--out", default=".", metavar="DIR", help="output folder (default: .)")
    p.add_argument("--mask", metavar="CLASS",
                   help="also write OUT/<stem>_mask_<CLASS>.png: 255 where the class was "
                        "predicted, 0 elsewhere (CLASS: a class name, e.g. dog, or index)")
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
    mask = _mask_class(args.mask, names)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise UserError(f"predict: cannot create --out {args.out}: {err.strerror or err}") \
            from None
    for path, stem in zip(args.images, stems):
        try:
            written = _predict_one(model, path, os.path.join(args.out, stem), args.preprocess,
                                   names, mask)
        except DatasetError as err:
            raise UserError(f"predict: {err}") from None
        except OSError as err:
            raise UserError(f"predict: cannot write into {args.out}: "
                            f"{err.strerror or err}") from None
        files, found = written
        print(f"{path} -> {', '.join(files)}")
        for index, name, share, confidence in found:
            print(f"  {name}({index}): {100 * confidence:.2f}, {100 * share:.1f}% of the pixels")
    return 0


def _mask_class(cls, names):
    """``--mask``'s class index (None without it); an unknown class is a UserError."""
    from ..inference import class_index

    if cls is None:
        return None
    try:
        return class_index(cls, names)
    except ValueError as err:
        raise UserError(f"predict: --mask: {err}") from None


def _predict_one(model, path, prefix, preprocess, names, mask=None):
    """Predict one image file; write its label PNG, overlay and (with ``mask``, a class
    index) that class's mask; return (files, class confidences)."""
    from PIL import Image

    from ..data import VOC_PALETTE, read_image
    from ..atomic import atomic_write_all
    from ..inference import class_confidences, class_mask, predict_with_confidence
    from ..plot import overlay_with_legend

    image = read_image(path)
    label, confidence = predict_with_confidence(model, image, preprocess)   # (H, W) each
    label_png = Image.frombytes("P", label.shape[::-1], label.tobytes())
    label_png.putpalette(VOC_PALETTE.ravel().tolist())
    blended = overlay_with_legend(image, label, palette=VOC_PALETTE, class_names=names)
    pictures = [(prefix + "_labels.png", label_png), (prefix + "_overlay.png", blended)]
    if mask is not None:
        pictures.append((f"{prefix}_mask_{_file_part(names[mask])}.png",
                         Image.fromarray(class_mask(label, mask, names))))
    atomic_write_all([(file, lambda f, picture=picture: picture.save(f, format="PNG"))
                      for file, picture in pictures])
    return tuple(file for file, _ in pictures), class_confidences(label, confidence, names)


def _file_part(name: str) -> str:
    """A class name as part of a file name: anything but letters, digits, - and _ as _."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


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
