"""Which installed entry points count: the selection every loader of shlax makes.

Kept apart from :mod:`shlax_core.plugins` (which imports ``importlib.metadata`` and pluggy) so the
no-op fast path can apply the very same rules to the entry points it recorded, cheaply:
``SHLAX_DISABLE_PLUGINS`` hides entry points by distribution or entry-point name, and a
distribution counts once per name (two distributions claiming one name stay two candidates:
loading it is then an error naming both).
"""

from __future__ import annotations

import os
from typing import Iterable, Protocol, TypeVar

BLOCK_ENV = "SHLAX_DISABLE_PLUGINS"


class Row(Protocol):
    name: str
    dist: str


R = TypeVar("R", bound=Row)


def blocked() -> set[str]:
    """Distribution and entry-point names listed in ``SHLAX_DISABLE_PLUGINS``."""
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


def select(rows: Iterable[R]) -> dict[str, list[R]]:
    """The candidates for each name: blocked entries left out, one per distribution."""
    found: dict[str, list[R]] = {}
    hidden = blocked()
    for row in rows:
        if row.dist in hidden or row.name in hidden:
            continue
        entries = found.setdefault(row.name, [])
        if not any(e.dist == row.dist for e in entries):
            entries.append(row)
    return found
