"""Where the time of minifcn's conv2d goes, stage by stage, on the CPU.

    python benchmarks/profile_conv.py                  # conv1_2 at 224x224, float32
    python benchmarks/profile_conv.py --layer fc6 --repeat 20
    python benchmarks/profile_conv.py --what-if         # and alternatives a tuning pass could take

Each stage of ``conv2d_forward`` / ``conv2d_backward`` (minifcn/ops/conv.py) is replayed on its
own with the same calls and timed as the median of ``--repeat`` runs (more for stages under
5 ms), beside the whole op, so the stages can be checked to add up. im2col is split into its
zero padding (``np.pad``) and the window copies (``im2col`` of the already padded input,
padding 0); col2im into the scatter-add onto a zeroed padded image (``col2im`` to the padded
shape, padding 0) and the crop copy. Stages are timed apart, so caches and fresh-page faults
differ a little from the whole op.
"""
from __future__ import annotations

import sys

import numpy as np

from _common import parse_profile, print_stages  # (script directory)
from bench_conv import LAYERS, make_inputs
from minifcn.ops import col2im, conv2d_backward, conv2d_forward, im2col


def stages(layer, x, w, b, dy):
    """(name, callable, flops or 0) for every stage, forward then backward."""
    p, k = layer.padding, layer.kernel
    F, (H, W) = w.shape[0], x.shape[2:]
    w2 = w.reshape(F, -1)                                            # (F, CKK)
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))              # (1, C, H+2P, W+2P)
    col = im2col(x, k, padding=p)                                    # (CKK, OH*OW)
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(F, -1)                 # (F, OH*OW), a view
    dcol = w2.T @ dy_mat                                             # (CKK, OH*OW)
    dx_pad = col2im(dcol, x_pad.shape, k)                            # (1, C, H+2P, W+2P)
    gemm = 2 * w2.shape[0] * w2.shape[1] * col.shape[1]
    y, cache = conv2d_forward(x, w, b, padding=p)
    return [
        ("fwd  im2col: np.pad", lambda: np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))), 0),
        ("fwd  im2col: window copies", lambda: im2col(x_pad, k), 0),
        ("fwd  GEMM W @ col", lambda: w2 @ col, gemm),
        ("fwd  bias add", lambda: y.__iadd__(b.reshape(1, -1, 1, 1)), 0),
        ("fwd  = conv2d_forward", lambda: conv2d_forward(x, w, b, padding=p), gemm),
        ("bwd  GEMM W.T @ dy -> dcol", lambda: w2.T @ dy_mat, gemm),
        ("bwd  col2im: zeros + adds", lambda: col2im(dcol, x_pad.shape, k), 0),
        ("bwd  col2im: crop copy",
         lambda: np.ascontiguousarray(dx_pad[:, :, p:p + H, p:p + W]), 0),
        ("bwd  im2col again", lambda: im2col(x, k, padding=p), 0),
        ("bwd  GEMM dy @ col.T -> dW", lambda: dy_mat @ col.T, gemm),
        ("bwd  bias sum", lambda: dy.sum(axis=(0, 2, 3)), 0),
        ("bwd  = conv2d_backward", lambda: conv2d_backward(dy, cache), 2 * gemm),
    ]


def what_ifs(layer, x, w, b, dy):
    """Alternatives a tuning pass could take (not what minifcn does), timed the same way."""
    p, k = layer.padding, layer.kernel
    F, C = w.shape[:2]
    w2 = w.reshape(F, -1)                                            # (F, CKK)
    col = im2col(x, k, padding=p)                                    # (CKK, OH*OW)
    dy_mat = dy.reshape(F, -1)                                       # (F, OH*OW), N == 1
    dcol = np.empty_like(col)                                        # a reused workspace
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))              # (1, C, H+2P, W+2P)
    oh, ow = layer.out, layer.out
    col6 = np.empty((C, k, k, oh, ow), x.dtype)                      # col, unflattened, N == 1

    def im2col_reused():  # the copies of _im2col_cpu (stride 1), into memory already mapped
        for i in range(k):
            for j in range(k):
                col6[:, i, j] = x_pad[0, :, i:i + oh, j:j + ow]      # (C, OH, OW)

    gemm = 2 * F * col.shape[0] * col.shape[1]
    rows = [
        ("if   fresh col-sized array, filled", lambda: np.empty_like(col).fill(0), 0),
        ("if   im2col copies into reused col", im2col_reused, 0),
        ("if   W.T @ dy into reused dcol", lambda: np.matmul(w2.T, dy_mat, out=dcol), gemm),
        ("if   dW as (col @ dy.T).T", lambda: (col @ dy_mat.T).T, gemm),
    ]
    if p <= k - 1:  # stride 1: dx = dy (padded K-1-P) correlated with W flipped, C <-> F
        w_flip = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        w_flip = w_flip.reshape(C, -1)                               # (C, F*KH*KW)
        col_dy = im2col(dy, k, padding=k - 1 - p)                    # (F*KH*KW, H*W)
        rows += [("if   dx as conv: im2col(dy)", lambda: im2col(dy, k, padding=k - 1 - p), 0),
                 ("if   dx as conv: GEMM", lambda: w_flip @ col_dy, gemm)]
    return rows


def main(argv=None) -> int:
    args = parse_profile("Stage-by-stage CPU time of minifcn's conv2d forward and backward "
                         "on one VGG16 layer.", LAYERS, "conv1_2", argv, " (stride 1 only)")
    layer = LAYERS[args.layer]
    x, w, b, dy = make_inputs(layer, np.dtype(args.dtype), np.random.default_rng(20261121))
    print(f"# {layer.name} {layer.shapes}, batch 1, {args.dtype}; "
          f"median of {args.repeat}+ calls (as many as fill 50 ms); im2col buffer "
          f"{layer.C * layer.kernel ** 2 * layer.out ** 2 * x.itemsize / 2**20:.0f} MiB")
    rows = stages(layer, x, w, b, dy) + (what_ifs(layer, x, w, b, dy) if args.what_if else [])
    print_stages(rows, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
