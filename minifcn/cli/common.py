"""What every subcommand shares: the one-line user error and argument types."""
from __future__ import annotations

import argparse


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):   # one line instead of argparse's usage block
        raise UserError(f"{message} (see {self.prog} --help)")


def height_width(text: str) -> tuple:
    """'500x300' -> (500, 300), '500' -> (500, 500); argparse reports the error as a usage
    error naming the option."""
    try:
        sizes = [int(v) for v in text.lower().split("x")]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected HxW such as 500x300, or N for NxN, "
                                         f"got {text!r}")
    height, width = sizes if len(sizes) == 2 else sizes * 2
    if min(height, width) < 1:
        raise argparse.ArgumentTypeError(f"height and width must be positive, got {text!r}")
    return height, width


def add_device_argument(parser, extra=()) -> None:
    """Declare ``--device`` as every command does: "cpu" (the default), "cuda" or "cuda:N",
    or one of the command's own ``extra`` words (bench's "both"). Parsing checks the
    spelling; :func:`check_device`, where the command starts its work, checks that CuPy and
    the GPU are there."""
    extra = tuple(extra)
    words = ", ".join(f"'{word}'" for word in ("cpu", "cuda", "cuda:N") + extra)
    expected = " or ".join(words.rsplit(", ", 1))

    def device(text: str) -> str:
        from ..backend import parse_device

        if text not in extra:
            try:
                parse_device(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"device must be {expected}, got {text!r}") \
                    from None
        return text

    parser.add_argument("--device", default="cpu", type=device, metavar="DEVICE",
                        help="cpu (NumPy; default), cuda or cuda:N (CuPy, on GPU N)"
                             + "".join(f", or {word}" for word in extra))


def check_device(device: str, command: str) -> None:
    """A UserError unless ``device`` is "cpu", or "cuda"/"cuda:N" with CuPy and GPU N."""
    from ..backend import import_cupy, parse_device

    try:
        kind, index = parse_device(device)
        count = import_cupy().cuda.runtime.getDeviceCount() if kind == "cuda" else 0
    except (ValueError, RuntimeError) as err:
        raise UserError(f"{command}: {err}") from None
    if index is not None and index >= count:
        raise UserError(f"{command}: device {device!r} does not exist: {count} GPU(s) are "
                        f"visible (cuda:0 to cuda:{count - 1})")


def require_file(path: str, what: str, command: str) -> None:
    """A UserError unless ``path`` is a file this process can open for reading; ``what``
    names it in the message ("image", "--init file")."""
    import os

    if not os.path.exists(path):
        raise UserError(f"{command}: {what} not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"{command}: {what} is a folder, not a file: {path}")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise UserError(f"{command}: {what} cannot be read: {path} ({err.strerror or err})") \
            from None


def check_out_folder(path: str, command: str) -> None:
    """A UserError where ``--out`` names an existing file (the folder is made later)."""
    import os

    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{command}: --out is a file, not a folder: {path}")


def reject_torch_file(path: str, option: str, command: str) -> None:
    """A UserError with the way out where ``option`` names a PyTorch file, not an .npz."""
    import os

    from ..io import is_torch_file, torch_file_advice

    if os.path.isfile(path) and is_torch_file(path):
        raise UserError(f"{command}: {option} {path} is {torch_file_advice(path)}")
