"""The ``pip`` action and the ``pip`` download cache: Python packages, offline when they can be.

The cache is the host user's own pip cache (``$PIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/pip``, else
``~/.cache/pip``), shared with build containers, plus a wheelhouse (``<download cache>/pip/
wheelhouse``) keeping a real wheel of every distribution a step installed: pip's HTTP cache
depends on caching headers that proxies strip, the wheelhouse does not. Both are safe to share.

Image builds: 1. ``pip install --no-index --find-links WHEELHOUSE``, everything seen before,
no index at all (skipped with ``prefer_offline = false``); 2. when that lacks something, ``pip
wheel --find-links WHEELHOUSE`` into a per-step folder resolves against the index, downloading
only what the wheelhouse lacks (and local projects' build requirements, so they build offline
later), then step 1 again with that folder; its new wheels join the wheelhouse by atomic
renames, except the recipe's own projects. Offline only step 1 runs. Only options pip 20 knew are
used. The installs from wheels (steps 1 and the last) use the host's uv when it runs in the image,
pip otherwise. A missing venv gets pip from the system's byte-compiled pip (or uv), not from
ensurepip (see ``_SEED_VENV``). Host backends check the installed distributions first and report
``ok``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from shlax_core import dirs
from shlax_core.actions import Action, StepContext
from shlax_core.backends import Mount
from shlax_core.downloads import DownloadCache
from shlax_core.errors import StepFailed
from shlax_core.params import doc
from shlax_core.process import Exec

CACHE_TARGET, WHEELHOUSE_TARGET = "/run/shlax/pip-cache", "/run/shlax/wheelhouse"
INCOMING_TARGET = "/run/shlax/wheels-incoming"  # where `pip wheel` writes; joins the wheelhouse after
UV_TARGET = "/run/shlax/uv"  # the host's uv, lent to image steps

# A local project's name and build requirements, read in the target (paths arrive as arguments).
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
    data, conf = {}, os.path.join(path, "pyproject.toml")
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
# Create a venv (argv[1]) as `python -m venv` does, except how pip and setuptools get into it: the
# same wheels, installed with the same pip options as ensurepip, but by the system's pip (>= 22.3,
# run for the venv's interpreter the way `pip --python` does), which is byte-compiled, where
# ensurepip runs pip from inside its wheel and so compiles all of pip in memory first. The venv
# is the same file for file. With argv[2], the path of uv (image steps), uv installs those wheels
# instead (same files, but uv's name in INSTALLER). argv[3] == "no-compile" (host steps) installs
# them without byte-compiling them (the venv's pip is not what shlax runs next: Python compiles
# it on its first use) and prints the system pip's runner, which installs the step's packages
# into the venv as `pip --python` does. Exits 3 before touching anything when neither pip nor uv
# applies (the caller then runs `-m venv`).
_SEED_VENV = r"""
import os, subprocess, sys, venv
uv = sys.argv[2] if len(sys.argv) > 2 else ""
compile = not (len(sys.argv) > 3 and sys.argv[3] == "no-compile")
try:
    import ensurepip
    wheels = {}
    for name, p in ensurepip._get_packages().items():
        path = p.wheel_path or os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", p.wheel_name)
        if not os.path.isfile(path):
            raise LookupError(path)
        wheels[name] = (p.version, path)
    if not uv:
        import pip
        runner = os.path.join(os.path.dirname(pip.__file__), "__pip-runner__.py")
        if not os.path.isfile(runner):
            raise LookupError(runner)
    if not wheels:
        raise LookupError("ensurepip has no wheels")
except Exception:
    sys.exit(3)

class Builder(venv.EnvBuilder):
    def _setup_pip(self, context):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "ENSUREPIP_", "PYTHON", "UV_"))}
        env.update(VIRTUAL_ENV=context.env_dir, PIP_CONFIG_FILE=os.devnull, _PIP_RUNNING_IN_SUBPROCESS="1")
        if uv:
            argv = [uv, "pip", "install", "--python", context.env_exec_cmd, "--no-config", "--no-cache",
                    "--no-index", "--compile-bytecode", "--quiet"]
        else:
            argv = [context.env_exec_cmd, "-W", "ignore::DeprecationWarning", runner, "install", "--no-cache-dir",
                    "--no-index", "--upgrade", "--disable-pip-version-check", *([] if compile else ["--no-compile"])]
        for folder in sorted({os.path.dirname(path) for _, path in wheels.values()}):
            argv += ["--find-links", folder]
        argv += [f"{name}=={version}" for name, (version, _) in sorted(wheels.items())]
        subprocess.run(argv, env=env, cwd=context.env_dir, check=True, stdout=sys.stderr)

Builder(with_pip=True, symlinks=os.name != "nt").create(sys.argv[1])
if not uv:
    print("installing into it with the system pip: " + runner, flush=True)
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
for req in map(Requirement, sys.argv[1:]):
    try:
        if req.specifier and not req.specifier.contains(metadata.version(req.name), prereleases=True):
            missing.append(str(req))
    except metadata.PackageNotFoundError:
        missing.append(str(req))
sys.exit(1 if missing else 0)
"""


def host_pip_cache() -> Path:
    """The host user's pip cache folder, found the way pip finds it (environment, then XDG)."""
    if os.environ.get("PIP_CACHE_DIR"):
        return Path(os.environ["PIP_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() / "pip" if xdg else Path.home() / ".cache" / "pip"


def wheelhouse() -> Path:
    return dirs.download_cache("pip") / "wheelhouse"


@functools.lru_cache(maxsize=None)
def host_uv() -> Optional[Path]:
    """The host's uv binary, lent to image steps to install wheels (``$SHLAX_PIP_INSTALLER``:
    ``auto``, the default, uses uv when found on PATH or beside this Python; ``pip`` never does;
    a path names the binary)."""
    choice = os.environ.get("SHLAX_PIP_INSTALLER", "auto").strip() or "auto"
    if choice == "pip":
        return None
    if choice != "auto":
        path = Path(choice).expanduser()
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    return Path(found).resolve() if found else None


def _stem(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


class PipCache(DownloadCache):
    """The user's pip cache, shared with containers, and shlax's wheelhouse for offline installs.

    ``run`` steps asking for it get ``PIP_CACHE_DIR``, ``PIP_FIND_LINKS`` and, offline, ``PIP_NO_INDEX``.
    """

    partial = (".*.tmp*",)
    ca_env = ("PIP_CERT", "REQUESTS_CA_BUNDLE")
    env_vars = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
    image_env = {"PIP_CACHE_DIR": CACHE_TARGET, "PIP_FIND_LINKS": WHEELHOUSE_TARGET}
    offline_env = {"PIP_NO_INDEX": "1"}

    def folders(self) -> Sequence[Path]:
        return [wheelhouse(), host_pip_cache()]

    def owned(self) -> Sequence[Path]:
        return [wheelhouse()]  # the user's own pip cache is theirs: `pip cache purge` empties it

    def host_paths(self, ctx: StepContext) -> dict[str, Path]:
        return {CACHE_TARGET: host_pip_cache(), WHEELHOUSE_TARGET: wheelhouse()}

    def extra_mounts(self, ctx: StepContext) -> Sequence[Mount]:
        # no uv cache: the wheelhouse is the store, and uv unpacks a wheel about as fast as it copies one
        uv = host_uv()
        return [Mount(str(uv), UV_TARGET, readonly=True)] if uv is not None else []


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
    incremental: bool = doc("image builds: when only `packages` grew since the last build, install just the "
                            "added ones on that build's layer (docs/layers.md); false always rebuilds", True)
    upgrade_deps: bool = doc("when the step creates the venv, upgrade its pip (and setuptools before Python "
                             "3.12) to the newest, as `python -m venv --upgrade-deps`", False)
    index_url: Optional[str] = doc("the package index to resolve against instead of PyPI (pip --index-url)", None)
    extra_index_url: list[str] = doc("more package indexes (pip --extra-index-url)", default_factory=list)
    constraints: list[str] = doc("constraints files in the target (pip install -c): versions to use if installed",
                                 default_factory=list)

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
        for item in [*self.packages, *self.requirements, *self.editable, *self.constraints]:
            if item.startswith("-"):
                return f"{item!r}: options are not requirements; use the action's parameters"
        for key, urls in (("index_url", [self.index_url] if self.index_url is not None else []),
                          ("extra_index_url", self.extra_index_url)):
            for url in urls:
                if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$", url):
                    return key, f"{url!r} is not an index URL (e.g. \"https://pypi.example/simple\")"
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

    #: parameters added after the first release, at their defaults: left out of the key, so that
    #: recipes written before them keep their layers (and their incremental builds)
    _LATER = {"upgrade_deps": False, "index_url": None, "extra_index_url": [], "constraints": []}

    def key_params(self) -> Any:
        params = super().key_params()
        for name, default in self._LATER.items():
            if params.get(name) == default:
                params.pop(name, None)
        return params

    def describe(self) -> str:
        p = self.params
        text = " ".join([*p.packages, *(f"-r {r}" for r in p.requirements), *(f"-e {e}" for e in p.editable)])
        return f"pip {text if len(text) <= 50 else text[:47] + '...'} -> {p.venv or 'system'}"

    @property
    def python(self) -> str:
        return f"{self.params.venv.rstrip('/')}/bin/python" if self.params.venv else self.params.python

    def targets(self, editable: bool = True) -> list[str]:
        """What pip installs: the venv's own pip (and setuptools) when it was just made with
        ``upgrade_deps``, then packages, requirements files, editable projects; constraints."""
        p = self.params
        deps = getattr(self, "_deps", [])
        return [*(["--upgrade", *deps] if deps else []), *p.packages, *(a for r in p.requirements for a in ("-r", r)),
                *(a for e in p.editable for a in (["-e", e] if editable else [e])),
                *(a for c in p.constraints for a in ("-c", c))]

    def index_args(self) -> list[str]:
        """Where pip resolves: ``--index-url`` and ``--extra-index-url`` as the step says."""
        p = self.params
        return [*([f"--index-url={p.index_url}"] if p.index_url else []),
                *(f"--extra-index-url={url}" for url in p.extra_index_url)]

    def upgrade_deps(self, ctx: StepContext) -> None:
        """The venv was just made and the step asks for ``upgrade_deps``: what its Python's
        ``venv --upgrade-deps`` upgrades (``venv.CORE_VENV_DEPS``) joins this step's install."""
        if not self.params.upgrade_deps:
            return
        probe = ctx.run([self.python, "-c", "import venv; print(*getattr(venv, 'CORE_VENV_DEPS', ('pip', 'setuptools')))"],
                        check=False, capture=True, quiet=True)
        self._deps = probe.output.split() if probe.ok and probe.output.split() else ["pip", "setuptools"]

    def specs(self) -> list[str]:
        return [x for x in self.params.packages if not is_path(x)]

    def local_paths(self) -> list[str]:
        return [x for x in self.params.packages if is_path(x)] + list(self.params.editable)

    def has_python(self, ctx: StepContext) -> bool:
        return ctx.run(["test", "-x", self.python], check=False, quiet=True).ok

    def uv(self, ctx: StepContext) -> bool:
        """Does this step install wheels with the host's uv? Image steps into a venv, when uv is
        on the host and runs in the image (not on another libc or architecture); else pip."""
        usable = getattr(ctx, "_shlax_uv", None)
        if usable is None:
            usable = False
            if ctx.is_image and self.params.venv and any(m.target == UV_TARGET for m in ctx.mounts):
                usable = ctx.run([UV_TARGET, "--version"], check=False, capture=True, quiet=True).ok
                if not usable:
                    ctx.log("pip: the host's uv does not run in this image; installing with pip")
            setattr(ctx, "_shlax_uv", usable)
        return usable

    def ensure_venv(self, ctx: StepContext) -> bool:
        """Create the venv when missing; True when it had to."""
        return self.create_venv(ctx) is not None

    def create_venv(self, ctx: StepContext, *, compile: bool = True) -> Optional[str]:
        """Create the venv when missing. None when it was there; else the system pip's runner
        when that pip seeded it (it can install into the venv for the venv's Python, as
        ``pip --python`` does), or "" (seeded by uv or ensurepip). ``compile=False`` leaves the
        seeded pip and setuptools to be byte-compiled on first use (host steps, docs/caches.md)."""
        if not self.params.venv or self.has_python(ctx):
            return None
        uv = UV_TARGET if self.uv(ctx) else ""
        argv = [self.params.python, "-c", _SEED_VENV, self.params.venv, uv, "compile" if compile else "no-compile"]
        result = ctx.run(argv, check=False, capture=True)
        if result.returncode == 3:  # no byte-compiled pip to seed it with: ensurepip's way
            result = ctx.run([self.params.python, "-m", "venv", self.params.venv], check=False, capture=True)
        if not result.ok:
            why = "install python3-venv first (apt)" if re.search(r"ensurepip|venv", result.output) else "see its output"
            raise _failed(f"could not create the virtualenv {self.params.venv}: {why}", result)
        found = re.search(r"^installing into it with the system pip: (/\S+)$", result.output, re.M)
        return found.group(1) if found else ""

    def pip(self, ctx: StepContext, *args: str, mounts: Sequence[Mount] = (), check: bool = True,
            runner: str = "", quiet: bool = False) -> Exec:
        """Run pip (the system pip's ``runner`` for the venv's Python when given, else the
        Python's own); unless ``check`` is off, a failure raises StepFailed with what it means.
        ``quiet`` keeps its output from the user (a try whose failure is not the answer)."""
        env = {"PIP_BREAK_SYSTEM_PACKAGES": "1"} if self.params.system else {}
        argv = [self.python, runner] if runner else [self.python, "-m", "pip"]
        result = ctx.run([*argv, *args], env=env, check=False, capture=True, mounts=mounts, quiet=quiet)
        out = result.output
        if re.search(r"No module named pip\b", out):
            raise _failed(f"{self.python} has no pip: install python3-pip (apt) or use a venv", result)
        if "externally-managed-environment" in out:
            raise _failed("this Python is managed by the distribution (PEP 668): install into a venv, "
                          "or set system = true to override", result)
        if result.ok or not check:
            return result
        missing = ", ".join(re.findall(r"No matching distribution found for (\S+)", out))
        errors = [line[7:] for line in out.splitlines() if line.startswith("ERROR:")]
        if missing and ctx.offline:
            raise _failed(f"offline: {missing} is not in the pip wheelhouse ({wheelhouse()}): it was never "
                          "installed with the network; run once online to fill the cache", result)
        raise _failed(f"pip found no distribution for {missing}" if missing else
                      "pip failed: " + (errors[0] if errors else "see its output"), result)

    # -- incremental image steps --------------------------------------------------------------
    def grown_from(self, previous: Mapping[str, Any]) -> Optional[list[str]]:
        """The requirements added to ``packages`` when nothing else changed."""
        return self.grown_list(previous)

    def apply_added(self, ctx: StepContext, added: Sequence[str]) -> Optional[bool]:
        """The same install, of ``added`` alone, into the venv the previous layer holds."""
        only = copy.copy(self)
        only.params = dataclasses.replace(self.params, packages=list(added), requirements=[], editable=[])
        return only.apply(ctx)

    # -- host backends: check first -----------------------------------------------------------
    def check(self, ctx: StepContext) -> Optional[bool]:
        if self.local_paths() or self.params.requirements or self.params.constraints:
            return None  # pip itself decides; apply reports ok when it installed nothing
        if self.params.venv and not self.has_python(ctx):
            return False
        return ctx.run([self.python, "-c", _SATISFIED, *self.specs()], check=False, quiet=True).ok

    # -- doing it -----------------------------------------------------------------------------
    def apply(self, ctx: StepContext) -> Optional[bool]:
        self._deps: list[str] = []
        if not ctx.is_image:
            # a venv made here: its pip is not byte-compiled yet, the system's pip installs into it
            runner = self.create_venv(ctx, compile=False)
            if runner is not None:
                self.upgrade_deps(ctx)
            result = self.pip(ctx, "install", *(["--no-index"] if ctx.offline else self.index_args()),
                              *self.targets(), runner=runner or "")
            return runner is not None or "Successfully installed" in result.output
        if self.ensure_venv(ctx):
            self.upgrade_deps(ctx)
        if ctx.offline or (self.params.prefer_offline and not self.surely_missing()):
            if self.from_wheels(ctx, self.targets(), must=ctx.offline):
                return True
            ctx.log("pip: the wheelhouse lacks something; resolving against the index")
        incoming = Path(tempfile.mkdtemp(prefix="incoming-", dir=wheelhouse().parent))
        own: set[str] = set()
        try:
            for wheel in wheelhouse().glob("*.whl"):
                # pip wheel reuses a file already in its --wheel-dir instead of downloading it again:
                # hard links make the wheelhouse look like that dir
                try:
                    os.link(wheel, incoming / wheel.name)
                except OSError:
                    shutil.copy2(wheel, incoming / wheel.name)
            mount = Mount(str(incoming), INCOMING_TARGET)
            built = self.fetch(ctx, mount, own)
            targets = [built.get(t, t) for t in self.targets()]  # local projects: the wheels just built
            self.from_wheels(ctx, targets, mount=mount, must=True)
        finally:
            keep(incoming, own)
        return True

    def from_wheels(self, ctx: StepContext, targets: Sequence[str], *, mount: Optional[Mount] = None,
                    must: bool) -> bool:
        """Install ``targets`` from the wheelhouse (and ``mount``'s wheels) with no index: with uv
        when :meth:`uv` says so, else (or when uv fails where it must succeed) with pip, whose
        failure then explains itself. False when it could not and ``must`` is off.

        A try that may fail (``must`` off) runs quietly: its "ERROR: Could not find a version"
        is not the step's answer when the index is asked next. Its output is shown when it
        worked, so a successful step still says what it installed."""
        links = [WHEELHOUSE_TARGET, *([INCOMING_TARGET] if mount else [])]
        mounts = [mount] if mount else []
        if self.uv(ctx):
            argv = [UV_TARGET, "pip", "install", "--python", self.python, "--no-config", "--no-cache", "--no-index",
                    "--link-mode=copy", "--compile-bytecode", *(a for link in links for a in ("--find-links", link)),
                    *targets]
            result = ctx.run(argv, check=False, capture=True, mounts=mounts, quiet=not must)
            if result.ok or not must:
                return _shown(ctx, result, not must)
            ctx.log("pip: uv could not install from the wheels; trying pip")
        install = ["install", "--use-pep517", "--no-index", *(a for link in links for a in ("--find-links", link))]
        return _shown(ctx, self.pip(ctx, *install, *targets, mounts=mounts, check=must, quiet=not must), not must)

    def surely_missing(self) -> bool:
        """A requirement of the recipe has no wheel at all in the wheelhouse (seen on the host):
        skips an install attempt that could only fail after building every local project."""
        have = {w.name.split("-", 1)[0].lower() for w in wheelhouse().glob("*.whl")}
        for spec in [*self.specs(), *getattr(self, "_deps", [])]:
            m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([<>=!~;]|$)", spec)
            if m and _stem(m.group(1)) not in have:
                return True
        return False

    def fetch(self, ctx: StepContext, incoming: Mount, own: set[str]) -> dict[str, str]:
        """``pip wheel`` every requirement (and local projects' build requirements) into ``incoming``,
        taking what the wheelhouse holds from it; adds the local projects' names to ``own``.
        Returns {local path: its fresh wheel in the target} for non-editable local projects."""
        names, build_reqs, paths = [], [], self.local_paths()
        if paths:
            out = ctx.run([self.python, "-c", _BUILD_REQUIRES, *paths], check=False, capture=True, quiet=True)
            for kind, _, value in (line.partition(" ") for line in out.output.splitlines()):
                {"name": names, "req": build_reqs}.get(kind, []).append(value)
        own.update(_stem(n) for n in names if n)
        self.pip(ctx, "wheel", "--use-pep517", "--wheel-dir", INCOMING_TARGET, "--find-links", WHEELHOUSE_TARGET,
                 *self.index_args(), *[t for t in self.targets(editable=False) if t != "--upgrade"],
                 *dict.fromkeys(filter(None, build_reqs)), mounts=[incoming])
        built = {}
        for path, name in zip(paths, names):
            fresh = [w for w in Path(incoming.source).glob("*.whl") if name and w.name.lower().startswith(_stem(name) + "-")]
            if len(fresh) == 1 and path not in self.params.editable:
                built[path] = f"{INCOMING_TARGET}/{fresh[0].name}"
        return built


def keep(incoming: Path, own: set[str]) -> None:
    """Move new wheels into the wheelhouse (atomic renames: concurrent readers never see half a
    file), except the recipe's own projects, which change under the same version."""
    try:
        for wheel in incoming.glob("*.whl"):
            target = wheelhouse() / wheel.name
            if wheel.name.split("-", 1)[0].lower() not in own and not target.exists():
                os.replace(wheel, target)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


def _shown(ctx: StepContext, result: Exec, held: bool) -> bool:
    """``result.ok``; a quiet try's output (``held``) is shown now that it worked."""
    if held and result.ok:
        for line in result.output.splitlines():
            ctx.log(line)
    return result.ok


def _failed(message: str, result: Exec) -> StepFailed:
    return StepFailed(message, argv=result.argv, returncode=result.returncode, tail=result.tail)
