r"""A whole network beside the same network in PyTorch: forward, and a training step.

A training step is forward + softmax cross-entropy + backward (the compute of one SGD
iteration, without the update), on ``batch`` random images with random labels (10% void);
for torchvision's FCN-ResNet50 and DeepLabV3-ResNet50 the auxiliary head's loss is added
with weight 0.5, as torchvision's recipe does, and their forward runs in eval mode
(BatchNorm on its running statistics, as at inference) while the step runs in training mode
(DeepLabV3's then needs a batch of 2 at least: its image-pooling BatchNorm sees one value per
channel and image, and PyTorch refuses a single one).
Each side runs in a child process of its own (``python -m minifcn.bench.network SIDE SPEC``)
so that its peak resident memory (:func:`peak_rss`) is its own, and the minifcn side never
imports torch. PyTorch's network is :mod:`minifcn.bench.torch_fcn` (or
:mod:`minifcn.bench.torch_segmentation`, :mod:`minifcn.bench.torch_unet`), with the same
layers and parameter shapes. U-Net is the paper's (depth 4, 64 channels times the width);
its loss compares the output with the centre of the labels, as large as the output.

On the CPU calls are timed with the host clock; on CUDA with CUDA events (CuPy's through
``cupyx.profiler.benchmark``, torch's through ``torch.cuda.Event``), and the peak GPU memory
is the most the side's allocator held (CuPy's memory pool, torch's ``max_memory_reserved``).
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import NamedTuple

import numpy as np

from ..train_loss import AUX_WEIGHT     # the auxiliary loss's weight, as train uses it
from .results import Row
from .timing import Timing, time_call

ARCHS = ("fcn8s", "fcn16s", "fcn32s", "fcn_resnet50", "deeplabv3_resnet50", "unet")
UNET_DEPTH = 4       # the paper's U-Net, its base of 64 channels scaled by the width
STEP_FLOPS = 3   # a training step: about 3x the forward's FLOPs (forward, dx, dweight)


class NetworkSpec(NamedTuple):
    """What one side measures."""
    arch: str = "fcn8s"
    size: tuple = (500, 500)       # (H, W)
    width: float = 1.0
    n_class: int = 21
    device: str = "cpu"
    dtype: str = "float32"
    repeat: int = 3
    warmup: int = 1
    batch: int = 1                 # images per forward and step


def network_flops(spec: NetworkSpec) -> int:
    """The forward's FLOPs, from :mod:`minifcn.summary` (a multiply-add counting 2)."""
    from ..summary import summarize_arch, totals

    rows = summarize_arch(spec.arch, tuple(spec.size), width=spec.width, n_class=spec.n_class)
    return spec.batch * totals(rows).flops


def measure_network(spec: NetworkSpec, with_torch: bool = True) -> Row:
    """Both sides of ``spec``, each in its own child process: a :class:`Row` with phases
    ``forward`` and ``step``, and each side's peak memory."""
    sides = ("minifcn", "torch") if with_torch else ("minifcn",)
    results = {side: run_side(side, spec) for side in sides}
    forward = network_flops(spec)
    timings = {side: {phase: Timing(**dict(r[phase], times=tuple(r[phase]["times"])))
                      for phase in ("forward", "step")} for side, r in results.items()}
    h, w = spec.size
    return Row("fcn", spec.device, spec.arch, f"{h}x{w} width {spec.width:g}",
               timings["minifcn"], timings.get("torch"),
               {"forward": forward, "step": STEP_FLOPS * forward},
               {"forward": None, "step": None},
               peak={side: {"rss": r["peak_rss"], "gpu": r["peak_gpu"]}
                     for side, r in results.items()})


def run_side(side: str, spec: NetworkSpec) -> dict:
    """Run one side in a child process; its JSON result (timings, peak memory, threads)."""
    command = [sys.executable, "-m", "minifcn.bench.network", side, json.dumps(spec._asdict())]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {side} run of {spec.arch} failed (exit {done.returncode}):\n"
                           f"{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- in the child process -------------------------------------------------------------------

def _inputs(spec: NetworkSpec):
    rng = np.random.default_rng(0)
    h, w = spec.size
    x = rng.standard_normal((spec.batch, 3, h, w)).astype(spec.dtype)
    target = rng.integers(0, spec.n_class, (spec.batch, h, w))
    target[rng.random(target.shape) < 0.1] = 255    # VOC's border/ignore label
    if spec.arch == "unet":                          # its output: the input's centre
        from ..models.unet_sizes import output_offset

        top, left = (output_offset(s, UNET_DEPTH) for s in (h, w))
        target = target[:, top:h - top, left:w - left]
    return x, target


def _minifcn_side(spec: NetworkSpec, x, target):
    """(forward, step, timer, peak_gpu) for minifcn on ``spec.device``."""
    from ..backend import import_cupy, to_device
    from ..models import MODELS
    from ..models.vgg import scaled
    from ..train_loss import loss_and_gradients

    xp = np if spec.device == "cpu" else import_cupy()
    size = ({"base": scaled(64, spec.width), "depth": UNET_DEPTH} if spec.arch == "unet"
            else {"width": spec.width})
    model = MODELS[spec.arch](n_class=spec.n_class, rng=0, dtype=spec.dtype,
                              **size).to(spec.device)
    x, target = to_device(x, spec.device), to_device(target, spec.device)
    resnet = hasattr(model, "aux_classifier")       # BatchNorm: the forward as inference

    def forward():
        return (model.eval() if resnet else model)(x)

    def step():                                      # in torch's order: zero_grad first
        model.train().zero_grad()
        _, dy, daux = loss_and_gradients(model, model(x), target)   # train's loss
        if daux is None:
            model.backward(dy)
        else:
            model.backward(dy, daux)

    def timer(fn):
        return time_call(fn, repeat=spec.repeat, warmup=spec.warmup, xp=xp)

    def peak_gpu():
        return None if xp is np else int(xp.get_default_memory_pool().total_bytes())
    return forward, step, timer, peak_gpu


def _torch_side(spec: NetworkSpec, x, target):
    """(forward, step, timer, peak_gpu) for torch on ``spec.device``."""
    import torch
    import torch.nn.functional as F

    from .compare import import_torch
    from .torch_fcn import ARCHITECTURES
    from .torch_segmentation import ARCHITECTURES as RESNETS, Segmenter
    from .torch_unet import UNet, scaled

    import_torch(spec.device)                        # TF32 off on CUDA
    if spec.arch in RESNETS:
        net = Segmenter(RESNETS[spec.arch], n_class=spec.n_class, width=spec.width)
    elif spec.arch == "unet":
        net = UNet(spec.n_class, 3, scaled(64, spec.width), UNET_DEPTH)
    else:
        net = ARCHITECTURES[spec.arch](n_class=spec.n_class, width=spec.width)
    net.to(device=spec.device, dtype=getattr(torch, spec.dtype))
    tx, tt = torch.from_numpy(x).to(spec.device), torch.from_numpy(target).to(spec.device)

    def forward():                                   # graph kept, as minifcn keeps its caches
        return (net.eval() if spec.arch in RESNETS else net)(tx)

    def step():
        net.train().zero_grad(set_to_none=True)
        out = net(tx)
        if isinstance(out, tuple):                   # (scores, auxiliary scores)
            loss = F.cross_entropy(out[0], tt, ignore_index=255) \
                + AUX_WEIGHT * F.cross_entropy(out[1], tt, ignore_index=255)
        else:
            loss = F.cross_entropy(out, tt, ignore_index=255)
        loss.backward()

    def timer(fn):
        if spec.device == "cpu":
            return time_call(fn, repeat=spec.repeat, warmup=spec.warmup)
        return _time_torch_cuda(torch, fn, spec.repeat, spec.warmup)

    def peak_gpu():
        return None if spec.device == "cpu" else int(torch.cuda.max_memory_reserved())
    return forward, step, timer, peak_gpu


def _time_torch_cuda(torch, fn, repeat: int, warmup: int) -> Timing:
    """Per-call times from CUDA events recorded on torch's current stream around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)  # ms -> s
    return Timing.from_times(times)


def peak_rss() -> int:
    """This process's peak resident memory in bytes: ``VmHWM`` of /proc/self/status, the
    high-water mark of its own address space. Not ``ru_maxrss``: on Linux an exec folds the
    forking parent's peak into it, so a child of a parent that imported torch would start
    at torch's size. Where /proc is missing, ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024                  # kB
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure_side(side: str, spec: NetworkSpec) -> dict:
    """In the child: time ``side``'s forward and step, and read its peak memory."""
    x, target = _inputs(spec)
    make = _minifcn_side if side == "minifcn" else _torch_side
    forward, step, timer, peak_gpu = make(spec, x, target)
    result = {"forward": timer(forward)._asdict(), "step": timer(step)._asdict()}
    result["peak_rss"], result["peak_gpu"] = peak_rss(), peak_gpu()
    return result


if __name__ == "__main__":
    _spec = NetworkSpec(**json.loads(sys.argv[2]))
    print(json.dumps(measure_side(sys.argv[1], _spec._replace(size=tuple(_spec.size)))))
