"""Time minifcn's conv2d beside torch.nn.functional.conv2d on VGG16 / FCN layer shapes.

    python benchmarks/bench_conv.py                       # all layers, CPU, float32
    python benchmarks/bench_conv.py --layers conv1_2 fc6 --repeat 20
    python benchmarks/bench_conv.py --device cuda         # CuPy, beside torch CUDA if it has one

Every figure is the median of ``--repeat`` calls after ``--warmup`` untimed ones, minifcn and
torch measured in the same process on the same inputs. Ratios are minifcn / torch (above 1:
minifcn is slower). CPU calls are timed with the host clock, GPU calls with CUDA events.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from typing import NamedTuple

import numpy as np

import minifcn
from minifcn.backend import asnumpy, to_device
from minifcn.bench import blas_info, conv_flops, time_call
from minifcn.ops import conv2d_backward, conv2d_forward, conv_output_size


class Layer(NamedTuple):
    name: str
    C: int          # input channels
    F: int          # output channels
    size: int       # input height = width
    kernel: int
    padding: int

    @property
    def out(self) -> int:
        return conv_output_size(self.size, self.kernel, 1, self.padding)

    @property
    def shapes(self) -> str:
        return (f"{self.C}->{self.F} k{self.kernel} p{self.padding} "
                f"{self.size}->{self.out}")


LAYERS = {layer.name: layer for layer in (
    Layer("conv1_1", 3, 64, 500, 3, 100),    # FCN's first layer: padding 100 on a 500x500 image
    Layer("conv1_2", 64, 64, 224, 3, 1),     # VGG16 at 224x224
    Layer("conv3_1", 128, 256, 56, 3, 1),
    Layer("conv5_1", 512, 512, 14, 3, 1),
    Layer("fc6", 512, 4096, 22, 7, 0),       # FCN's fc6 as a 7x7 conv on pool5 of a 500x500
)}

# Seconds to pause before timing each callable. A thread pool spins for a while after its last
# call (OpenBLAS's workers for about 0.1 s), and on 2 cores the other library's spinning pool
# slows the next one's parallel regions: torch's conv5_1 forward took 9 ms right after
# minifcn's and 5 ms after this pause, on the machine of benchmarks/README.md.
SETTLE = 0.3

COLUMNS = (("layer", 8), ("shapes", 24), ("mf fwd ms", 10), ("torch fwd", 10), ("ratio", 6),
           ("mf f+b ms", 10), ("torch f+b", 10), ("ratio", 6), ("mf GF/s", 8), ("IQR", 5))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Median time of minifcn's conv2d forward and forward+backward on VGG16 "
                    "layer shapes (batch 1), beside torch.nn.functional.conv2d in the same run.")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per figure "
                        "(default 10); the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--layers", nargs="+", choices=list(LAYERS), default=list(LAYERS),
                        metavar="LAYER", help=f"a subset of: {' '.join(LAYERS)} (default all)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: NumPy beside torch CPU; cuda: CuPy beside torch CUDA")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--no-torch", action="store_true", help="leave out the torch columns")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be >= 1 and --warmup >= 0")
    return args


def load_torch(device: str, skip: bool):
    """torch, or (None, why) when it is missing or cannot run on ``device``."""
    if skip:
        return None, "left out (--no-torch)"
    try:
        import torch
    except ImportError:
        return None, "not installed (pip install torch==2.13.0); torch columns skipped"
    if device == "cuda" and not torch.cuda.is_available():
        return None, f"{torch.__version__} has no usable CUDA; torch columns skipped"
    if device == "cuda":
        # Compare float32 with float32: cuDNN convolutions default to TF32 on Ampere and later,
        # CuPy's GEMMs do not (unless CUPY_TF32=1).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch, None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(args, torch, torch_note, xp) -> list:
    blas = blas_info()
    lines = [
        f"date      {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine   {cpu_model()}, {os.cpu_count()} logical CPUs; {platform.platform()}",
        f"python    {platform.python_version()}; numpy {np.__version__}; "
        f"minifcn {minifcn.__version__}",
        f"numpy BLAS {blas['name']} {blas['version']}, threads {blas['threads']}, "
        f"core {blas['core']}",
    ]
    if torch is None:
        lines.append(f"torch     {torch_note}")
    else:
        lines.append(f"torch     {torch.__version__}, get_num_threads() = "
                     f"{torch.get_num_threads()}")
    if xp is not np:
        props = xp.cuda.runtime.getDeviceProperties(xp.cuda.runtime.getDevice())
        lines.append(f"GPU       {props['name'].decode()}; cupy {xp.__version__}, "
                     f"CUPY_TF32={os.environ.get('CUPY_TF32', '0')}"
                     + ("; torch TF32 off" if torch is not None else ""))
    clock = "host clock" if xp is np else "CUDA events (cupyx.profiler.benchmark)"
    lines.append(f"timing    median of {args.repeat} calls after {args.warmup} warm-up, "
                 f"{clock}; batch 1, {args.dtype}, device {args.device}")
    return ["# " + line for line in lines]


def make_inputs(layer: Layer, dtype, rng):
    x = rng.standard_normal((1, layer.C, layer.size, layer.size)).astype(dtype)
    fan_in = layer.C * layer.kernel ** 2
    w = (rng.standard_normal((layer.F, layer.C, layer.kernel, layer.kernel))
         * np.sqrt(2.0 / fan_in)).astype(dtype)
    b = rng.standard_normal(layer.F).astype(dtype)
    dy = rng.standard_normal((1, layer.F, layer.out, layer.out)).astype(dtype)
    return x, w, b, dy


def minifcn_calls(layer: Layer, arrays, device: str):
    x, w, b, dy = (to_device(a, device) for a in arrays)

    def forward():
        return conv2d_forward(x, w, b, padding=layer.padding)[0]

    def forward_backward():
        _, cache = conv2d_forward(x, w, b, padding=layer.padding)
        return conv2d_backward(dy, cache)

    return forward, forward_backward


def torch_calls(torch, layer: Layer, arrays, device: str):
    x, w, b, dy = (torch.from_numpy(a).to(device) for a in arrays)
    leaves = tuple(t.clone().requires_grad_() for t in (x, w, b))
    conv = torch.nn.functional.conv2d
    wait = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        y = conv(x, w, b, padding=layer.padding)
        wait()
        return y

    def forward_backward():
        y = conv(*leaves, padding=layer.padding)
        grads = torch.autograd.grad(y, leaves, dy)   # dx, dw, db; no .grad accumulation
        wait()
        return grads

    return forward, forward_backward


def rel_error(got, want) -> float:
    got, want = np.asarray(asnumpy(got), np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


def measure(layer: Layer, args, torch, xp, rng) -> dict:
    arrays = make_inputs(layer, np.dtype(args.dtype), rng)
    spreads = []

    def ms(fn):
        time.sleep(SETTLE)
        timing = time_call(fn, repeat=args.repeat, warmup=args.warmup, xp=xp)
        spreads.append(timing.iqr / timing.median)
        return 1e3 * timing.median

    mf_fwd, mf_fb = minifcn_calls(layer, arrays, args.device)
    row = {"fwd": ms(mf_fwd), "fb": ms(mf_fb)}
    flops = conv_flops(arrays[0].shape, arrays[1].shape, (layer.out, layer.out))
    row["gflops"] = flops / (row["fwd"] * 1e-3) / 1e9
    if torch is not None:
        t_fwd, t_fb = torch_calls(torch, layer, arrays, args.device)
        row["t_fwd"], row["t_fb"] = ms(t_fwd), ms(t_fb)
        row["err"] = rel_error(mf_fwd(), t_fwd().cpu().numpy())
    row["iqr"] = 100 * max(spreads)
    return row


def format_row(layer: Layer, row: dict) -> str:
    def cell(key, fmt="{:.1f}"):
        return fmt.format(row[key]) if key in row else "-"

    def ratio(a, b):
        return f"{row[a] / row[b]:.2f}" if b in row else "-"

    cells = (layer.name, layer.shapes, cell("fwd"), cell("t_fwd"), ratio("fwd", "t_fwd"),
             cell("fb"), cell("t_fb"), ratio("fb", "t_fb"), cell("gflops", "{:.0f}"),
             cell("iqr", "{:.0f}%"))
    return "  ".join(f"{c:>{width}}" if i > 1 else f"{c:<{width}}"
                     for i, (c, (_, width)) in enumerate(zip(cells, COLUMNS)))


def cpu_seconds():
    """(busy CPU seconds of the whole machine, CPU seconds of this process) since boot and
    start; None where /proc/stat is missing. Their difference over a run is other work."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]   # all but idle and iowait (steal counts as busy)
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_load(start, seconds: float) -> str:
    end = cpu_seconds()
    if start is None or end is None:
        return "other work on the machine: unknown (no /proc/stat)"
    other = max(0.0, (end[0] - start[0]) - (end[1] - start[1]))
    return (f"other work on the machine during the run: {other:.1f} CPU-s in {seconds:.0f} s "
            f"({100 * other / (seconds * os.cpu_count()):.0f}% of {os.cpu_count()} CPUs)")


def main(argv=None) -> int:
    args = parse_args(argv)
    xp = np
    if args.device == "cuda":
        from minifcn.backend import import_cupy
        try:
            xp = import_cupy()
        except RuntimeError as err:
            print(f"bench_conv.py: --device cuda: {err}", file=sys.stderr)
            return 2
    torch, torch_note = load_torch(args.device, args.no_torch)
    start, started = cpu_seconds(), time.perf_counter()
    print("\n".join(header(args, torch, torch_note, xp)))
    titles = "  ".join(f"{t:>{w}}" if i > 1 else f"{t:<{w}}"
                       for i, (t, w) in enumerate(COLUMNS))
    print(titles)
    print("-" * len(titles))
    rng = np.random.default_rng(20261121)
    worst = 0.0
    for name in args.layers:
        layer = LAYERS[name]
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        row = measure(layer, args, torch, xp, rng)
        worst = max(worst, row.get("err", 0.0))
        print(format_row(layer, row), flush=True)
    print("ratio = minifcn / torch (above 1: minifcn is slower); "
          "mf GF/s = 2*N*F*OH*OW*C*KH*KW / minifcn fwd median")
    print("IQR = the widest interquartile range of the row's four timings, in % of its median")
    print(other_load(start, time.perf_counter() - started))
    if torch is not None:
        print(f"check: forward outputs agree with torch to max|diff|/max|y| = {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
