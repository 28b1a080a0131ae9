"""A package manager in a page: the base class of the apt, dnf, pacman and apk actions.

A package action declares its commands (update, install, upgrade, query), how to read what is
installed, which output means "no such package", "not in the cache" or "the lists are stale",
and names its download cache (a :class:`shlax_core.downloads.DownloadCache`). The base does the
rest, the same way for every manager (pyinfra's ``ensure_packages()`` is the model):

- host backends check first: what is installed (the query, parsed) against what the step wants
  (names, ``NAME=VERSION`` pins); the step is ``ok`` when nothing is missing;
- the package lists are refreshed only when older than ``update_max_age`` or fetched from other
  repositories than the target's (a stamp in the download cache; on hosts, the lists' mtime);
- offline (``--offline``) nothing is refreshed, the manager's offline flags are added, and a
  package the cache lacks fails with a message that says so;
- an install that fails the way stale lists explain is retried once after a refresh;
- a failure names the missing package, or the tool's first error line, above its output.

:meth:`PackageAction.install` takes any subset of the step's packages, so a step can install
only what was added to its list on top of the previous list's layer.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional, Sequence

from shlax_core.actions import Action, StepContext
from shlax_core.units import parse_age
from shlax_core.errors import ShlaxError, StepFailed
from shlax_core.params import doc
from shlax_core.process import Exec

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.downloads import DownloadCache

DEFAULT_MAX_AGE = "24h"
#: a package name, optionally pinned: ``curl``, ``python3=3.11.2-1``, ``glibc=2.39``
PACKAGE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9+._@\-]*(=[A-Za-z0-9.+~:_\-]+)?$")


@dataclass
class PackageParams:
    """What every package action takes; a plugin subclasses it to add its own keys."""

    packages: list[str] = doc('packages to install; pin a version with NAME=VERSION, e.g. ["curl", "jq=1.6"]',
                              default_factory=list)
    upgrade: bool = doc("upgrade the installed packages first", False)
    update_max_age: Optional[str] = doc(
        "refresh the package lists only when the cached ones are older than this (30m, 6h, 2d); default "
        f"$SHLAX_<MANAGER>_MAX_AGE or {DEFAULT_MAX_AGE}; \"0s\" refreshes every time", None)
    incremental: bool = doc("image builds: when the list only grew since the last build, install just the "
                            "added packages on that build's layer (docs/layers.md); false always rebuilds "
                            "the whole list", True)

    pattern: ClassVar[re.Pattern] = PACKAGE
    what: ClassVar[str] = "a package name (letters, digits, +._@-, optionally =VERSION)"

    def validate(self) -> Any:
        """A message, or (key, message) to point at that key's line."""
        for i, package in enumerate(self.packages):
            if not self.pattern.match(package):
                return f"packages[{i}]", f"{package!r} is not {self.what}"
        if not self.packages and not self.upgrade:
            return "nothing to do: give packages and/or upgrade = true"
        if self.update_max_age is not None and parse_age(self.update_max_age) is None:
            return "update_max_age", f"update_max_age {self.update_max_age!r} is not like 30m, 6h or 2d"
        return None


class PackageAction(Action):
    """Base of package-manager actions. Subclasses declare; see the module docstring.

    Declarations (class attributes): ``update_cmd``, ``install_cmd``, ``upgrade_cmd``,
    ``query_cmd`` (argv prefixes; packages or names are appended), ``offline_flags``,
    ``lists`` (the package lists' folder in the target and a glob of its files), ``fresh_glob``
    (files whose mtime dates the last refresh on a host), and regular expressions:
    ``not_found`` (group 1: a missing package), ``not_cached``, ``stale``, ``unchanged``,
    ``update_errors`` and ``error_line`` (group 1: the message).
    """

    Params = PackageParams
    primary = "packages"

    update_cmd: ClassVar[Sequence[str]] = ()
    install_cmd: ClassVar[Sequence[str]] = ()
    upgrade_cmd: ClassVar[Sequence[str]] = ()
    query_cmd: ClassVar[Sequence[str]] = ()
    offline_flags: ClassVar[Sequence[str]] = ()
    lists: ClassVar[tuple[str, str]] = ("", "*")
    fresh_glob: ClassVar[str] = ""
    not_found: ClassVar[Sequence[str]] = ()
    not_cached: ClassVar[str] = ""
    stale: ClassVar[str] = ""
    unchanged: ClassVar[str] = ""
    update_errors: ClassVar[str] = ""
    error_line: ClassVar[str] = r"^(?:E|Error|error|ERROR): (.*)$"

    def describe(self) -> str:
        text = " ".join(self.params.packages)
        text = text if len(text) <= 60 else text[:57] + "..."
        return f"{self.name} {'upgrade ' if self.params.upgrade else ''}{text}".rstrip()

    # -- declarations a plugin may override ------------------------------------------------------
    def flags(self, ctx: StepContext) -> list[str]:
        """Options for every command of the step (``offline_flags`` when offline)."""
        return list(self.offline_flags) if ctx.offline else []

    def pin(self, name: str, version: str) -> str:
        """``NAME=VERSION`` as the manager's command line wants it."""
        return f"{name}={version}"

    def parse_installed(self, output: str) -> dict[str, set[str]]:
        """The query's output -> {name: installed versions}; default: ``NAME<TAB>VERSION...`` lines."""
        found: dict[str, set[str]] = {}
        for line in output.splitlines():
            name, *versions = line.split("\t")
            if versions:
                found.setdefault(name, set()).update(versions)
        return found

    def changed(self, output: str) -> bool:
        return not (self.unchanged and re.search(self.unchanged, output, re.M))

    # -- incremental image steps (shlax_core/cache/incremental.py) --------------------------------
    def grown_from(self, previous: Mapping[str, Any]) -> Optional[list[str]]:
        """The packages added since ``previous`` when only the list grew: same other parameters,
        every earlier spec (pins included) still there, no upgrade (it would upgrade the rest)."""
        return None if self.params.upgrade else self.grown_list(previous)  # an upgrade upgrades the rest

    def apply_added(self, ctx: StepContext, added: Sequence[str]) -> Optional[bool]:
        return self.install(ctx, added)

    # -- what the step wants ---------------------------------------------------------------------
    @staticmethod
    def split(spec: str) -> tuple[str, Optional[str]]:
        """``name:arch=version`` or ``name/release`` -> (``name:arch``, version or None)."""
        name, _, version = spec.partition("=")
        return name.split("/")[0], version or None

    def argv_spec(self, spec: str) -> str:
        name, version = self.split(spec)
        return self.pin(name, version) if version and "/" not in spec else spec

    def missing(self, installed: dict[str, set[str]], packages: Optional[Sequence[str]] = None) -> list[str]:
        """The packages (default: the step's) that ``installed`` does not satisfy."""
        out = []
        for spec in self.params.packages if packages is None else packages:
            name, version = self.split(spec)
            have = installed.get(name.split(":")[0])
            if have is None or (version is not None and version not in have):
                out.append(spec)
        return out

    def query(self, names: Sequence[str]) -> list[str]:
        """The query's argv: ``query_cmd`` and the names (a manager that lists all overrides it)."""
        return [*self.query_cmd, *names]

    def installed(self, ctx: StepContext) -> dict[str, set[str]]:
        names = list(dict.fromkeys(self.split(p)[0] for p in self.params.packages))
        result = ctx.run(self.query(names), check=False, capture=True, quiet=True)
        return {k.split(":")[0]: v for k, v in self.parse_installed(result.output).items()}

    # -- host backends: check first -----------------------------------------------------------
    def check(self, ctx: StepContext) -> Optional[bool]:
        if self.params.upgrade or not self.params.packages:
            return None
        return not self.missing(self.installed(ctx))

    # -- package lists ------------------------------------------------------------------------------
    def download_cache(self, ctx: StepContext) -> "DownloadCache":
        return ctx.cache(self.caches[0])

    def max_age(self) -> float:
        variable = f"SHLAX_{self.name.upper()}_MAX_AGE"
        text = self.params.update_max_age or os.environ.get(variable) or DEFAULT_MAX_AGE
        age = parse_age(text)
        if age is None:
            raise ShlaxError(f"{variable}={text!r} is not like 30m, 6h or 2d")
        return age

    def _find(self, ctx: StepContext, *args: str) -> bool:
        found = ctx.run(["find", self.lists[0], "-maxdepth", "1", *args], check=False, capture=True, quiet=True)
        return bool(found.output.strip())

    def needs_update(self, ctx: StepContext) -> bool:
        """Are the package lists too old, or fetched for other repositories than the target's?"""
        if ctx.is_image:
            return self.download_cache(ctx).lists_age(ctx) >= self.max_age()
        minutes = max(1, int(self.max_age() // 60))
        return not self._find(ctx, "-name", self.fresh_glob or self.lists[1], "-mmin", f"-{minutes}")

    def has_lists(self, ctx: StepContext) -> bool:
        if ctx.is_image:
            folder = self.download_cache(ctx).prepare(ctx)[self.lists[0]]
            return any(folder.glob(self.lists[1]))
        return self._find(ctx, "-name", self.lists[1])

    def update(self, ctx: StepContext) -> None:
        result = ctx.run([*self.update_cmd, *self.flags(ctx)], check=False, capture=True)
        what = " ".join(self.update_cmd[:2])
        if not result.ok:
            raise StepFailed(f"{what} failed", argv=result.argv, returncode=result.returncode, tail=result.tail)
        errors = re.findall(self.update_errors, result.output, re.M) if self.update_errors else []
        if errors:
            ctx.log(f"{what} could not fetch every list ({len(errors)} errors): using what it has")
        elif ctx.is_image:
            self.download_cache(ctx).stamp(ctx)
        setattr(ctx, "_shlax_updated", True)

    def refresh(self, ctx: StepContext) -> None:
        """Once per step: update the lists when stale; offline, insist that lists exist."""
        if getattr(ctx, "_shlax_refreshed", False):
            return
        setattr(ctx, "_shlax_refreshed", True)
        if not ctx.offline and self.needs_update(ctx):
            self.update(ctx)
        elif ctx.offline and not self.has_lists(ctx):
            raise StepFailed(f"offline, and the {self.name} cache has no package lists for "
                             f"{self.release(ctx)}: run this recipe once with the network to fill it")

    # -- doing it ---------------------------------------------------------------------------------
    def apply(self, ctx: StepContext) -> Optional[bool]:
        self.refresh(ctx)
        changed = False
        if self.params.upgrade:
            changed = self.execute(ctx, [*self.upgrade_cmd, *self.flags(ctx)])
        if self.params.packages:
            changed = self.install(ctx, self.params.packages) or changed
        return changed

    def install(self, ctx: StepContext, packages: Sequence[str]) -> bool:
        """Install ``packages`` (any subset of the step's list); True when something changed."""
        self.refresh(ctx)
        return self.execute(ctx, [*self.install_cmd, *self.flags(ctx), *map(self.argv_spec, packages)])

    def execute(self, ctx: StepContext, argv: list[str]) -> bool:
        result = ctx.run(argv, check=False, capture=True)
        if (not result.ok and not ctx.offline and not getattr(ctx, "_shlax_updated", False)
                and self.stale and re.search(self.stale, result.output, re.M)):
            ctx.log(f"{self.name}: the cached package lists look stale; running {' '.join(self.update_cmd[:2])} "
                    "and retrying")
            self.update(ctx)
            result = ctx.run(argv, check=False, capture=True)
        if not result.ok:
            raise self.failure(ctx, result)
        return self.changed(result.output)

    # -- explaining failures ---------------------------------------------------------------------
    def release(self, ctx: StepContext) -> str:
        facts = ctx.facts()
        return f"{facts.get('ID', '?')} {facts.get('VERSION_CODENAME') or facts.get('VERSION_ID') or '?'}"

    def explain(self, ctx: StepContext, output: str) -> str:
        missing = [m for pattern in self.not_found for m in re.findall(pattern, output, re.M)]
        if missing:
            return f"{self.name}: no package named {', '.join(dict.fromkeys(missing))} in {self.release(ctx)}"
        if ctx.offline and self.not_cached and re.search(self.not_cached, output, re.M):
            return (f"offline: some packages are not in the {self.name} cache (shlax cache ls shows it); "
                    "run this recipe once with the network to download them")
        errors = re.findall(self.error_line, output, re.M)
        return f"{self.install_cmd[0]} failed: " + (errors[0] if errors else "see its output")

    def failure(self, ctx: StepContext, result: Exec) -> StepFailed:
        return StepFailed(self.explain(ctx, result.output), argv=result.argv, returncode=result.returncode,
                          tail=result.tail)
