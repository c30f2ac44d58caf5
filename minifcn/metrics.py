r"""Segmentation metrics from one confusion matrix: the four figures of the FCN paper.

A :class:`ConfusionMatrix` counts, over a whole evaluation set, how many labelled pixels of
true class :math:`i` were predicted as class :math:`j`. Every figure is then computed once,
from that one matrix, exactly as the reference's ``score.py`` does (fcn.berkeleyvision.org):
never as a mean of per-image figures, which would weight small images like large ones.

>>> import numpy as np
>>> cm = ConfusionMatrix(n_class=3)
>>> cm.update(pred=np.array([[0, 1, 1], [2, 2, 0]]), target=np.array([[0, 1, 2], [2, 2, 255]]))
>>> cm.matrix.tolist()
[[1, 0, 0], [0, 1, 0], [0, 1, 2]]
>>> round(cm.compute().mean_iou, 4)
0.7222
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .backend import array_module_of, asnumpy
from . import _validate as _checks


class SegmentationMetrics(NamedTuple):
    """What :meth:`ConfusionMatrix.compute` returns (floats in [0, 1]; arrays of length K)."""

    pixel_accuracy: float
    mean_accuracy: float
    mean_iou: float
    frequency_weighted_iou: float
    class_iou: np.ndarray       # (K,) float64, NaN for classes absent from target and prediction
    class_accuracy: np.ndarray  # (K,) float64, NaN for classes absent from the target


class ConfusionMatrix:
    r"""Confusion matrix accumulated over a set, and the FCN paper's metrics from it.

    Parameters
    ----------
    n_class : int
        Number of classes K; labels are 0 .. K-1.
    ignore_index : int or None, default 255
        Pixels whose *target* equals this value are skipped (PASCAL VOC's "void" border).
        ``None`` skips nothing.

    Attributes
    ----------
    matrix : ndarray (K, K), int64
        :math:`n_{ij}`: the number of labelled pixels of true class :math:`i` (row, target)
        predicted as class :math:`j` (column, prediction). Kept on the host.

    Notes
    -----
    With :math:`t_i = \sum_j n_{ij}` the pixels of class :math:`i` in the target,
    :math:`p_i = \sum_j n_{ji}` the pixels predicted as :math:`i`, and
    :math:`T = \sum_i t_i` all labelled pixels, :meth:`compute` returns

    .. math::

        \text{pixel accuracy} &= \frac{\sum_i n_{ii}}{T}, \\
        \text{mean accuracy} &= \frac{1}{|A|} \sum_{i \in A} \frac{n_{ii}}{t_i},
            \quad A = \{i : t_i > 0\}, \\
        \mathrm{IoU}_i &= \frac{n_{ii}}{t_i + p_i - n_{ii}}, \\
        \text{mean IoU} &= \frac{1}{|U|} \sum_{i \in U} \mathrm{IoU}_i,
            \quad U = \{i : t_i + p_i > 0\}, \\
        \text{frequency-weighted IoU} &= \sum_{i \in A} \frac{t_i}{T} \, \mathrm{IoU}_i.

    A class absent from both target and prediction has an undefined IoU (NaN in
    ``class_iou``) and is left out of the mean, as the reference's ``np.nanmean`` does; a
    class that only appears in predictions has IoU 0 and counts. The mean accuracy leaves
    out the classes absent from the target.
    """

    def __init__(self, n_class: int, ignore_index: int | None = 255):
        self.n_class = _checks.positive_int("n_class", n_class)
        if ignore_index is not None and not _is_int(ignore_index):
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.matrix = np.zeros((self.n_class, self.n_class), dtype=np.int64)

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(n_class={self.n_class}, ignore_index={self.ignore_index}, "
                f"pixels={int(self.matrix.sum())})")

    def reset(self) -> None:
        """Forget every counted pixel (start a new evaluation)."""
        self.matrix[...] = 0

    def update(self, pred, target) -> None:
        r"""Count the labelled pixels of one batch.

        Parameters
        ----------
        pred : int array (...), NumPy or CuPy
            Predicted labels, e.g. ``scores.argmax(axis=1)`` of shape (N, H, W), or (H, W).
        target : int array, same shape and device as ``pred``
            True labels; pixels equal to ``ignore_index`` are skipped.

        Raises
        ------
        ValueError
            On a shape or device mismatch, or a label outside [0, K) in ``target`` (other
            than ``ignore_index``) or in ``pred`` at a labelled pixel.

        Notes
        -----
        One ``bincount`` of :math:`K t + p` over the labelled pixels, on the arrays' device;
        only the :math:`K^2` counts travel to the host.
        """
        xp = array_module_of(pred=pred, target=target)
        _integer_array("pred", pred)
        _integer_array("target", target)
        if pred.shape != target.shape:
            raise ValueError(f"pred and target must have the same shape, got pred "
                             f"{tuple(pred.shape)} and target {tuple(target.shape)}")
        valid = (xp.ones(target.shape, dtype=bool) if self.ignore_index is None
                 else target != self.ignore_index)
        t = target[valid].astype(xp.int64)   # (M,) labelled pixels only
        p = pred[valid].astype(xp.int64)     # (M,)
        ignored = "" if self.ignore_index is None else f" or ignore_index {self.ignore_index}"
        self._check_range("target", t, ignored)
        self._check_range("pred", p, " at labelled pixels")
        k = self.n_class
        counts = xp.bincount(k * t + p, minlength=k * k)    # (K*K,)
        self.matrix += asnumpy(counts).astype(np.int64).reshape(k, k)   # (K, K)

    def _check_range(self, name: str, labels, where: str) -> None:
        bad = (labels < 0) | (labels >= self.n_class)
        if bool(bad.any()):
            first = int(labels[bad][0])
            raise ValueError(f"{name} labels must lie in [0, {self.n_class}){where}, "
                             f"got {first} at {int(bad.sum())} pixel(s)")

    def compute(self) -> SegmentationMetrics:
        """Pixel accuracy, mean accuracy, per-class and mean IoU, frequency-weighted IoU.

        Returns
        -------
        SegmentationMetrics
            The formulas are in the class docstring's Notes.

        Raises
        ------
        ValueError
            If no labelled pixel has been counted yet.
        """
        n = self.matrix.astype(np.float64)   # (K, K)
        total = n.sum()
        if total == 0:
            raise ValueError("no labelled pixels have been counted; call update(pred, target) "
                             "first (or every target pixel was ignore_index)")
        hits = np.diag(n)                    # (K,) n_ii
        in_target = n.sum(axis=1)            # (K,) t_i, rows
        in_pred = n.sum(axis=0)              # (K,) p_i, columns
        union = in_target + in_pred - hits
        class_accuracy = _divide(hits, in_target)
        class_iou = _divide(hits, union)
        present = in_target > 0
        return SegmentationMetrics(
            pixel_accuracy=float(hits.sum() / total),
            mean_accuracy=float(np.nanmean(class_accuracy)),
            mean_iou=float(np.nanmean(class_iou)),
            frequency_weighted_iou=float((in_target[present] * class_iou[present]).sum()
                                         / total),
            class_iou=class_iou,
            class_accuracy=class_accuracy,
        )


def format_metrics(result: SegmentationMetrics, class_names=None) -> str:
    """A plain-text table: one IoU row per class, then the four totals.

    Parameters
    ----------
    result : SegmentationMetrics
        From :meth:`ConfusionMatrix.compute`.
    class_names : sequence of str, optional
        One name per class; default ``class 0``, ``class 1``, ...

    Returns
    -------
    str
        Without a trailing newline. Classes absent from target and prediction read ``-``.
    """
    k = len(result.class_iou)
    names = [f"class {i}" for i in range(k)] if class_names is None else list(class_names)
    if len(names) != k:
        raise ValueError(f"class_names must have one name per class ({k}), got {len(names)}")
    totals = [("pixel accuracy", result.pixel_accuracy),
              ("mean accuracy", result.mean_accuracy),
              ("mean IoU", result.mean_iou),
              ("frequency-weighted IoU", result.frequency_weighted_iou)]
    width = max(len(name) for name in names + [t[0] for t in totals] + ["class"])
    rows = [f"{'class':<{width}}  {'IoU':>6}"]
    rows += [f"{name:<{width}}  {_cell(iou)}" for name, iou in zip(names, result.class_iou)]
    rows.append("-" * (width + 8))
    rows += [f"{name:<{width}}  {_cell(value)}" for name, value in totals]
    return "\n".join(rows)


def _cell(value) -> str:
    return f"{'-':>6}" if np.isnan(value) else f"{value:6.4f}"


def _divide(num, den):
    """``num / den`` with NaN where ``den`` is 0, without a warning."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _integer_array(name: str, a) -> None:
    if not (hasattr(a, "dtype") and hasattr(a, "shape")):
        raise TypeError(f"{name} must be a NumPy or CuPy integer array, got {type(a).__name__}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer label map, got dtype {a.dtype}"
                        + (" (take scores.argmax(axis=1) for predictions)"
                           if a.dtype.kind == "f" else ""))


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)
