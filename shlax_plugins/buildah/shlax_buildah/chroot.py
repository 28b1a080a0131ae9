"""Steps run straight in the working container's mounted root, without ``buildah run``.

``buildah run`` costs most of a second a step here (0.7-1.0 s on a loaded 2-core machine): a Go
process that opens the image store, builds an OCI spec and forks its own chroot helper. For a
local root build with chroot isolation shlax does the same work itself: the container is
mounted once (``buildah mount``), and each step runs through :mod:`shlax_buildah.enter` in a
private mount namespace and PID namespace (``unshare``), chrooted into that root, in tens of
milliseconds. Copies are written into the root directly (:func:`shlax_core.inroot.extract`).

What a step sees is what ``buildah run --isolation chroot`` gives it: the image's environment,
working folder and user (the base image's configuration: every layer of a build shares it), its
``env``, ``workdir`` and ``user`` (names from the image's own /etc/passwd and /etc/group, the
user's groups included, HOME from its entry), the host's network, /dev and /sys (read-only), a
/proc of its own, copies of the host's /etc/hosts and /etc/resolv.conf, and the folders it is
lent. Every mount lives in the step's namespace only; mount points the step needed and the
image lacked are created for it and removed again before the commit, so no layer holds one.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from shlax_core import inroot
from shlax_core.backends import Mount
from shlax_core.errors import StepFailed

ENTER = str(Path(__file__).with_name("enter.py"))
#: buildah's PATH when the image sets none
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: host files each step gets a private copy of (written by a step, the copy changes, not the host)
HOST_FILES = ("/etc/hosts", "/etc/resolv.conf")


def available() -> Optional[str]:
    """Why steps cannot run this way on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "not root (rootless builds need buildah's user namespace)"
    if shutil.which("unshare") is None:
        return "unshare(1) is missing (util-linux)"
    return None


@dataclass
class Account:
    uid: int
    gid: int
    groups: list[int]
    home: str


def account(root: str, user: Optional[str]) -> Account:
    """``user`` ("name", "uid", with ":group" or ":gid") as ``buildah run --user`` resolves it in
    the image: a name from its /etc/passwd, a number as is (group 0 unless given); the
    supplementary groups of a named user from its /etc/group."""
    name, _, group = (user or "root").partition(":")
    users = inroot.table(root, "passwd")
    entry = users.get(name)
    try:
        if entry is not None and len(entry) > 3:
            uid, gid, home = int(entry[2]), int(entry[3]), (entry[5] if len(entry) > 5 and entry[5] else "/")
        elif name.isdigit():
            uid, gid, home = int(name), 0, "/"
        elif name == "root":  # an image without /etc/passwd (scratch)
            uid, gid, home = 0, 0, "/root"
        else:
            raise StepFailed(f"no user {name!r} in the image's /etc/passwd", argv=["--user", user or ""])
    except ValueError:
        raise StepFailed(f"the image's /etc/passwd entry of {name!r} is malformed", argv=["--user", user or ""]) \
            from None
    groups_table = inroot.table(root, "group")
    if group:
        g = groups_table.get(group)
        if g is not None and len(g) > 2 and g[2].isdigit():
            gid = int(g[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise StepFailed(f"no group {group!r} in the image's /etc/group", argv=["--user", user or ""])
    groups = [gid]
    if entry is not None:
        for g in groups_table.values():
            if len(g) > 3 and name in g[3].split(",") and g[2].isdigit():
                groups.append(int(g[2]))
    return Account(uid, gid, list(dict.fromkeys(groups)), home)


@dataclass
class StepRoot:
    """A mounted working container root where steps run; ``tmp`` holds the per-build copies of
    the host files; ``config`` is the image configuration (``Env``, ``WorkingDir``, ``User``)."""

    root: str
    tmp: str
    config: Mapping[str, Any]
    #: the working container's name: on every step's command line, so a sweep after a killed
    #: shlax finds the steps it left running (:func:`shlax_buildah.owners.stop_users`)
    container: str = ""
    #: mount points created for steps (host paths, in creation order), removed before a commit
    made: list[str] = field(default_factory=list)

    def host_files(self) -> list[tuple[str, str]]:
        """(private copy, inner path) of each host file a step gets; copied once per build."""
        out = []
        for path in HOST_FILES:
            copy = os.path.join(self.tmp, "etc-" + os.path.basename(path))
            if not os.path.exists(copy):
                try:
                    shutil.copyfile(path, copy)
                except OSError:
                    continue
            out.append((copy, path))
        return out

    def mountpoint(self, inner: str, *, is_dir: bool) -> str:
        """The host path of mount point ``inner`` in the root, created (and noted in ``made``)
        when missing; confined to the root like a chroot's own lookups."""
        inner = inroot.inner_path(inner)
        parent = os.path.dirname(inner)
        missing = []
        probe = parent
        while probe != "/" and not os.path.lexists(inroot.resolve(self.root, probe)):
            missing.append(probe)
            probe = os.path.dirname(probe)
        for folder in reversed(missing):
            host = inroot.resolve(self.root, folder)
            os.mkdir(host, 0o755)
            self.made.append(host)
        host = inroot.resolve(self.root, inner)
        if not os.path.lexists(host):
            if is_dir:
                os.mkdir(host, 0o755)
            else:
                os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
            self.made.append(host)
        return host

    def drop_mountpoints(self) -> None:
        """Remove the mount points made for steps, deepest first; what a step filled stays."""
        for host in reversed(self.made):
            try:
                st = os.lstat(host)
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(host)
                elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    os.unlink(host)
            except OSError:
                continue
        self.made = []

    def argv(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]], workdir: Optional[str],
             user: Optional[str], mounts: Sequence[Mount]) -> list[str]:
        """The command line running ``argv`` as a step in this root."""
        acct = account(self.root, user or self.config.get("User") or None)
        full: dict[str, str] = {}
        for item in self.config.get("Env") or []:
            k, _, v = item.partition("=")
            full[k] = v
        full.setdefault("PATH", DEFAULT_PATH)
        full.update(env or {})
        full.setdefault("HOME", acct.home)
        cwd = workdir or self.config.get("WorkingDir") or "/"
        try:
            binds: list[tuple[str, str, bool, bool]] = [
                ("/dev", self.mountpoint("/dev", is_dir=True), True, True),
                ("/sys", self.mountpoint("/sys", is_dir=True), True, True),
            ]
            self.mountpoint("/proc", is_dir=True)
            for copy, inner in self.host_files():
                try:
                    binds.append((copy, self.mountpoint(inner, is_dir=False), False, False))
                except (inroot.PathError, OSError):
                    continue  # e.g. a link to a file the image lacks: the step goes without
            for m in mounts:
                is_dir = os.path.isdir(m.source)
                binds.append((m.source, self.mountpoint(m.target, is_dir=is_dir), m.readonly, is_dir))
            # the working folder is made when missing, as buildah run does (and kept, as there)
            inroot.resolve(self.root, cwd, create=True)
        except inroot.PathError as exc:
            raise StepFailed(f"cannot prepare the step's root: {exc.message}", argv=list(argv)) from None
        spec = {"root": self.root, "binds": binds, "uid": acct.uid, "gid": acct.gid, "groups": acct.groups,
                "cwd": inroot.inner_path(cwd), "env": full, "argv": list(argv)}
        return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
                f"--mount-proc={os.path.join(self.root, 'proc')}", "--",
                sys.executable, "-I", "-S", ENTER, json.dumps(spec), self.container]
