r"""The training loss of any of the networks: the labels it is compared with, and the
auxiliary scores.

**Labels.** A network whose output is smaller than its input (U-Net's valid convolutions:
the input's centre) is compared with the labels of the pixels it scores: the labels are
cropped by the offset the model itself reports (``model.output_offset(H, W)``), to the
output's size. Where the output has the input's size, the labels are used as they are.

**Auxiliary scores.** A model that keeps auxiliary scores in ``aux_output`` (torchvision's
FCN-ResNet50 and DeepLabV3-ResNet50 with ``aux=True``) is trained on

.. math:: L = \mathrm{CE}(y, t) + w_{aux}\,\mathrm{CE}(y_{aux}, t)

(torchvision's recipe: :math:`w_{aux} = 0.5`), both softmax cross-entropies with the same
ignored label and class weights; the gradient of each goes back through its own head,
``model.backward(dy, daux)``.
"""
from __future__ import annotations

import math

from .ops.loss import softmax_cross_entropy_backward, softmax_cross_entropy_forward

IGNORE_INDEX = 255
AUX_WEIGHT = 0.5        # torchvision's references/segmentation/train.py


def check_aux_weight(aux_weight) -> float:
    """``aux_weight`` as a float; ValueError unless it is a finite number of at least 0."""
    try:
        value = float(aux_weight)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(aux_weight, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"aux_weight must be a finite number of at least 0, got {aux_weight!r}")
    return value


def output_labels(model, labels, scores):
    """``labels (N, H, W)`` as the scores ``(N, C, OH, OW)`` see them: unchanged where
    ``OH, OW == H, W``, else cropped at ``model.output_offset(H, W)`` to ``OH x OW``."""
    height, width = labels.shape[-2:]
    out_h, out_w = scores.shape[-2:]
    if (out_h, out_w) == (height, width):
        return labels
    offset = getattr(model, "output_offset", None)
    if offset is None:
        raise ValueError(f"{type(model).__name__} gives {out_h}x{out_w} scores for "
                         f"{height}x{width} labels and reports no output_offset to crop them by")
    top, left = offset(height, width)
    if top < 0 or left < 0 or top + out_h > height or left + out_w > width:
        raise ValueError(f"{type(model).__name__}'s output offset ({top}, {left}) puts its "
                         f"{out_h}x{out_w} scores outside the {height}x{width} labels")
    return labels[..., top:top + out_h, left:left + out_w]     # (N, OH, OW)


def loss_and_gradients(model, scores, labels, class_weight=None, aux_weight=AUX_WEIGHT):
    """``(loss, dscores, daux)`` of the model's last forward (``scores`` its output): the
    0-d total loss and the gradient of each output (``daux`` None without aux scores)."""
    target = output_labels(model, labels, scores)               # (N, OH, OW)
    loss, cache = softmax_cross_entropy_forward(scores, target, weight=class_weight,
                                                ignore_index=IGNORE_INDEX)
    dscores, _, _ = softmax_cross_entropy_backward(1.0, cache)  # (N, C, OH, OW)
    aux = getattr(model, "aux_output", None)
    if aux is None:
        return loss, dscores, None
    aux_loss, aux_cache = softmax_cross_entropy_forward(aux, output_labels(model, labels, aux),
                                                        weight=class_weight,
                                                        ignore_index=IGNORE_INDEX)
    daux, _, _ = softmax_cross_entropy_backward(aux_weight, aux_cache)   # (N, C, OH, OW)
    return loss + aux_weight * aux_loss, dscores, daux
