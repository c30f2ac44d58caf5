r"""Inference: label maps from a trained FCN, their colours, and evaluation over a set.

>>> model = model_from_weights("fcn8s.npz")                   # doctest: +SKIP
>>> label = predict(model, "dog.jpg")                         # (H, W) uint8 class indices
>>> Image.fromarray(overlay(read_image("dog.jpg"), label))    # doctest: +SKIP
>>> class_shares(label, VOC_CLASSES)                          # doctest: +SKIP
[('background', 0.679), ('dog', 0.321)]

Images are read with :func:`minifcn.data.read_image`: any size and mode (RGBA, greyscale,
palette) becomes ``(H, W, 3)`` uint8 RGB, EXIF orientation applied, Pillow's
decompression-bomb guard on. Nothing in this module prints.
"""
from __future__ import annotations

import numbers
import os

import numpy as np

from .backend import asnumpy, device_of, get_array_module, to_device
from .class_summary import (class_confidences, class_index, class_mask,  # noqa: F401 (API)
                            class_shares, label_map)
from .data.shapes import CLASS_NAMES as SHAPES_CLASSES
from .data.transforms import normalize
from .data.voc import VOC_CLASSES, VOC_PALETTE, read_image
from .io import WeightsError, read_weights
from .metrics import ConfusionMatrix


def predict(model, image, preprocess: str = "reference") -> np.ndarray:
    r"""Segment one image: the per-pixel argmax of the model's class scores.

    Parameters
    ----------
    model : Module
        A segmentation model taking ``(N, 3, H, W)`` and returning scores ``(N, K, H, W)``.
        It runs in eval mode for the call (dropout off, BatchNorm on its running
        statistics); each submodule's mode is restored after.
    image : ndarray (H, W, 3) uint8 RGB, or str / os.PathLike
        A path is read with :func:`~minifcn.data.read_image` (any mode, EXIF applied).
    preprocess : {"reference", "imagenet"}
        The normalisation the model was trained with (see ``minifcn.data.transforms``).

    Returns
    -------
    ndarray, (H, W) uint8
        Class indices, on the host, whatever the model's device.

    Notes
    -----
    The input is cast to the model's dtype and moved to its device (that of its first
    parameter); :math:`\hat y_{h,w} = \arg\max_k s_{k,h,w}`. A model whose output is
    smaller than its input (U-Net) says by its ``tile_padding(H, W)`` how far to mirror the
    image's border outwards, and its scores are cropped to the image.
    """
    scores = _scores(model, image, preprocess)                         # (K, H, W)
    return asnumpy(scores.argmax(axis=0)).astype(np.uint8)              # (H, W)


def predict_with_confidence(model, image, preprocess: str = "reference"):
    r""":func:`predict`, and each pixel's confidence in its class: ``(label, confidence)``,
    both ``(H, W)`` on the host, the confidence in the model's dtype.

    Notes
    -----
    The confidence is the softmax probability of the winning class,
    :math:`p_{h,w} = e^{s_{\hat y}} / \sum_k e^{s_k} = 1 / \sum_k e^{s_k - \max_j s_j}`
    (the largest score subtracted, so no exponential overflows).
    """
    scores = _scores(model, image, preprocess)                         # (K, H, W)
    xp = get_array_module(scores)
    top = scores.max(axis=0)                                            # (H, W)
    confidence = 1 / xp.exp(scores - top[None]).sum(axis=0)             # (H, W)
    return asnumpy(scores.argmax(axis=0)).astype(np.uint8), asnumpy(confidence)


def _scores(model, image, preprocess):
    """The model's scores ``(K, H, W)`` for one image, on the model's device (eval mode)."""
    _check_model(model)
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    image = _rgb_uint8("image", image)
    if min(image.shape[:2]) < 1:
        raise ValueError(f"image must have at least one row and column, got shape "
                         f"{image.shape}")
    device, dtype = _placement(model)
    x = normalize(image, preprocess)[None].astype(dtype, copy=False)   # (1, 3, H, W)
    tiles = getattr(model, "tile_padding", None)     # U-Net: mirror the border outwards
    if tiles is not None:
        x = np.pad(x, ((0, 0), (0, 0), *tiles(*image.shape[:2])), mode="reflect")
    x = to_device(x, device)
    modes = [(module, module.training) for _, module in model.named_modules()]
    try:
        model.eval()
        scores = model(x)                                               # (1, K, H, W)
    finally:
        for module, training in modes:
            module.training = training
            vars(module).pop("_cache", None)    # no backward follows: free the activations
    if tiles is not None:                            # its output starts over pixel 0
        scores = scores[:, :, :image.shape[0], :image.shape[1]]
    _check_scores(scores, image.shape[:2])
    return scores[0]


def model_from_weights(path, arch=None, n_class=None, width=None, device: str = "cpu",
                       dtype=None, with_metadata: bool = False):
    """Build the model a weight file was saved from and load the weights into it.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`minifcn.io.save_weights` (or ``minifcn convert``).
    arch, n_class, width : optional
        Override the file's metadata, or supply it where the file has none (a plain .npz):
        ``arch`` one of ``minifcn.models.MODELS`` (a ResNet model's auxiliary head is built
        where the file records ``aux``, else where it holds ``aux_classifier.*`` arrays; a
        U-Net takes ``in_channels``, ``base`` and ``depth`` from its arrays, and no width).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    dtype : float32 or float64, optional
        Default: the file's dtype where it is one of those, else float32.
    with_metadata : bool
        Return ``(model, metadata)`` instead of the model.

    Returns
    -------
    Module, in eval mode

    Raises
    ------
    WeightsError
        A missing or damaged file, a PyTorch file (convert it first), metadata lacking and
        not supplied (the message names the arguments to pass), among them the architecture
        of a converted file whose keys fit several (``arch_candidates``: FCN-8s and FCN-8s
        at-once), an unknown architecture, or weights that do not fit it.
    """
    from .models import MODELS, build_model

    path = os.fspath(path)
    arrays, metadata = read_weights(path)
    given = {"arch": arch, "n_class": n_class, "width": width}
    spec = {k: v if v is not None else metadata.get(k) for k, v in given.items()}
    if spec["arch"] is None and metadata.get("arch_candidates"):
        raise WeightsError(_ambiguous(path, metadata["arch_candidates"]))
    needed = ("arch", "n_class") if spec["arch"] == "unet" else tuple(spec)
    missing = [k for k in needed if spec[k] is None]
    if missing:
        raise WeightsError(f"{path!r} does not record its {', '.join(missing)}; pass "
                           + ", ".join(f"{k}=..." for k in missing)
                           + " (command line: " + " ".join(f"--{k.replace('_', '-')}"
                                                            for k in missing) + ")")
    if spec["arch"] not in MODELS:
        raise WeightsError(f"{path!r} holds weights for architecture {spec['arch']!r}, which "
                           f"minifcn does not build (known: {', '.join(MODELS)})")
    options = {}
    try:
        options = _model_options(spec, metadata, arrays)
        model = build_model(spec["arch"], spec["n_class"], _dtype(dtype, metadata),
                            init="zeros", **options)
    except (TypeError, ValueError) as err:
        words = "".join(f", {k}={v!r}" for k, v in options.items())
        raise WeightsError(f"{path!r}: cannot build {spec['arch']} with n_class="
                           f"{spec['n_class']!r}{words}: {err}") from None
    try:
        model.load_state_dict(arrays, strict=True)
    except ValueError as err:
        raise WeightsError(f"{path!r} does not fit {spec['arch']} (n_class={spec['n_class']}"
                           + "".join(f", {k}={v}" for k, v in options.items())
                           + f"): {err}") from None
    model.to(device).eval()
    return (model, metadata) if with_metadata else model


def class_names(n_class: int, metadata=None) -> tuple:
    """Names for ``n_class`` classes: the metadata's ``classes`` where it has them, else the
    VOC names (21), the shapes names (4), or ``class0, class1, ...``."""
    recorded = (metadata or {}).get("classes")
    if isinstance(recorded, list) and len(recorded) == n_class:
        return tuple(str(name) for name in recorded)
    known = {len(VOC_CLASSES): VOC_CLASSES, len(SHAPES_CLASSES): SHAPES_CLASSES}
    return known.get(n_class, tuple(f"class{i}" for i in range(n_class)))


def colorize(label, palette=VOC_PALETTE) -> np.ndarray:
    """Colour a label map: ``(H, W)`` class indices -> ``(H, W, 3)`` uint8, ``palette[label]``.

    ``palette`` is ``(P, 3)`` uint8, row ``c`` the RGB of class ``c`` (default the 256 VOC
    colours, so the ignore label 255 is coloured too).
    """
    label, palette = label_map("label", label), _palette(palette)
    if label.size and int(label.max()) >= len(palette):
        raise ValueError(f"label holds class {int(label.max())} but palette has only "
                         f"{len(palette)} colours")
    return palette[label]                                             # (H, W, 3)


def overlay(image, label, palette=VOC_PALETTE, alpha: float = 0.5) -> np.ndarray:
    r"""Blend the colourised ``label`` over ``image``: ``(H, W, 3)`` uint8.

    Notes
    -----
    :math:`o = \mathrm{round}((1 - \alpha)\, x + \alpha\, \mathrm{palette}[y])`, per pixel
    and channel; ``alpha`` 0 gives the image, 1 the colour map.
    """
    image = _rgb_uint8("image", image)
    colours = colorize(label, palette)
    if colours.shape != image.shape:
        raise ValueError(f"label must be (H, W) = {image.shape[:2]} like the image, got "
                         f"{colours.shape[:2]}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    mixed = (1.0 - alpha) * image + alpha * colours.astype(np.float64)   # (H, W, 3)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def evaluate(model, dataset, preprocess: str = "reference", n_class=None,
             ignore_index: int | None = 255):
    """Predict every item of ``dataset`` and score the set with one :class:`ConfusionMatrix`.

    Parameters
    ----------
    model : Module
    dataset : sequence of (image (H, W, 3) uint8, label (H, W) int)
        Untransformed items, e.g. a :class:`~minifcn.data.VOCSegmentation`.
    preprocess : {"reference", "imagenet"}
    n_class : int, optional
        Default ``model.n_class``.
    ignore_index : int or None
        Target value skipped by the metrics (VOC's 255 border).

    Returns
    -------
    SegmentationMetrics
    """
    matrix = ConfusionMatrix(n_class if n_class is not None else model.n_class, ignore_index)
    for i in range(len(dataset)):
        image, target = dataset[i]
        matrix.update(predict(model, image, preprocess), np.asarray(target))
    return matrix.compute()


# --- small helpers ----------------------------------------------------------------------------

def _check_model(model) -> None:
    missing = [name for name in ("named_modules", "parameters", "eval")
               if not callable(getattr(model, name, None))]
    if missing or not callable(model):
        raise TypeError(f"model must be a minifcn.nn.Module (an FCN, e.g. from "
                        f"model_from_weights), got {type(model).__name__}")


def _placement(model):
    """The device and dtype of the model's first parameter (cpu, float32 without any)."""
    params = model.parameters()
    if not params:
        return "cpu", np.dtype(np.float32)
    return device_of(params[0].data), params[0].data.dtype


def _model_options(spec, metadata, arrays) -> dict:
    """The options of ``spec["arch"]``'s family: width; and the ResNet models' auxiliary
    head (recorded, else there where its keys are); U-Net's from its arrays."""
    from .models import RESNET_MODELS, UNet

    if spec["arch"] == "unet":
        return UNet.options_from_state(arrays)
    options = {"width": spec["width"]}
    if spec["arch"] in RESNET_MODELS:
        options["aux"] = metadata.get("aux", any(k.startswith("aux_classifier.")
                                                 for k in arrays))
    return options


def _ambiguous(path, candidates) -> str:
    names = [str(c) for c in candidates]
    return (f"{path!r} records no architecture: its weights fit {' and '.join(names)} "
            "(the same keys; the networks differ); pass "
            + " or ".join(f"arch={c!r}" for c in names) + " (command line: "
            + " or ".join(f"--arch {c}" for c in names) + ")")


def _dtype(dtype, metadata):
    if dtype is not None:
        return np.dtype(dtype)
    recorded = metadata.get("dtype")
    return np.dtype(recorded) if recorded in ("float32", "float64") else np.dtype(np.float32)


def _check_scores(scores, size):
    if getattr(scores, "ndim", 0) != 4 or tuple(scores.shape[2:]) != tuple(size) \
            or scores.shape[0] != 1:
        raise ValueError(f"model must return scores (1, K, {size[0]}, {size[1]}) for a "
                         f"{size[0]}x{size[1]} image, got shape {getattr(scores, 'shape', None)}")
    if scores.shape[1] > 256:
        raise ValueError(f"predict returns uint8 labels: at most 256 classes, got "
                         f"{scores.shape[1]}")


def _rgb_uint8(name, image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be an (H, W, 3) uint8 RGB array or an image path, got "
                         f"{image.dtype} array of shape {image.shape}")
    return image




def _palette(palette) -> np.ndarray:
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or palette.dtype != np.uint8:
        raise ValueError(f"palette must be a (P, 3) uint8 array of RGB colours, got "
                         f"{palette.dtype} array of shape {palette.shape}")
    return palette
