"""One invocation's shared state: plugins, the reporter, and the user's run options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from shlax_core.cache.hashing import StatCache
from shlax_core.options import RunOptions
from shlax_core.output import Reporter
from shlax_core.plugins import Plugins
from shlax_core.timeline import Timeline


@dataclass
class Session:
    plugins: Plugins
    reporter: Reporter
    offline: bool = False
    no_cache: bool = False
    pull: bool = False
    #: ``--var`` and the options plugins add to `shlax run` (``options.of("registry")``)
    options: RunOptions = field(default_factory=RunOptions)
    recipe_dir: Optional[Path] = None
    #: every timed span of the run, kept when ``--trace`` asked for them
    timeline: Timeline = field(default_factory=Timeline)
    _stat_cache: Optional[StatCache] = None
    _caches: dict[str, Any] = field(default_factory=dict)
    _build_info: Any = None

    @property
    def build_info(self) -> Any:
        """The pinned epoch and the source context (commit, branch, CI) of image builds, read once
        per run (:mod:`shlax_core.buildinfo`)."""
        if self._build_info is None:
            from shlax_core import buildinfo

            self._build_info = buildinfo.of(self.recipe_dir)
        return self._build_info

    @property
    def stat_cache(self) -> StatCache:
        if self._stat_cache is None:
            self._stat_cache = StatCache(self.recipe_dir or Path.cwd())
        return self._stat_cache

    def cache(self, name: str, where: Optional[str] = None) -> Any:
        """The download cache plugin instance called ``name`` (loaded on first use)."""
        if name not in self._caches:
            self._caches[name] = self.plugins.load("cache", name, where=where)()
        return self._caches[name]

    @property
    def hook(self) -> Any:
        return self.plugins.pm.hook

    def save(self) -> None:
        if self._stat_cache is not None:
            self._stat_cache.save()
