"""The ``minifcn`` command line: argparse subcommands.

Exit status: 0 success, 1 a failed check or an internal error, 2 a user error (bad
argument, missing or unreadable file, unavailable device, a workspace the machine cannot
give), reported as one line without a traceback.
"""
from __future__ import annotations

import sys
import traceback

from .._version import __version__
from ..memory import (ENV_VARIABLE, WorkspaceLimitError, WorkspaceMemoryError,
                         get_workspace_limit, result_pool_from_environment)
from . import bench, convert, demo, gradcheck, predict, summary, train
from .common import Parser, UserError


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_environment()
        return args.run(args)
    except UserError as err:
        print(f"minifcn: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (WorkspaceLimitError, WorkspaceMemoryError) as err:   # too big for this machine
        hint = "" if ENV_VARIABLE in str(err) else (
            f" (on the command line: the environment variable {ENV_VARIABLE}, e.g. "
            f"{ENV_VARIABLE}=1GiB)")
        print(f"minifcn: error: {_one_line(err)}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minifcn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                    # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except Exception:                          # a bug: show everything, exit 1
        traceback.print_exc()
        print("minifcn: internal error (the traceback above is a bug report)", file=sys.stderr)
        return 1


def _check_environment() -> None:
    """An environment variable of minifcn's that does not parse (MINIFCN_WORKSPACE_LIMIT,
    MINIFCN_RESULT_POOL, MINIFCN_ALGORITHM or MINIFCN_CONV_ALGORITHM) is a user error,
    reported up front."""
    from ..ops import get_algorithm

    try:
        get_workspace_limit()
        result_pool_from_environment()
        get_algorithm()
    except ValueError as err:
        raise UserError(str(err)) from None


def _one_line(err) -> str:
    """The message of ``err`` on one line, whatever the library put in it."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def build_parser():
    parser = Parser(prog="minifcn", description="Fully convolutional networks in NumPy/CuPy.")
    parser.add_argument("--version", action="version", version=f"minifcn {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    demo.add(commands)
    gradcheck.add(commands)
    convert.add(commands)
    summary.add(commands)
    predict.add_predict(commands)
    predict.add_evaluate(commands)
    train.add(commands)
    bench.add(commands)
    return parser


__all__ = ["UserError", "build_parser", "main"]
