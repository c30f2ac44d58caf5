r"""PyTorch weights to minifcn's .npz: the reference FCN port, torchvision's VGG16,
torchvision's FCN-ResNet50 and DeepLabV3-ResNet50, and a U-Net laid out as minifcn's.

Four key layouts are understood:

- **the reference FCN port** (pytorch-fcn): ``conv1_1.weight`` ... ``conv5_3.bias``,
  ``fc6``, ``fc7``, ``score_fr``, the ``score_pool*`` and ``upscore*`` layers: already
  minifcn's names and shapes. The variant is told by its last upsampling layer:
  ``upscore8`` (FCN-8s), ``upscore16`` (FCN-16s), ``upscore`` (FCN-32s). FCN-8s at-once
  (pytorch-fcn's ``FCN8sAtOnce``, which scales pool4 by 0.01 and pool3 by 0.0001) has
  FCN-8s's keys and shapes: the keys cannot tell them apart, so unless the caller names
  the architecture (``arch=``, ``minifcn convert --arch``) the file records none, only
  ``arch_candidates``, and loading it asks for one.
- **torchvision's VGG16**: ``features.N`` for N in 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24,
  26, 28 are conv1_1 ... conv5_3 in order; the fully connected ``classifier.0`` and
  ``classifier.3`` become the convolutions ``fc6`` and ``fc7``, and ``classifier.6``
  (ImageNet's 1000 classes) is dropped.
- **torchvision's segmentation ResNets** (``backbone.conv1.weight``, ...,
  ``classifier.4.weight``, ``aux_classifier.*``): already minifcn's names; recognised, their
  options read and their arrays checked by :mod:`minifcn.convert_resnet`.
- **a U-Net** with minifcn's names (``encoder.0.0.weight``, ..., ``up.L``, ``decoder.*``,
  ``head.weight``): its options read and its arrays checked by :mod:`minifcn.convert_unet`.

The fully connected layer ``classifier.0`` sees the flattened ``(C, 7, 7)`` pool5 map, index
``c * 49 + h * 7 + w``, so its weight ``(F, C * 7 * 7)`` reshapes in C order to a 7x7
convolution ``(F, C, 7, 7)`` that computes the same numbers on a 7x7 input. ``C`` and the
kernel size are read from the arrays (``C`` from conv5_3), never hard-coded.

The conversion is pure, dicts of NumPy arrays in and out (:func:`vgg16_to_fcn_state`,
:func:`convert_state`), so models can reuse it without torch. Only :func:`read_torch_state`
needs torch, imported when called.
"""
from __future__ import annotations

import math
import os
import pickle
from typing import NamedTuple

import numpy as np

from .convert_resnet import (LAYOUT_WORDS, RESNET_MODELS, is_resnet_layout, resnet_arch,
                             resnet_metadata, resnet_problems)
from .convert_unet import is_unet_layout, unet_metadata, unet_problems
from .io import write_weights

TORCH_INSTALL_HINT = ("pip install torch==2.13.0 --index-url "
                      "https://download.pytorch.org/whl/cpu  (the CPU build is enough)")

VGG16_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
TORCHVISION_VGG16_FEATURES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def _keys(*layers, bias=True):
    return tuple(f"{layer}.{p}" for layer in layers for p in (("weight", "bias") if bias
                                                              else ("weight",)))


VGG16_KEYS = _keys(*VGG16_CONVS, "fc6", "fc7")          # the trunk and head FCN takes over
FCN_KEYS = {
    "fcn32s": VGG16_KEYS + _keys("score_fr") + _keys("upscore", bias=False),
    "fcn16s": VGG16_KEYS + _keys("score_fr", "score_pool4")
    + _keys("upscore2", "upscore16", bias=False),
    "fcn8s": VGG16_KEYS + _keys("score_fr", "score_pool4", "score_pool3")
    + _keys("upscore2", "upscore_pool4", "upscore8", bias=False),
}
FCN_KEYS["fcn8s-atonce"] = FCN_KEYS["fcn8s"]        # the same layers; only forward differs
#: The architectures whose PyTorch weights :func:`convert_state` reads.
CONVERTIBLE = (*FCN_KEYS, *RESNET_MODELS, "unet")
_FCN_MARKERS = (("upscore8.weight", "fcn8s"), ("upscore16.weight", "fcn16s"),
                ("upscore.weight", "fcn32s"))
_DROPPED_NOTE = "dropped classifier.6 (ImageNet's 1000-class layer; FCN learns score_fr)"


class ConversionError(ValueError):
    """A source file or state dict that cannot be converted; says what was found."""


class TorchUnavailableError(ImportError):
    """torch is needed (to read a .pth file) but cannot be imported."""


class Conversion(NamedTuple):
    """The result of :func:`convert_state`."""

    arch: str | None  # "vgg16", a model's name, or None where the keys fit several
    layout: str       # the key layout found, in words
    arrays: dict      # minifcn name -> NumPy array
    metadata: dict    # n_class (not vgg16), width, arch_candidates (arch None only),
                      # aux and preprocess (the ResNet models)
    notes: tuple      # what was left out, in words


# --- the pure conversion ------------------------------------------------------------------

def detect_layout(state) -> str:
    """``"torchvision"`` (VGG16), ``"vgg16"`` (minifcn names), the FCN variant, or the
    torchvision segmentation model (``"fcn_resnet50"``, ``"deeplabv3_resnet50"``), or
    ``"unet"``, of a state dict."""
    if is_unet_layout(state):
        return "unet"
    if is_resnet_layout(state):
        arch = resnet_arch(state)
        if arch is None:
            raise ConversionError(
                "a ResNet backbone (backbone.conv1.weight) without a head minifcn knows: "
                "expected torchvision's FCNHead (classifier.0.weight ... classifier.4.weight) "
                f"or DeepLabHead (classifier.0.convs.0.0.weight, ...); found {_few(state)}")
        return arch
    if any(k.startswith(("features.", "classifier.")) for k in state):
        return "torchvision"
    for marker, arch in _FCN_MARKERS:
        if marker in state:
            return arch
    if "conv1_1.weight" in state and "score_fr.weight" not in state:
        return "vgg16"
    raise ConversionError(
        "unrecognised key layout: expected torchvision VGG16 keys (features.0.weight, ..., "
        "classifier.0.weight), the reference FCN keys (conv1_1.weight, ..., "
        "score_fr.weight, upscore8.weight), torchvision's FCN-ResNet50 / DeepLabV3-ResNet50 "
        "keys (backbone.conv1.weight, ..., classifier.4.weight) or a U-Net's "
        f"(encoder.0.0.weight, ..., head.weight); found {_few(state)}")


def torchvision_vgg16_state(state) -> dict:
    """Rename and reshape a torchvision VGG16 state dict into minifcn's VGG16 names.

    ``features.N`` -> ``conv*_*``, ``classifier.0`` -> ``fc6`` (reshaped to a 7x7 conv),
    ``classifier.3`` -> ``fc7`` (a 1x1 conv); ``classifier.6`` is ignored. Any other key
    (batch-norm statistics of vgg16_bn, for instance) is an error.
    """
    if any(k.endswith("running_mean") for k in state):
        raise ConversionError("this is a batch-norm VGG (vgg16_bn): FCN uses plain VGG16, "
                              "whose features.N keys have no running_mean/running_var")
    names = {f"features.{n}": conv for n, conv in zip(TORCHVISION_VGG16_FEATURES, VGG16_CONVS)}
    names.update({"classifier.0": "fc6", "classifier.3": "fc7"})
    known = set(_keys(*names)) | set(_keys("classifier.6"))
    _require_keys(state, set(_keys(*names)), known, "torchvision VGG16")
    out = {f"{names[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": np.asarray(state[k])
           for k in _keys(*names)}
    return _as_convolutions(out)


def vgg16_to_fcn_state(weights) -> dict:
    """The 30 arrays an FCN takes from VGG16: ``conv1_1.weight`` ... ``fc7.bias``.

    ``weights`` (name -> array) is either torchvision's layout or minifcn's names, where
    ``fc6``/``fc7`` may still be 2-D fully connected weights. Shapes are checked (3x3 convs
    chained channel to channel, fc6 over conv5_3's channels, fc7 over fc6's outputs).
    Returns a new dict of NumPy arrays in the order of :data:`VGG16_KEYS`.
    """
    layout = detect_layout(weights)
    if layout == "torchvision":
        return torchvision_vgg16_state(weights)
    if layout != "vgg16":
        raise ConversionError(f"expected VGG16 weights, got {layout} weights")
    _require_keys(weights, set(VGG16_KEYS), set(VGG16_KEYS), "VGG16")
    return _as_convolutions({k: np.asarray(weights[k]) for k in VGG16_KEYS})


def fcn_state(state, arch: str) -> dict:
    """Check a reference FCN state dict of variant ``arch``; returns its arrays as NumPy."""
    expected = set(FCN_KEYS[arch])
    _require_keys(state, expected, expected, f"reference {arch}")
    arrays = {k: np.asarray(v) for k, v in state.items()}
    _check_trunk(arrays)
    flat = [f"{k} {arrays[k].shape}" for k in FCN_KEYS[arch]
            if k.endswith(".weight") and arrays[k].ndim != 4]
    if flat:
        raise ConversionError("expected 4-D convolution weights, got " + ", ".join(flat))
    return arrays


def convert_state(state, arch=None) -> Conversion:
    """Detect the layout of ``state`` (name -> array) and convert it to minifcn's arrays.

    ``arch`` (one of :data:`CONVERTIBLE`: the FCNs, the ResNet segmenters, unet) names the
    architecture where the caller knows it; the keys must fit it. Without it, keys that fit
    several architectures (FCN-8s and FCN-8s at-once) give ``Conversion.arch`` None and
    ``metadata["arch_candidates"]``.
    """
    known = CONVERTIBLE
    if arch is not None and (not isinstance(arch, str) or arch not in known):
        raise ConversionError(f"arch must be one of {', '.join(known)}, got {arch!r}")
    layout = detect_layout(state)
    if layout in RESNET_MODELS:
        return resnet_conversion(state, layout, arch)
    if layout == "unet":
        return unet_conversion(state, arch)
    if layout in ("torchvision", "vgg16"):
        if arch is not None:
            raise ConversionError(f"arch {arch!r} does not fit: these are VGG16 weights "
                                  "(no score_fr or upscore layers), which take no arch")
        arrays = vgg16_to_fcn_state(state)
        notes = (_DROPPED_NOTE,) if "classifier.6.weight" in state else ()
        words = "torchvision VGG16" if layout == "torchvision" else "VGG16"
        return Conversion("vgg16", words, arrays, _metadata(arrays), notes)
    arrays = fcn_state(state, layout)
    candidates = fitting_archs(arrays)
    if arch is not None and arch not in FCN_KEYS:
        raise ConversionError(f"arch {arch!r} does not fit these weights: they are the "
                              f"reference FCN's ({' and '.join(candidates) or layout})")
    if arch is not None and arch not in candidates:
        keys = set(FCN_KEYS[arch])
        raise ConversionError(f"arch {arch!r} does not fit these weights, whose keys are "
                              f"those of {' and '.join(candidates)}: "
                              + "; ".join(_key_problems(arrays, keys, keys)))
    metadata = {"n_class": int(arrays["score_fr.weight"].shape[0]), **_metadata(arrays)}
    if arch is None and len(candidates) > 1:
        metadata["arch_candidates"] = list(candidates)
    else:
        arch = arch or layout
    return Conversion(arch, f"reference {layout.upper()[:3]}-{layout[3:]}", arrays,
                      metadata, ())


def resnet_conversion(state, layout: str, arch=None) -> Conversion:
    """Check a torchvision FCN-ResNet50 / DeepLabV3-ResNet50 state dict (``layout``, from
    :func:`detect_layout`) and return it as a :class:`Conversion`, options in its metadata."""
    words = LAYOUT_WORDS[layout]
    if arch is not None and arch != layout:
        raise ConversionError(f"arch {arch!r} does not fit these weights: they are {words}'s "
                              f"({layout})")
    arrays = {k: np.asarray(v) for k, v in state.items()}
    metadata = resnet_metadata(arrays)
    problems = resnet_problems(arrays, layout, metadata)
    if problems:
        raise ConversionError(f"not a {words} state dict: " + "; ".join(problems))
    notes = ("with the auxiliary head (aux_classifier)" if metadata["aux"]
             else "without an auxiliary head",)
    return Conversion(layout, words, arrays, metadata, notes)


def unet_conversion(state, arch=None) -> Conversion:
    """Check a U-Net state dict laid out as minifcn's and return it as a
    :class:`Conversion`, its options (n_class, in_channels, base, depth) in its metadata."""
    if arch is not None and arch != "unet":
        raise ConversionError(f"arch {arch!r} does not fit these weights: they are a "
                              "U-Net's (encoder.0.0.weight, ..., head.weight)")
    arrays = {k: np.asarray(v) for k, v in state.items()}
    try:
        metadata = unet_metadata(arrays)
        problems = unet_problems(arrays, metadata)
    except (TypeError, ValueError) as err:
        problems = [str(err)]
    if problems:
        raise ConversionError("not a U-Net state dict laid out as minifcn's: "
                              + "; ".join(problems))
    notes = (f"in_channels {metadata['in_channels']}, base {metadata['base']}, depth "
             f"{metadata['depth']}; no preprocess recorded (pass --preprocess to predict and "
             "evaluate)",)
    return Conversion("unet", "U-Net", arrays, metadata, notes)


def fitting_archs(state) -> tuple:
    """The FCN architectures whose state-dict keys are exactly those of ``state``."""
    return tuple(arch for arch, keys in FCN_KEYS.items() if set(keys) == set(state))


def _as_convolutions(arrays: dict) -> dict:
    """Reshape fully connected fc6/fc7 weights into convolutions, then check every shape."""
    c5 = arrays["conv5_3.weight"].shape[0] if arrays["conv5_3.weight"].ndim == 4 else None
    fc6, fc7 = arrays["fc6.weight"], arrays["fc7.weight"]
    if fc6.ndim == 2 and c5:
        kernel = math.isqrt(fc6.shape[1] // c5)
        if kernel * kernel * c5 != fc6.shape[1]:
            raise ConversionError(
                f"fc6 weight {fc6.shape} has {fc6.shape[1]} inputs, not conv5_3's {c5} "
                "channels times a square kernel (torchvision's VGG16 has 512 * 7 * 7)")
        # torch flattens pool5 (C, K, K) in C order: index c*K*K + h*K + w.
        arrays["fc6.weight"] = fc6.reshape(fc6.shape[0], c5, kernel, kernel)  # (F6, C5, K, K)
    if fc7.ndim == 2:
        arrays["fc7.weight"] = fc7.reshape(*fc7.shape, 1, 1)   # (F7, F6) -> (F7, F6, 1, 1)
    _check_trunk(arrays)
    return arrays


def _check_trunk(arrays: dict) -> None:
    """Every VGG16 weight 4-D, 3x3 in the convs, channels chained, biases matching."""
    problems, previous = [], None
    for layer in (*VGG16_CONVS, "fc6", "fc7"):
        w, b = arrays[f"{layer}.weight"], arrays[f"{layer}.bias"]
        if w.ndim != 4:
            problems.append(f"{layer}.weight {w.shape} is not a 4-D convolution weight")
            previous = None
            continue
        if layer.startswith("conv") and w.shape[2:] != (3, 3):
            problems.append(f"{layer}.weight {w.shape} is not a 3x3 kernel")
        if previous is not None and w.shape[1] != previous:
            problems.append(f"{layer}.weight {w.shape} takes {w.shape[1]} channels but the "
                            f"layer before gives {previous}")
        if b.shape != (w.shape[0],):
            problems.append(f"{layer}.bias {b.shape} does not match {layer}.weight {w.shape}")
        previous = w.shape[0]
    problems += [f"{k} is {a.dtype}, not a float array" for k, a in arrays.items()
                 if a.dtype.kind != "f"]
    if problems:
        raise ConversionError("inconsistent VGG16 weights: " + "; ".join(problems))


def _require_keys(state, required: set, known: set, what: str) -> None:
    problems = _key_problems(state, required, known)
    if problems:
        raise ConversionError(f"not a {what} state dict: " + "; ".join(problems))


def _key_problems(state, required: set, known: set) -> list:
    missing = sorted(required - set(state))
    unexpected = [k for k in state if k not in known]
    return ([f"missing {_few(missing)}"] if missing else []) + (
        [f"unexpected {_few(unexpected)}"] if unexpected else [])


def _metadata(arrays: dict) -> dict:
    return {"width": arrays["conv1_1.weight"].shape[0] / 64}


def _few(keys, n: int = 5) -> str:
    keys = list(keys)
    more = f" (and {len(keys) - n} more)" if len(keys) > n else ""
    return (", ".join(keys[:n]) + more) if keys else "no keys"


# --- files --------------------------------------------------------------------------------

def import_torch():
    """Import torch, or raise :class:`TorchUnavailableError` saying how to install it."""
    try:
        import torch
    except ImportError as err:
        raise TorchUnavailableError(f"reading PyTorch .pth files needs torch, which cannot be "
                                    f"imported ({err}); install it: {TORCH_INSTALL_HINT}"
                                    ) from None
    return torch


def read_torch_state(src) -> dict:
    """Load a state dict saved with ``torch.save`` as NumPy arrays (``weights_only=True``).

    A checkpoint that wraps it as ``{"model_state_dict": ...}`` or ``{"state_dict": ...}``
    is unwrapped, and a ``module.`` prefix (``nn.DataParallel``) is removed.
    """
    torch = import_torch()
    src = os.fspath(src)
    if not os.path.isfile(src):
        raise ConversionError(f"{src!r} does not exist or is not a file")
    try:
        loaded = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:       # torch raises UnpicklingError, RuntimeError, EOFError...
        raise ConversionError(_unreadable(src, err)) from None
    state = _unwrap(loaded, src)
    return {key: _to_numpy(torch, key, value, src) for key, value in state.items()}


def convert_file(src, dst, arch=None) -> Conversion:
    """Convert the PyTorch file ``src`` into the minifcn .npz ``dst`` (written atomically);
    ``arch`` as in :func:`convert_state`. A file whose arch is None records none."""
    conversion = convert_state(read_torch_state(src), arch)
    recorded = {} if conversion.arch is None else {"arch": conversion.arch}
    write_weights(dst, conversion.arrays, **recorded, **conversion.metadata,
                  source=os.path.basename(os.fspath(src)))
    return conversion


def _unreadable(src, err) -> str:
    if isinstance(err, pickle.UnpicklingError):
        return (f"{src!r} cannot be loaded with torch.load(weights_only=True): it is not a "
                "torch.save file, or it holds objects besides tensors (a whole pickled "
                "model, for instance: save model.state_dict() instead)")
    first = (str(err).strip().splitlines() or [""])[0][:200]    # torch's messages run long
    return (f"{src!r} is not a readable PyTorch file: it may be damaged, truncated, or not "
            f"written by torch.save (torch.load raised {type(err).__name__}: {first})")


def _unwrap(loaded, src) -> dict:
    if not isinstance(loaded, dict):
        raise ConversionError(f"{src!r} holds a {type(loaded).__name__}, not a state dict")
    for wrapper in ("model_state_dict", "state_dict"):
        if isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    odd = [k for k in loaded if not isinstance(k, str)]
    if odd:
        raise ConversionError(f"{src!r} is not a state dict: its keys must be parameter "
                              f"names, but {odd[0]!r} is a {type(odd[0]).__name__}")
    keys = list(loaded)
    if keys and all(k.startswith("module.") for k in keys):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return loaded


def _to_numpy(torch, key, value, src):
    """A dense, real tensor as a NumPy array; any other kind is a ConversionError saying
    what it is and how to save it instead."""
    if not isinstance(value, torch.Tensor):
        raise ConversionError(f"{src!r}: {key!r} is a {type(value).__name__}, not a tensor")
    problem = (f"a meta tensor, which holds no data (saved from a model on the 'meta' "
               f"device)" if value.is_meta
               else f"a {value.layout} tensor; save it dense (tensor.to_dense())"
               if value.layout != torch.strided
               else f"a quantized tensor ({value.dtype}); save it dequantized "
                    f"(tensor.dequantize())" if value.is_quantized else None)
    if problem:
        raise ConversionError(f"{src!r}: {key!r} is {problem}")
    value = value.detach().cpu()
    if value.dtype == torch.bfloat16:         # NumPy has no bfloat16
        value = value.float()
    try:
        return value.numpy()
    except TypeError:                         # float8 and other types NumPy has not
        raise ConversionError(f"{src!r}: {key!r} has dtype {value.dtype}, which NumPy cannot "
                              f"hold; save it as float32 (tensor.float())") from None
