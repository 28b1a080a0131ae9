"""The ``npm`` action and the ``npm`` download cache: the host user's own npm cache.

npm's cache (``$npm_config_cache`` or ``~/.npm``) is content-addressed and safe to share, so image
steps mount it with no lock and npm runs with ``--prefer-offline`` (``--offline`` with ``shlax run
--offline``): what was seen before is not fetched again. Audit, fund and update checks are off
(they always hit the network). On host backends ``npm ls`` checks first.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from shlax_core.actions import Action, StepContext
from shlax_core.downloads import DownloadCache
from shlax_core.errors import StepFailed
from shlax_core.params import doc

CACHE_TARGET = "/run/shlax/npm-cache"


def host_npm_cache() -> Path:
    env = os.environ.get("npm_config_cache") or os.environ.get("NPM_CONFIG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".npm"


class NpmCache(DownloadCache):
    """The user's npm cache, shared with build containers (``npm cache verify`` collects its garbage)."""

    ca_env = ("NODE_EXTRA_CA_CERTS", "npm_config_cafile")
    env_vars = {"npm_config_audit": "false", "npm_config_fund": "false", "npm_config_update_notifier": "false",
                "npm_config_prefer_offline": "true"}
    image_env = {"npm_config_cache": CACHE_TARGET}
    offline_env = {"npm_config_offline": "true"}

    def folders(self) -> Sequence[Path]:
        return [host_npm_cache()]

    def owned(self) -> Sequence[Path]:
        return []  # the user's own

    def host_paths(self, ctx: StepContext) -> dict[str, Path]:
        return {CACHE_TARGET: host_npm_cache()}


@dataclass
class NpmParams:
    dir: Optional[str] = doc("directory in the target holding package.json: `npm ci` when a lock file "
                             "is there, else `npm install`", None)
    packages: list[str] = doc('packages installed globally (npm install -g), e.g. ["is-number@7"]',
                              default_factory=list)
    production: bool = doc("leave devDependencies out (--omit=dev)", False)
    incremental: bool = doc("image builds: when only `packages` grew since the last build, install just the "
                            "added ones on that build's layer (docs/layers.md); false always rebuilds", True)

    def validate(self) -> Any:
        if not self.dir and not self.packages:
            return 'nothing to do: give dir = "/app" (a folder with package.json) and/or packages'
        if self.dir and not self.dir.startswith("/"):
            return "dir", f"dir {self.dir!r} must be an absolute path in the target"
        bad = [p for p in self.packages if p.startswith("-")]
        return f"{bad[0]!r}: options are not packages" if bad else None


class Npm(Action):
    """Install Node packages with npm, from the user's npm cache.

    Example: ``{ npm = { dir = "/app/frontend" } }`` or ``{ npm = { packages = ["is-number"] } }``
    """

    Params = NpmParams
    primary = "dir"
    caches = ("npm",)

    def describe(self) -> str:
        p = self.params
        return "npm " + ", ".join([*([f"in {p.dir}"] if p.dir else []), *(["-g " + " ".join(p.packages)] if p.packages else [])])

    def npm(self, ctx: StepContext, *command: str, packages: Sequence[str] = (), workdir: Optional[str] = None) -> None:
        flags = ["--no-audit", "--no-fund", "--offline" if ctx.offline else "--prefer-offline"]
        result = ctx.run(["npm", *command, *flags, *(["--omit=dev"] if self.params.production else []), *packages],
                         workdir=workdir, check=False, capture=True)
        out = result.output
        if result.ok:
            return
        if result.returncode == 127 or re.search(r"executable file .*not found|No such file or directory.*npm", out):
            message = "npm is not installed in the target: install nodejs and npm first (apt)"
        elif ctx.offline and re.search(r"ENOTCACHED|offline", out):
            missing = re.findall(r"request to \S+/([^/\s]+) failed", out)
            message = ("offline: " + (f"{', '.join(missing)} is" if missing else "some packages are")
                       + " not in the npm cache; run once with the network to fill it")
        elif "E404" in out:
            names = re.findall(r"'([^']+)' is not in (?:the npm registry|this registry)", out)
            message = f"npm: no package {', '.join(names) or '(see output)'} in the registry"
        else:
            errs = [line.split("ERR!", 1)[1].strip() for line in out.splitlines() if "ERR!" in line]
            message = "npm failed: " + (errs[0] if errs else "see its output")
        raise StepFailed(message, argv=result.argv, returncode=result.returncode, tail=result.tail)

    def has_file(self, ctx: StepContext, *names: str) -> bool:
        return any(ctx.run(["test", "-f", f"{self.params.dir.rstrip('/')}/{n}"], check=False, quiet=True).ok
                   for n in names)

    def check(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        if p.dir and not ctx.run(["npm", "ls", "--depth=0", "--prefix", p.dir], check=False, quiet=True).ok:
            return False
        names = [re.sub(r"(?<=.)@.*$", "", x) for x in p.packages]
        return not names or ctx.run(["npm", "ls", "-g", "--depth=0", *names], check=False, quiet=True).ok

    # -- incremental image steps --------------------------------------------------------------
    def grown_from(self, previous: Mapping[str, Any]) -> Optional[list[str]]:
        """The global packages added when nothing else changed (``dir`` was installed then)."""
        return self.grown_list(previous)

    def apply_added(self, ctx: StepContext, added: Sequence[str]) -> Optional[bool]:
        self.npm(ctx, "install", "-g", packages=list(added))
        return True

    def apply(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        if p.dir:
            if not self.has_file(ctx, "package.json"):
                raise StepFailed(f"no package.json in {p.dir} in the target: copy the project there first "
                                 f'(e.g. {{ copy = {{ src = "frontend/", dest = "{p.dir}" }} }})')
            self.npm(ctx, "ci" if self.has_file(ctx, "package-lock.json", "npm-shrinkwrap.json") else "install",
                     workdir=p.dir)
        if p.packages:
            self.npm(ctx, "install", "-g", packages=p.packages)
        return True
