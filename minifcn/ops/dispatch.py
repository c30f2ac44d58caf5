r"""Which code computes an op: the readable reference, or a registered fast path.

Every public op validates its arguments once and then asks this module to run one *piece*
of it (``"conv2d.forward"``, ``"conv2d.input_grad"``, ...). A piece has a reference
implementation (``minifcn/ops/reference/``) and, in order of preference, fast paths
(``minifcn/ops/fast/``), each declaring in a :class:`Path` when it applies. The first fast
path that applies runs; if none does, the reference runs. Nothing else in minifcn decides.

>>> import minifcn.ops as ops
>>> ops.set_algorithm("reference")   # the readable code everywhere (MINIFCN_ALGORITHM=reference)
>>> ops.set_algorithm("auto")        # fast paths where they apply (the default)
>>> print(ops.explain("conv2d", x_shape=(1, 256, 64, 64), weight_shape=(256, 256, 3, 3),
...                   padding=1))    # doctest: +SKIP

``"im2col"`` is ``"auto"`` without Winograd (every convolution by im2col and GEMM), the
setting of ``set_conv_algorithm``, the older name.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, NamedTuple

import numpy as np

ALGORITHMS = ("auto", "im2col", "reference")
ENV_VARIABLE = "MINIFCN_ALGORITHM"
OLD_ENV_VARIABLE = "MINIFCN_CONV_ALGORITHM"      # read when MINIFCN_ALGORITHM is unset


class Call(NamedTuple):
    """The facts a rule looks at (no arrays): device, dtype, shapes and the op's options,
    as normalised by the public function (pairs for kernel, stride, padding, ...)."""
    device: str                  # "cpu" or "cuda"
    dtype: np.dtype
    x_shape: tuple               # the op's input; for conv pieces the convolution's x
    w_shape: tuple = ()          # a conv's weight
    kernel: tuple = ()           # (KH, KW)
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()
    out: tuple = ()              # the output's (OH, OW)
    output_padding: tuple = ()   # conv_transpose2d only
    groups: int = 1              # conv2d only: G of a grouped convolution


def device_kind(array) -> str:
    """"cpu" for a NumPy array, "cuda" for a CuPy one: what a rule needs of the device."""
    return "cpu" if isinstance(array, np.ndarray) else "cuda"


def conv_call(like, x_shape, w_shape, stride, padding, dilation, out,
              output_padding=(), groups=1) -> Call:
    """The call of a convolution (or a transposed one) of an ``x_shape`` input by a
    ``w_shape`` weight, on ``like``'s device and in its dtype; ``out`` is the (OH, OW)."""
    w_shape = tuple(w_shape)
    return Call(device_kind(like), like.dtype, tuple(x_shape), w_shape, w_shape[2:], stride,
                padding, dilation, tuple(out), output_padding, groups)


class Path(NamedTuple):
    """A fast implementation of one piece: it computes the reference's function, with the
    reference's signature, wherever ``applies(call)`` is true."""
    piece: str                   # e.g. "conv2d.forward"
    name: str                    # e.g. "winograd"
    rule: str                    # when it applies, in words (what explain prints)
    applies: Callable[[Call], bool]
    run: Callable
    float32_tolerance: float     # its largest relative difference from the reference, float32


_paths: dict[str, list[Path]] = {}
_references: dict[str, Callable] = {}


class _Choice:
    algorithm = "auto"
    environment_error = None     # an unknown MINIFCN_ALGORITHM, raised on first use


_settings = _Choice()


# --- The registry --------------------------------------------------------------------------

def reference(piece: str, run: Callable) -> None:
    """Register the reference implementation of ``piece``."""
    _references[piece] = run


def register(piece: str, name: str, rule: str, applies: Callable, run: Callable,
             float32_tolerance: float = 1e-5) -> Path:
    """Add a fast path for ``piece``, after those registered before it (which win)."""
    if piece not in _references:
        raise KeyError(f"no reference registered for {piece!r}")
    path = Path(piece, name, rule, applies, run, float32_tolerance)
    _paths.setdefault(piece, []).append(path)
    return path


def paths(piece: str | None = None) -> list[Path]:
    """The fast paths of ``piece`` in order of preference, or of every piece."""
    if piece is not None:
        return list(_paths.get(piece, []))
    return [p for piece_paths in _paths.values() for p in piece_paths]


def pieces() -> list[str]:
    return list(_references)


def reference_of(piece: str) -> Callable:
    return _references[piece]


# --- The choice ------------------------------------------------------------------------------

def choose(piece: str, call: Call) -> Path | None:
    """The fast path that computes this call, or None for the reference."""
    algorithm = get_algorithm()
    if algorithm == "reference":
        return None
    for path in _paths.get(piece, ()):
        if algorithm == "im2col" and path.name == "winograd":
            continue
        if path.applies(call):
            return path
    return None


def run(piece: str, call: Call, *args):
    """Compute ``piece`` for ``call`` by the chosen implementation."""
    path = choose(piece, call)
    return (path.run if path is not None else _references[piece])(*args)


# --- The setting ---------------------------------------------------------------------------

def set_algorithm(name: str) -> None:
    """``"auto"`` (the default): fast paths where they apply; ``"reference"``: the readable
    reference code of ``minifcn/ops/reference/`` for every op; ``"im2col"``: ``"auto"``
    without Winograd (float32 results then match PyTorch's to about 5e-7 relative)."""
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, "
                         f"got {name!r}")
    _settings.algorithm = name
    _settings.environment_error = None


def get_algorithm() -> str:
    """The algorithm set by :func:`set_algorithm` (or ``MINIFCN_ALGORITHM``)."""
    if _settings.environment_error is not None:
        raise _settings.environment_error
    return _settings.algorithm


@contextlib.contextmanager
def using(name: str):
    """``with minifcn.ops.using("reference"): ...``: an algorithm for one block."""
    previous = _settings.algorithm
    set_algorithm(name)
    try:
        yield
    finally:
        set_algorithm(previous)


def set_conv_algorithm(name: str) -> None:
    """The older name: ``"im2col"`` turns Winograd off, ``"auto"`` on (:func:`set_algorithm`)."""
    if name not in ("auto", "im2col"):
        raise ValueError(f"algorithm must be one of 'auto', 'im2col', got {name!r}")
    set_algorithm(name)


def get_conv_algorithm() -> str:
    """The older name of :func:`get_algorithm`."""
    return get_algorithm()


def _from_environment():
    for variable in (ENV_VARIABLE, OLD_ENV_VARIABLE):
        value = os.environ.get(variable, "").strip()
        if not value:
            continue
        if value in ALGORITHMS:
            _settings.algorithm = value
        else:                         # raised on first use, so that `import minifcn` works
            _settings.environment_error = ValueError(
                f"{variable} must be one of {', '.join(ALGORITHMS)}, got {value!r}")
        return


_from_environment()
