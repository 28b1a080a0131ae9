"""Reading the TOML files users write (recipes, inventories) with errors at ``FILE:LINE:COLUMN``.

One place for it, so every file a user hands shlax reports a bad byte or a syntax error the same
way: where it is, as an editor shows it, never a byte offset or a traceback. Positions come from
the parser itself (``lineno``/``colno`` of tomli >= 2.1, or of the standard library's tomllib
from Python 3.14), not from its message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from shlax_core.errors import RecipeError

if sys.version_info >= (3, 14):
    import tomllib
else:
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


def position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a byte offset; the column counts characters, as editors do."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def read(path: Path, shown: str, what: str = "file") -> str:
    """The text of a UTF-8 file; RecipeError naming ``shown:LINE:COL`` of the first bad byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"cannot read the {what} {shown}: {exc.strerror}", where=shown,
                          hint="check the path") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = position(data, exc.start)
        raise RecipeError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start or continue a "
                          "character", where=f"{shown}:{line}:{col}",
                          hint="save the file as UTF-8") from None


def loads(text: str, shown: str, what: str = "") -> dict[str, Any]:
    """Parse TOML; a syntax error becomes a RecipeError at ``shown:LINE:COL``."""
    try:
        return tomllib.loads(text)
    except TOMLDecodeError as exc:
        line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        if line and getattr(exc, "pos", 0) >= len(text.rstrip("\n")):
            # "at end of document" (an unclosed array...): the end of the last line, not a line after it
            lines = text.rstrip("\n").split("\n")
            line, col = len(lines), len(lines[-1]) + 1
        where = f"{shown}:{line}:{col}" if line else shown
        message = getattr(exc, "msg", None) or str(exc)
        raise RecipeError(f"TOML syntax error{' in the ' + what if what else ''}: {message}", where=where,
                          hint="see https://toml.io for the syntax") from None
