"""The ``local`` backend: the machine shlax runs on, or a directory tree of it used as a chroot.

Steps run as shlax's own user (``user`` or a step's ``become`` switch with runuser as root, else
through passwordless sudo). With ``root``, commands
run through chroot(1) and every host-side file operation — extracting archives, owners, stat,
/etc/os-release, /etc/passwd and /etc/group — resolves its paths inside the root the way the
chroot does (:mod:`shlax_core.inroot`): ``..``, absolute symlinks and links climbing out all
stay in the tree. Users and groups named by steps are those of the root's own tables.

Mounts are refused (:class:`~shlax_core.errors.Unsupported`): download caches are lent to image
builds, and a host keeps its own.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from shlax_core import inroot, process
from shlax_core.backends import Backend, Become, Mount, Stat, parse_os_release
from shlax_core.cache.hashing import file_digest
from shlax_core.errors import ShlaxError, StepFailed, Unsupported
from shlax_core.params import doc
from shlax_core.remote import CD_SCRIPT


@dataclass
class LocalParams:
    root: Optional[str] = doc("apply inside this directory with chroot (tests, image trees); default /", None)

    def validate(self) -> Optional[str]:
        if self.root is not None and not self.root.startswith("/"):
            return ("root", f"{self.root!r} must be an absolute path")  # type: ignore[return-value]
        return None


class LocalBackend(Backend):
    """This machine (or a chroot of it, with ``root``)."""

    Params = LocalParams
    supports_become = True

    @property
    def root(self) -> Optional[str]:
        """The chroot folder, or None for the machine itself (``root = "/"`` is the machine)."""
        root = self.params.root
        return root if root and os.path.realpath(root) != "/" else None

    def _path(self, path: str, *, follow: bool = True) -> str:
        """Where ``path`` of the target is on this machine (confined to the root)."""
        return inroot.resolve(self.root, path, follow=follow)

    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None,
            mounts: Sequence[Mount] = (), stdin: Optional[bytes] = None,
            check: bool = True, capture: bool = False,
            output: Optional[Callable[[str], None]] = None, become: Optional[Become] = None) -> process.Exec:
        if mounts:
            raise Unsupported(
                f"the local backend cannot lend host folders to a step (asked to mount "
                f"{', '.join(f'{m.source} at {m.target}' for m in mounts)})",
                hint="mounts are for image builds; on this machine use the folder where it is")
        full_env = {**os.environ, **(env or {})}
        wrapped = list(argv)
        cwd = workdir
        if user is None and become is not None and become.enabled:
            user = become.user or "root"
        if self.root is None:
            if user and user != _me():
                # as root, runuser; otherwise through passwordless sudo (become)
                wrapped = (["runuser", "-u", user, "--", *wrapped] if os.geteuid() == 0
                           else ["sudo", "-n", "-H", "-u", user, "--", *wrapped])
        else:
            # chroot(1) then, inside, a fixed script that changes folder (no GNU env -C needed)
            if workdir:
                wrapped = ["sh", "-c", CD_SCRIPT, "sh", workdir, *wrapped]
            switch: list[str] = []
            if user:
                try:
                    uid, gid, groups, home = self._account(user)
                except inroot.PathError as exc:
                    raise StepFailed(f"cannot run as {user!r} in {self.root}: {exc.message}") from None
                switch = [f"--userspec={uid}:{gid}", f"--groups={','.join(map(str, groups))}"]
                full_env.update(HOME=home, USER=user, LOGNAME=user)
            wrapped = ["chroot", *switch, "--", self.root, *wrapped]
            cwd = None
        if cwd is not None and not os.path.isdir(cwd):  # a step's (or the build-wide) workdir
            raise StepFailed(f"cannot run {argv[0]} in {cwd}: no such folder on this machine "
                             "(a workdir is not created on hosts: make it in an earlier step)", argv=list(argv))
        return process.run(wrapped, env=full_env, cwd=cwd, stdin=stdin, check=check, capture=capture,
                           output=output, display=argv)

    def put_archive(self, archive: Path, dest: str, *, owner: Optional[str] = None,
                    paths: Sequence[str] = (), become: Optional[Become] = None) -> None:
        _same_user(become, "copy files")
        try:
            uid, gid = self._ids(owner) if owner else (-1, -1)  # an unknown owner writes nothing
            inroot.extract(str(archive), self.root, dest, chown=os.geteuid() == 0)
            if owner:
                for path in paths:
                    os.lchown(self._path(path, follow=False), uid, gid)
        except inroot.PathError as exc:
            raise StepFailed(f"cannot write under {dest}{self._where()}: {exc.message}",
                             argv=["tar", "-x", "-C", dest]) from None
        except OSError as exc:
            raise StepFailed(f"cannot write under {dest}{self._where()}: {exc.strerror} "
                             f"({exc.filename})", argv=["tar", "-x", "-C", dest]) from None

    def _where(self) -> str:
        return f" in {self.root}" if self.root else ""

    # -- users and groups: the root's own tables, or this machine's -----------------------------
    def _ids(self, owner: str) -> tuple[int, int]:
        if self.root is not None:
            return inroot.ids(self.root, owner)
        user, _, group = owner.partition(":")
        try:
            pw = pwd.getpwnam(user)
            return pw.pw_uid, grp.getgrnam(group).gr_gid if group else pw.pw_gid
        except KeyError:
            raise inroot.PathError(f"no user or group named in {owner!r} on this machine") from None

    def _account(self, user: str) -> tuple[int, int, list[int], str]:
        """uid, gid, supplementary gids and home of ``user`` in the root (name or uid[:gid])."""
        name = user.partition(":")[0]
        uid, gid = inroot.ids(self.root, user)
        users = inroot.table(self.root, "passwd")
        home = users[name][5] if name in users and len(users[name]) > 5 else "/"
        groups = [gid]
        for entry in inroot.table(self.root, "group").values():
            if len(entry) > 3 and name in entry[3].split(",") and entry[2].isdigit():
                groups.append(int(entry[2]))
        return uid, gid, list(dict.fromkeys(groups)), home

    def stat(self, path: str, become: Optional[Become] = None) -> Stat:
        _same_user(become, "inspect files")
        try:
            full = self._path(path)
            st = os.stat(full)
        except (FileNotFoundError, NotADirectoryError, inroot.PathError):
            return Stat(False)
        if stat.S_ISDIR(st.st_mode):
            return Stat(True, stat.S_IMODE(st.st_mode), is_dir=True, owner=self._owner(st))
        try:
            digest: Optional[str] = file_digest(full)
        except OSError:
            digest = None
        return Stat(True, stat.S_IMODE(st.st_mode), digest, owner=self._owner(st))

    def _owner(self, st: os.stat_result) -> Optional[str]:
        if self.root is not None:
            users = {v[2]: k for k, v in inroot.table(self.root, "passwd").items() if len(v) > 2}
            groups = {v[2]: k for k, v in inroot.table(self.root, "group").items() if len(v) > 2}
            return f"{users.get(str(st.st_uid), st.st_uid)}:{groups.get(str(st.st_gid), st.st_gid)}"
        try:
            user = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            user = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        return f"{user}:{group}"

    def facts(self) -> dict[str, str]:
        for path in ("/etc/os-release", "/usr/lib/os-release"):
            try:
                return parse_os_release(Path(self._path(path)).read_text())
            except (OSError, inroot.PathError):
                continue
        return {}

    def which(self, program: str) -> bool:
        return shutil.which(program) is not None


def _me() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _same_user(become: Optional[Become], what: str) -> None:
    """Files are moved by shlax itself: as root it can act for anyone, else only for itself."""
    if become is None or not become.enabled or os.geteuid() == 0 or (become.user or "root") == _me():
        return
    raise ShlaxError(f"the local backend cannot {what} as {become.user or 'root'} (become) while shlax runs "
                     f"as {_me()}", hint="run shlax as root for this target, or drop become from the step")
