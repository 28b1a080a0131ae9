"""The ``local`` backend: the machine shlax runs on.

Steps run as shlax's own user (``user`` switches with runuser, as root). Mounts are not needed
here: host caches are already where the package managers look, so they are ignored.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from shlax_core import process
from shlax_core.backends import Backend, Become, Mount, Stat
from shlax_core.cache.hashing import file_digest
from shlax_core.params import doc


@dataclass
class LocalParams:
    root: Optional[str] = doc("apply inside this directory with chroot (tests, image trees); default /", None)


class LocalBackend(Backend):
    """This machine (or a chroot of it, with ``root``)."""

    Params = LocalParams
    supports_become = True

    def _path(self, path: str) -> str:
        root = self.params.root
        return os.path.join(root, path.lstrip("/")) if root else path

    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None,
            mounts: Sequence[Mount] = (), stdin: Optional[bytes] = None,
            check: bool = True, capture: bool = False,
            output: Optional[Callable[[str], None]] = None, become: Optional[Become] = None) -> process.Exec:
        full_env = {**os.environ, **(env or {})}
        wrapped = list(argv)
        if user is None and become is not None and become.enabled:
            user = become.user or "root"
        if user and user != _me():
            # as root, runuser; otherwise through passwordless sudo (become)
            wrapped = (["runuser", "-u", user, "--", *wrapped] if os.geteuid() == 0
                       else ["sudo", "-n", "-H", "-u", user, "--", *wrapped])
        cwd = workdir
        if self.params.root:
            inner = ["env", "-C", workdir, *wrapped] if workdir else wrapped
            wrapped = ["chroot", self.params.root, *inner]
            cwd = None
        return process.run(wrapped, env=full_env, cwd=cwd, stdin=stdin, check=check, capture=capture,
                           output=output, display=argv)

    def put_archive(self, archive: Path, dest: str, *, owner: Optional[str] = None,
                    paths: Sequence[str] = (), become: Optional[Become] = None) -> None:
        _same_user(become, "copy files")
        base = self._path(dest)
        os.makedirs(base, exist_ok=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                target = os.path.join(base, member.name)
                if os.path.lexists(target) and not os.path.isdir(target) or (
                        os.path.islink(target) and member.isdir()):
                    os.unlink(target)
            tar.extractall(base, numeric_owner=True, **_filter())
        if owner:
            user, _, group = owner.partition(":")
            uid, gid = self._ids(user, group or None)
            for path in paths:
                os.lchown(self._path(path), uid, gid)

    def _ids(self, user: str, group: Optional[str]) -> tuple[int, int]:
        if self.params.root:
            users = _table(Path(self.params.root, "etc/passwd"))
            groups = _table(Path(self.params.root, "etc/group"))
            uid = int(users[user][1]) if user in users else int(user)
            gid = int(groups[group][1]) if group else int(users[user][2]) if user in users else uid
            return uid, gid
        pw = pwd.getpwnam(user)
        return pw.pw_uid, grp.getgrnam(group).gr_gid if group else pw.pw_gid

    def stat(self, path: str, become: Optional[Become] = None) -> Stat:
        _same_user(become, "inspect files")
        full = self._path(path)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            return Stat(False)
        if stat.S_ISDIR(st.st_mode):
            return Stat(True, stat.S_IMODE(st.st_mode), is_dir=True)
        return Stat(True, stat.S_IMODE(st.st_mode), file_digest(full), owner=self._owner(st))

    def _owner(self, st: os.stat_result) -> Optional[str]:
        if self.params.root:
            users = {v[1]: k for k, v in _table(Path(self.params.root, "etc/passwd")).items()}
            groups = {v[1]: k for k, v in _table(Path(self.params.root, "etc/group")).items()}
            return f"{users.get(str(st.st_uid), st.st_uid)}:{groups.get(str(st.st_gid), st.st_gid)}"
        try:
            return f"{pwd.getpwuid(st.st_uid).pw_name}:{grp.getgrgid(st.st_gid).gr_name}"
        except KeyError:
            return f"{st.st_uid}:{st.st_gid}"

    def facts(self) -> dict[str, str]:
        from shlax_core.backends import parse_os_release

        try:
            return parse_os_release(Path(self._path("/etc/os-release")).read_text())
        except OSError:
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
    from shlax_core.errors import ShlaxError

    raise ShlaxError(f"the local backend cannot {what} as {become.user or 'root'} (become) while shlax runs "
                     f"as {_me()}", hint="run shlax as root for this target, or drop become from the step")


def _table(path: Path) -> dict[str, list[str]]:
    try:
        return {line.split(":")[0]: line.split(":") for line in path.read_text().splitlines() if line}
    except OSError:
        return {}


def _filter() -> dict:
    return {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
