"""Time a whole FCN beside the same network in PyTorch: forward, and a training step.

A training step is forward + softmax cross-entropy + backward (the compute of one SGD
iteration, without the update), batch 1, float32. Each side runs in its own process so that
its peak resident memory is its own; both run in the same invocation of this script, one
after the other, on the same machine state. The measuring is ``minifcn.bench.network``
(which ``minifcn bench fcn`` runs too); PyTorch's network is ``minifcn.bench.torch_fcn``,
with the same layers and parameter shapes.

    python benchmarks/bench_fcn.py                       # FCN-8s, width 1, 500x500
    python benchmarks/bench_fcn.py --size 256 --width 0.25 --repeat 5
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from minifcn.bench import blas_info, cpu_model
from minifcn.bench.network import ARCHS, NetworkSpec, measure_network

FMA_CEILING_GFLOPS = 350.0      # measured float32 FMA ceiling of the project's 2-core machine


def main(argv=None):
    args = _parser().parse_args(argv)
    spec = NetworkSpec(args.arch, (args.size, args.size), args.width, args.n_class,
                       repeat=args.repeat)
    with_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    row = measure_network(spec, with_torch)
    blas = blas_info()
    print(f"# {args.arch}, width {args.width}, batch 1, {args.size}x{args.size}, float32; "
          f"median of {args.repeat} after 1 warm-up; each side in its own process")
    print(f"# machine {cpu_model()}, {os.cpu_count()} CPUs; numpy BLAS "
          f"{blas.get('name', '?')} {blas.get('version', '')}; torch threads "
          f"{_torch_threads() if with_torch else '-'}")
    print(f"# forward {row.flops['forward'] / 1e9:.3g} GFLOP; a training step about 3x that")
    print(f"{'':10}{'forward s':>12}{'step s':>10}{'peak RSS':>11}{'step GFLOP/s':>15}"
          f"{'of ceiling':>12}")
    for side in row.peak:
        rate = row.gflops("step", side)
        print(f"{side:10}{row.seconds('forward', side):12.2f}{row.seconds('step', side):10.2f}"
              f"{row.peak[side]['rss'] / 2**30:9.2f} GB{rate:15.0f}"
              f"{rate / FMA_CEILING_GFLOPS:11.0%}")
    if row.torch is not None:
        print(f"{'ratio':10}{row.ratio('forward'):12.2f}{row.ratio('step'):10.2f}"
              f"{row.peak_ratio('rss'):11.2f}     (minifcn / torch)")
    return 0


def _torch_threads() -> int:
    """The threads torch uses here (the child process starts with the same defaults)."""
    import torch

    return torch.get_num_threads()


def _parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="fcn8s", choices=ARCHS)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, default=500, help="input height and width (500)")
    p.add_argument("--n-class", type=int, default=21)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-torch", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(main())
