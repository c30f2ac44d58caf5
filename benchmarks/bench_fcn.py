"""Time a whole FCN beside the same network in PyTorch: forward, and a training step.

A training step is forward + softmax cross-entropy + backward (the compute of one SGD
iteration, without the update), batch 1, float32. Each side runs in its own process so that
its peak resident memory is its own; both run in the same invocation of this script, one
after the other, on the same machine state. PyTorch's network is the test suite's
reimplementation (tests/torch_fcn.py), with the same layers and parameter shapes.

    python benchmarks/bench_fcn.py                       # FCN-8s, width 1, 500x500
    python benchmarks/bench_fcn.py --size 256 --width 0.25 --repeat 5
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FMA_CEILING_GFLOPS = 350.0      # measured float32 FMA ceiling of the project's 2-core machine


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args)))
        return 0
    from minifcn.bench import blas_info, cpu_model
    from minifcn.summary import summarize_arch, totals

    flops = totals(summarize_arch(args.arch, (args.size, args.size), width=args.width)).flops
    sides = ["minifcn"] + ([] if args.no_torch else ["torch"])
    results = {side: _run_child(side, args) for side in sides}
    blas = blas_info()
    print(f"# {args.arch}, width {args.width}, batch 1, {args.size}x{args.size}, float32; "
          f"median of {args.repeat} after 1 warm-up; each side in its own process")
    print(f"# machine {cpu_model()}, {os.cpu_count()} CPUs; numpy BLAS "
          f"{blas.get('name', '?')} {blas.get('version', '')}; "
          f"torch threads {results.get('torch', {}).get('threads', '-')}")
    print(f"# forward {flops / 1e9:.3g} GFLOP; a training step about 3x that")
    print(f"{'':10}{'forward s':>12}{'step s':>10}{'peak RSS':>11}{'step GFLOP/s':>15}"
          f"{'of ceiling':>12}")
    for side, r in results.items():
        rate = 3 * flops / r["step"] / 1e9
        print(f"{side:10}{r['forward']:12.2f}{r['step']:10.2f}{r['peak_rss'] / 2**30:9.2f} GB"
              f"{rate:15.0f}{rate / FMA_CEILING_GFLOPS:11.0%}")
    if "torch" in results:
        m, t = results["minifcn"], results["torch"]
        print(f"{'ratio':10}{m['forward'] / t['forward']:12.2f}{m['step'] / t['step']:10.2f}"
              f"{m['peak_rss'] / t['peak_rss']:11.2f}     (minifcn / torch)")
    return 0


def _parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="fcn8s", choices=("fcn32s", "fcn16s", "fcn8s"))
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, default=500, help="input height and width (500)")
    p.add_argument("--n-class", type=int, default=21)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--child", choices=("minifcn", "torch"), help=argparse.SUPPRESS)
    return p


def _run_child(side, args):
    command = [sys.executable, os.path.abspath(__file__), "--child", side, "--arch", args.arch,
               "--width", str(args.width), "--size", str(args.size),
               "--n-class", str(args.n_class), "--repeat", str(args.repeat)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {side} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median_time(fn, repeat):
    fn()                                            # warm-up: memory pools, page faults
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _inputs(args):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    target = rng.integers(0, args.n_class, (1, args.size, args.size))
    target[rng.random(target.shape) < 0.1] = 255    # VOC's border/ignore label
    return x, target


def _measure(args):
    x, target = _inputs(args)
    if args.child == "minifcn":
        forward, step, threads = _minifcn_calls(args, x, target)
    else:
        forward, step, threads = _torch_calls(args, x, target)
    result = dict(forward=_median_time(forward, args.repeat), step=_median_time(step, args.repeat),
                  threads=threads)
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


def _minifcn_calls(args, x, target):
    from minifcn.models import ARCHITECTURES
    from minifcn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward

    model = ARCHITECTURES[args.arch](n_class=args.n_class, width=args.width, rng=0)

    def step():
        logits = model(x)
        _, cache = softmax_cross_entropy_forward(logits, target, ignore_index=255)
        model.zero_grad()
        model.backward(softmax_cross_entropy_backward(np.float32(1.0), cache)[0])
    return (lambda: model(x)), step, None


def _torch_calls(args, x, target):
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import torch
    import torch.nn.functional as F
    import torch_fcn

    net = {"fcn32s": torch_fcn.FCN32s, "fcn16s": torch_fcn.FCN16s,
           "fcn8s": torch_fcn.FCN8s}[args.arch](n_class=args.n_class, width=args.width)
    tx, tt = torch.from_numpy(x), torch.from_numpy(target)

    def step():
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(tx), tt, ignore_index=255).backward()
    return (lambda: net(tx)), step, torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
