"""Ages and sizes as users write them (``12h``, ``7d``, ``500M``, ``10G``), and sizes as shlax
prints them: one grammar for every option and recipe key that takes one (``shlax cache prune``,
a package manager's ``update_max_age``)."""

from __future__ import annotations

import re
from typing import Optional

_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)i?b?\s*")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

AGE_HINT = "units: s, m, h, d, w (e.g. 30m, 12h, 7d, 2w)"
SIZE_HINT = "units: K, M, G, T (e.g. 500M, 10G)"


def parse_age(text: str) -> Optional[float]:
    """Seconds in ``30m``, ``6h``, ``2d``, ``1w`` (None when the text is not like that)."""
    m = _AGE.fullmatch(text.lower())
    return float(m.group(1)) * _AGE_UNITS[m.group(2)] if m else None


def parse_size(text: str) -> Optional[int]:
    """Bytes in ``500M``, ``10G``, ``1.5GiB``, ``4096`` (None when the text is not like that)."""
    m = _SIZE.fullmatch(text.lower())
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)]) if m else None


def human(n: float) -> str:
    """A byte count as people read it: ``512 B``, ``1.5 MB`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
