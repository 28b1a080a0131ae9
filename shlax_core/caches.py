"""The download-cache contract: host folders lent to steps so rebuilt layers reinstall offline.

A cache plugin (``shlax.caches`` entry point) says which host folders to mount where, which
environment a step needs to use them, and whether concurrent runs must take turns (apt must; pip
and npm caches are safe to share). ``shlax cache ls|du|prune`` ask every cache for its folders.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, ContextManager, Sequence

from shlax_core import dirs
from shlax_core.backends import Mount

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.actions import StepContext


class Cache:
    """Base class of download caches. ``name`` and ``version`` are set by the plugin loader."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = ""

    def folders(self) -> Sequence[Path]:
        """Every host folder this cache owns or shares (for ``shlax cache ls``/``du``)."""
        return [dirs.download_cache(self.name)]

    def mounts(self, ctx: "StepContext") -> Sequence[Mount]:
        """Mounts for one step on this backend (image or host)."""
        return []

    def env(self, ctx: "StepContext") -> dict[str, str]:
        """Environment variables a step needs to use the cache."""
        return {}

    def lock(self, ctx: "StepContext") -> ContextManager[None]:
        """Held for the whole step: override when concurrent runs cannot share the folders."""
        return contextlib.nullcontext()

    def prune(self, dry_run: bool = False) -> int:
        """Drop what is no longer useful; return bytes freed. Default: nothing."""
        return 0
