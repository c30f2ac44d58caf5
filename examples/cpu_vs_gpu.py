"""The same op on NumPy (CPU) and CuPy (GPU): time it, count its FLOP/s, compare results.

Every minifcn op picks its array library from its inputs (``xp = get_array_module(x)``), so
moving the arrays with ``to_device(a, "cuda")`` is all it takes to run on the GPU. This
times a conv3_1-like convolution (N=1, C=F=64, 3x3, padding 1, 128x128, float32) and a 2x2
max pool, forward and forward+backward, on both, and checks that they agree. Without CuPy
or a GPU it runs the CPU side and says why the GPU side was skipped.

Run: python examples/cpu_vs_gpu.py [--size 128] [--channels 64] [--repeat 10]
"""
import argparse
import importlib.util

import numpy as np

from minifcn.backend import INSTALL_HINT, import_cupy, to_device
from minifcn.bench import (conv_flops, cpu_model, format_cell, format_ratio,
                           relative_difference, table_head, table_row, time_call)
from minifcn.ops import (conv2d_backward, conv2d_forward, max_pool2d_backward,
                         max_pool2d_forward)


def make_inputs(n_channels, size, rng):
    """x, a He-initialised 3x3 weight, bias, and the upstream gradients of conv and pool."""
    x = rng.standard_normal((1, n_channels, size, size), dtype=np.float32)   # (N, C, H, W)
    w = rng.standard_normal((n_channels, n_channels, 3, 3), dtype=np.float32)
    w *= np.float32(np.sqrt(2.0 / (n_channels * 9)))                         # (F, C, 3, 3)
    b = rng.standard_normal(n_channels, dtype=np.float32)                    # (F,)
    dy = rng.standard_normal(x.shape, dtype=np.float32)                      # (N, F, H, W)
    dy_pool = rng.standard_normal((1, n_channels, size // 2, size // 2), dtype=np.float32)
    return dict(x=x, w=w, b=b, dy=dy, dy_pool=dy_pool)


def conv_forward(a):
    return conv2d_forward(a["x"], a["w"], a["b"], padding=1)[0]              # y


def conv_forward_backward(a):
    y, cache = conv2d_forward(a["x"], a["w"], a["b"], padding=1)
    return (y,) + conv2d_backward(a["dy"], cache)                            # y, dx, dw, db


def pool_forward_backward(a):
    y, cache = max_pool2d_forward(a["x"], 2, 2)
    return y, max_pool2d_backward(a["dy_pool"], cache)                       # y, dx


def measure(arrays, xp, repeat):
    """Median milliseconds of each timed op on the arrays' device, and its results."""
    ops = {"conv2d forward": conv_forward, "conv2d forward+backward": conv_forward_backward,
           "max_pool2d forward+backward": pool_forward_backward}
    ms = {name: 1e3 * time_call(lambda: op(arrays), repeat=repeat, warmup=2, xp=xp).median
          for name, op in ops.items()}    # on the GPU timed with CUDA events, not the host clock
    return ms, conv_forward_backward(arrays), pool_forward_backward(arrays)


def gpu_or_reason():
    """(cupy, None) when CuPy can use a GPU here, else (None, why not)."""
    if importlib.util.find_spec("cupy") is None:
        return None, "CuPy is not installed"
    try:
        return import_cupy(), None
    except RuntimeError as err:        # installed, but no driver or no visible GPU
        return None, str(err)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128, help="image height = width")
    parser.add_argument("--channels", type=int, default=64, help="C = F")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per median")
    args = parser.parse_args()
    if args.size < 2 or args.channels < 1 or args.repeat < 1:
        parser.error("--size must be >= 2, --channels and --repeat >= 1")

    cpu = make_inputs(args.channels, args.size, np.random.default_rng(0))
    print(f"conv2d {args.channels}->{args.channels} 3x3 pad 1 and max_pool2d 2x2 on "
          f"1x{args.channels}x{args.size}x{args.size} float32; median of {args.repeat} calls")
    print(f"CPU: {cpu_model()}")
    cupy, why_not = gpu_or_reason()
    if cupy is not None:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
        print(f"GPU: {props['name'].decode()}, CuPy {cupy.__version__}")

    cpu_ms, cpu_conv, cpu_pool = measure(cpu, np, args.repeat)
    if cupy is not None:
        gpu = {name: to_device(a, "cuda") for name, a in cpu.items()}
        gpu_ms, gpu_conv, gpu_pool = measure(gpu, cupy, args.repeat)
    else:
        gpu_ms = {name: None for name in cpu_ms}

    # One pass of the convolution (y, dx or dw: one GEMM each) is 2*N*F*OH*OW*C*KH*KW FLOPs.
    flops = conv_flops(cpu["x"].shape, cpu["w"].shape, (args.size, args.size))
    passes = {"conv2d forward": 1, "conv2d forward+backward": 3}
    gflops = lambda name, ms: (None if ms is None or name not in passes
                               else passes[name] * flops / (ms * 1e-3) / 1e9)

    columns = (("op", 28), ("numpy ms", 9), ("GFLOP/s", 8), ("cupy ms", 9), ("GFLOP/s", 8),
               ("speed-up", 8))
    print("\n" + "\n".join(table_head(columns, left=1)))
    for name, ms in cpu_ms.items():
        cells = (name, format_cell(ms, ".2f"), format_cell(gflops(name, ms), ".0f"),
                 format_cell(gpu_ms[name], ".3f"), format_cell(gflops(name, gpu_ms[name]), ".0f"),
                 format_ratio(ms, gpu_ms[name], ".1f"))
        print(table_row(cells, columns, left=1))
    print("conv GFLOP/s counts 2*N*F*OH*OW*C*KH*KW per pass: 1 pass forward, 3 with backward "
          "(y, dx, dw);\nspeed-up = numpy ms / cupy ms")

    if cupy is None:
        print(f"\nGPU side skipped: {why_not}.")
        print(f"To run it on a machine with an NVIDIA GPU: {INSTALL_HINT}")
        return

    # The same float32 math in a different order (BLAS vs cuBLAS, CPU vs CUDA kernels):
    # expect differences of about 1e-6 relative to each result's largest value.
    print("\nagreement, max|cupy - numpy| / max|numpy|:")
    names = ("conv y", "conv dx", "conv dw", "conv db", "pool y", "pool dx")
    for name, got, want in zip(names, gpu_conv + gpu_pool, cpu_conv + cpu_pool):
        print(f"  {name:8s} {relative_difference(got, want):.1e}")


if __name__ == "__main__":
    main()
