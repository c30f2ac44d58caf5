"""``minifcn gradcheck NAME|all|FILE.py:NAME``: a backward against central differences."""
from __future__ import annotations

import argparse
import ast
import contextlib
import warnings

import numpy as np

from .common import UserError, add_device_argument, check_device

DESCRIPTION = """\
Compare a hand-written backward with central differences in float64 and print the report.
OP is a built-in op, 'all' (each built-in op in several configurations), or your own layer,
FILE.py:NAME or package.module:NAME. NAME is a Module subclass (built with no arguments or
with --init-args), a function returning a Module, a (forward, backward) pair, or two
functions as forward,backward; the layer gets standard normal inputs shaped --input-shape.
Exit status: 0 every check passed, 1 one failed, 2 a usage error."""

EPILOG = """\
options each built-in op takes, defaults in brackets (any other op option is an error):
{table}

examples:
  minifcn gradcheck conv2d --kernel 3 --stride 2 --dilation 2
  minifcn gradcheck examples/my_layer.py:ScaledTanh --input-shape 2x3x4x4
  minifcn gradcheck examples/my_layer.py:ScaledTanh --init-args 5 --input-shape 2x5x4x4
  minifcn gradcheck examples/my_layer.py:leaky_relu_forward,leaky_relu_backward \\
      --input-shape 2x3x4x4"""


def add(commands):
    from ..gradcheck import MODES
    from ..gradcheck.registry import options_table

    p = commands.add_parser(
        "gradcheck", help="check an op's or your own layer's backward against finite "
                          "differences", description=DESCRIPTION,
        epilog=EPILOG.format(table="\n".join("  " + line for line in options_table())),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("op", metavar="OP", help="a built-in op, 'all', or FILE.py:NAME")
    _add_op_options(p.add_argument_group("options of the built-in ops (the table below says "
                                         "which)"))
    own = p.add_argument_group("options for your own layer (FILE.py:NAME)")
    own.add_argument("--input-shape", type=_shape, action="append", metavar="SHAPE",
                     help="shape of the layer's input, such as 2x3x8x8 (N x C x H x W); "
                          "repeat it for a layer with several inputs")
    own.add_argument("--init-args", type=_call_arguments, metavar="ARGS",
                     help="arguments for NAME's constructor or factory, as in a Python call "
                          "of literals: --init-args '3' or --init-args '3, gain=0.5'")
    add_device_argument(p)
    p.add_argument("--mode", choices=MODES, default="full",
                   help="full: every element (default); directional: one random direction "
                        "per tensor, two forward calls")
    p.add_argument("--dtype", choices=tuple(_TOLERANCES), default="float64",
                   help="float64 (default) or float32, with looser default tolerances")
    for name, what in (("eps", "finite-difference step"), ("atol", "absolute tolerance"),
                       ("rtol", "relative tolerance")):
        p.add_argument(f"--{name}", type=float, metavar="X",
                       help=f"{what} (default: "
                            + ", ".join(f"{v[name]:g} in {k}" for k, v in _TOLERANCES.items())
                            + ")")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds inputs, dy and sampled elements (default 0)")
    p.add_argument("--max-elements", type=int, metavar="N",
                   help="check at most N sampled elements per tensor")
    p.add_argument("--quiet", action="store_true", help="one line per passed check, no tables")
    p.set_defaults(run=run)


def _add_op_options(group) -> None:
    """A flag for each option any built-in op takes, its help saying which ops take it."""
    from ..gradcheck.registry import all_options, option_help

    for option, kind in all_options().items():
        flag = "--" + option.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, action="store_const", const=True, help=option_help(option))
        else:
            group.add_argument(flag, type=kind, metavar=kind.__name__.upper(),
                               help=option_help(option))


def run(args) -> int:
    check_device(args.device, "gradcheck")
    if args.seed < 0:
        raise UserError(f"gradcheck: --seed must be at least 0, got {args.seed}")
    if ":" in args.op or args.op.endswith(".py"):
        return finish([_check_layer(args)], args.quiet)
    if args.input_shape or args.init_args:
        raise UserError(f"gradcheck {args.op}: --input-shape and --init-args are for your own "
                        f"layer (FILE.py:NAME); a built-in op makes its own inputs")
    return finish([_check_op(name, opts, args) for name, opts in _op_runs(args)], args.quiet)


def _op_runs(args) -> list:
    """``(op name, options)`` for each check: the one asked for, or every preset."""
    from ..gradcheck.registry import all_options, entry, registered

    options = op_options(args)
    # the case builders make arrays from these before any op sees them: check them here
    if options.get("kernel") is not None and options["kernel"] < 1:
        raise UserError(f"gradcheck: --kernel must be at least 1, got {options['kernel']}")
    if args.op == "all":
        if options:
            raise UserError("'gradcheck all' runs preset configurations and takes no op options")
        return [(name, preset) for name in registered() for preset in entry(name).presets]
    try:
        entry(args.op)
    except ValueError as err:
        raise UserError(str(err)) from None
    return [(args.op, {k: options.get(k) for k in all_options()})]


def op_options(args) -> dict:
    """The built-in ops' options given on the command line."""
    from ..gradcheck.registry import all_options

    return {k: getattr(args, k) for k in all_options() if getattr(args, k) is not None}


def _check_op(name, opts, args):
    from ..backend import to_device
    from ..gradcheck import check_function
    from ..gradcheck.registry import build_case

    try:
        forward, backward, inputs = build_case(name, np.random.default_rng(args.seed), **opts)
        inputs = [to_device(a, args.device) if isinstance(a, np.ndarray) else a for a in inputs]
        with quiet_precision_warnings():
            given = ", ".join(f"{k}={v}" for k, v in opts.items() if v is not None)
            return check_function(forward, backward, inputs, title=f"{name}({given})",
                                  **_settings(args))
    except (ValueError, TypeError) as err:
        raise UserError(f"gradcheck {name}: {err}") from None


def _check_layer(args):
    """The report on the user's FILE.py:NAME (see minifcn.gradcheck.user_layer)."""
    from ..gradcheck.user_layer import LayerSpecError, check_layer, failure, load_layer

    flags = ["--" + k.replace("_", "-") for k in op_options(args)]
    if flags:
        raise UserError(f"gradcheck {args.op}: {', '.join(flags)}: options of the built-in "
                        f"ops; your layer takes --input-shape and --init-args")
    if not args.input_shape:
        raise UserError(f"gradcheck {args.op}: give the input's shape, such as "
                        f"--input-shape 2x3x8x8")
    try:
        layer = load_layer(args.op, *(args.init_args or ((), {})))
    except LayerSpecError as err:
        raise UserError(f"gradcheck {args.op}: {err}") from None
    try:
        with quiet_precision_warnings():
            report = check_layer(layer, args.input_shape, device=args.device, **_settings(args))
    except Exception as err:
        if failure(err, layer) is None:      # a bug of minifcn's: the traceback
            raise
        raise UserError(f"gradcheck {args.op}: {failure(err, layer)}") from None
    report.title = args.op
    report.settings["input"] = ", ".join("x".join(map(str, s)) for s in args.input_shape)
    return report


def finish(reports, quiet: bool) -> int:
    """Print the reports and the tally; the exit status: 1 when a check failed."""
    failed = sum(not report.passed for report in reports)
    for report in reports:
        if quiet and report.passed:
            print(f"ok    {report.title}")
        else:
            print(report, end="\n\n")
    print(f"gradcheck: {len(reports) - failed} passed, {failed} failed")
    return 1 if failed else 0


@contextlib.contextmanager
def quiet_precision_warnings():
    """float32 on the command line is asked for: its precision warning would be noise."""
    from ..gradcheck import GradcheckPrecisionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradcheckPrecisionWarning)
        yield


# Central differences lose about half the digits: float32 needs a larger step and tolerance.
_TOLERANCES = {"float64": dict(eps=1e-6, atol=1e-7, rtol=1e-5),
               "float32": dict(eps=1e-3, atol=1e-2, rtol=1e-2)}


def _settings(args) -> dict:
    """check_function's keyword arguments that the command line sets."""
    tolerances = {k: getattr(args, k) if getattr(args, k) is not None else v
                  for k, v in _TOLERANCES[args.dtype].items()}
    return dict(mode=args.mode, seed=args.seed, dtype=np.dtype(args.dtype),
                max_elements=args.max_elements, **tolerances)


def _shape(text: str) -> tuple:
    """'2x3x8x8' (or '2,3,8,8') -> (2, 3, 8, 8)."""
    try:
        shape = tuple(int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape such as 2x3x8x8, got {text!r}") \
            from None
    if min(shape) < 1:
        raise argparse.ArgumentTypeError(f"every size must be at least 1, got {text!r}")
    return shape


def _call_arguments(text: str) -> tuple:
    """'3, gain=0.5' -> ((3,), {'gain': 0.5}): a call's arguments, Python literals only."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        if not isinstance(call, ast.Call) or any(k.arg is None for k in call.keywords) \
                or any(isinstance(a, ast.Starred) for a in call.args):
            raise ValueError(text)
        return (tuple(ast.literal_eval(a) for a in call.args),
                {k.arg: ast.literal_eval(k.value) for k in call.keywords})
    except (SyntaxError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected Python literals as in a call, such as '3' or '3, gain=0.5', "
            f"got {text!r}") from None
