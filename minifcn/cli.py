"""The ``minifcn`` command line: argparse subcommands.

Exit status: 0 success, 1 a failed check or an internal error, 2 a user error (bad
argument, missing file, unavailable device), reported as one line without a traceback.
"""
from __future__ import annotations

import argparse
import sys
import traceback

import numpy as np

from . import __version__


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line instead of argparse's usage block
        raise UserError(f"{message} (see {self.prog} --help)")


def main(argv=None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        return args.run(args)
    except UserError as err:
        print(f"minifcn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minifcn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                    # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except Exception:                          # a bug: show everything, exit 1
        traceback.print_exc()
        print("minifcn: internal error (the traceback above is a bug report)", file=sys.stderr)
        return 1


def _build_parser():
    parser = _Parser(prog="minifcn", description="Fully convolutional networks in NumPy/CuPy.")
    parser.add_argument("--version", action="version", version=f"minifcn {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_gradcheck(commands)
    _add_convert(commands)
    _add_summary(commands)
    _add_predict(commands)
    _add_evaluate(commands)
    return parser


# --- minifcn gradcheck ----------------------------------------------------------------------

def _add_gradcheck(commands):
    from .gradcheck import MODES
    from .gradcheck.registry import all_options, registered

    p = commands.add_parser(
        "gradcheck", help="check an op's backward against finite differences",
        description="Compare an op's hand-written backward with central differences in "
                    "float64 and print the report. 'all' runs every registered op in several "
                    f"configurations. Ops: {', '.join(registered())}.")
    p.add_argument("op", help="an op name, or 'all'")
    for option, kind in all_options().items():
        flag = "--" + option.replace("_", "-")
        if kind is bool:
            p.add_argument(flag, action="store_const", const=True, help=f"the op's {option}")
        else:
            p.add_argument(flag, type=kind, metavar=kind.__name__.upper(),
                           help=f"the op's {option}")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--mode", choices=MODES, default="full", help="default full")
    p.add_argument("--dtype", choices=tuple(_TOLERANCES), default="float64",
                   help="float64 (default) or float32, with looser default tolerances")
    for name in ("eps", "atol", "rtol"):
        p.add_argument(f"--{name}", type=float, metavar="X",
                       help=f"finite-difference {name} (default: "
                            + ", ".join(f"{v[name]:g} in {k}" for k, v in _TOLERANCES.items())
                            + ")")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-elements", type=int, metavar="N",
                   help="check at most N sampled elements per tensor")
    p.add_argument("--quiet", action="store_true", help="one line per check, no tables")
    p.set_defaults(run=_run_gradcheck)


def _run_gradcheck(args) -> int:
    import warnings

    from .backend import import_cupy, parse_device, to_device
    from .gradcheck import GradcheckPrecisionWarning, check_function
    from .gradcheck.registry import all_options, build_case, entry, registered

    try:
        kind, _ = parse_device(args.device)
        if kind == "cuda":
            import_cupy()
    except (ValueError, RuntimeError) as err:
        raise UserError(str(err)) from None
    options = {k: getattr(args, k) for k in all_options()}
    if args.op == "all":
        if any(v is not None for v in options.values()):
            raise UserError("'gradcheck all' runs preset configurations and takes no op options")
        runs = [(name, preset) for name in registered() for preset in entry(name).presets]
    else:
        try:
            entry(args.op)
        except ValueError as err:
            raise UserError(str(err)) from None
        runs = [(args.op, options)]

    failed = 0
    for name, opts in runs:
        try:
            forward, backward, inputs = build_case(name, np.random.default_rng(args.seed), **opts)
            inputs = [to_device(a, args.device) if isinstance(a, np.ndarray) else a for a in inputs]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GradcheckPrecisionWarning)
                report = check_function(forward, backward, inputs, mode=args.mode, seed=args.seed,
                                        dtype=np.dtype(args.dtype), max_elements=args.max_elements,
                                        **_tolerances(args),
                                        title=_describe(name, opts))
        except (ValueError, TypeError) as err:
            raise UserError(f"gradcheck {name}: {err}") from None
        failed += not report.passed
        if args.quiet and report.passed:
            print(f"ok    {report.title}")
        else:
            print(report, end="\n\n")
    print(f"gradcheck: {len(runs) - failed} passed, {failed} failed")
    return 1 if failed else 0


# Central differences lose about half the digits: float32 needs a larger step and tolerance.
_TOLERANCES = {"float64": dict(eps=1e-6, atol=1e-7, rtol=1e-5),
               "float32": dict(eps=1e-3, atol=1e-2, rtol=1e-2)}


def _tolerances(args) -> dict:
    defaults = _TOLERANCES[args.dtype]
    return {k: getattr(args, k) if getattr(args, k) is not None else v
            for k, v in defaults.items()}


def _describe(name, options) -> str:
    given = ", ".join(f"{k}={v}" for k, v in options.items() if v is not None)
    return f"{name}({given})"


# --- minifcn convert ------------------------------------------------------------------------

def _add_convert(commands):
    p = commands.add_parser(
        "convert", help="convert PyTorch weights (.pth) to minifcn's .npz",
        description="Convert a PyTorch state dict of the reference FCN models (pytorch-fcn: "
                    "conv1_1.weight, ..., score_fr, upscore*) or of torchvision's VGG16 "
                    "(features.N, classifier.0/3 reshaped into fc6/fc7) into minifcn's .npz "
                    "weight file. Needs torch; the file is read with weights_only=True.")
    p.add_argument("src", metavar="SRC.pth", help="a file written by torch.save")
    p.add_argument("dst", metavar="DST.npz", help="the weight file to write (replaced atomically)")
    p.set_defaults(run=_run_convert)


def _run_convert(args) -> int:
    import os

    from .convert import ConversionError, TorchUnavailableError, convert_file

    src, dst = args.src, args.dst
    if os.path.exists(src) and os.path.exists(dst) and os.path.samefile(src, dst):
        raise UserError(f"convert: SRC and DST are the same file ({dst}); choose another DST")
    try:
        result = convert_file(src, dst)
    except (ConversionError, TorchUnavailableError) as err:
        raise UserError(f"convert: {err}") from None
    except OSError as err:
        raise UserError(f"convert: cannot write {dst}: {err.strerror or err}") from None
    n_class = f", n_class {result.metadata['n_class']}" if "n_class" in result.metadata else ""
    notes = "".join(f"; {note}" for note in result.notes)
    print(f"converted {src} ({result.layout} layout) to {dst}: {result.arch}"
          f"{n_class}, width {result.metadata['width']:g}, {len(result.arrays)} arrays{notes}")
    return 0


# --- minifcn summary ------------------------------------------------------------------------

def _add_summary(commands):
    from .models import ARCHITECTURES

    p = commands.add_parser(
        "summary", help="print an FCN's layers: shapes, parameters, FLOPs, workspace, offsets",
        description="Print, layer by layer, the output shape, parameters, forward FLOPs, "
                    "im2col workspace, receptive field and coordinate map of an FCN on an "
                    "input size, with the crop offsets the coordinate maps give and the "
                    "totals. Computed from the layers' size formulas, without running the "
                    "network or allocating its weights.")
    p.add_argument("arch", metavar="ARCH", choices=tuple(ARCHITECTURES),
                   help=", ".join(ARCHITECTURES))
    p.add_argument("--input", required=True, type=_height_width, metavar="HxW",
                   help="image size, e.g. 500x500")
    p.add_argument("--width", type=float, default=1.0, help="channel width in (0, 1] "
                   "(default 1: the paper's network)")
    p.add_argument("--n-class", type=int, default=21, metavar="K", help="default 21")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="default 1")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="the dtype the workspace is counted in (default float32)")
    p.set_defaults(run=_run_summary)


def _height_width(text: str) -> tuple:
    """'500x500' -> (500, 500); argparse reports the TypeError as a usage error."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 500x500, got {text!r}") \
            from None
    if min(height, width) < 1:
        raise argparse.ArgumentTypeError(f"height and width must be positive, got {text!r}")
    return height, width


def _run_summary(args) -> int:
    from .summary import format_summary, summarize_arch

    try:
        rows = summarize_arch(args.arch, args.input, batch=args.batch, width=args.width,
                              n_class=args.n_class, dtype=np.dtype(args.dtype))
    except ValueError as err:
        raise UserError(f"summary: {err}") from None
    (height, width), shape = args.input, rows[0].shape
    print(format_summary(rows, title=f"{args.arch}, width {args.width:g}, n_class "
                                     f"{args.n_class}, input {'x'.join(map(str, shape))} "
                                     f"({height}x{width}), {args.dtype}"))
    return 0


# --- minifcn predict / evaluate -------------------------------------------------------------

def _add_model_options(p):
    """Options shared by predict and evaluate: the weights and where/how to run them."""
    from .models import ARCHITECTURES

    p.add_argument("--weights", required=True, metavar="W.npz",
                   help="a weight file written by minifcn (train, convert, save_weights)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--preprocess", choices=("reference", "imagenet"), default="reference",
                   help="the normalisation the model was trained with (default reference)")
    p.add_argument("--arch", choices=tuple(ARCHITECTURES),
                   help="only for a weight file without minifcn metadata")
    p.add_argument("--n-class", type=int, metavar="K",
                   help="only for a weight file without minifcn metadata")
    p.add_argument("--width", type=float, help="only for a weight file without metadata")


def _load_model(args, command):
    """``(model, class names)`` from ``--weights``; a file or device problem is a UserError."""
    from .backend import import_cupy, parse_device
    from .io import WeightsError
    from .predict import class_names, model_from_weights

    try:
        if parse_device(args.device)[0] == "cuda":
            import_cupy()
        model, metadata = model_from_weights(args.weights, arch=args.arch,
                                             n_class=args.n_class, width=args.width,
                                             device=args.device, with_metadata=True)
    except (WeightsError, ValueError, RuntimeError) as err:
        raise UserError(f"{command}: {err}") from None
    return model, class_names(model.n_class, metadata)


def _add_predict(commands):
    p = commands.add_parser(
        "predict", help="segment images: label PNGs, overlays and class shares",
        description="For each IMAGE (any size and mode; EXIF orientation applied) write "
                    "OUT/<stem>_labels.png (a palette PNG of class indices, VOC colours) and "
                    "OUT/<stem>_overlay.png (the colours blended over the image), and print "
                    "the classes found with their share of the pixels.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model_options(p)
    p.add_argument("--out", default=".", metavar="DIR", help="output folder (default: .)")
    p.set_defaults(run=_run_predict)


def _run_predict(args) -> int:
    import os

    from .data import DatasetError

    stems = [os.path.splitext(os.path.basename(path))[0] for path in args.images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise UserError(f"predict: images share the name {clash[0]!r}; their outputs "
                        "would overwrite each other (predict them into different --out)")
    for path in args.images:
        if not os.path.isfile(path):
            raise UserError(f"predict: image not found: {path}")
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

    from .data import VOC_PALETTE, read_image
    from .io import atomic_open
    from .predict import class_shares, overlay, predict

    image = read_image(path)
    label = predict(model, image, preprocess)                     # (H, W) uint8
    label_png = Image.frombytes("P", label.shape[::-1], label.tobytes())
    label_png.putpalette(VOC_PALETTE.ravel().tolist())
    blended = Image.fromarray(overlay(image, label, VOC_PALETTE))
    files = (prefix + "_labels.png", prefix + "_overlay.png")
    for file, picture in zip(files, (label_png, blended)):
        with atomic_open(file) as f:
            picture.save(f, format="PNG")
    return files + (class_shares(label, names),)


def _add_evaluate(commands):
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
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from .data import DatasetError, VOCSegmentation
    from .metrics import format_metrics
    from .predict import evaluate

    model, names = _load_model(args, "evaluate")
    try:
        dataset = VOCSegmentation(args.data_dir, args.split, classes=names)
        metrics = evaluate(model, dataset, args.preprocess)
    except (DatasetError, ValueError) as err:
        raise UserError(f"evaluate: {err}") from None
    print(f"{args.weights} on {args.data_dir} ({args.split}, {len(dataset)} images)")
    print(format_metrics(metrics, names))
    return 0
