"""``minifcn gradcheck NAME|all``: an op's backward against central differences."""
from __future__ import annotations

import numpy as np

from .common import UserError, check_device


def add(commands):
    from ..gradcheck import MODES
    from ..gradcheck.registry import all_options, registered

    p = commands.add_parser(
        "gradcheck", help="check an op's backward against finite differences",
        description="Compare an op's hand-written backward with central differences in "
                    "float64 and print the report. 'all' runs every registered op in several "
                    f"configurations. Ops: {', '.join(registered())}.")
    p.add_argument("op", help="an op name, or 'all'")
    for option, kind in all_options().items():
        flag = "--" + option.replace("_", "-")
        if kind is bool:
            p.add_argument(flag, action="store_const", const=True, help=f"the op's {option}")
        else:
            p.add_argument(flag, type=kind, metavar=kind.__name__.upper(),
                           help=f"the op's {option}")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--mode", choices=MODES, default="full", help="default full")
    p.add_argument("--dtype", choices=tuple(_TOLERANCES), default="float64",
                   help="float64 (default) or float32, with looser default tolerances")
    for name in ("eps", "atol", "rtol"):
        p.add_argument(f"--{name}", type=float, metavar="X",
                       help=f"finite-difference {name} (default: "
                            + ", ".join(f"{v[name]:g} in {k}" for k, v in _TOLERANCES.items())
                            + ")")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-elements", type=int, metavar="N",
                   help="check at most N sampled elements per tensor")
    p.add_argument("--quiet", action="store_true", help="one line per check, no tables")
    p.set_defaults(run=run)


def run(args) -> int:
    import warnings

    from ..backend import to_device
    from ..gradcheck import GradcheckPrecisionWarning, check_function
    from ..gradcheck.registry import all_options, build_case, entry, registered

    check_device(args.device, "gradcheck")
    options = {k: getattr(args, k) for k in all_options()}
    # the case builders make arrays from these before any op sees them: check them here
    for name, value, least in (("seed", args.seed, 0), ("kernel", options.get("kernel"), 1)):
        if value is not None and value < least:
            raise UserError(f"gradcheck: --{name} must be at least {least}, got {value}")
    if args.op == "all":
        if any(v is not None for v in options.values()):
            raise UserError("'gradcheck all' runs preset configurations and takes no op options")
        runs = [(name, preset) for name in registered() for preset in entry(name).presets]
    else:
        try:
            entry(args.op)
        except ValueError as err:
            raise UserError(str(err)) from None
        runs = [(args.op, options)]

    failed = 0
    for name, opts in runs:
        try:
            forward, backward, inputs = build_case(name, np.random.default_rng(args.seed), **opts)
            inputs = [to_device(a, args.device) if isinstance(a, np.ndarray) else a for a in inputs]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GradcheckPrecisionWarning)
                report = check_function(forward, backward, inputs, mode=args.mode, seed=args.seed,
                                        dtype=np.dtype(args.dtype), max_elements=args.max_elements,
                                        **_tolerances(args),
                                        title=_describe(name, opts))
        except (ValueError, TypeError) as err:
            raise UserError(f"gradcheck {name}: {err}") from None
        failed += not report.passed
        if args.quiet and report.passed:
            print(f"ok    {report.title}")
        else:
            print(report, end="\n\n")
    print(f"gradcheck: {len(runs) - failed} passed, {failed} failed")
    return 1 if failed else 0


# Central differences lose about half the digits: float32 needs a larger step and tolerance.
_TOLERANCES = {"float64": dict(eps=1e-6, atol=1e-7, rtol=1e-5),
               "float32": dict(eps=1e-3, atol=1e-2, rtol=1e-2)}


def _tolerances(args) -> dict:
    defaults = _TOLERANCES[args.dtype]
    return {k: getattr(args, k) if getattr(args, k) is not None else v
            for k, v in defaults.items()}


def _describe(name, options) -> str:
    given = ", ".join(f"{k}={v}" for k, v in options.items() if v is not None)
    return f"{name}({given})"
