"""Who owns a working container and a temporary folder, so debris of a killed shlax is found again.

A build removes its working container and its ``shlax-buildah-*`` folder when it ends, fails or is
interrupted. A SIGKILL, a crash or a power cut skips that. So before making either, the backend
writes an *owner record* in shlax's state folder (``owners/buildah/<id>.json``): the process
(pid, its start time from ``/proc/PID/stat``, the boot it started in), the store
(``--root``/``--runroot``), the folder and the working container it makes. The record goes when the
backend closes cleanly.

A record whose process is gone (no such pid, or a pid reused by another process: another start
time or boot) names debris: :func:`sweep` removes those containers and that folder, and only
those. A record of a live process (another build running right now) is left alone, and nothing a
record does not name is ever touched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

from shlax_core import dirs
from shlax_core.filestate import write_json

TMP_PREFIX = "shlax-buildah-"
#: the helper a step shlax runs itself starts with (:mod:`shlax_buildah.enter`)
_ENTER = b"/shlax_buildah/enter.py"


def _folder() -> Path:
    return dirs.cache_root() / "owners" / "buildah"


def _start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # fields after "(comm)" start at field 3


def _boot() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def me() -> dict[str, Any]:
    return {"pid": os.getpid(), "start": _start_time(os.getpid()), "boot": _boot()}


def alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or owner.get("boot") != _boot():
        return False
    return owner.get("start") is not None and _start_time(pid) == owner.get("start")


class Claim:
    """The owner record of one backend instance: rewritten before each thing it makes."""

    def __init__(self, root: Optional[str], runroot: Optional[str]):
        self.path = _folder() / f"{os.getpid()}-{os.urandom(4).hex()}.json"
        self.data: dict[str, Any] = {**me(), "root": root, "runroot": runroot, "tmp": None, "containers": []}

    def _write(self) -> None:
        write_json(self.path, self.data)

    def folder(self, path: str) -> None:
        """About to make the temporary folder ``path``."""
        self.data["tmp"] = path
        self._write()

    def container(self, name: str) -> None:
        """About to make the working container ``name``: a backend has one at a time (each commit
        removes the one it committed), so the record names the newest."""
        self.data["containers"] = [name]
        self._write()

    def add_container(self, name: str) -> None:
        """About to make another container ``name`` beside the working one (the source of a copy
        from another image), removed by the backend right after."""
        self.data["containers"] = [*self.data.get("containers", []), name]
        self._write()

    def drop_container(self, name: str) -> None:
        self.data["containers"] = [c for c in self.data.get("containers", []) if c != name]
        self._write()

    def release(self) -> None:
        """Everything it named was removed."""
        try:
            self.path.unlink()
        except OSError:
            pass


def _users(container: str) -> list[int]:
    """Processes of a ``buildah`` command naming ``container`` (a ``buildah run`` a killed shlax
    left running: it holds the container, and its step runs in its process group), and of a step
    shlax ran itself in that container (``unshare ... enter.py SPEC CONTAINER``, the step in its
    process group)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if container.encode() not in argv:
            continue
        if os.path.basename(argv[0]) == b"buildah" or any(a.endswith(_ENTER) for a in argv):
            pids.append(int(entry))
    return pids


def stop_users(container: str, grace: float = 10.0) -> None:
    """TERM the process groups of the buildah commands still using ``container``, then KILL."""
    import signal
    import time

    groups = set()
    for pid in _users(container):
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            pass
    groups.discard(os.getpgid(0))  # never our own
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        for group in list(groups):
            try:
                os.killpg(group, sig)
            except OSError:
                groups.discard(group)
        deadline = time.monotonic() + wait
        while groups and time.monotonic() < deadline:
            time.sleep(0.1)
            for group in list(groups):
                try:
                    os.killpg(group, 0)
                except OSError:
                    groups.discard(group)


def sweep(remove_container: Callable[[dict[str, Any], str], bool], dry_run: bool = False) -> list[str]:
    """Remove what killed shlax processes left (see the module's docstring); one line per record
    that named something still there. ``remove_container(record, name)``: True when the container
    existed (it is removed unless ``dry_run``)."""
    lines = []
    try:
        paths = sorted(_folder().glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if alive(record):
            continue
        found = []
        for name in record.get("containers") or []:
            if not name.startswith("shlax-"):
                continue
            if not dry_run:
                stop_users(name)
            if remove_container(record, name):
                found.append(name)
        tmp = record.get("tmp")
        if tmp and os.path.basename(tmp).startswith(TMP_PREFIX) and os.path.isdir(tmp):
            found.append(tmp)
            if not dry_run:
                shutil.rmtree(tmp, ignore_errors=True)
        if not dry_run:
            try:
                path.unlink()
            except OSError:
                pass
        if found:
            verb = "would remove" if dry_run else "removed"
            lines.append(f"{verb} {', '.join(found)}, left by shlax process {record.get('pid')}, "
                         "which is gone (killed or crashed)")
    return lines
