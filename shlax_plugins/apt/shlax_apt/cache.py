"""The ``apt`` download cache: one set of archives and lists per distribution release.

Image steps get ``<download cache>/apt/<ID>-<CODENAME>/archives`` and ``.../lists`` mounted at
apt's own paths, so nothing of them lands in a layer, and a rebuilt layer re-installs from them
without the network. apt cannot share these folders between two concurrent runs (it locks them
and fails), so steps take a file lock and wait their turn, like BuildKit's ``sharing=locked``.

Image configurations that delete downloaded archives after each install (Docker's
``/etc/apt/apt.conf.d/docker-clean``) are neutralised for the step by mounting an empty file over
them; every apt-get the step runs also gets ``APT_CONFIG`` pointing at a mounted file that keeps
downloads. Host backends (local, SSH) use the host's own apt folders and locks: no mounts.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Iterator, Sequence

from shlax_core import dirs
from shlax_core.backends import Mount
from shlax_core.caches import Cache

from shlax_core import trust

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.actions import StepContext

ARCHIVES = "/var/cache/apt/archives"
LISTS = "/var/lib/apt/lists"
CONF_TARGET = "/run/shlax/apt.conf"

#: apt options every image step gets: keep what was downloaded, write no binary cache into the layer,
#: download as root (the mounted folders belong to the host's root, not to the image's _apt).
IMAGE_OPTIONS = {
    "APT::Keep-Downloaded-Packages": "true",
    "Binary::apt::APT::Keep-Downloaded-Packages": "true",
    "Dir::Cache::pkgcache": "",
    "Dir::Cache::srcpkgcache": "",
    "APT::Sandbox::User": "root",
}

# Finds image configs that delete the archives apt just downloaded (docker-clean and the like).
_PROBE = r"""
grep -l -s -E 'rm .*archives/\*\.deb' /etc/apt/apt.conf.d/* || true
echo "--sources--"
cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | cksum
"""


class AptCache(Cache):
    """apt archives and lists on the host, per release (``debian-bookworm``, ``ubuntu-jammy``...)."""

    def release(self, ctx: "StepContext") -> str:
        facts = ctx.facts()
        distro = re.sub(r"[^a-z0-9.]+", "-", facts.get("ID", "unknown").lower())
        codename = facts.get("VERSION_CODENAME") or facts.get("VERSION_ID") or "unknown"
        return f"{distro}-{re.sub(r'[^a-z0-9.]+', '-', codename.lower())}"

    def release_dir(self, ctx: "StepContext") -> Path:
        path = dirs.download_cache("apt") / self.release(ctx)
        for sub in ("archives/partial", "lists/partial"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    def probe(self, ctx: "StepContext") -> tuple[list[str], str]:
        """(configs that delete archives, checksum of the sources) of the image, once per step."""
        cached = getattr(ctx, "_shlax_apt_probe", None)
        if cached is None:
            out = ctx.backend.run(["sh", "-c", _PROBE], capture=True, check=False).output
            cleaners, _, sources = out.partition("--sources--")
            cached = ([line.strip() for line in cleaners.splitlines() if line.strip().startswith("/")],
                      sources.strip())
            setattr(ctx, "_shlax_apt_probe", cached)
        return cached

    def conf_file(self) -> Path:
        """The APT_CONFIG file lent to steps; written once, same content for every release."""
        path = dirs.download_cache("apt") / "shlax-apt.conf"
        text = "".join(f'{k} "{v}";\n' for k, v in IMAGE_OPTIONS.items())
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            tmp.replace(path)
        return path

    def empty_file(self) -> Path:
        path = dirs.download_cache("apt") / "empty.conf"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        return path

    def mounts(self, ctx: "StepContext") -> Sequence[Mount]:
        if not ctx.is_image:
            return []
        base = self.release_dir(ctx)
        cleaners, _ = self.probe(ctx)
        out = [Mount(str(base / "archives"), ARCHIVES), Mount(str(base / "lists"), LISTS),
               Mount(str(self.conf_file()), CONF_TARGET, readonly=True)]
        out += [Mount(str(self.empty_file()), path, readonly=True) for path in cleaners]
        return out + trust.mounts(ctx)

    def env(self, ctx: "StepContext") -> dict[str, str]:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        if ctx.is_image:
            env["APT_CONFIG"] = CONF_TARGET
            env.update(trust.env(ctx, ()))
        return env

    @contextlib.contextmanager
    def _locked(self, ctx: "StepContext") -> Iterator[None]:
        from filelock import FileLock, Timeout

        lock = FileLock(str(dirs.download_cache("apt") / f"{self.release(ctx)}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            ctx.log(f"waiting for the apt cache {self.release(ctx)} (another build is using it)")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def lock(self, ctx: "StepContext") -> ContextManager[None]:
        """Image steps take turns per release; host backends rely on apt's own lock (it waits)."""
        if not ctx.is_image:
            return contextlib.nullcontext()
        return self._locked(ctx)

    def prune(self, dry_run: bool = False) -> int:
        """Like ``apt-get autoclean``: drop archives superseded by a newer version of the same package."""
        freed = 0
        root = dirs.download_cache("apt")
        if not root.is_dir():
            return 0
        for archives in root.glob("*/archives"):
            newest: dict[tuple[str, str], Path] = {}
            doomed: list[Path] = [p for p in (archives / "partial").glob("*") if p.is_file()]
            for deb in sorted(archives.glob("*.deb"), key=lambda p: p.stat().st_mtime):
                parts = deb.name[:-4].split("_")
                if len(parts) != 3:
                    continue
                key = (parts[0], parts[2])
                if key in newest:
                    doomed.append(newest[key])
                newest[key] = deb
            for path in doomed:
                freed += path.stat().st_size
                if not dry_run:
                    path.unlink(missing_ok=True)
        return freed


def lists_age(lists: Path) -> float:
    """Seconds since the last successful ``apt-get update`` into ``lists`` (inf: never)."""
    stamp = lists.parent / "update.stamp"
    try:
        return max(0.0, time.time() - stamp.stat().st_mtime)
    except OSError:
        return float("inf")
