"""Window arguments, validated once by the public ops: output sizes and geometry.

Each check names the argument, says what was expected and what came; it returns the
options normalised to ``(h, w)`` pairs, which is all the reference and fast paths see.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as _checks
from ..backend import array_module_of


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output length of a convolution along one axis (the formula of ``torch.nn.Conv2d``):
    ``floor((size + 2P - D(K-1) - 1) / S) + 1`` (0 or less where the kernel does not fit)."""
    size, kernel, stride, padding, dilation = _axis_args(size, kernel, stride, padding,
                                                         dilation)
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution along one axis (``torch.nn.ConvTranspose2d``):
    ``(size - 1)S - 2P + D(K-1) + output_padding + 1``."""
    size, kernel, stride, padding, dilation = _axis_args(size, kernel, stride, padding,
                                                         dilation)
    output_padding = _checks.int_at_least("output_padding", output_padding, 0)
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def max_pool2d_output_size(size: int, kernel: int, stride: int | None = None,
                           padding: int = 0, ceil_mode: bool = False) -> int:
    r"""Output length of a max pooling along one axis, by PyTorch's rule.

    ``floor((size + 2P - K) / S) + 1`` in floor mode; in ceil mode the division rounds up,
    so a partial window at the end gets an output too, *unless* that last window would
    start in the right padding (``(out - 1)S >= size + P``): then it is dropped.

    >>> [max_pool2d_output_size(s, 2, 2, ceil_mode=True) for s in (698, 349, 175, 88, 44)]
    [349, 175, 88, 44, 22]
    >>> max_pool2d_output_size(4, 2, 3, padding=1, ceil_mode=True)   # 3rd window would start at 6
    2
    """
    size = _checks.int_at_least("size", size, 0)
    kernel = _checks.int_at_least("kernel", kernel, 1)
    stride = kernel if stride is None else _checks.int_at_least("stride", stride, 1)
    padding = _checks.int_at_least("padding", padding, 0)
    span = size + 2 * padding - kernel
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _axis_args(size, kernel, stride, padding, dilation):
    """Validate one axis's size and window options (ints; size, padding >= 0; others >= 1)."""
    return (_checks.int_at_least("size", size, 0), _checks.int_at_least("kernel", kernel, 1),
            _checks.int_at_least("stride", stride, 1),
            _checks.int_at_least("padding", padding, 0),
            _checks.int_at_least("dilation", dilation, 1))


def conv_geometry(x_shape, kernel_size, stride, padding, dilation):
    """Validate window arguments; return ``(kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow)``."""
    kernel = _checks.pair("kernel_size", kernel_size, minimum=1)
    stride = _checks.pair("stride", stride, minimum=1)
    padding = _checks.pair("padding", padding, minimum=0)
    dilation = _checks.pair("dilation", dilation, minimum=1)
    out = tuple(conv_output_size(x_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a])
                for a in range(2))
    if min(out) < 1:
        span = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in range(2))
        padded = tuple(x_shape[2 + a] + 2 * padding[a] for a in range(2))
        raise ValueError(f"kernel (extent {span[0]}x{span[1]} with dilation) is larger than the "
                         f"padded input ({padded[0]}x{padded[1]} from input "
                         f"{x_shape[2]}x{x_shape[3]} and padding {padding})")
    return kernel, stride, padding, dilation, out


def transpose_geometry(x_shape, w_shape, stride, padding, output_padding, dilation):
    """Validate a transposed convolution's options; return them as pairs, with the output
    shape (N, C_out, OH, OW)."""
    stride = _checks.pair("stride", stride, minimum=1)
    padding = _checks.pair("padding", padding, minimum=0)
    output_padding = _checks.pair("output_padding", output_padding, minimum=0)
    dilation = _checks.pair("dilation", dilation, minimum=1)
    for a in range(2):
        if output_padding[a] >= max(stride[a], dilation[a]):
            raise ValueError(f"output_padding must be smaller than either stride or dilation, "
                             f"got output_padding={output_padding}, stride={stride}, "
                             f"dilation={dilation}")
    out = tuple(conv_transpose_output_size(x_shape[2 + a], w_shape[2 + a], stride[a],
                                           padding[a], output_padding[a], dilation[a])
                for a in range(2))
    if min(out) < 1:
        raise ValueError(f"padding {padding} removes more than the {x_shape[2]}x{x_shape[3]} "
                         f"input produces: the output size would be {out[0]}x{out[1]}, too "
                         f"small (at least 1x1)")
    return stride, padding, output_padding, dilation, (x_shape[0], w_shape[1]) + out


def check_conv(x, weight, bias, transposed=False, groups=1):
    """Validate conv arrays. Weight is (F, C/G, KH, KW), or (C, F, KH, KW) when transposed."""
    _checks.image_batch("x", x)
    layout = " (C_in, C_out, KH, KW)" if transposed else " (F, C, KH, KW)"
    _checks.float_array("weight", weight, ndim=4, what=layout)
    if min(weight.shape) < 1:
        raise ValueError(f"weight must have no empty dimension{layout}, got shape "
                         f"{tuple(weight.shape)}")
    if bias is not None:
        _checks.float_array("bias", bias, ndim=1)
    array_module_of(x=x, weight=weight, bias=bias)
    _checks.same_dtype("x", x, weight=weight, bias=bias)
    c_in, c_out = (weight.shape[0], weight.shape[1]) if transposed else (weight.shape[1],
                                                                         weight.shape[0])
    if groups != 1:
        check_groups(x.shape[1], weight.shape, groups)
        c_in *= groups
    if c_in != x.shape[1]:
        raise ValueError(f"weight expects {c_in} input channels (shape {tuple(weight.shape)}, "
                         f"layout{layout}) but x has {x.shape[1]} (shape {tuple(x.shape)})")
    if bias is not None and bias.shape[0] != c_out:
        raise ValueError(f"bias must have shape ({c_out},) to match weight "
                         f"{tuple(weight.shape)}, got {tuple(bias.shape)}")


def check_groups(channels, w_shape, groups) -> None:
    """A grouped convolution's shapes: C and F divisible by G, weight (F, C/G, KH, KW)."""
    F, Cg = w_shape[:2]
    if channels % groups or F % groups:
        raise ValueError(f"groups={groups} must divide both the input channels ({channels}) "
                         f"and the filters ({F}, weight shape {tuple(w_shape)})")
    if Cg * groups != channels:
        raise ValueError(f"with groups={groups} the weight must be (F, C/G, KH, KW) = "
                         f"({F}, {channels // groups}, KH, KW) for x's {channels} channels, "
                         f"got {tuple(w_shape)}")


def pool_options(kernel_size, stride, padding, ceil_mode):
    """Validate max pooling's options as PyTorch does; return ``kernel, stride, padding`` as
    pairs and ``ceil_mode`` as a bool. Shared with ``nn.MaxPool2d``."""
    kernel = _checks.pair("kernel_size", kernel_size, minimum=1)
    stride = kernel if stride is None else _checks.pair("stride", stride, minimum=1)
    padding = _checks.pair("padding", padding, minimum=0)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r} (the signature is "
                        "max_pool2d_forward(x, kernel_size, stride, padding, ceil_mode))")
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"padding must be at most half the kernel size "
                         f"({kernel[0] // 2}, {kernel[1] // 2}) for kernel_size {kernel}, "
                         f"got {padding}")
    return kernel, stride, padding, bool(ceil_mode)


def pool_geometry(x_shape, kernel_size, stride, padding, ceil_mode):
    """Validate as PyTorch does; return ``(kh, kw), (sh, sw), (ph, pw), (oh, ow)``."""
    kernel, stride, padding, ceil_mode = pool_options(kernel_size, stride, padding, ceil_mode)
    out = tuple(max_pool2d_output_size(x_shape[2 + a], kernel[a], stride[a], padding[a],
                                       ceil_mode) for a in range(2))
    if min(out) < 1:
        raise ValueError(f"output size {out[0]}x{out[1]} is too small: kernel_size {kernel} is "
                         f"larger than the padded input ({x_shape[2] + 2 * padding[0]}x"
                         f"{x_shape[3] + 2 * padding[1]} from input {x_shape[2]}x{x_shape[3]} "
                         f"and padding {padding})")
    return kernel, stride, padding, out


def image_shape(x_shape) -> tuple:
    """x_shape as a tuple of four ints >= 0, (N, C, H, W)."""
    values = tuple(x_shape) if isinstance(x_shape, (tuple, list)) else None
    if values is None or len(values) != 4 or not all(_checks.is_int(v) and v >= 0
                                                      for v in values):
        raise ValueError(f"x_shape must be (N, C, H, W), four ints >= 0, got {x_shape!r}")
    return tuple(int(v) for v in values)


def is_pointwise(kernel, stride, padding) -> bool:
    """A 1x1 convolution with stride 1 and no padding needs no im2col: col is a reshape of x."""
    return tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)
