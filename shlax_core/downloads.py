"""Download caches: host folders lent to image steps, so a rebuilt layer reinstalls offline.

Not to be confused with the *layer* cache (:mod:`shlax_core.cache`): a download cache holds what
package managers fetched (apt's archives, RPMs, wheels), never a layer.

Two levels for plugin authors:

- :class:`Cache`, the contract (``shlax.caches`` entry points): which host folders to mount where,
  which environment a step needs, whether concurrent runs must take turns, what to prune.
  ``shlax cache ls|du|prune`` ask every cache for its folders.
- :class:`DownloadCache`, a base that implements that contract from declarations: container
  paths and the host sub-folders behind them, per-release folders keyed on the target's
  ``/etc/os-release``, ``sharing = "locked"`` (one build at a time per folder, with a "waiting"
  line) or ``"shared"``, half-written files to prune, update stamps. The core adds the host's CA
  bundle and proxies to every step that uses one (:mod:`shlax_core.trust`); a plugin only names
  the variables its tool reads the bundle from. Host backends (local, SSH, podman) use their own
  folders: no mounts and no lock, ever, so a host cache cannot end up in an image layer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, ContextManager, Iterator, Literal, Mapping, Optional, Sequence

from shlax_core import dirs, trust
from shlax_core.backends import Mount
from shlax_core.filestate import write_atomic

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.actions import StepContext

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def release_of(facts: Mapping[str, str]) -> str:
    """``debian-bookworm``, ``fedora-40``, ``arch-rolling``: the folder a per-release cache uses."""
    version = facts.get("VERSION_CODENAME") or facts.get("VERSION_ID") or facts.get("BUILD_ID") or "unknown"
    return f"{_slug(facts.get('ID', 'unknown'))}-{_slug(version)}"


@contextlib.contextmanager
def flock(path: Path, *, shared: bool, waiting: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """An flock on ``path`` (created): shared or exclusive; calls ``waiting()`` once before blocking.

    flock, not filelock, because a download cache wants both kinds: steps of a shareable cache
    hold it shared, ``shlax cache prune`` exclusive, so prune never deletes a file a build is writing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class Cache:
    """The contract of a download cache. ``name`` and ``version`` are set by the plugin loader."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = ""

    def folders(self) -> Sequence[Path]:
        """Every host folder this cache owns or shares (for ``shlax cache ls``/``du``)."""
        return [dirs.download_cache(self.name)]

    def mounts(self, ctx: "StepContext") -> Sequence[Mount]:
        """Mounts for one step on this backend (image or host)."""
        return []

    def env(self, ctx: "StepContext") -> dict[str, str]:
        """Environment variables a step needs to use the cache."""
        return {}

    def lock(self, ctx: "StepContext") -> ContextManager[None]:
        """Held for the whole step: override when concurrent runs cannot share the folders."""
        return contextlib.nullcontext()

    def prune(self, dry_run: bool = False) -> int:
        """Drop what is no longer useful; return bytes freed. Default: nothing."""
        return 0


class DownloadCache(Cache):
    """A download cache made of declarations; override a method only for what is really special.

    Class attributes:

    - ``paths``: container path -> host sub-folder (relative to :meth:`folder`), mounted for
      image steps, e.g. ``{"/var/cache/dnf": "dnf"}``. Override :meth:`host_paths` for folders
      elsewhere (the user's own pip cache).
    - ``per_release``: one folder per target release (:func:`release_of` its facts), for
      distribution packages that must never mix (bookworm's and jammy's ``libc6``).
    - ``sharing``: ``"locked"`` when two builds cannot use one folder at once (apt, dnf, pacman
      lock their caches and fail), ``"shared"`` when the tool writes atomically (pip, npm).
    - ``partial``: globs (relative to each host path) of half-written files, dropped by prune.
    - ``ca_env``: variables the tool reads a CA bundle from (``PIP_CERT``...); the core points
      them at the host's bundle, mounted for the step, and passes the proxy variables.
    - ``env_vars`` (every backend), ``image_env`` (image steps), ``offline_env`` (``--offline``).
    - ``sources``: files in the target whose content says which repositories the cached package
      lists came from (a changed repository makes the lists stale, whatever their age).
    """

    paths: ClassVar[Mapping[str, str]] = {}
    per_release: ClassVar[bool] = False
    sharing: ClassVar[Literal["locked", "shared"]] = "shared"
    partial: ClassVar[Sequence[str]] = ()
    ca_env: ClassVar[Sequence[str]] = ()
    env_vars: ClassVar[Mapping[str, str]] = {}
    image_env: ClassVar[Mapping[str, str]] = {}
    offline_env: ClassVar[Mapping[str, str]] = {}
    sources: ClassVar[Sequence[str]] = ()
    #: extra lines of the probe script run once per step (shell, fixed text: never recipe data)
    probe_script: ClassVar[str] = ""

    # -- where ---------------------------------------------------------------------------------
    def root(self) -> Path:
        return dirs.download_cache(self.name)

    def release(self, ctx: "StepContext") -> str:
        return release_of(ctx.facts())

    def folder(self, ctx: "StepContext") -> Path:
        """This step's host folder: the cache root, or its sub-folder for the target's release."""
        return self.root() / self.release(ctx) if self.per_release else self.root()

    def host_paths(self, ctx: "StepContext") -> dict[str, Path]:
        """Container path -> host folder for this step."""
        base = self.folder(ctx)
        return {target: base / sub for target, sub in self.paths.items()}

    def prepare(self, ctx: "StepContext") -> dict[str, Path]:
        """:meth:`host_paths`, created (with the ``partial`` sub-folders tools expect)."""
        found = self.host_paths(ctx)
        for path in found.values():
            path.mkdir(parents=True, exist_ok=True)
            for pattern in self.partial:
                head = pattern.split("/")[0]
                if "/" in pattern and not any(c in head for c in "*?["):
                    (path / head).mkdir(exist_ok=True)
        return found

    # -- the contract ----------------------------------------------------------------------------
    def mounts(self, ctx: "StepContext") -> Sequence[Mount]:
        if not ctx.is_image:
            return []
        out = [Mount(str(source), target) for target, source in self.prepare(ctx).items()]
        return [*out, *self.extra_mounts(ctx), *trust.mounts(ctx)]

    def extra_mounts(self, ctx: "StepContext") -> Sequence[Mount]:
        """More mounts for image steps (a config file made with :meth:`lend_file`...)."""
        return []

    def lend_file(self, name: str, text: str) -> Path:
        """``<root>/name`` holding ``text``, (re)written atomically when it differs: a file to mount."""
        path = self.root() / name
        try:
            if path.read_text() == text:
                return path
        except OSError:
            pass
        write_atomic(path, text)
        return path

    def env(self, ctx: "StepContext") -> dict[str, str]:
        env = dict(self.env_vars)
        if ctx.is_image:
            env.update(self.image_env)
            env.update(trust.env(ctx, self.ca_env))
        if ctx.offline:
            env.update(self.offline_env)
        return env

    def lock_path(self, ctx: "StepContext") -> Path:
        return self.root() / f"{self.release(ctx) if self.per_release else self.name}.lock"

    def lock(self, ctx: "StepContext") -> ContextManager[None]:
        """Image steps hold the folder ``sharing`` says; host backends rely on the tool's own lock."""
        if not ctx.is_image:
            return contextlib.nullcontext()
        what = f"the {self.name} cache" + (f" {self.release(ctx)}" if self.per_release else "")
        return flock(self.lock_path(ctx), shared=self.sharing == "shared",
                     waiting=lambda: ctx.log(f"waiting for {what} (another build is using it)"))

    def prune(self, dry_run: bool = False) -> int:
        """Half-written files (``partial``) and whatever :meth:`prune_folder` drops, per folder.

        A folder a build holds is skipped (its lock is taken without waiting).
        """
        freed = 0
        for folder, lock in self._prunable():
            try:
                with flock(lock, shared=False, waiting=_busy):
                    doomed = [p for pattern in self.partial for p in folder.glob(pattern) if p.is_file()]
                    doomed += self.prune_folder(folder)
                    for path in doomed:
                        freed += path.stat().st_size
                        if not dry_run:
                            path.unlink(missing_ok=True)
            except _Busy:
                continue
        return freed

    def _prunable(self) -> list[tuple[Path, Path]]:
        root = self.root()
        if not self.per_release:
            return [(path, root / f"{self.name}.lock") for path in self.owned() if path.is_dir()]
        if not root.is_dir():
            return []
        out = []
        for release in sorted(p for p in root.iterdir() if p.is_dir()):
            for sub in self.paths.values():
                if (release / sub).is_dir():
                    out.append((release / sub, root / f"{release.name}.lock"))
        return out

    def owned(self) -> Sequence[Path]:
        """The folders prune may touch (not per release): shlax's own, never a user's cache it borrows."""
        return [self.root() / sub for sub in self.paths.values()] if self.paths else list(self.folders())

    def prune_folder(self, folder: Path) -> list[Path]:
        """Files of one host folder no longer worth keeping (superseded versions...)."""
        return []

    # -- package lists: probe, stamps ------------------------------------------------------------
    def probe(self, ctx: "StepContext") -> tuple[list[str], str]:
        """(lines of ``probe_script``, checksum of ``sources``) of the target, once per step."""
        cached = getattr(ctx, f"_shlax_probe_{self.name}", None)
        if cached is None:
            files = " ".join(self.sources)  # fixed globs declared by the plugin, never recipe data
            script = f"{self.probe_script}\necho --sources--\ncat {files} 2>/dev/null | cksum\n"
            out = ctx.backend.run(["sh", "-c", script], capture=True, check=False).output
            head, _, sources = out.partition("--sources--")
            cached = ([line.strip() for line in head.splitlines() if line.strip()], sources.strip())
            setattr(ctx, f"_shlax_probe_{self.name}", cached)
        return cached

    def stamp_path(self, ctx: "StepContext") -> Path:
        return self.folder(ctx) / "update.stamp"

    def stamp(self, ctx: "StepContext") -> None:
        """The package lists were just updated, from the target's current sources."""
        path = self.stamp_path(ctx)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.probe(ctx)[1] + "\n")

    def lists_age(self, ctx: "StepContext") -> float:
        """Seconds since the last update from the target's current sources (inf: never, or others)."""
        path = self.stamp_path(ctx)
        try:
            if path.read_text().strip() != self.probe(ctx)[1]:
                return float("inf")
            return max(0.0, time.time() - path.stat().st_mtime)
        except OSError:
            return float("inf")


class _Busy(Exception):
    pass


def _busy() -> None:
    raise _Busy()
