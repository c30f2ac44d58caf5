"""The names real CuPy exposes, as ``make_names.py`` read them into ``cupy_names.json``."""
from __future__ import annotations

import functools
import json
import pathlib

TABLE = pathlib.Path(__file__).with_name("cupy_names.json")


@functools.lru_cache(maxsize=1)
def table() -> dict:
    return json.loads(TABLE.read_text())


def module(name: str) -> dict:
    """``{name: {"kind": ..., "params": ...}}`` for CuPy module ``name`` ("cupy.random")."""
    return table()["modules"][name]


def cls(name: str) -> dict:
    """The attributes of CuPy class ``name`` ("cupy.ndarray")."""
    return table()["classes"][name]


def check_call(owner: str, name: str, params: list[str] | None, args, kwargs) -> None:
    """Refuse what CuPy's ``owner.name`` would refuse by its signature: a keyword it does not
    take, or more positional arguments than it has (``params`` from the table)."""
    if params is None or any(p.startswith("**") for p in params):
        return
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise TypeError(f"{owner}.{name}() got an unexpected keyword argument "
                        f"{unknown[0]!r} (CuPy's {name} takes {', '.join(params) or 'none'}; "
                        "cupy emulation)")
    if any(p.startswith("*") for p in params):
        return
    if len(args) > len(params):
        raise TypeError(f"{owner}.{name}() takes at most {len(params)} positional arguments "
                        f"({len(args)} given; cupy emulation)")
