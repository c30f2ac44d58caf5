"""Time batch_norm2d at FCN-ResNet50's shapes: the reference, the fast path, and torch.

    python benchmarks/bench_batch_norm.py                  # every shape, both modes (~1 min)
    python benchmarks/bench_batch_norm.py --layers layer4 --repeat 20
    python benchmarks/bench_batch_norm.py --device cuda    # CuPy, beside torch CUDA

The shapes are those of the ResNet-50 backbone of torchvision's ``fcn_resnet50`` on one
520x520 image (output stride 8: layer3 and layer4 stay at 65x65): the stem's BatchNorm, and
the largest of each stage (the 4C-channel one after a bottleneck's last 1x1 conv). Each
shape is timed in eval mode (running statistics, as at inference) and training mode (batch
statistics, running estimates updated), forward and backward alone on one forward's cache,
each the median of ``--repeat`` calls after ``--warmup``. ``ref`` is ``reference/norm.py``
(``set_algorithm("reference")``), ``fast`` the path ``auto`` runs (``fast/batch_norm.py``),
torch ``torch.nn.functional.batch_norm`` and ``torch.autograd.grad`` in the same process.
"""
from __future__ import annotations

import argparse
import sys

from _common import (RATIO_LEGEND, REF_FAST_TORCH, add_options,  # (script directory)
                     begin, minifcn_pair, parse, ref_fast_torch_cells, torch_pair)
from minifcn.bench import table_row
from minifcn.ops import batch_norm2d_backward, batch_norm2d_forward

SHAPES = {"stem": (64, 260, 260), "layer1": (256, 130, 130), "layer2": (512, 65, 65),
          "layer3": (1024, 65, 65), "layer4": (2048, 65, 65)}
COLUMNS = (("bn", 6), ("mode", 5), ("shape", 14), *REF_FAST_TORCH)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser, SHAPES)
    return parse(parser, argv)


def minifcn_timings(timer, x, stats, weight, bias, dy, training, algorithm):
    """(forward, backward) Timings of minifcn's batch_norm2d under ``algorithm`` (each
    forward on fresh copies of the running statistics)."""
    def forward():
        return batch_norm2d_forward(x, *(s.copy() for s in stats), weight, bias,
                                    training=training)
    return minifcn_pair(timer, forward, lambda cache: batch_norm2d_backward(dy, cache),
                        algorithm)


def torch_timings(torch, timer, x, stats, weight, bias, dy, training):
    """(forward, backward) Timings of torch's batch_norm and its autograd backward."""
    tx, tw, tb = (torch.as_tensor(a).requires_grad_() for a in (x, weight, bias))
    tstats = [torch.as_tensor(s).clone() for s in stats]
    return torch_pair(torch, timer, lambda: torch.nn.functional.batch_norm(
        tx, *tstats, tw, tb, training=training), (tx, tw, tb), dy)


def main(argv=None) -> int:
    args = parse_args(argv)
    run = begin(args, "bench_batch_norm.py", COLUMNS)
    if run is None:
        return 2
    xp, rng = run.xp, __import__("numpy").random.default_rng(0)
    for name in args.layers:
        C, H, W = SHAPES[name]
        x = xp.asarray(rng.standard_normal((1, C, H, W)).astype(args.dtype))
        dy = xp.asarray(rng.standard_normal((1, C, H, W)).astype(args.dtype))
        weight, bias = (xp.asarray(rng.standard_normal(C).astype(args.dtype)) for _ in "wb")
        stats = (xp.zeros(C, args.dtype), xp.ones(C, args.dtype))
        for training in (False, True):
            print(f"timing {name} {'train' if training else 'eval'} ...", file=sys.stderr,
                  flush=True)
            common = (x, stats, weight, bias, dy, training)
            ref = minifcn_timings(run.timer, *common, "reference")
            fast = minifcn_timings(run.timer, *common, "auto")
            theirs = (torch_timings(run.torch, run.timer, *common) if run.torch is not None
                      else None)
            cells = [name, "train" if training else "eval", f"{C}x{H}x{W}",
                     *ref_fast_torch_cells(ref, fast, theirs)]
            print(table_row(cells, COLUMNS, left=3), flush=True)
    print("times in ms, batch 1; bwd = backward alone, on one forward's cache / graph")
    print(RATIO_LEGEND)
    print(run.other_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
