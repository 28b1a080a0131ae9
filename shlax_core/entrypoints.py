"""Which installed entry points count: the selection every loader of shlax makes.

Kept apart from :mod:`shlax_core.plugins` (which imports pluggy) so the no-op fast path can apply
the very same rules to the entry points it recorded, and ``shlax --help`` can list plugin commands,
cheaply:
``SHLAX_DISABLE_PLUGINS`` hides entry points by distribution or entry-point name, and a
distribution counts once per name (two distributions claiming one name stay two candidates:
loading it is then an error naming both).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, TypeVar

BLOCK_ENV = "SHLAX_DISABLE_PLUGINS"

#: plugin kind -> its entry-point group (documented in :mod:`shlax_core.plugins`)
GROUPS = {
    "action": "shlax.actions",
    "backend": "shlax.backends",
    "cache": "shlax.caches",
    "command": "shlax.commands",
    "cache-command": "shlax.cache_commands",
    "hooks": "shlax.hooks",
    "section": "shlax.sections",
}


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


@dataclass
class EntryPoint:
    """One entry point with the distribution that declares it (metadata only; nothing imported)."""

    group: str
    name: str
    value: str
    dist: str
    version: str
    ep: Any = field(repr=False, default=None)


def raw_entry_points(group: str, scanned: Any = None) -> list[EntryPoint]:
    """Every entry point of a group, before any selection (``SHLAX_DISABLE_PLUGINS`` included)."""
    import importlib.metadata  # not for the fast path, which selects from rows it recorded

    rows = []
    selected = scanned.select(group=group) if scanned is not None else importlib.metadata.entry_points(group=group)
    for ep in selected:
        dist = getattr(ep, "dist", None)
        dname = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "0"
        rows.append(EntryPoint(group, ep.name, ep.value, dname, version, ep))
    return rows


def entry_points(group: str, scanned: Any = None) -> dict[str, list[EntryPoint]]:
    """All entry points of a group by name, one per distinct distribution, minus those
    ``SHLAX_DISABLE_PLUGINS`` hides. ``scanned``: the result of one
    ``importlib.metadata.entry_points()`` to select from (each scan reads every installed
    distribution's metadata: about 10 ms)."""
    return select(raw_entry_points(group, scanned))
