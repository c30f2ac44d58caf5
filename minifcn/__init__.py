"""minifcn: fully convolutional networks for semantic segmentation in NumPy/CuPy.

Every layer is an explicit kernel with a hand-written backward pass (``minifcn.ops``),
wrapped in thin stateful modules (``minifcn.nn``) and checked against finite differences
(``minifcn.gradcheck``).
"""
__version__ = "0.1.0"

from . import backend, gradcheck, nn, ops  # noqa: E402

__all__ = ["backend", "gradcheck", "nn", "ops", "__version__"]
