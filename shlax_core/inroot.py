"""Paths under a root directory, resolved the way a process chrooted there would see them.

The ``local`` backend with ``root = "/srv/chroot"`` runs commands with chroot(1), where the kernel
confines every path. Its host-side file operations (extracting archives, changing owners, stat,
reading /etc/os-release and /etc/passwd) must be confined the same way, or a recipe writes outside
the root: ``/../../etc`` climbs above it, and a symlink inside the tree (``/srv/chroot/opt ->
/srv/elsewhere``) would be followed on the host. :func:`resolve` walks a path component by
component under the root, like ``openat2(RESOLVE_IN_ROOT)``: ``..`` stops at the root, an
absolute symlink restarts at the root, a relative one climbing out is clamped, and a link loop
is an error. :func:`extract` unpacks a tar archive member by member through it, so members that
are symlinks or hard links (or named ``../x``) stay inside the root too.

The walk is path-based: it guards against the links present in the tree, not against another
process swapping a folder for a link while shlax writes (the tree is the user's own).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
from collections import deque
from typing import Optional

#: as many symlinks as Linux follows in one lookup before ELOOP
MAX_LINKS = 40


class PathError(Exception):
    """A path in the root cannot be used: a dangling link in the way, a file where a folder must
    be, a link loop. ``message`` says which path, in the root's own terms."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _norm_root(root: Optional[str]) -> str:
    return os.path.realpath(root) if root else "/"


def _host(root: str, parts: list[str]) -> str:
    inner = "/".join(parts)
    if root == "/":
        return "/" + inner
    return f"{root}/{inner}" if inner else root


def resolve(root: Optional[str], path: str, *, follow: bool = True, create: bool = False) -> str:
    """The host path of ``path`` as a process chrooted at ``root`` sees it.

    ``follow``: follow a symlink in the last component too (``stat``), or not (``lstat``,
    replacing or ``lchown``-ing the link itself); a trailing ``/`` always follows. Components that
    do not exist are kept literally. ``create``: make missing folders (every component, mode
    0755), like ``mkdir -p`` in the chroot: a link to nowhere on the way is a :class:`PathError`,
    as it is for ``mkdir -p`` and ``tar -x`` there.
    """
    base = _norm_root(root)
    parts: list[str] = []        # resolved components below the root: real folders, or missing ones
    todo = deque(path.split("/"))
    trailing = path.endswith("/")
    links = 0
    missing = False
    while todo:
        name = todo.popleft()
        if name in ("", "."):
            continue
        if name == "..":
            if parts:
                parts.pop()
            continue
        last = not any(p not in ("", ".") for p in todo)
        here = _host(base, [*parts, name])
        if missing:
            parts.append(name)
            continue
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            if create:
                os.mkdir(here, 0o755)
                parts.append(name)
                continue
            missing = True
            parts.append(name)
            continue
        except NotADirectoryError:
            raise PathError(f"{'/' + '/'.join(parts)} is not a folder (on the way to {path})") from None
        if stat.S_ISLNK(st.st_mode) and (not last or follow or trailing):
            links += 1
            if links > MAX_LINKS:
                raise PathError(f"too many levels of symbolic links in {path}")
            target = os.readlink(here)
            if create:
                inner = posixpath.join("/" + "/".join(parts), target)
                if not os.path.exists(resolve(root, inner)):
                    raise PathError(f"{'/' + '/'.join([*parts, name])} is a symlink to {target}, "
                                    "which does not exist in the root")
            if target.startswith("/"):
                parts = []
            todo.extendleft(reversed(target.split("/")))
            continue
        if not last and not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
            raise PathError(f"{'/' + '/'.join([*parts, name])} is not a folder (on the way to {path})")
        parts.append(name)
    return _host(base, parts)


def inner_path(path: str) -> str:
    """A path as the root sees it, normalised: ``/a/b``, never above ``/``."""
    out: list[str] = []
    for name in path.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if out:
                out.pop()
            continue
        out.append(name)
    return "/" + "/".join(out)


def _clear(host: str, keep_dir: bool) -> bool:
    """Make room for a new entry at ``host`` (an already resolved, unfollowed path): remove a
    file or link there, keep a real folder when ``keep_dir``. True when a folder is kept."""
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        raise PathError(f"{host} is a folder: a file cannot replace it")
    os.unlink(host)
    return False


def extract(archive: str, root: Optional[str], dest: str, *, chown: bool) -> list[str]:
    """Unpack ``archive`` at ``dest`` inside ``root`` (``/`` or None: the host itself), as
    ``tar -x -p`` run in the chroot would: modes, mtimes, symlinks, hard links, and the
    members' numeric owners when ``chown``. A symlink or folder already in the tree is followed
    in the root; an entry in the member's own place is replaced (a folder stays a folder).
    Returns the inner paths written."""
    written: list[str] = []
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    resolve(root, dest, create=True)
    with tarfile.open(archive) as tar:
        top = inner_path(dest)
        for member in tar:
            # member names are relative to dest, a leading / included (as tar strips it)
            inner = inner_path(posixpath.join(top, member.name.lstrip("/")))
            if inner == top:  # dest itself ("./"): the folder tar -C enters, links followed
                if not member.isdir():
                    raise PathError(f"archive member {member.name!r} would replace {dest}")
                dirs.append((resolve(root, dest), member))
                written.append(inner)
                continue
            parent = resolve(root, posixpath.dirname(inner), create=True)
            host = posixpath.join(parent, posixpath.basename(inner))
            if member.isdir():
                if not _clear(host, keep_dir=True):
                    os.mkdir(host, 0o700)
                dirs.append((host, member))
            elif member.isfile():
                _clear(host, keep_dir=False)
                source = tar.extractfile(member)
                assert source is not None
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while True:
                        chunk = source.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                _attrs(host, member, chown)
            elif member.issym():
                _clear(host, keep_dir=False)
                os.symlink(member.linkname, host)
                _attrs(host, member, chown)
            elif member.islnk():
                # a hard link names another member, relative to where the archive is extracted
                source_path = resolve(root, inner_path(posixpath.join(top, member.linkname.lstrip("/"))),
                                      follow=False)
                _clear(host, keep_dir=False)
                try:
                    os.link(source_path, host, follow_symlinks=False)
                except FileNotFoundError:
                    raise PathError(f"archive member {member.name!r} links to {member.linkname!r}, "
                                    "which is not there") from None
            else:
                raise PathError(f"archive member {member.name!r} is a device or fifo: not extracted")
            written.append(inner)
    for host, member in reversed(dirs):  # after their contents, so a read-only folder could be filled
        _attrs(host, member, chown)
    return written


def table(root: Optional[str], name: str) -> dict[str, list[str]]:
    """The root's own /etc/passwd or /etc/group (``name``), as {name: fields}; {} when absent."""
    try:
        with open(resolve(root, f"/etc/{name}"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (OSError, PathError):
        return {}
    return {line.split(":")[0]: line.split(":") for line in text.splitlines() if line and ":" in line}


def ids(root: Optional[str], owner: str) -> tuple[int, int]:
    """The numeric ids of ``owner`` ("user", "user:group", numbers allowed) in the root's own
    tables, as chown(1) run in the chroot would find them; a bare user means its login group."""
    user, _, group = owner.partition(":")
    users = table(root, "passwd")
    try:
        uid = int(users[user][2]) if user in users else int(user)
        if group:
            groups = table(root, "group")
            gid = int(groups[group][2]) if group in groups else int(group)
        else:
            gid = int(users[user][3]) if user in users else uid
    except (ValueError, IndexError):
        missing = group if group and user in users else user
        raise PathError(f"no user or group {missing!r} in /etc/passwd or /etc/group") from None
    return uid, gid


def chown(root: Optional[str], owner: str, paths: "list[str] | tuple[str, ...]") -> None:
    """``chown -h OWNER PATHS`` as run in the chroot: names from its tables, links not followed."""
    uid, gid = ids(root, owner)
    for path in paths:
        os.lchown(resolve(root, path, follow=False), uid, gid)


def _attrs(host: str, member: tarfile.TarInfo, chown: bool) -> None:
    if chown:
        try:
            os.lchown(host, member.uid, member.gid)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL):
                raise
    if not member.issym():
        os.chmod(host, member.mode)
    os.utime(host, (member.mtime, member.mtime), follow_symlinks=False)
