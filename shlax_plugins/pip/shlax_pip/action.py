"""The ``pip`` action: Python packages into a virtualenv or the system Python, offline when it can.

Image builds go through the wheelhouse (see :mod:`shlax_pip.cache`):

1. ``pip install --no-index --find-links WHEELHOUSE ...``: everything seen before installs with
   no index at all (skipped when ``prefer_offline = false``);
2. when that lacks something (and the network is allowed): ``pip wheel --find-links WHEELHOUSE``
   into a per-step folder resolves against the index, downloading only files the wheelhouse does
   not hold yet (and the build requirements of local projects, so they build offline later); then
   step 1 again with that folder too. When the step ends its new wheels are renamed into the
   wheelhouse (concurrent builds never see half a file), except the recipe's own projects.

Offline (``--offline``) only step 1 runs, and a requirement the wheelhouse lacks is named in the
error. Only pip options that pip 20 already knew are used: the image's pip may be old.
Host backends (local, SSH) check the installed distributions first and report ``ok``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from shlax_core.actions import Action, StepContext
from shlax_core.backends import Mount
from shlax_core.errors import StepFailed
from shlax_core.params import doc
from shlax_core.process import Exec

from shlax_pip.cache import WHEELHOUSE_TARGET, wheelhouse

#: a per-step folder where ``pip wheel`` writes; its wheels join the wheelhouse when the step ends
INCOMING_TARGET = "/run/shlax/wheels-incoming"

# Reads a local project's name and build requirements in the target (they must be in the wheelhouse
# for the project to build offline). A fixed script: paths arrive as arguments.
_BUILD_REQUIRES = r"""
import os, sys
try:
    import tomllib
except ImportError:
    try:
        from pip._vendor import tomli as tomllib
    except ImportError:
        tomllib = None
for path in sys.argv[1:]:
    data = {}
    conf = os.path.join(path, "pyproject.toml")
    if tomllib is not None and os.path.isfile(conf):
        with open(conf, "rb") as f:
            data = tomllib.load(f)
    system = data.get("build-system", {})
    reqs = list(system.get("requires", ["setuptools>=40.8.0"]))
    if "setuptools" in system.get("build-backend", "setuptools.build_meta"):
        reqs.append("wheel")
    print("name " + str(data.get("project", {}).get("name", "")))
    for r in reqs:
        print("req " + r)
"""

# Are these requirements installed (name and version specifier)? Exit 0 when all are.
_SATISFIED = r"""
import sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
missing = []
for spec in sys.argv[1:]:
    req = Requirement(spec)
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        missing.append(spec)
        continue
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        missing.append(spec)
print("\n".join(missing))
sys.exit(1 if missing else 0)
"""


def is_path(item: str) -> bool:
    return item.startswith(("/", "./", "../")) or item in (".", "..")


@dataclass
class PipParams:
    packages: list[str] = doc('requirements ("django>=4.2") and local project paths in the target ("/app")',
                              default_factory=list)
    requirements: list[str] = doc("requirements files in the target (pip install -r)", default_factory=list)
    editable: list[str] = doc("local project paths in the target, installed in development mode (-e)",
                              default_factory=list)
    venv: Optional[str] = doc("virtualenv to install into, created with `python -m venv` when missing", None)
    system: bool = doc("install into the system Python instead of a venv; overrides PEP 668's 'externally "
                       "managed' refusal (Debian, Ubuntu) with PIP_BREAK_SYSTEM_PACKAGES=1, which pips too old "
                       "to know it ignore", False)
    python: str = doc("the Python that creates the venv, or runs pip with system = true", "python3")
    prefer_offline: bool = doc("image builds: install from the wheelhouse first and ask the index only for "
                               "what it lacks; false resolves against the index every time", True)

    def validate(self) -> Any:
        if not (self.packages or self.requirements or self.editable):
            return "nothing to install: give packages, requirements or editable"
        if self.venv and self.system:
            return "system", "give either venv or system = true, not both"
        if not self.venv and not self.system:
            return ('say where to install: venv = "/app/.venv" (recommended), or system = true to install '
                    "into the system Python (overrides Debian's PEP 668 'externally managed' refusal)")
        if self.venv and not self.venv.startswith("/"):
            return "venv", f"venv {self.venv!r} must be an absolute path in the target"
        for item in [*self.packages, *self.requirements, *self.editable]:
            if item.startswith("-"):
                return f"{item!r}: options are not requirements; use the action's parameters"
        for i, item in enumerate(self.editable):
            if not is_path(item):
                return f"editable[{i}]", f"editable {item!r} must be a local path in the target (/app or ./app)"
        return None


class Pip(Action):
    """Install Python packages with pip into a venv (or the system Python), from the host's caches.

    Every distribution installed once is kept as a wheel on the host, so a rebuilt layer — or a
    ``--offline`` run — installs with no index at all.

    Example: ``{ pip = { packages = ["/app", "gunicorn"], venv = "/app/.venv" } }``
    """

    Params = PipParams
    primary = "packages"
    caches = ("pip",)

    def describe(self) -> str:
        p = self.params
        items = [*p.packages, *(f"-r {r}" for r in p.requirements), *(f"-e {e}" for e in p.editable)]
        text = " ".join(items)
        text = text if len(text) <= 50 else text[:47] + "..."
        return f"pip {text} -> {p.venv or 'system'}"

    # -- pieces -------------------------------------------------------------------------------
    @property
    def python(self) -> str:
        return f"{self.params.venv.rstrip('/')}/bin/python" if self.params.venv else self.params.python

    def pip(self) -> list[str]:
        return [self.python, "-m", "pip"]

    def env(self) -> dict[str, str]:
        return {"PIP_BREAK_SYSTEM_PACKAGES": "1"} if self.params.system else {}

    def targets(self, editable: bool = True) -> list[str]:
        p = self.params
        out = list(p.packages)
        for r in p.requirements:
            out += ["-r", r]
        for e in p.editable:
            out += ["-e", e] if editable else [e]
        return out

    def specs(self) -> list[str]:
        return [x for x in self.params.packages if not is_path(x)]

    def local_paths(self) -> list[str]:
        return [x for x in self.params.packages if is_path(x)] + list(self.params.editable)

    def ensure_venv(self, ctx: StepContext) -> bool:
        """Create the venv when missing; True when it had to."""
        if not self.params.venv:
            return False
        if ctx.run(["test", "-x", self.python], check=False, quiet=True).ok:
            return False
        result = ctx.run([self.params.python, "-m", "venv", self.params.venv], check=False, capture=True)
        if not result.ok:
            why = "install python3-venv first (apt)" if re.search(r"ensurepip|venv", result.output) else \
                "see its output"
            raise StepFailed(f"could not create the virtualenv {self.params.venv}: {why}",
                             argv=result.argv, returncode=result.returncode, tail=result.tail)
        return True

    def _pip(self, ctx: StepContext, *args: str, mounts: tuple | list = ()) -> Exec:
        result = ctx.run([*self.pip(), *args], env=self.env(), check=False, capture=True, mounts=mounts)
        if not result.ok and re.search(r"No module named pip\b", result.output):
            raise StepFailed(f"{self.python} has no pip: install python3-pip (apt) or use a venv",
                             argv=result.argv, returncode=result.returncode, tail=result.tail)
        if not result.ok and "externally-managed-environment" in result.output:
            raise StepFailed("this Python is managed by the distribution (PEP 668): install into a venv, "
                             "or set system = true to override", argv=result.argv,
                             returncode=result.returncode, tail=result.tail)
        return result

    def _failed(self, result: Exec, offline: bool) -> StepFailed:
        missing = re.findall(r"No matching distribution found for (\S+)", result.output)
        if missing and offline:
            message = (f"offline: {', '.join(missing)} is not in the pip wheelhouse ({wheelhouse()}): "
                       "it was never installed with the network; run once online to fill the cache")
        elif missing:
            message = f"pip found no distribution for {', '.join(missing)}"
        else:
            errors = [line for line in result.output.splitlines() if line.startswith("ERROR:")]
            message = "pip failed: " + (errors[0][7:] if errors else "see its output")
        return StepFailed(message, argv=result.argv, returncode=result.returncode, tail=result.tail)

    # -- host backends: check first -----------------------------------------------------------
    def check(self, ctx: StepContext) -> Optional[bool]:
        if self.local_paths() or self.params.requirements:
            return None  # pip itself decides; apply reports ok when it installed nothing
        if self.params.venv and not ctx.run(["test", "-x", self.python], check=False, quiet=True).ok:
            return False
        return ctx.run([self.python, "-c", _SATISFIED, *self.specs()], check=False, quiet=True).ok

    # -- doing it -----------------------------------------------------------------------------
    def apply(self, ctx: StepContext) -> Optional[bool]:
        created = self.ensure_venv(ctx)
        if not ctx.is_image:
            result = self._pip(ctx, "install", *(["--no-index"] if ctx.offline else []), *self.targets())
            if not result.ok:
                raise self._failed(result, ctx.offline)
            return created or "Successfully installed" in result.output
        offline_install = ["install", "--use-pep517", "--no-index", "--find-links", WHEELHOUSE_TARGET]
        if ctx.offline or (self.params.prefer_offline and not self.surely_missing()):
            result = self._pip(ctx, *offline_install, *self.targets())
            if result.ok:
                return True
            if ctx.offline:
                raise self._failed(result, offline=True)
            ctx.log("pip: the wheelhouse lacks something; resolving against the index")
        incoming = Path(tempfile.mkdtemp(prefix="incoming-", dir=wheelhouse().parent))
        for wheel in wheelhouse().glob("*.whl"):
            # pip wheel reuses a file already in its --wheel-dir ("File was already downloaded")
            # instead of downloading it again: hard links make the wheelhouse look like that dir
            try:
                os.link(wheel, incoming / wheel.name)
            except OSError:
                shutil.copy2(wheel, incoming / wheel.name)
        built: dict[str, str] = {}
        try:
            ctx_mount = Mount(str(incoming), INCOMING_TARGET)
            built = self.fetch(ctx, ctx_mount)
            # local projects install from the wheels just built: no second build
            targets = [built.get(t, t) for t in self.targets()]
            result = self._pip(ctx, *offline_install, "--find-links", INCOMING_TARGET, *targets,
                               mounts=[ctx_mount])
        finally:
            self.keep(incoming)
        if not result.ok:
            raise self._failed(result, offline=False)
        return True

    def surely_missing(self) -> bool:
        """A requirement named in the recipe has no wheel at all in the wheelhouse (seen on the host).

        Skips an install attempt that could only fail after building every local project.
        """
        have = {w.name.split("-", 1)[0].lower() for w in wheelhouse().glob("*.whl")}
        for spec in self.specs():
            m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([<>=!~;]|$)", spec)
            if m and re.sub(r"[-_.]+", "_", m.group(1)).lower() not in have:
                return True
        return False

    def fetch(self, ctx: StepContext, incoming: Mount) -> dict[str, str]:
        """``pip wheel`` every requirement (and local projects' build requirements) into ``incoming``.

        Files the wheelhouse holds are taken from it (``--find-links``), not downloaded. Returns
        {local path: its freshly built wheel (path in the target)} for non-editable local projects.
        """
        names: list[str] = []
        build_reqs: list[str] = []
        paths = self.local_paths()
        if paths:
            out = ctx.run([self.python, "-c", _BUILD_REQUIRES, *paths], check=False, capture=True, quiet=True)
            for line in out.output.splitlines():
                kind, _, value = line.partition(" ")
                if kind == "name":
                    names.append(value)
                elif kind == "req" and value:
                    build_reqs.append(value)
        result = self._pip(ctx, "wheel", "--use-pep517", "--wheel-dir", INCOMING_TARGET,
                           "--find-links", WHEELHOUSE_TARGET, *self.targets(editable=False),
                           *dict.fromkeys(build_reqs), mounts=[incoming])
        self._local_names = {re.sub(r"[-_.]+", "_", n).lower() for n in names if n}
        built: dict[str, str] = {}
        editable = set(self.params.editable)
        for path, name in zip(paths, names):
            stem = re.sub(r"[-_.]+", "_", name).lower()
            fresh = [w for w in Path(incoming.source).glob("*.whl") if name and w.name.lower().startswith(stem + "-")]
            if len(fresh) == 1 and path not in editable:
                built[path] = f"{INCOMING_TARGET}/{fresh[0].name}"
        if not result.ok:
            raise self._failed(result, offline=False)
        return built

    def keep(self, incoming: Path) -> None:
        """Move the new wheels into the wheelhouse (atomic renames: concurrent readers never see half
        a file), except the recipe's own projects, which change under the same version."""
        own = getattr(self, "_local_names", set())
        try:
            for wheel in incoming.glob("*.whl"):
                if wheel.name.split("-", 1)[0].lower() in own:
                    continue
                target = wheelhouse() / wheel.name
                if not target.exists():
                    os.replace(wheel, target)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
