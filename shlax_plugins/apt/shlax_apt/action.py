"""The ``apt`` action: install Debian/Ubuntu packages, from the host's apt cache when it can.

In an image build the step sees the host's archives and lists for the image's release (see
:mod:`shlax_apt.cache`): a rebuilt layer downloads only packages never seen before, runs
``apt-get update`` only when the cached lists are older than ``update_max_age`` (or the image's
sources changed), and with ``shlax run --offline`` installs from the cached archives alone.
On host backends the step checks ``dpkg-query`` first and reports ``ok`` when every package is
installed already.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from shlax_core.actions import Action, StepContext
from shlax_core.errors import StepFailed
from shlax_core.params import doc

from shlax_apt.cache import IMAGE_OPTIONS, lists_age

if TYPE_CHECKING:  # pragma: no cover
    from shlax_apt.cache import AptCache

DEFAULT_MAX_AGE = "24h"
MAX_AGE_ENV = "SHLAX_APT_MAX_AGE"
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9\-]+)?([=/][A-Za-z0-9.+~:\-]+)?$")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> Optional[float]:
    m = _AGE.match(text.lower())
    return float(m.group(1)) * _AGE_UNITS[m.group(2)] if m else None


@dataclass
class AptParams:
    packages: list[str] = doc('packages to install, e.g. ["curl", "python3=3.11.2-1+b1"]', default_factory=list)
    upgrade: bool = doc("upgrade the installed packages first (apt-get upgrade)", False)
    recommends: bool = doc("also install recommended packages (off by default: smaller images)", False)
    update_max_age: Optional[str] = doc(
        "run apt-get update only when the cached package lists are older than this (30m, 6h, 2d); "
        f"default ${MAX_AGE_ENV} or {DEFAULT_MAX_AGE}; \"0s\" updates every time", None)

    def validate(self) -> Any:
        for i, package in enumerate(self.packages):
            if not _PACKAGE.match(package):
                return (f"packages[{i}]",
                        f"{package!r} is not a Debian package name (lower case, optionally =VERSION or /RELEASE)")
        if not self.packages and not self.upgrade:
            return "nothing to do: give packages and/or upgrade = true"
        if self.update_max_age is not None and parse_age(self.update_max_age) is None:
            return "update_max_age", f"update_max_age {self.update_max_age!r} is not like 30m, 6h or 2d"
        return None


class Apt(Action):
    """Install packages with apt-get, from the host's apt cache.

    Recommends are left out unless ``recommends = true``. Package lists are refreshed only when
    older than ``update_max_age``; offline (``--offline``) nothing is fetched at all.

    Example: ``{ apt = ["python3", "python3-venv", "curl"] }``
    """

    Params = AptParams
    primary = "packages"
    caches = ("apt",)

    def describe(self) -> str:
        text = " ".join(self.params.packages)
        text = text if len(text) <= 60 else text[:57] + "..."
        return f"apt {'upgrade ' if self.params.upgrade else ''}{text}".rstrip()

    def max_age(self) -> float:
        text = self.params.update_max_age or os.environ.get(MAX_AGE_ENV) or DEFAULT_MAX_AGE
        age = parse_age(text)
        if age is None:
            from shlax_core.errors import ShlaxError

            raise ShlaxError(f"{MAX_AGE_ENV}={text!r} is not like 30m, 6h or 2d")
        return age

    # -- host backends: check first -----------------------------------------------------------
    def check(self, ctx: StepContext) -> Optional[bool]:
        if self.params.upgrade:
            return None
        names = [re.split(r"[=/]", p)[0] for p in self.params.packages]
        result = ctx.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n", *names],
                         check=False, capture=True, quiet=True)
        installed = {}
        for line in result.output.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[2].startswith("ii"):
                installed[parts[0].split(":")[0]] = parts[1]
        for spec, name in zip(self.params.packages, names):
            if name.split(":")[0] not in installed:
                return False
            if "=" in spec and installed[name.split(":")[0]] != spec.split("=", 1)[1]:
                return False
        return True

    # -- doing it -----------------------------------------------------------------------------
    def options(self, ctx: StepContext) -> list[str]:
        opts = ["-o", "DPkg::Lock::Timeout=600"]
        if ctx.is_image:
            for key, value in IMAGE_OPTIONS.items():
                opts += ["-o", f"{key}={value}"]
            if any(m.target.endswith("ca-certificates.crt") for m in ctx.mounts):
                opts += ["-o", "Acquire::https::CAInfo=" + next(
                    m.target for m in ctx.mounts if m.target.endswith("ca-certificates.crt"))]
        if ctx.offline:
            opts += ["-o", "Acquire::Retries=0"]
        return opts

    def needs_update(self, ctx: StepContext) -> bool:
        """Are the package lists too old, or fetched for other sources than the image's?"""
        max_age = self.max_age()
        if ctx.is_image:
            cache: AptCache = ctx.cache("apt")
            lists = cache.release_dir(ctx) / "lists"
            _, sources = cache.probe(ctx)
            stamp = lists.parent / "update.stamp"
            try:
                same_sources = stamp.read_text().strip() == sources
            except OSError:
                same_sources = False
            return not same_sources or lists_age(lists) >= max_age
        minutes = max(1, int(max_age // 60))
        found = ctx.run(["find", "/var/lib/apt/lists", "-maxdepth", "1", "-name", "*Release",
                         "-mmin", f"-{minutes}"], check=False, capture=True, quiet=True)
        return not found.output.strip()

    def has_lists(self, ctx: StepContext) -> bool:
        if ctx.is_image:
            lists = ctx.cache("apt").release_dir(ctx) / "lists"
            return any(lists.glob("*Packages*"))
        found = ctx.run(["find", "/var/lib/apt/lists", "-maxdepth", "1", "-name", "*Packages*"],
                        check=False, capture=True, quiet=True)
        return bool(found.output.strip())

    def update(self, ctx: StepContext) -> None:
        result = ctx.run(["apt-get", "update", *self.options(ctx)], check=False, capture=True)
        errors = [line for line in result.output.splitlines() if line.startswith(("Err:", "E:", "W: Failed"))]
        if not result.ok:
            raise StepFailed("apt-get update failed", argv=result.argv, returncode=result.returncode,
                             tail=result.tail)
        if ctx.is_image and not errors:
            cache: AptCache = ctx.cache("apt")
            stamp = cache.release_dir(ctx) / "update.stamp"
            stamp.write_text(cache.probe(ctx)[1] + "\n")
        elif errors:
            ctx.log(f"apt-get update could not fetch every list ({len(errors)} errors): using what it has")

    def apt_get(self, ctx: StepContext, *args: str):
        argv = ["apt-get", *args, "-y", "-q", *self.options(ctx)]
        if ctx.offline:
            argv.insert(2, "--no-download")
        return ctx.run(argv, check=False, capture=True)

    def install_argv(self) -> list[str]:
        args = ["install"]
        if not self.params.recommends:
            args.append("--no-install-recommends")
        return args + list(self.params.packages)

    def apply(self, ctx: StepContext) -> Optional[bool]:
        updated = False
        if not ctx.offline and self.needs_update(ctx):
            self.update(ctx)
            updated = True
        elif ctx.offline and not self.has_lists(ctx):
            raise StepFailed(f"offline, and the apt cache has no package lists for {self._release(ctx)}: "
                             "run this recipe once with the network to fill it")
        results = []
        for args in ((["upgrade"] if self.params.upgrade else []),
                     (self.install_argv() if self.params.packages else [])):
            if not args:
                continue
            result = self.apt_get(ctx, *args)
            if not result.ok and not updated and not ctx.offline and _stale_lists(result.output):
                ctx.log("apt: the cached package lists look stale; running apt-get update and retrying")
                self.update(ctx)
                updated = True
                result = self.apt_get(ctx, *args)
            if not result.ok:
                raise StepFailed(self._explain(ctx, result.output), argv=result.argv,
                                 returncode=result.returncode, tail=result.tail)
            results.append(result.output)
        changed = any(not re.search(r"^0 upgraded, 0 newly installed, 0 to remove", out, re.M) for out in results)
        return changed

    def _release(self, ctx: StepContext) -> str:
        facts = ctx.facts()
        return f"{facts.get('ID', '?')} {facts.get('VERSION_CODENAME', '?')}"

    def _explain(self, ctx: StepContext, output: str) -> str:
        missing = re.findall(r"^E: Unable to locate package (\S+)", output, re.M)
        missing += re.findall(r"^E: Package '([^']+)' has no installation candidate", output, re.M)
        if missing:
            return f"apt: no package named {', '.join(missing)} in {self._release(ctx)}"
        if ctx.offline and re.search(r"--no-download|Can't find a source|Unable to fetch", output):
            return ("offline: some packages are not in the apt cache (shlax cache ls shows it); "
                    "run this recipe once with the network to download them")
        errors = [line[3:] for line in output.splitlines() if line.startswith("E: ")]
        return "apt-get failed: " + (errors[0] if errors else "see its output")


def _stale_lists(output: str) -> bool:
    return bool(re.search(r"404\s+Not Found|Unable to locate package|has no installation candidate|"
                          r"Unable to fetch some archives", output))
