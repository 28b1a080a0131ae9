"""The ``debootstrap:SUITE`` base-image source: a Debian base built locally, once, keyed by its inputs.

``base = "debootstrap:bookworm"`` builds a minbase rootfs with debootstrap and imports it as
``localhost/shlax-base:debootstrap-SUITE-<hash>``; later builds reuse it. Options follow a ``?``:
``debootstrap:bookworm?variant=minbase&include=ca-certificates&mirror=http://deb.debian.org/debian``.
The mirror defaults to the host's own Debian mirror (its apt sources), so a host behind a local
mirror or proxy builds its base through it. Downloaded .debs are kept under the download cache,
so rebuilding a base (another variant, a pruned image) does not download them again.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Optional
from urllib.parse import parse_qsl

from shlax_core import dirs
from shlax_core.errors import RecipeError, ShlaxError, StepFailed
from shlax_core.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from shlax_buildah.backend import BuildahBackend

PREFIX = "debootstrap:"
IMAGE_REPO = "localhost/shlax-base"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SUITE = re.compile(r"^[a-z][a-z0-9-]*$")
OPTIONS = ("variant", "include", "mirror", "arch")


def host_mirror() -> Optional[str]:
    """The host's Debian mirror from its apt sources (deb822 or one-line), if any."""
    files = glob.glob("/etc/apt/sources.list.d/*.sources") + ["/etc/apt/sources.list"] + \
        glob.glob("/etc/apt/sources.list.d/*.list")
    for path in files:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            uri = m.group(1)
            if uri.startswith("http") and uri.rstrip("/").endswith("/debian"):
                return uri
    return None


def parse(spec: str, where: Optional[str]) -> dict[str, str]:
    body = spec[len(PREFIX):]
    suite, _, query = body.partition("?")
    if not _SUITE.match(suite):
        raise RecipeError(f"base {spec!r}: {suite!r} is not a Debian suite name (e.g. bookworm)", where=where)
    opts = dict(parse_qsl(query, keep_blank_values=True))
    for key in opts:
        if key not in OPTIONS:
            raise RecipeError(f"base {spec!r}: unknown debootstrap option {key!r}", where=where,
                              hint=f"options: {', '.join(OPTIONS)}")
    return {"suite": suite, "variant": opts.get("variant", "minbase"), "include": opts.get("include", ""),
            "mirror": opts.get("mirror") or host_mirror() or "", "arch": opts.get("arch", "")}


def image_name(opts: dict[str, str]) -> str:
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "debootstrap"],
                             capture_output=True, text=True).stdout.strip()
    digest = hashlib.sha256(repr(sorted({**opts, "debootstrap": version}.items())).encode()).hexdigest()
    return f"{IMAGE_REPO}:debootstrap-{opts['suite']}-{digest[:12]}"


@hookimpl
def shlax_base_image(spec: str, backend: "BuildahBackend") -> Optional[str]:
    if not spec.startswith(PREFIX):
        return None
    opts = parse(spec, backend.target.where)
    name = image_name(opts)
    if backend.buildah.image_id(name):
        return name
    if getattr(backend.buildah, "remote", None):  # never built on the builder: no remote debootstrap (yet)
        raise ShlaxError(f"base {spec!r} ({name}) is not in the image store of {backend.buildah.remote}, "
                         "and shlax does not run debootstrap on a remote builder",
                         where=backend.target.where,
                         hint="use a registry or local base that the builder has (buildah pull/import there), "
                              "or run the recipe on the builder itself once to build the base")
    if shutil.which("debootstrap") is None:
        raise ShlaxError(f"base {spec!r} needs debootstrap, which is not installed",
                         where=backend.target.where, hint="apt-get install debootstrap")
    if backend.session.offline:
        raise ShlaxError(f"base {spec!r} was never built here and --offline forbids downloading it",
                         where=backend.target.where, hint="build once with the network on")
    from filelock import FileLock

    lock = dirs.state("locks/debootstrap.lock")
    with FileLock(str(lock)):
        if backend.buildah.image_id(name):  # another run built it while we waited
            return name
        backend.session.reporter.emit("info", message=f"building base image {spec} with debootstrap (once)",
                                      target=backend.target.name)
        build(opts, name, backend)
    return name


def build(opts: dict[str, str], name: str, backend: "BuildahBackend") -> None:
    import tarfile
    import tempfile

    debs = dirs.download_cache("debootstrap") / f"{opts['suite']}-{opts['arch'] or 'native'}"
    debs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shlax-debootstrap-"))
    rootfs = work / "rootfs"
    container = None
    try:
        argv = ["debootstrap", f"--variant={opts['variant']}", f"--cache-dir={debs}"]
        if opts["include"]:
            argv.append(f"--include={opts['include']}")
        if opts["arch"]:
            argv.append(f"--arch={opts['arch']}")
        argv += [opts["suite"], str(rootfs)]
        if opts["mirror"]:
            argv.append(opts["mirror"])
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
        container = f"shlax-base-{uuid.uuid4().hex[:8]}"
        b = backend.buildah
        b("from", "--name", container, "scratch")
        b("add", container, str(archive), "/")
        b("config", "--env", f"PATH={DEFAULT_PATH}", "--cmd", '["/bin/bash"]',
          "--label", f"io.shlax.base=debootstrap:{opts['suite']}", container)
        b("commit", "--quiet", container, name)
    except StepFailed as exc:
        raise StepFailed(f"debootstrap of {opts['suite']} failed: {exc.message}", argv=exc.argv,
                         returncode=exc.returncode, tail=exc.tail) from None
    finally:
        if container:
            backend.buildah("rm", container, check=False)
        _unmount_below(rootfs)
        shutil.rmtree(work, ignore_errors=True)


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
