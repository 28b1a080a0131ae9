"""The ``npm`` download cache: the host user's own npm cache (``$npm_config_cache`` or ``~/.npm``).

npm's cache is content-addressed (cacache) and safe to share between concurrent runs, so image
steps mount it with no lock. Steps get ``npm_config_prefer_offline`` (tarballs and metadata seen
before are not fetched again) and, with ``--offline``, ``npm_config_offline``; audit, fund and
update checks are off (they always hit the network). ``run`` steps asking for ``caches = ["npm"]``
get the same environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from shlax_core.backends import Mount
from shlax_core.caches import Cache

from shlax_core import trust

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.actions import StepContext

CACHE_TARGET = "/run/shlax/npm-cache"


def host_npm_cache() -> Path:
    env = os.environ.get("npm_config_cache") or os.environ.get("NPM_CONFIG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".npm"


class NpmCache(Cache):
    """The user's npm cache, shared with build containers."""

    def folders(self) -> Sequence[Path]:
        return [host_npm_cache()]

    def mounts(self, ctx: "StepContext") -> Sequence[Mount]:
        if not ctx.is_image:
            return []
        host_npm_cache().mkdir(parents=True, exist_ok=True)
        return [Mount(str(host_npm_cache()), CACHE_TARGET), *trust.mounts(ctx)]

    def env(self, ctx: "StepContext") -> dict[str, str]:
        env = {"npm_config_audit": "false", "npm_config_fund": "false",
               "npm_config_update_notifier": "false", "npm_config_prefer_offline": "true"}
        if ctx.is_image:
            env["npm_config_cache"] = CACHE_TARGET
            env.update(trust.env(ctx, ("NODE_EXTRA_CA_CERTS", "npm_config_cafile")))
        if ctx.offline:
            env["npm_config_offline"] = "true"
        return env

    def prune(self, dry_run: bool = False) -> int:
        """The npm cache is the user's own: left alone (``npm cache verify`` garbage-collects it)."""
        return 0
