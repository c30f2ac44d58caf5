r"""Channel concatenation and its backward, a split: how skips join a decoder (U-Net) and
how ASPP's branches join before their projection (DeepLab).

.. math:: y = [x_0; x_1; \dots] \text{ along C}, \qquad dx_k = dy[:, c_k : c_k + C_k]
"""
import numpy as np

from ...backend import get_array_module


def concat_forward(arrays):
    """(N, C_k, H, W) for each k -> (N, sum C_k, H, W), in the given order."""
    xp = get_array_module(arrays[0])
    return xp.concatenate(arrays, axis=1)                         # (N, sum C_k, H, W)


def concat_backward(dy, channels):
    """dy (N, sum C_k, H, W) -> one (N, C_k, H, W) gradient per input, each a fresh array."""
    xp = get_array_module(dy)
    starts = np.cumsum((0,) + tuple(channels))                    # c_k of each input
    return tuple(xp.ascontiguousarray(dy[:, starts[k]:starts[k + 1]])   # (N, C_k, H, W)
                 for k in range(len(channels)))
