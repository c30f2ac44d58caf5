r"""2-D convolution and transposed convolution: three GEMMs around one im2col.

With ``X = im2col(x)`` (C*KH*KW, N*OH*OW) and the weight as a matrix ``W`` (F, C*KH*KW),
a convolution is ``Y = W X + b``. Its gradients are two more products:

====================  ============================  =====================================
forward               ``Y = W X``                   (F, CKK) @ (CKK, NL)
weight gradient       ``dW = dY X^T``               (F, NL) @ (NL, CKK)
input gradient        ``dx = col2im(W^T dY)``       (CKK, F) @ (F, NL), then fold
====================  ============================  =====================================

A transposed convolution *is* the adjoint of a convolution, so it needs no code of its own:
its forward is conv2d's input gradient, its input gradient is conv2d's forward, and its
weight gradient is conv2d's with x and dy in swapped roles.

Groups need no argument: PyTorch's weight layout ``(F, C/G, KH, KW)`` says how many there
are, ``G = C / weight.shape[1]``. The rows of ``X`` are ordered by channel, so group g's
rows are one contiguous block, and a grouped convolution is the same three products with a
leading group axis, ``(G, F/G, CKK/G) @ (G, CKK/G, NL)``: G independent convolutions, each
of F/G filters over C/G channels. With ``G = 1`` it is the ordinary convolution.
"""
from ...backend import get_array_module
from .im2col import col2im, im2col, output_size


def conv2d_forward(x, weight, bias, stride, padding, dilation):
    r"""y = conv2d(x, W) + b, one GEMM per group over the whole batch.

    x (N, C, H, W), weight (F, C/G, KH, KW), bias (F,) or None -> y (N, F, OH, OW):

    .. math:: y[n, f, p, q] = b[f] + \sum_{c,i,j} W[f, c, i, j]\,
              x_{pad}[n, g C/G + c, pS_H + iD_H, qS_W + jD_W], \quad g = \lfloor f G / F \rfloor
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    G = C // Cg                                                   # groups
    OH = output_size(H, KH, stride[0], padding[0], dilation[0])
    OW = output_size(W, KW, stride[1], padding[1], dilation[1])
    col = im2col(x, (KH, KW), stride, padding, dilation)          # (C*KH*KW, N*OH*OW)
    col = col.reshape(G, Cg * KH * KW, N * OH * OW)               # (G, CKK/G, NL)
    y = weight.reshape(G, F // G, Cg * KH * KW) @ col             # (G, F/G, NL)
    y = y.reshape(F, N, OH, OW).transpose(1, 0, 2, 3)             # (N, F, OH, OW)
    y = xp.ascontiguousarray(y)
    if bias is not None:
        y += bias.reshape(1, F, 1, 1)                             # (1, F, 1, 1) broadcast
    return y


def conv2d_input_grad(dy, weight, x_shape, stride, padding, dilation):
    r"""dx = col2im(W^T dY): the gradient of conv2d with respect to its input.

    dy (N, F, OH, OW), weight (F, C/G, KH, KW) -> dx of shape x_shape (N, C, H, W).
    Since ``Y = W X`` (per group), :math:`dX = W^T dY`, and col2im (im2col's adjoint) folds
    dX onto x.
    """
    N, F, OH, OW = dy.shape
    _, Cg, KH, KW = weight.shape
    G = x_shape[1] // Cg                                          # groups
    dY = dy.transpose(1, 0, 2, 3).reshape(G, F // G, N * OH * OW)     # (G, F/G, NL)
    w_t = weight.reshape(G, F // G, Cg * KH * KW).transpose(0, 2, 1)  # (G, CKK/G, F/G)
    dcol = (w_t @ dY).reshape(G * Cg * KH * KW, N * OH * OW)      # (C*KH*KW, N*OH*OW)
    return col2im(dcol, x_shape, (KH, KW), stride, padding, dilation)   # (N, C, H, W)


def conv2d_weight_grad(dy, x, weight_shape, stride, padding, dilation):
    r"""dW = dY im2col(x)^T: the gradient of conv2d with respect to its weight.

    dy (N, F, OH, OW), x (N, C, H, W) -> dweight of weight_shape (F, C/G, KH, KW):

    .. math:: dW[f, c, i, j] = \sum_{n,p,q} dy[n, f, p, q]\,
              x_{pad}[n, g C/G + c, pS_H + iD_H, qS_W + jD_W]
    """
    N, F, OH, OW = dy.shape
    _, Cg, KH, KW = weight_shape
    G = x.shape[1] // Cg                                          # groups
    col = im2col(x, (KH, KW), stride, padding, dilation)          # (C*KH*KW, N*OH*OW)
    col = col.reshape(G, Cg * KH * KW, N * OH * OW)               # (G, CKK/G, NL)
    dY = dy.transpose(1, 0, 2, 3).reshape(G, F // G, N * OH * OW)     # (G, F/G, NL)
    dweight = dY @ col.transpose(0, 2, 1)                         # (G, F/G, CKK/G)
    return dweight.reshape(F, Cg, KH, KW)                         # (F, C/G, KH, KW)


def conv2d_backward(dy, x, weight, has_bias, stride, padding, dilation):
    r"""Gradients of :func:`conv2d_forward`: (dx, dweight, dbias).

    .. math:: dx = \mathrm{col2im}(W^T dY), \quad dW = dY\,X^T, \quad
              db[f] = \sum_{n,p,q} dy[n, f, p, q]

    dbias is None when the forward had no bias.
    """
    dx = conv2d_input_grad(dy, weight, x.shape, stride, padding, dilation)
    dweight = conv2d_weight_grad(dy, x, weight.shape, stride, padding, dilation)
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None          # (F,)
    return dx, dweight, dbias


def conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding, dilation):
    r"""y = conv_transpose2d(x, W) + b: conv2d's input gradient, with x in the role of dy.

    x (N, C_in, H, W), weight (C_in, C_out, KH, KW), bias (C_out,) or None
    -> y (N, C_out, OH, OW), ``OH = (H - 1)S - 2P + D(KH - 1) + output_padding + 1``:

    .. math:: y[n, o, hS - P + iD, wS - P + jD] \mathrel{+}= x[n, c, h, w]\, W[c, o, i, j]

    Read as conv2d, W is an (F = C_in, C = C_out) weight that maps y's size to x's.
    """
    N, C_in, H, W = x.shape
    C_out, KH, KW = weight.shape[1:]
    OH = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (KH - 1) + output_padding[0] + 1
    OW = (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (KW - 1) + output_padding[1] + 1
    x_full = pad_to_conv_output(x, stride, output_padding)       # (N, C_in, H', W')
    y = conv2d_input_grad(x_full, weight, (N, C_out, OH, OW), stride, padding,
                          dilation)                               # (N, C_out, OH, OW)
    if bias is not None:
        y += bias.reshape(1, C_out, 1, 1)                         # (1, C_out, 1, 1) broadcast
    return y


def conv_transpose2d_backward(dy, x, weight, has_bias, stride, padding, output_padding,
                              dilation):
    r"""Gradients of :func:`conv_transpose2d_forward`: (dx, dweight, dbias).

    The forward is :math:`y = C^T x` with C the convolution by W, so

    .. math:: dx = \mathrm{conv2d}(dy, W), \quad
              dW[c, o, i, j] = \sum_{n,h,w} x[n, c, h, w]\, dy_{pad}[n, o, hS + iD, wS + jD],
              \quad db[o] = \sum_{n,p,q} dy[n, o, p, q]

    (dW is conv2d's weight gradient with x and dy in swapped roles).
    """
    xp = get_array_module(dy)
    H, W = x.shape[2:]
    dx = conv2d_forward(dy, weight, None, stride, padding, dilation)   # (N, C_in, H', W')
    dx = xp.ascontiguousarray(dx[:, :, :H, :W])                   # (N, C_in, H, W)
    x_full = pad_to_conv_output(x, stride, output_padding)       # (N, C_in, H', W')
    dweight = conv2d_weight_grad(x_full, dy, weight.shape, stride, padding, dilation)
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None          # (C_out,)
    return dx, dweight, dbias


def pad_to_conv_output(x, stride, output_padding):
    """x with zero rows/columns at the bottom/right, to the size conv2d maps y's size to.

    That size is ``H' = H + output_padding // S``: it is H itself unless output_padding >= S
    (allowed when output_padding < D), when y has rows no input pixel reaches.
    """
    xp = get_array_module(x)
    extra_h, extra_w = output_padding[0] // stride[0], output_padding[1] // stride[1]
    return xp.pad(x, ((0, 0), (0, 0), (0, extra_h), (0, extra_w)))    # (N, C, H', W')
