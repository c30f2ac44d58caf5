"""The work an op does: FLOPs where they are defined, and bytes moved (a simple model)."""
from __future__ import annotations

def conv_flops(x_shape, w_shape, out_hw) -> int:
    """Floating-point operations of a convolution's forward, counting a multiply-add as two:
    ``2 * N * F * OH * OW * C * KH * KW`` (bias and padding not counted).

    Parameters
    ----------
    x_shape : (N, C, H, W)
    w_shape : (F, C, KH, KW)
    out_hw : (OH, OW)
    """
    N, C = int(x_shape[0]), int(x_shape[1])
    F, CW, KH, KW = (int(s) for s in w_shape)
    if CW != C:
        raise ValueError(f"w_shape {tuple(w_shape)} expects {CW} input channels but x_shape "
                         f"{tuple(x_shape)} has {C}")
    OH, OW = (int(s) for s in out_hw)
    return 2 * N * F * OH * OW * C * KH * KW




def transposed_flops(x_shape, w_shape, out_hw) -> int:
    """FLOPs of a transposed convolution's forward: those of its adjoint, the convolution
    from its output ``(N, C_out, OH, OW)`` back to ``x_shape``:
    ``2 * N * C_in * H * W * C_out * KH * KW``.

    Parameters
    ----------
    x_shape : (N, C_in, H, W)
    w_shape : (C_in, C_out, KH, KW)
    out_hw : (OH, OW)
    """
    N, C_out = int(x_shape[0]), int(w_shape[1])
    return conv_flops((N, C_out) + tuple(out_hw), w_shape, tuple(x_shape[2:]))


def nbytes(*arrays) -> int:
    """Bytes of the arrays (None ones count 0): what reading or writing them moves once."""
    return sum(int(a.nbytes) for a in arrays if a is not None)
