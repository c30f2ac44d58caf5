"""minifcn: fully convolutional networks for semantic segmentation in NumPy/CuPy.

Every layer is an explicit kernel with a hand-written backward pass (``minifcn.ops``),
wrapped in thin stateful modules (``minifcn.nn``) and checked against finite differences
(``minifcn.gradcheck``). ``minifcn.predict(model, image)`` segments one image (see
``minifcn.inference``).
"""
from ._version import __version__  # noqa: E402

from . import backend, gradcheck, memory, nn, ops  # noqa: E402
from .memory import (WorkspaceLimitError, get_workspace_limit,  # noqa: E402
                     set_workspace_limit)

__all__ = ["backend", "gradcheck", "nn", "ops", "predict", "memory",
           "set_workspace_limit", "get_workspace_limit", "WorkspaceLimitError", "__version__"]


def __getattr__(name):
    """``minifcn.predict`` is imported on first use, so ``import minifcn`` stays light
    (no Pillow, no data modules)."""
    if name == "predict":
        from .inference import predict
        return predict
    raise AttributeError(f"module 'minifcn' has no attribute {name!r}")
