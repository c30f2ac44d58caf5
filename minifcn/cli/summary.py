"""``minifcn summary --arch ARCH --size HxW``: a network's layers, shapes, FLOPs and
offsets."""
from __future__ import annotations

import numpy as np

from .common import UserError, height_width


def add(commands):
    from ..summary.skeleton import SUMMARY_ARCHS as ARCHITECTURES

    p = commands.add_parser(
        "summary", help="print a network's layers: shapes, parameters, FLOPs, workspace, "
                        "offsets",
        description="Print, layer by layer, the output shape, parameters, forward FLOPs, "
                    "im2col workspace, receptive field and coordinate map of a network on an "
                    "input size, with the crop offsets the coordinate maps give and the "
                    "totals. Computed from the layers' size formulas, without running the "
                    "network or allocating its weights.")
    p.add_argument("positional_arch", nargs="?", metavar="ARCH", choices=tuple(ARCHITECTURES),
                   help="the same as --arch")
    p.add_argument("--arch", choices=tuple(ARCHITECTURES), metavar="ARCH",
                   help=", ".join(ARCHITECTURES))
    p.add_argument("--size", "--input", dest="size", required=True, type=height_width,
                   metavar="HxW", help="image size, HxW or N for NxN, e.g. 500x500 (--input "
                                       "is an alias)")
    p.add_argument("--width", type=float, default=1.0, help="channel width in (0, 1] "
                   "(default 1: the paper's network; unet: its base of 64 channels scaled)")
    p.add_argument("--n-class", type=int, default=21, metavar="K", help="default 21")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="default 1")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="the dtype the workspace is counted in (default float32)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..summary import format_summary, summarize_arch

    arch = _arch(args)
    try:
        rows = summarize_arch(arch, args.size, batch=args.batch, width=args.width,
                              n_class=args.n_class, dtype=np.dtype(args.dtype))
    except ValueError as err:
        raise UserError(f"summary: {err}") from None
    (height, width), shape = args.size, rows[0].shape
    print(format_summary(rows, title=f"{arch}, width {args.width:g}, n_class "
                                     f"{args.n_class}, input {'x'.join(map(str, shape))} "
                                     f"({height}x{width}), {args.dtype}"))
    return 0


def _arch(args) -> str:
    """The architecture, from --arch or the positional ARCH (the same one where both are
    given); a UserError where neither is or they differ."""
    from ..summary.skeleton import SUMMARY_ARCHS as ARCHITECTURES

    given = {name for name in (args.arch, args.positional_arch) if name is not None}
    if not given:
        raise UserError(f"summary: --arch is required: one of {', '.join(ARCHITECTURES)}")
    if len(given) > 1:
        raise UserError(f"summary: --arch {args.arch} and ARCH {args.positional_arch} "
                        f"name different networks; give one")
    return given.pop()
