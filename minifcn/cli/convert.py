"""``minifcn convert SRC.pth DST.npz [--arch A]``: PyTorch FCN, VGG16, torchvision
FCN-ResNet50 / DeepLabV3-ResNet50 or U-Net weights to minifcn's .npz."""
from __future__ import annotations

from .common import UserError, require_file


def add(commands):
    from ..convert import CONVERTIBLE

    p = commands.add_parser(
        "convert", help="convert PyTorch weights (.pth) to minifcn's .npz",
        description="Convert a PyTorch state dict of the reference FCN models (pytorch-fcn: "
                    "conv1_1.weight, ..., score_fr, upscore*) or of torchvision's VGG16 "
                    "(features.N, classifier.0/3 reshaped into fc6/fc7) or of torchvision's "
                    "fcn_resnet50 / deeplabv3_resnet50 (backbone.*, classifier.*, "
                    "aux_classifier.*) or of a U-Net laid out as minifcn's (encoder.*, up.*, "
                    "decoder.*, head) into minifcn's .npz weight file. Needs torch; the "
                    "file is read with weights_only=True.")
    p.add_argument("src", metavar="SRC.pth", help="a file written by torch.save")
    p.add_argument("dst", metavar="DST.npz", help="the weight file to write (replaced atomically)")
    p.add_argument("--arch", choices=CONVERTIBLE,
                   help="the FCN architecture to record (its keys must fit). Needed where "
                        "the keys fit several: pytorch-fcn's FCN8s and FCN8sAtOnce have the "
                        "same keys; without --arch such a file records none, and loading it "
                        "asks for one")
    p.set_defaults(run=run)


def run(args) -> int:
    import os

    from ..convert import ConversionError, TorchUnavailableError, convert_file

    src, dst = args.src, args.dst
    require_file(src, "SRC", "convert")                      # before importing torch
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise UserError(f"convert: SRC and DST are the same file ({dst}); choose another DST")
    folder = os.path.dirname(os.path.abspath(dst))           # before reading a large SRC
    if not os.path.isdir(folder):
        raise UserError(f"convert: cannot write {dst}: its folder {folder} does not exist")
    if os.path.isdir(dst):
        raise UserError(f"convert: cannot write {dst}: it is a folder (name the file to "
                        "write)")
    try:
        result = convert_file(src, dst, arch=args.arch)
    except (ConversionError, TorchUnavailableError) as err:
        raise UserError(f"convert: {err}") from None
    except OSError as err:
        raise UserError(f"convert: cannot write {dst}: {err.strerror or err}") from None
    _report(result, src, dst)
    return 0


def _report(result, src, dst) -> None:
    """One line on what was written; a second where no architecture could be recorded."""
    n_class = f", n_class {result.metadata['n_class']}" if "n_class" in result.metadata else ""
    notes = "".join(f"; {note}" for note in result.notes)
    candidates = result.metadata.get("arch_candidates")
    arch = result.arch or f"no arch recorded (the keys fit {' and '.join(candidates)})"
    print(f"converted {src} ({result.layout} layout) to {dst}: {arch}"
          f"{n_class}, width {result.metadata['width']:g}, {len(result.arrays)} arrays{notes}")
    if result.arch is None:
        where = (" (pytorch-fcn's FCN8sAtOnce is fcn8s-atonce, its FCN8s fcn8s)"
                 if "fcn8s-atonce" in candidates else "")
        print("to choose the architecture, convert again with "
              + " or ".join(f"--arch {c}" for c in candidates) + where
              + ", or pass --arch to predict and evaluate (arch=... to model_from_weights)")
