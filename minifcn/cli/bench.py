"""``minifcn bench [ops|fcn|all]``: time minifcn's ops and whole FCNs beside PyTorch."""
from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time

from .common import UserError, add_device_argument, check_device, height_width

GROUPS = {"ops": ("ops",), "fcn": ("fcn",), "all": ("ops", "fcn")}
DEVICES = {"cpu": ("cpu",), "both": ("cpu", "cuda")}      # and "cuda", "cuda:N": ("cuda",)
DEFAULT_REPEAT = {"ops": 5, "fcn": 3}


def add(commands):
    from ..bench.net_cases import NETS, describe
    from ..bench.network import ARCHS

    p = commands.add_parser(
        "bench", help="time ops and whole FCNs, forward and backward, beside PyTorch",
        description="Time minifcn beside PyTorch in one run. 'ops': every kind of FCN layer "
                    "at the shapes FCN-8s (or --net) gives it on a --size image, forward and "
                    "backward (medians after warm-up, GFLOP/s, bytes moved, the ratio to "
                    "torch). "
                    "'fcn': whole networks, forward and a training step (forward + loss + "
                    "backward), each side in its own process for its peak memory. Torch "
                    "columns appear where torch is installed. CUDA work is timed with CUDA "
                    "events; --device both times the CPU, then the GPU.")
    p.add_argument("group", nargs="?", default="ops", choices=tuple(GROUPS), metavar="GROUP",
                   help="ops (default), fcn or all")
    add_device_argument(p, extra=("both",))
    p.add_argument("--net", choices=tuple(NETS), metavar="NET",
                   help="ops: whose layers to time, at the shapes that network gives them: "
                        + ", ".join(NETS) + " (default fcn8s)")
    p.add_argument("--size", type=height_width, metavar="HxW",
                   help="input image, HxW or N for NxN (default: 500x500; for 'ops' the "
                        "--net's: " + ", ".join(f"{net} {ops.size[0]}x{ops.size[1]}"
                                               for net, ops in NETS.items()) +
                        "); 64 for a quick look")
    p.add_argument("--width", type=float, default=1.0,
                   help="channel width in (0, 1] (default 1: the paper's network)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="default float32")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="images per forward and training step of the networks ('fcn'; the "
                        "layers of 'ops' are timed at batch 1)")
    every_op = tuple(dict.fromkeys(op for ops in NETS.values() for op in ops.ops))
    p.add_argument("--layers", nargs="+", choices=every_op + ("all",), metavar="OP",
                   help="ops of --net to time; default: all but those in "
                        "[brackets], which 'all' adds (repeated shapes). " +
                        "; ".join(f"{net}: {describe(net)}" for net in NETS))
    p.add_argument("--arch", nargs="+", choices=ARCHS, metavar="ARCH",
                   help="networks to time: " + ", ".join(ARCHS) + " (default fcn8s)")
    p.add_argument("--repeat", type=int, metavar="N", help="timed calls per figure "
                   f"(default {DEFAULT_REPEAT['ops']} for ops, {DEFAULT_REPEAT['fcn']} for fcn)")
    p.add_argument("--warmup", type=int, default=1, metavar="N",
                   help="untimed calls first (default 1)")
    p.add_argument("--min-time", type=float, default=0.05, metavar="S",
                   help="ops: time more calls until they fill S seconds (default 0.05)")
    p.add_argument("--no-torch", action="store_true", help="leave out the torch columns")
    p.add_argument("--json", metavar="OUT.json", help="write the results and the machine "
                   "record as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="draw minifcn vs torch (and CPU vs GPU) "
                   "as a PNG bar chart (needs matplotlib: pip install \"minifcn[plot]\")")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..bench.runner import prepare

    plan = _plan(args)
    if "cuda" in plan.devices:
        check_device("cuda" if args.device == "both" else args.device, "bench")
    _check_outputs(args)
    with _on_gpu(args.device, torch=plan.torch):       # the JSON records the GPU's name
        try:
            sections = prepare(plan)
        except (ValueError, RuntimeError) as err:
            raise UserError(f"bench: {err}") from None
        started = datetime.datetime.now().isoformat(timespec="seconds")
        clock = time.perf_counter()
        rows = _measure_and_print(sections, plan, progress=not args.no_progress)
        if args.json:
            with _writing("--json", args.json):
                _write_json(args, plan, sections, rows, started, time.perf_counter() - clock)
    if args.plot:
        from ..bench.chart import draw_chart

        h, w = plan.size
        with _writing("--plot", args.plot):
            net = f" {plan.net}" if "ops" in plan.groups else ""
            draw_chart(rows, args.plot, title=f"minifcn bench {args.group}{net}: {h}x{w}, "
                                              f"width {plan.width:g}, {plan.dtype}")
    for path in (args.json, args.plot):
        if path:
            print(f"wrote {path}")
    return 0


@contextlib.contextmanager
def _on_gpu(device: str, torch: bool):
    """For "cuda:N", GPU N as the GPU the runner's "cuda" means: the current device of CuPy
    (and of torch, for its columns) here, and the only GPU the child processes that time
    whole networks see (CUDA_VISIBLE_DEVICES). Nothing changes for other devices."""
    from ..backend import import_cupy, parse_device

    index = None if device == "both" else parse_device(device)[1]
    if index is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(import_cupy().cuda.Device(index))
        if torch:
            stack.enter_context(_torch_gpu(index))
        stack.enter_context(_children_see_gpu(index))
        yield


def _torch_gpu(index: int):
    """torch's current GPU set to ``index`` while in the block, where torch has CUDA."""
    try:
        import torch
    except ImportError:
        return contextlib.nullcontext()
    return torch.cuda.device(index) if torch.cuda.is_available() else contextlib.nullcontext()


@contextlib.contextmanager
def _children_see_gpu(index: int):
    """Child processes started in the block see GPU ``index`` of this one, as their cuda:0
    (entered last: torch, once imported, reads the variable for its device count)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = (visible.split(",")[index].strip() if visible
                                          else str(index))
    try:
        yield
    finally:
        if visible is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible


def _measure_and_print(sections, plan, progress: bool) -> list:
    """Run the sections, printing each table as its rows come (above the progress bar, on
    stdout); return every row."""
    from tqdm import tqdm

    from ..bench.report import format_row, section_foot, section_head
    from ..bench.runner import Finished, Section, run

    rows, section, first = [], None, 0
    for item in run(sections, progress):
        if isinstance(item, Section):
            section, first = item, len(rows)
            lines = section_head(section, plan)
        elif isinstance(item, Finished):
            lines = section_foot(item, rows[first:])
        else:
            rows.append(item)
            lines = [format_row(section, item)]
        for line in lines:
            tqdm.write(line, file=sys.stdout)
    return rows


def _plan(args):
    """The :class:`~minifcn.bench.runner.Plan` the options ask for; UserError where they
    contradict each other or a count is out of range."""
    from ..bench.net_cases import NETS
    from ..bench.runner import Plan

    groups = GROUPS[args.group]
    if args.layers and "ops" not in groups:
        raise UserError(f"bench: --layers chooses ops; it has no effect on '{args.group}'")
    if args.net and "ops" not in groups:
        raise UserError(f"bench: --net chooses the layers of 'ops'; it has no effect on "
                        f"'{args.group}' (--arch chooses networks)")
    net = args.net or "fcn8s"
    layers = _layers(args.layers, net)
    size = args.size or (NETS[net].size if "ops" in groups else (500, 500))
    if args.arch and "fcn" not in groups:
        raise UserError(f"bench: --arch chooses networks; it has no effect on '{args.group}'")
    if args.batch < 1:
        raise UserError(f"bench: --batch must be at least 1, got {args.batch}")
    _check_network_options(args, size)
    if args.batch != 1 and "fcn" not in groups:
        raise UserError(f"bench: --batch sizes the networks' steps; it has no effect on "
                        f"'{args.group}'")
    for name, least in (("repeat", 1), ("warmup", 0)):
        value = getattr(args, name)
        if value is not None and value < least:
            raise UserError(f"bench: --{name} must be at least {least}, got {value}")
    if not args.min_time >= 0 or args.min_time == float("inf"):     # NaN fails the first
        raise UserError(f"bench: --min-time must be a finite number >= 0 seconds, got "
                        f"{args.min_time:g}")
    return Plan(groups=groups, devices=DEVICES.get(args.device, ("cuda",)), size=size,
                width=args.width, dtype=args.dtype, net=net, ops=layers,
                archs=tuple(dict.fromkeys(args.arch or ("fcn8s",))),
                ops_repeat=args.repeat or DEFAULT_REPEAT["ops"],
                fcn_repeat=args.repeat or DEFAULT_REPEAT["fcn"], warmup=args.warmup,
                min_time=args.min_time, torch=not args.no_torch, batch=args.batch)


def _layers(layers, net: str) -> tuple:
    """The ops of ``net`` that ``--layers`` names ('all': every one), in the order given;
    UserError naming an op that belongs to another network."""
    from ..bench.net_cases import NETS

    ops = NETS[net]
    if not layers:
        return ops.default
    if "all" in layers:
        return ops.ops
    foreign = [name for name in layers if name not in ops.table]
    if foreign:
        raise UserError(f"bench: --layers {foreign[0]} is not an op of --net {net}; its ops: "
                        f"{' '.join(ops.ops)}")
    return tuple(dict.fromkeys(layers))


def _check_network_options(args, size) -> None:
    """What a network asks of the options: U-Net a size it takes (every pooled map even),
    DeepLabV3's training step a batch of 2 (its image-pooling BatchNorm sees one value per
    channel and image, which PyTorch refuses in training mode)."""
    from ..bench.network import UNET_DEPTH
    from ..models.unet_sizes import output_size

    if "unet" in (args.arch or ()):
        try:
            for side, side_size in zip(("height", "width"), size):
                output_size(side_size, UNET_DEPTH, side)
        except ValueError as err:
            raise UserError(f"bench: --size for unet: {err}") from None
    if "deeplabv3_resnet50" in (args.arch or ()) and args.batch < 2:
        raise UserError("bench: deeplabv3_resnet50's training step needs --batch 2 or more (its "
                        "image-pooling BatchNorm sees one value per channel at batch 1, which "
                        "PyTorch refuses in training mode)")


def _check_outputs(args) -> None:
    """Before minutes of timing: matplotlib for --plot, and folders for the outputs."""
    if args.plot:
        from ..bench.chart import require_matplotlib
        try:
            require_matplotlib()
        except ImportError as err:
            raise UserError(f"bench: --plot needs matplotlib, but {err}") from None
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        folder = os.path.dirname(os.path.abspath(path)) if path else None
        if folder and not os.path.isdir(folder):
            raise UserError(f"bench: {option}: no such folder: {folder}")
        if path and os.path.isdir(path):
            raise UserError(f"bench: {option} names a folder, not a file: {path}")


@contextlib.contextmanager
def _writing(option: str, path: str):
    """A write failure (disk full, folder gone meanwhile) as a UserError naming the option;
    the tables are printed by then, so only the file is lost."""
    try:
        yield
    except OSError as err:
        raise UserError(f"bench: cannot write {option} {path}: {err.strerror or err}") \
            from None


def _write_json(args, plan, sections, rows, started, seconds) -> None:
    import numpy as np

    from ..bench.machine import clock_name, machine_record
    from ..bench.results import record, write_json

    xp = next((s.xp for s in sections if s.device == "cuda"), np)
    torch = next((s.torch for s in sections if s.torch is not None), None)
    devices = {s.device: {"torch": None if s.torch is None else s.torch.__version__,
                          "torch_note": s.torch_note or None, "clock": clock_name(s.xp)}
               for s in sections}
    write_json(args.json, record(
        rows, command=_command(args, plan), settings=dict(plan._asdict(), size=list(plan.size)),
        machine=machine_record(torch=torch, xp=xp), devices=devices, started=started,
        seconds=seconds))


def _command(args, plan) -> str:
    """The command that repeats this run's measurements (outputs and progress aside)."""
    h, w = plan.size
    words = ["minifcn bench", args.group, "--device", args.device, f"--size {h}x{w}",
             f"--width {plan.width:g}", "--dtype", plan.dtype, "--warmup", str(plan.warmup)]
    if plan.batch != 1:
        words.append(f"--batch {plan.batch}")
    if args.repeat:
        words.append(f"--repeat {args.repeat}")
    if "ops" in plan.groups:
        words += ["--min-time", f"{plan.min_time:g}", "--net", plan.net, "--layers", *plan.ops]
    if "fcn" in plan.groups:
        words += ["--arch", *plan.archs]
    return " ".join(words + ["--no-torch"] * (not plan.torch))
