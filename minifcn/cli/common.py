"""What every subcommand shares: the one-line user error and argument types."""
from __future__ import annotations

import argparse


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):   # one line instead of argparse's usage block
        raise UserError(f"{message} (see {self.prog} --help)")


def height_width(text: str) -> tuple:
    """'500x500' -> (500, 500); argparse reports the TypeError as a usage error."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 500x500, got {text!r}") \
            from None
    if min(height, width) < 1:
        raise argparse.ArgumentTypeError(f"height and width must be positive, got {text!r}")
    return height, width


def check_device(device: str, command: str) -> None:
    """A UserError unless ``device`` is "cpu", or "cuda"/"cuda:N" with CuPy and a GPU."""
    from ..backend import import_cupy, parse_device

    try:
        if parse_device(device)[0] == "cuda":
            import_cupy()
    except (ValueError, RuntimeError) as err:
        raise UserError(f"{command}: {err}") from None
