"""The ``pip`` download cache: the host user's own pip cache, plus a wheelhouse for offline rebuilds.

- The user's pip cache (``$PIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/pip``, else ``~/.cache/pip``)
  is mounted into image steps, so host and containers share one cache (wheels pip builds from
  sdists land there, and so do HTTP responses wherever caching headers survive).
- pip's HTTP cache depends on the index's caching headers (proxies strip them), so it cannot
  promise an offline rebuild. The wheelhouse can: ``<download cache>/pip/wheelhouse`` keeps a real
  wheel file of every distribution a step installed, and offline steps install with
  ``--no-index --find-links`` from it alone.

Both are safe to share between concurrent runs (pip writes files atomically), so no lock.
The variables set here also make the caches useful to ``run`` steps that ask for them
(``caches = ["pip"]``): ``PIP_CACHE_DIR``, ``PIP_FIND_LINKS`` and, offline, ``PIP_NO_INDEX``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from shlax_core import dirs
from shlax_core.backends import Mount
from shlax_core.caches import Cache

from shlax_core import trust

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.actions import StepContext

CACHE_TARGET = "/run/shlax/pip-cache"
WHEELHOUSE_TARGET = "/run/shlax/wheelhouse"


def host_pip_cache() -> Path:
    """The host user's pip cache folder, found the way pip finds it (environment, then XDG)."""
    env = os.environ.get("PIP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() / "pip" if xdg else Path.home() / ".cache" / "pip"


def wheelhouse() -> Path:
    return dirs.download_cache("pip") / "wheelhouse"


class PipCache(Cache):
    """The user's pip cache, shared with containers, and shlax's wheelhouse for offline installs."""

    def folders(self) -> Sequence[Path]:
        return [wheelhouse(), host_pip_cache()]

    def mounts(self, ctx: "StepContext") -> Sequence[Mount]:
        if not ctx.is_image:
            return []
        for folder in self.folders():
            folder.mkdir(parents=True, exist_ok=True)
        return [Mount(str(host_pip_cache()), CACHE_TARGET), Mount(str(wheelhouse()), WHEELHOUSE_TARGET),
                *trust.mounts(ctx)]

    def env(self, ctx: "StepContext") -> dict[str, str]:
        env = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
        if ctx.is_image:
            env.update({"PIP_CACHE_DIR": CACHE_TARGET, "PIP_FIND_LINKS": WHEELHOUSE_TARGET})
            env.update(trust.env(ctx, ("PIP_CERT", "REQUESTS_CA_BUNDLE")))
        if ctx.offline:
            env["PIP_NO_INDEX"] = "1"
        return env

    def prune(self, dry_run: bool = False) -> int:
        """Drop half-written files from the wheelhouse; wheels are kept (offline rebuilds need them).

        The user's own pip cache is theirs: ``pip cache purge`` empties it.
        """
        freed = 0
        for path in wheelhouse().glob(".*.tmp*") if wheelhouse().is_dir() else []:
            freed += path.stat().st_size
            if not dry_run:
                path.unlink(missing_ok=True)
        return freed
