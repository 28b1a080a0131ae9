"""The ``debootstrap:SUITE`` base-image source: a Debian base built once per image store, keyed by
its inputs.

``base = "debootstrap:bookworm"`` builds a minbase rootfs with debootstrap and imports it as
``localhost/shlax-base:debootstrap-SUITE-<hash>``; later builds reuse it. Options follow a ``?``:
``debootstrap:bookworm?variant=minbase&include=ca-certificates&mirror=http://deb.debian.org/debian``.
The mirror defaults to the host's own Debian mirror (its apt sources), so a host behind a local
mirror or proxy builds its base through it. Downloaded .debs are kept under the download cache,
so rebuilding a base (another variant, a pruned image) does not download them again.

With a remote builder the base is built *on the builder*, into its store: its debootstrap (whose
version goes into the hash), its apt mirror, its .deb cache (same path as here, made there), in a
folder under the builder's private temporary folder, removed afterwards (also after a failure or
Ctrl-C). Every command there is a fixed script whose data travel as positional parameters.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional
from urllib.parse import parse_qsl

from shlax_core import dirs
from shlax_core.errors import RecipeError, ShlaxError, StepFailed
from shlax_core.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from shlax_buildah.backend import BuildahBackend
    from shlax_buildah.remote import SSHTransport

PREFIX = "debootstrap:"
IMAGE_REPO = "localhost/shlax-base"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SUITE = re.compile(r"^[a-z][a-z0-9-]*$")
OPTIONS = ("variant", "include", "mirror", "arch")
#: every option ends up on debootstrap's command line: checked at recipe time
_VALUES = {"variant": re.compile(r"^[a-z][a-z-]*$"), "include": re.compile(r"^[a-z0-9][a-z0-9+.,:-]*$"),
           "mirror": re.compile(r"^(?:https?|ftp|file)://[^\s]+$"), "arch": re.compile(r"^[a-z0-9][a-z0-9-]*$")}
_VALUE_HINTS = {"variant": "e.g. minbase or buildd", "include": "package names separated by commas",
                "mirror": "an http(s), ftp or file URL", "arch": "a Debian architecture, e.g. amd64"}
SOURCES_DIR = "/etc/apt/sources.list.d"
SOURCES_FILES = ("/etc/apt/sources.list",)
DPKG_RECORD = "/var/lib/dpkg/info/debootstrap.list"


#: on the builder: "debootstrap-missing", or "debootstrap-version V" (dpkg's version of
#: debootstrap, maybe empty) followed by its apt sources, in the order :func:`host_mirror` reads
#: them here
PROBE_SCRIPT = r"""
command -v debootstrap >/dev/null 2>&1 || { echo debootstrap-missing; exit 0; }
echo "debootstrap-version $(dpkg-query -W -f '${Version}' debootstrap 2>/dev/null)"
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  if [ -f "$f" ] && [ -r "$f" ]; then cat -- "$f"; echo; fi
done
exit 0
"""
#: on the builder: make the .deb cache $2 and the work folder $1, then run the debootstrap argv
#: "$@" under a lock of that cache (two machines driving one builder share the folder)
RUN_SCRIPT = r"""
set -e
work=$1; debs=$2; shift 2
mkdir -p -- "$debs"
mkdir -m 0700 -- "$work"
if command -v flock >/dev/null 2>&1; then exec flock "$debs.lock" "$@"; fi
exec "$@"
"""
#: on the builder: what :func:`build` does here after debootstrap, on $1/rootfs, then the archive
#: $1/rootfs.tar with numeric owners (the builder's user names must not remap a base's files)
PACK_SCRIPT = r"""
set -e
rootfs=$1/rootfs
while read -r _ m _; do case $m in "$rootfs"/*) echo "$m" ;; esac; done < /proc/mounts | sort -r |
  while read -r m; do umount -l "$m" 2>/dev/null || true; done
rm -rf -- "$rootfs/var/cache/apt/archives"
mkdir -p -- "$rootfs/var/cache/apt/archives/partial"
for f in "$rootfs"/var/lib/apt/lists/*_*; do
  if [ -f "$f" ] || [ -L "$f" ]; then rm -f -- "$f"; fi
done
tar --numeric-owner -C "$rootfs" -cf "$1/rootfs.tar" .
"""


def mirror_in(text: str) -> Optional[str]:
    """The first Debian mirror named in apt sources text (deb822 or one-line), if any."""
    for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
        uri = m.group(1)
        if uri.startswith("http") and uri.rstrip("/").endswith("/debian"):
            return uri
    return None


def host_sources() -> list[str]:
    """The host's apt sources files, in the order :func:`host_mirror` reads them."""
    return glob.glob(f"{SOURCES_DIR}/*.sources") + list(SOURCES_FILES) + glob.glob(f"{SOURCES_DIR}/*.list")


def host_mirror() -> Optional[str]:
    """The host's Debian mirror from its apt sources (deb822 or one-line), if any."""
    for path in host_sources():
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        uri = mirror_in(text)
        if uri:
            return uri
    return None


def parse(spec: str, where: Optional[str],
          default_mirror: Callable[[], Optional[str]] = host_mirror) -> dict[str, str]:
    body = spec[len(PREFIX):]
    suite, _, query = body.partition("?")
    if not _SUITE.match(suite):
        raise RecipeError(f"base {spec!r}: {suite!r} is not a Debian suite name (e.g. bookworm)", where=where)
    opts = dict(parse_qsl(query, keep_blank_values=True))
    for key in opts:
        if key not in OPTIONS:
            raise RecipeError(f"base {spec!r}: unknown debootstrap option {key!r}", where=where,
                              hint=f"options: {', '.join(OPTIONS)}")
        if opts[key] and not _VALUES[key].match(opts[key]):
            raise RecipeError(f"base {spec!r}: {opts[key]!r} is not a valid {key}", where=where,
                              hint=_VALUE_HINTS[key])
    return {"suite": suite, "variant": opts.get("variant", "minbase"), "include": opts.get("include", ""),
            "mirror": opts.get("mirror") or default_mirror() or "", "arch": opts.get("arch", "")}


def image_name(opts: dict[str, str], version: Optional[str] = None) -> str:
    """The base's name: a hash of its options and of the debootstrap version that builds it
    (this machine's unless ``version`` is given: a builder's)."""
    if version is None:
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "debootstrap"],
                                 capture_output=True, text=True).stdout.strip()
    digest = hashlib.sha256(repr(sorted({**opts, "debootstrap": version}.items())).encode()).hexdigest()
    return f"{IMAGE_REPO}:debootstrap-{opts['suite']}-{digest[:12]}"


def name_inputs(spec: str) -> dict[str, Optional[list[int]]]:
    """Signatures of the host files the base's name depends on, for the no-op fast path: the apt
    sources (when the mirror is the host's) and dpkg's record of the installed debootstrap,
    rewritten whenever it is installed, upgraded or removed."""
    from shlax_core.filestate import signature

    paths = [DPKG_RECORD]
    if not dict(parse_qsl(spec.partition("?")[2])).get("mirror"):
        paths += [SOURCES_DIR, *host_sources()]
    return {p: signature(p) for p in paths}


@hookimpl(trylast=True)  # a third party's source for the same spec would win
def shlax_base_image(spec: str, backend: "BuildahBackend") -> Optional[str]:
    if not spec.startswith(PREFIX):
        return None
    transport = getattr(backend.buildah, "transport", None)
    if transport is not None:
        return remote_base_image(spec, backend, transport)
    guards = name_inputs(spec)  # taken before reading them: a change meanwhile is never missed
    opts = parse(spec, backend.target.where_of("base"))
    name = image_name(opts)
    backend.base_guards = guards
    if backend.plan or backend.buildah.image_id(name):
        return name  # a plan builds nothing: the backend reports a missing base as "will build"
    from shlax_buildah import rootless

    if rootless.active():
        raise ShlaxError(f"base {spec!r} ({name}) is not in this user's image store, and a rootless build "
                         "cannot make it", where=backend.target.where_of("base"), hint=rootless.base_hint(spec, name))
    if shutil.which("debootstrap") is None:
        raise ShlaxError(f"base {spec!r} needs debootstrap, which is not installed",
                         where=backend.target.where_of("base"), hint="apt-get install debootstrap")
    if backend.session.offline:
        raise ShlaxError(f"base {spec!r} was never built here and --offline forbids downloading it",
                         where=backend.target.where_of("base"), hint="build once with the network on")
    from filelock import FileLock

    lock = dirs.state("locks/debootstrap.lock")
    with FileLock(str(lock)):
        if backend.buildah.image_id(name):  # another run built it while we waited
            return name
        backend.session.reporter.emit("info", message=f"building base image {spec} with debootstrap (once)",
                                      target=backend.target.name)
        build(opts, name, backend)
    return name


def debs_folder(opts: dict[str, str]) -> Path:
    """Where debootstrap keeps its .deb files: in the download cache, per suite and architecture
    (on a builder: the same path, there)."""
    return dirs.download_cache("debootstrap") / f"{opts['suite']}-{opts['arch'] or 'native'}"


def debootstrap_argv(opts: dict[str, str], debs: str, rootfs: str) -> list[str]:
    argv = ["debootstrap", f"--variant={opts['variant']}", f"--cache-dir={debs}"]
    if opts["include"]:
        argv.append(f"--include={opts['include']}")
    if opts["arch"]:
        argv.append(f"--arch={opts['arch']}")
    argv += [opts["suite"], rootfs]
    if opts["mirror"]:
        argv.append(opts["mirror"])
    return argv


def import_rootfs(archive: str, opts: dict[str, str], name: str, backend: "BuildahBackend") -> None:
    """Make image ``name`` of a rootfs tar archive (a path where buildah runs), like an import."""
    container = f"shlax-base-{os.urandom(4).hex()}"
    b = backend.buildah
    try:
        b("from", "--name", container, "scratch")
        b("add", container, archive, "/")
        b("config", "--env", f"PATH={DEFAULT_PATH}", "--cmd", '["/bin/bash"]',
          "--label", f"io.shlax.base=debootstrap:{opts['suite']}", container)
        b("commit", "--quiet", container, name)
    finally:
        b("rm", container, check=False)


def build(opts: dict[str, str], name: str, backend: "BuildahBackend") -> None:
    import tarfile
    import tempfile

    debs = debs_folder(opts)
    debs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shlax-debootstrap-"))
    rootfs = work / "rootfs"
    try:
        argv = debootstrap_argv(opts, str(debs), str(rootfs))
        from shlax_core import process

        process.run(argv, output=backend.log)
        _unmount_below(rootfs)
        # apt inside builds must not keep its own copies: shlax mounts caches for that
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        for lists in (rootfs / "var/lib/apt/lists").glob("*_*"):
            lists.unlink()
        archive = work / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        import_rootfs(str(archive), opts, name, backend)
    except StepFailed as exc:
        raise StepFailed(f"debootstrap of {opts['suite']} failed: {exc.message}", argv=exc.argv,
                         returncode=exc.returncode, tail=exc.tail) from None
    finally:
        _unmount_below(rootfs)
        shutil.rmtree(work, ignore_errors=True)


# -- on a remote builder ---------------------------------------------------------------------------
def remote_base_image(spec: str, backend: "BuildahBackend", transport: "SSHTransport") -> str:
    """The base's name in the builder's store, built there first if it is missing."""
    where = backend.target.where_of("base")
    version, sources = _probe(transport)
    opts = parse(spec, where, default_mirror=lambda: mirror_in(sources))
    if version is None:
        raise ShlaxError(f"base {spec!r} needs debootstrap on {transport.label}, which is not installed there "
                         "(not on the PATH of its ssh sessions)", where=where,
                         hint=f"on {transport.label}: apt-get install debootstrap")
    name = image_name(opts, version)
    if backend.plan or backend.buildah.image_id(name):
        return name  # a plan builds nothing: the backend reports a missing base as "will build"
    if backend.session.offline:
        raise ShlaxError(f"base {spec!r} was never built on {transport.label} and --offline forbids "
                         "downloading it", where=where, hint="build once with the network on")
    from filelock import FileLock

    # this machine's runs wait for each other; the .deb cache on the builder has its own lock
    lock = dirs.state(f"locks/debootstrap-{hashlib.sha256(transport.label.encode()).hexdigest()[:12]}.lock")
    with FileLock(str(lock)):
        if backend.buildah.image_id(name):  # another run built it while we waited
            return name
        backend.session.reporter.emit("info", message=f"building base image {spec} with debootstrap on "
                                                      f"{transport.label} (once)", target=backend.target.name)
        build_remote(opts, name, backend, transport)
    return name


def _probe(transport: "SSHTransport") -> tuple[Optional[str], str]:
    """(the builder's debootstrap version, or None when it has none; its apt sources text). The
    markers make it immune to whatever a login shell prints first."""
    lines = transport.sh(PROBE_SCRIPT, what="looking for debootstrap").splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "debootstrap-missing":
            return None, ""
        if line.startswith("debootstrap-version"):
            return line[len("debootstrap-version"):].strip(), "\n".join(lines[i + 1:])
    return None, ""


def build_remote(opts: dict[str, str], name: str, backend: "BuildahBackend", transport: "SSHTransport") -> None:
    """:func:`build`, on the builder: debootstrap, clean-up and tar there, then the same import."""
    work = transport.path("debootstrap")
    debs = str(debs_folder(opts))
    argv = debootstrap_argv(opts, debs, f"{work}/rootfs")
    try:
        transport.stream(["sh", "-c", RUN_SCRIPT, "sh", work, debs, *argv],
                         output=backend.log, what="debootstrap", display=argv)
        # tracked too, so that an interrupt stops the tar before the folder is removed
        transport.stream(["sh", "-c", PACK_SCRIPT, "sh", work], output=backend.log,
                         what="packing the debootstrap rootfs", display=["tar", "-C", f"{work}/rootfs", "-cf",
                                                                         f"{work}/rootfs.tar", "."])
        import_rootfs(f"{work}/rootfs.tar", opts, name, backend)
    except StepFailed as exc:
        raise StepFailed(f"debootstrap of {opts['suite']} on {transport.label} failed: {exc.message}",
                         argv=exc.argv, returncode=exc.returncode, tail=exc.tail) from None
    finally:
        transport.stop()  # a debootstrap an interrupt left running there: before its folder goes
        transport.discard(work)


def _unmount_below(path: Path) -> None:
    """Unmount anything debootstrap left mounted in the rootfs (proc, sys) before deleting it."""
    prefix = str(path.resolve()) + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    os.sync()
