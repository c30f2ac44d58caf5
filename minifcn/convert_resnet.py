r"""torchvision's FCN-ResNet50 and DeepLabV3-ResNet50 state dicts, checked for minifcn.

minifcn names these networks' modules as torchvision does (``models/segmentation.py``), so
their weights need no renaming: converting is recognising the layout, reading the options
from the arrays and checking every key and shape against the model those options build.

- **The layout** is told by the keys: ``backbone.conv1.weight`` (the ResNet stem) with
  ``classifier.0.convs.0.0.weight`` (ASPP's first branch) is DeepLabV3, with
  ``classifier.0.weight`` (FCNHead's 3x3 convolution) FCN.
- **The options**: ``n_class`` is the number of filters of the score layer
  ``classifier.4`` (the last layer of both heads), ``width`` the stem's filters over 64,
  ``aux`` whether ``aux_classifier.*`` keys are there (torchvision saves the auxiliary head
  with its pretrained weights; a model built with ``aux_loss=False`` has none).
- **The arrays**: every key of the model those options build, no other, each of its shape;
  float arrays, but for BatchNorm's ``num_batches_tracked``, an int64 scalar.

The weights were trained on RGB images scaled to [0, 1] and normalised by ImageNet's mean
and std, which the file records as ``preprocess: "imagenet"`` so that ``predict`` does the
same. Pure: dicts of NumPy arrays in, lists of problems out. (It imports the models'
module, not the ``models`` package, whose ``pretrained`` imports :mod:`minifcn.convert`.)
"""
from __future__ import annotations

import numpy as np

from .io import is_batch_counter
from .models.segmentation import RESNET_MODELS

STEM = "backbone.conv1.weight"
SCORE = "classifier.4.weight"             # the 1x1 score convolution of both heads
AUX_PREFIX = "aux_classifier."
HEAD_MARKERS = (("classifier.0.convs.0.0.weight", "deeplabv3_resnet50"),
                ("classifier.0.weight", "fcn_resnet50"))
LAYOUT_WORDS = {"fcn_resnet50": "torchvision FCN-ResNet50",
                "deeplabv3_resnet50": "torchvision DeepLabV3-ResNet50"}
PREPROCESS = "imagenet"                   # RGB, /255, ImageNet mean and std


def is_resnet_layout(state) -> bool:
    """Whether ``state`` has the ResNet backbone's keys (``backbone.conv1.weight``)."""
    return STEM in state


def resnet_arch(state):
    """``"fcn_resnet50"`` or ``"deeplabv3_resnet50"`` by the head's keys, else None."""
    for marker, arch in HEAD_MARKERS:
        if marker in state:
            return arch
    return None


def resnet_metadata(state) -> dict:
    """``n_class``, ``width``, ``aux`` and ``preprocess`` as the arrays tell them (the
    caller has checked that :data:`STEM` is there; a missing score layer gives n_class
    None, which :func:`resnet_problems` reports)."""
    score = state.get(SCORE)
    stem = np.shape(state[STEM])
    return {"n_class": int(np.shape(score)[0]) if score is not None and np.ndim(score) else None,
            "width": stem[0] / 64 if len(stem) else None,
            "aux": any(k.startswith(AUX_PREFIX) for k in state),
            "preprocess": PREPROCESS}


def resnet_problems(state, arch, metadata) -> list:
    """What keeps ``state`` from loading strictly into ``arch`` built from ``metadata``:
    missing and unexpected keys, wrong shapes, arrays of the wrong dtype (empty: none)."""
    if metadata["n_class"] is None:
        return [f"no score layer {SCORE} (found {_few(state)})"]
    try:
        model = RESNET_MODELS[arch](n_class=metadata["n_class"], aux=metadata["aux"],
                                    width=metadata["width"], init="zeros")
    except (TypeError, ValueError) as err:
        return [f"its {STEM} {np.shape(state[STEM])} gives width {metadata['width']:g}, which "
                f"{arch} cannot be built with ({err})"]
    return state_problems(state, model)


def state_problems(state, model) -> list:
    """What keeps ``state`` from loading strictly into ``model``: missing and unexpected
    keys, wrong shapes, arrays of the wrong dtype (empty: none)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(np.shape(state[k]))}, expected {expected[k]}" for k in expected
             if k in state and tuple(np.shape(state[k])) != expected[k]]
    dtypes = [f"{k} is {np.asarray(a).dtype}" for k, a in state.items()
              if k in expected and not _dtype_fits(k, np.asarray(a))]
    return ([f"missing {_few(missing)}"] if missing else []) \
        + ([f"unexpected {_few(unexpected)}"] if unexpected else []) \
        + ([f"wrong shape: {_few(wrong, 3)}"] if wrong else []) \
        + ([f"wrong dtype (float arrays; num_batches_tracked int64): {_few(dtypes, 3)}"]
           if dtypes else [])


def _dtype_fits(name, a) -> bool:
    if name.endswith(".num_batches_tracked"):
        return is_batch_counter(name, a)
    return a.dtype.kind == "f"


def _few(items, n: int = 5) -> str:
    items = list(items)
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return (", ".join(items[:n]) + more) if items else "no keys"


__all__ = ["RESNET_MODELS", "is_resnet_layout", "resnet_arch", "resnet_metadata",
           "resnet_problems", "state_problems", "LAYOUT_WORDS"]
