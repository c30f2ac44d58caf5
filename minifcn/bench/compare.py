"""What a benchmark compares with: torch on a device, and how far two results differ."""
from __future__ import annotations

import numpy

from ..backend import asnumpy

def relative_difference(got, want) -> float:
    """``max|got - want| / max|want|`` in float64, for NumPy or CuPy arrays (or numbers):
    how far a result is from a reference, measured against the reference's scale."""
    got = numpy.asarray(asnumpy(got), numpy.float64)
    want = numpy.asarray(asnumpy(want), numpy.float64)
    scale = numpy.abs(want).max(initial=0.0)
    return float(numpy.abs(got - want).max(initial=0.0) / (scale if scale > 0 else 1.0))


def import_torch(device: str = "cpu", skip: bool = False):
    """``(torch, None)`` to compare with on ``device`` (``"cpu"`` or ``"cuda"``), or
    ``(None, why)`` when it is left out, missing, or has no CUDA. For ``"cuda"`` TF32 is
    switched off, so that float32 is compared with float32: cuDNN convolutions default to
    TF32 on Ampere and later, CuPy's GEMMs do not (unless ``CUPY_TF32=1``)."""
    if skip:
        return None, "left out (--no-torch)"
    try:
        import torch
    except ImportError:
        return None, "not installed (pip install torch==2.13.0); torch columns skipped"
    if device == "cuda" and not torch.cuda.is_available():
        return None, f"{torch.__version__} has no usable CUDA; torch columns skipped"
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch, None




def torch_wait(torch, device: str):
    """What a timed torch call ends with: ``torch.cuda.synchronize`` on the GPU (the call is
    over when its kernels are), nothing on the CPU."""
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def difference(got, want, random: bool = False) -> float:
    """:func:`relative_difference` of a minifcn result (NumPy or CuPy) and a torch tensor
    (or array); for ops with a random mask (dropout), only where both kept a value."""
    got = numpy.asarray(asnumpy(got), numpy.float64)
    want = numpy.asarray(want.detach().cpu().numpy() if hasattr(want, "cpu") else want,
                         numpy.float64)
    if random:
        both = (got != 0) & (want != 0)
        got, want = got[both], want[both]
    return relative_difference(got, want)
