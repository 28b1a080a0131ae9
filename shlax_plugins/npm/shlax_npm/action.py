"""The ``npm`` action: a project's dependencies (``npm ci`` / ``npm install``) or global packages.

In image builds the user's npm cache is mounted (see :mod:`shlax_npm.cache`) and npm runs with
``--prefer-offline``: what was seen before is not fetched again; ``--offline`` fetches nothing.
On host backends ``npm ls`` checks first and the step reports ``ok`` when everything is there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from shlax_core.actions import Action, StepContext
from shlax_core.errors import StepFailed
from shlax_core.params import doc
from shlax_core.process import Exec


@dataclass
class NpmParams:
    dir: Optional[str] = doc("directory in the target holding package.json: `npm ci` when a lock file "
                             "is there, else `npm install`", None)
    packages: list[str] = doc('packages installed globally (npm install -g), e.g. ["is-number@7"]',
                              default_factory=list)
    production: bool = doc("leave devDependencies out (--omit=dev)", False)

    def validate(self) -> Any:
        if not self.dir and not self.packages:
            return 'nothing to do: give dir = "/app" (a folder with package.json) and/or packages'
        if self.dir and not self.dir.startswith("/"):
            return "dir", f"dir {self.dir!r} must be an absolute path in the target"
        bad = [p for p in self.packages if p.startswith("-")]
        if bad:
            return f"{bad[0]!r}: options are not packages"
        return None


class Npm(Action):
    """Install Node packages with npm, from the user's npm cache.

    Example: ``{ npm = { dir = "/app/frontend" } }`` or ``{ npm = { packages = ["is-number"] } }``
    """

    Params = NpmParams
    primary = "dir"
    caches = ("npm",)

    def describe(self) -> str:
        p = self.params
        parts = [f"in {p.dir}"] if p.dir else []
        if p.packages:
            parts.append("-g " + " ".join(p.packages))
        return "npm " + ", ".join(parts)

    def _flags(self, ctx: StepContext) -> list[str]:
        flags = ["--no-audit", "--no-fund"]
        flags.append("--offline" if ctx.offline else "--prefer-offline")
        if self.params.production:
            flags.append("--omit=dev")
        return flags

    def _npm(self, ctx: StepContext, argv: list[str], workdir: Optional[str] = None) -> Exec:
        result = ctx.run(argv, workdir=workdir, check=False, capture=True)
        if result.ok:
            return result
        out = result.output
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
            errs = [line for line in out.splitlines() if "ERR!" in line]
            message = "npm failed: " + (errs[0].split("ERR!", 1)[1].strip() if errs else "see its output")
        return _raise(message, result)

    def has_file(self, ctx: StepContext, path: str) -> bool:
        return ctx.run(["test", "-f", path], check=False, quiet=True).ok

    # -- host backends: check first -----------------------------------------------------------
    def check(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        if p.dir and not ctx.run(["npm", "ls", "--depth=0", "--prefix", p.dir], check=False, quiet=True).ok:
            return False
        if p.packages:
            names = [re.sub(r"(?<=.)@.*$", "", x) for x in p.packages]
            if not ctx.run(["npm", "ls", "-g", "--depth=0", *names], check=False, quiet=True).ok:
                return False
        return True

    # -- doing it -----------------------------------------------------------------------------
    def apply(self, ctx: StepContext) -> Optional[bool]:
        p = self.params
        if p.dir:
            if not self.has_file(ctx, f"{p.dir.rstrip('/')}/package.json"):
                raise StepFailed(f"no package.json in {p.dir} in the target: copy the project there first "
                                 f'(e.g. {{ copy = {{ src = "frontend/", dest = "{p.dir}" }} }})')
            locked = any(self.has_file(ctx, f"{p.dir.rstrip('/')}/{name}")
                         for name in ("package-lock.json", "npm-shrinkwrap.json"))
            self._npm(ctx, ["npm", "ci" if locked else "install", *self._flags(ctx)], workdir=p.dir)
        if p.packages:
            self._npm(ctx, ["npm", "install", "-g", *self._flags(ctx), *p.packages])
        return True


def _raise(message: str, result: Exec) -> Exec:
    raise StepFailed(message, argv=result.argv, returncode=result.returncode, tail=result.tail)
