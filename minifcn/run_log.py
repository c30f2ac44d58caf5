r"""A run's folder and its ``log.csv``: never overwritten by accident, consistent with the
checkpoint after any kill.

**The folder.** A run writes ``log.csv``, ``last.npz`` and ``best.npz`` (:data:`RUN_FILES`)
into its folder. A new run into a folder holding any of them is refused
(:class:`RunExistsError`) unless the caller says to overwrite; resuming from a checkpoint of
that folder continues it.

**The log.** Rows are appended as training goes, one per logged iteration, and each row
that a checkpoint follows is flushed to disk before the checkpoint is written. So after a
SIGKILL the log holds every row up to the checkpoint's iteration, and perhaps rows beyond
it. A resume rewrites the log (atomically) keeping exactly the rows up to the checkpoint's
last logged iteration (:func:`start_log`); the iterations after it run again and log the
same rows. A row written where a call stopped early (``stop_after``, a deadline) closes no
logging window: it is provisional, and a resume drops it and continues the window, so the
log of an interrupted and resumed run equals that of a run never interrupted.

Starting the log rewrites it in place of whatever ``log.csv`` was, a symbolic link
included: like the checkpoints, which are renamed onto their names, the log is a file of
the run's folder.
"""
from __future__ import annotations

import csv
import io
import os

from .atomic import atomic_open

LOG_FIELDS = ("iteration", "loss", "lr", "pixel_accuracy", "mean_accuracy", "mean_iou",
              "frequency_weighted_iou")
RUN_FILES = ("log.csv", "last.npz", "best.npz")


class RunExistsError(ValueError):
    """A new run into a folder that already holds one."""


def existing_run(folder, names=RUN_FILES) -> list:
    """The files of ``names`` present in ``folder`` (links included); a ``log.csv`` that
    holds no row (a run that stopped before logging anything, e.g. diverged at once) is not
    a run."""
    return [name for name in names if os.path.lexists(os.path.join(folder, name))
            and (name != "log.csv" or _has_rows(os.path.join(folder, name)))]


def prepare_folder(folder, log_path, resume, overwrite: bool) -> None:
    """Refuse, or with ``overwrite`` clear, a run already in ``folder`` (or a log with rows
    at ``log_path``) unless ``resume`` continues it from a checkpoint in that folder."""
    if resume is not None and folder is not None and _inside(resume, folder):
        return
    found = existing_run(folder) if folder is not None else []
    if log_path is not None and _has_rows(log_path) and not found:
        found = [os.fspath(log_path)]
    if not found:
        return
    if not overwrite:
        where = folder if folder is not None else os.path.dirname(os.fspath(log_path)) or "."
        raise RunExistsError(
            f"{os.fspath(where)} already holds a run ({', '.join(found)}): continue it with "
            f"resume (--resume {os.path.join(os.fspath(where), 'last.npz')}), replace it "
            "with overwrite=True (--overwrite), or write into a new folder")
    for name in found:
        os.remove(name if folder is None else os.path.join(folder, name))


def start_log(path, keep_through=None) -> None:
    """Write ``path`` anew, atomically: the header, then (``keep_through`` an iteration) the
    complete rows of the old log up to that iteration."""
    rows = _rows_through(path, keep_through) if keep_through is not None else []
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=LOG_FIELDS, restval="", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(path) as f:
        f.write(text.getvalue().encode())


def append_row(path, row: dict, durable: bool = False) -> None:
    """Append one row; ``durable``: flush it to disk (before a checkpoint is written)."""
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=LOG_FIELDS, restval="").writerow(row)
        if durable:
            f.flush()
            os.fsync(f.fileno())


def _rows_through(path, iteration: int) -> list:
    """The complete rows (a whole line, an integer iteration) up to ``iteration``."""
    try:
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    complete = [line for line in lines[1:] if line.endswith("\n")]   # a cut last line: no
    rows = []
    for row in csv.DictReader(complete, fieldnames=LOG_FIELDS):
        try:
            if int(row["iteration"]) <= iteration:
                rows.append({k: v for k, v in row.items() if k in LOG_FIELDS})
        except (TypeError, ValueError):
            continue
    return rows


def _has_rows(path) -> bool:
    """Whether the log at ``path`` holds a row below its header (a link counts as one)."""
    if os.path.islink(path):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4096).count(b"\n") > 1 or os.path.getsize(path) > 4096
    except OSError:
        return False


def _inside(path, folder) -> bool:
    return os.path.dirname(os.path.abspath(os.fspath(path))) == os.path.abspath(
        os.fspath(folder))
