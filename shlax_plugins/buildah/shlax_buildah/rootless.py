"""Rootless builds: a non-root user builds in buildah's user namespace, exactly as root does.

A non-root user's buildah keeps its own image store (``~/.local/share/containers/storage``, the
driver its storage.conf names: overlay where the kernel allows it unprivileged, else vfs) and
maps the image's ids to the user's subordinate range from /etc/subuid and /etc/subgid. Mounting a
container's root (what root's code path needs: mount points removed before a commit, owners set
through the mounted root) works only inside that namespace, so the whole run starts again under
``buildah unshare``
(:meth:`BuildahBackend.run_under`, :mod:`shlax_core.reexec`). There the user is uid 0 and
every step, copy, commit and cleanup is root's code path; the host download caches are the
user's (``~/.cache``: XDG), as the home folder is kept.

When the host cannot give a user namespace, one message says what to set up (exit 2), before
anything runs.
"""

from __future__ import annotations

import os
import pwd
import shutil
from typing import Optional

from shlax_core.errors import ShlaxError

#: set by ``buildah unshare`` in the namespace it made
IN_NAMESPACE = "_CONTAINERS_USERNS_CONFIGURED"


def _ranges(path: str, user: str, uid: int) -> int:
    """How many subordinate ids ``path`` gives the user (by name or uid); 0 when none or
    unreadable."""
    total = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[2].isdigit():
                    total += int(parts[2])
    except OSError:
        return 0
    return total


def _userns_disabled() -> Optional[str]:
    """The sysctl that forbids unprivileged user namespaces here, or None."""
    for path, name in (("/proc/sys/user/max_user_namespaces", "user.max_user_namespaces"),
                       ("/proc/sys/kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone")):
        try:
            with open(path) as f:
                if f.read().strip() == "0":
                    return name
        except OSError:
            continue
    return None


def problem() -> Optional[ShlaxError]:
    """Why this non-root user cannot build rootless here, as the error to raise; None when it can."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    hint_ids = (f"as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user} "
                "(a range no other user has), or run shlax as root")
    missing = [f for f in ("/etc/subuid", "/etc/subgid") if _ranges(f, user, uid) < 65536]
    if missing:
        have = " and ".join(missing)
        return ShlaxError(f"rootless builds need a range of 65536 subordinate ids for user {user!r} in {have}, "
                          "for buildah's user namespace", where=missing[0], hint=hint_ids)
    sysctl = _userns_disabled()
    if sysctl:
        return ShlaxError(f"rootless builds need user namespaces, and this host forbids them ({sysctl} = 0)",
                          hint=f"as root: sysctl -w {sysctl}=1 (and in /etc/sysctl.d/ to keep it), "
                               "or run shlax as root")
    for tool in ("newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            return ShlaxError(f"rootless builds need {tool}, which is not installed",
                              hint="as root: apt-get install uidmap (Debian/Ubuntu), dnf install shadow-utils "
                                   "(Fedora), or run shlax as root")
    return None


def command(buildah: str) -> list[str]:
    """The prefix a rootless run starts again under: ``buildah unshare --``, and the removal of
    the ``BUILDAH_ISOLATION=rootless`` it sets (shlax chooses the isolation as it does for
    root; the user's own setting is kept)."""
    prefix = [buildah, "unshare", "--"]
    if "BUILDAH_ISOLATION" not in os.environ:
        prefix += ["env", "-u", "BUILDAH_ISOLATION"]
    return prefix


def needed() -> bool:
    """A non-root user outside buildah's namespace."""
    return os.geteuid() != 0 and not os.environ.get(IN_NAMESPACE)


def active() -> bool:
    """True inside a user namespace that maps less than the whole id space (buildah's rootless
    one): uid 0 here is an ordinary user outside, who cannot do what needs real root."""
    try:
        with open("/proc/self/uid_map") as f:
            lines = f.read().split()
    except OSError:
        return False
    return lines[:3] != ["0", "0", "4294967295"]


def base_hint(spec: str, name: str) -> str:
    """How a rootless user gets a base only root can build: root builds and exports it once."""
    return (f"debootstrap needs real root: as root, build it once (a recipe with base = {spec!r}) and export it: "
            f"buildah push {name} docker-archive:/tmp/base.tar:{name}; then as this user: "
            "buildah pull docker-archive:/tmp/base.tar (see docs/rootless.md)")
