"""Content digests of host files and trees, made cheap on unchanged trees by a stat cache.

Like git's index: a file whose (size, mtime, ctime, inode, device) are unchanged since it was last
hashed keeps its digest without being read. ctime is in the key because a user cannot set it: a
file rewritten with the same size and its mtime restored still gets re-read. Entries younger than
two seconds are not trusted (git's "racy" case), so a write in the same tick is never missed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from shlax_core import dirs
from shlax_core.filestate import replacing, stat_signature

RACY_SECONDS = 2.0
_CHUNK = 1 << 20


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


#: a file's signature as the stat cache keeps it: size, mtime, ctime, inode, device
_SIG = struct.Struct("<qqqQQ")  # times may be negative, inode and device numbers unsigned
#: a stat cache record: the signature, then the raw SHA-256 of the content
_RECORD = _SIG.size + 32
_MAGIC = b"shlax-statcache 2\n"  # then: count, length of the names, names, records


def _sig(st: os.stat_result) -> bytes:
    return _SIG.pack(*stat_signature(st))


class StatCache:
    """Digests of host files keyed by path and stat fields; persisted per recipe directory.

    Compact, because a tree can hold 100,000 files: one 72-byte record a path (the signature
    packed, the raw digest), paths under the recipe directory kept relative. On disk, a header,
    the paths joined by NUL, then the records in the same order: loading is one read, one split
    and one dict, with no object made per field.

    ``clock`` says what time it is when deciding whether an entry is racy (tests set it instead
    of sleeping, and a loaded machine cannot make a test pass or fail by being slow).
    """

    def __init__(self, root: Path, path: Optional[Path] = None, clock: Callable[[], float] = time.time):
        name = hashlib.sha256(str(root).encode()).hexdigest()[:24]
        self.path = path or dirs.cache_root() / "statcache" / f"{name}.bin"
        #: what the JSON format of earlier versions left behind (removed by the next save)
        self._old_path = None if path else self.path.with_suffix(".json")
        self.clock = clock
        self._prefix = os.path.join(os.path.realpath(root), "")
        self.entries: dict[str, bytes] = {}
        #: the signature each file had when this run hashed it (taken before reading it): what
        #: the no-op fast path later compares (see :meth:`signature`)
        self.seen: dict[str, bytes] = {}
        self.dirty = False
        self.hits = 0
        self.misses = 0
        try:
            self.entries = self._load(self.path.read_bytes())
        except (OSError, ValueError):
            self.entries = {}

    @staticmethod
    def _load(data: bytes) -> dict[str, bytes]:
        if not data.startswith(_MAGIC):
            return {}
        head = len(_MAGIC) + 16
        count, names_len = struct.unpack_from("<QQ", data, len(_MAGIC))
        if len(data) != head + names_len + count * _RECORD:
            return {}  # cut short or padded: written by nobody who finished
        records_at = head + names_len
        names = data[head:records_at].decode("utf-8", "surrogateescape").split("\0") if count else []
        if len(names) != count:
            return {}
        return {name: data[records_at + i * _RECORD:records_at + (i + 1) * _RECORD] for i, name in enumerate(names)}

    def signature(self, path: str) -> Optional[list[int]]:
        """The signature this run saw for ``path`` (before reading it), as the fast path keeps it."""
        sig = self.seen.get(path)
        return list(_SIG.unpack(sig)) if sig is not None else None

    def digest(self, path: str, st: os.stat_result) -> str:
        # the hot loop of an unchanged tree: one call a file, nothing but a pack and a lookup
        sig = _SIG.pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
        self.seen[path] = sig
        key = path[len(self._prefix):] if path.startswith(self._prefix) else path
        entry = self.entries.get(key)
        if entry is not None and entry.startswith(sig):
            self.hits += 1
            return entry[_SIG.size:].hex()
        self.misses += 1
        digest = file_digest(path)
        if self.clock() - max(st.st_mtime, st.st_ctime) > RACY_SECONDS:
            self.entries[key] = sig + bytes.fromhex(digest)
            self.dirty = True
        elif entry is not None:
            del self.entries[key]
            self.dirty = True
        return digest

    def save(self) -> None:
        if not self.dirty:
            return
        with replacing(self.path) as tmp, open(tmp, "wb") as f:
            names = "\0".join(self.entries).encode("utf-8", "surrogateescape")
            f.write(_MAGIC + struct.pack("<QQ", len(self.entries), len(names)))
            f.write(names)
            f.write(b"".join(self.entries.values()))
        if self._old_path is not None:
            try:
                self._old_path.unlink()
            except OSError:
                pass
        self.dirty = False


def entry_digest(abspath: str, stat_cache: StatCache) -> tuple[str, int]:
    """(content digest, permission bits) of a file or symlink (the link text is its content)."""
    st = os.lstat(abspath)
    if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
        stat_cache.seen[abspath] = _sig(st)
    if stat.S_ISLNK(st.st_mode):
        return "link:" + hashlib.sha256(os.readlink(abspath).encode()).hexdigest(), 0o777
    if stat.S_ISDIR(st.st_mode):
        return "dir", stat.S_IMODE(st.st_mode)
    return stat_cache.digest(abspath, st), stat.S_IMODE(st.st_mode)


def tree_digest(entries: Iterable[tuple[str, str]], stat_cache: StatCache) -> str:
    """Digest of (relative path, absolute path) pairs: paths, contents and modes; not mtimes.

    One ``lstat`` a path, and on an unchanged tree nothing more (regular files are answered
    here without :func:`entry_digest`'s second look)."""
    h = hashlib.sha256()
    lstat, is_reg, perm, digest_of = os.lstat, stat.S_ISREG, stat.S_IMODE, stat_cache.digest
    for rel, abspath in sorted(entries):
        st = lstat(abspath)
        if is_reg(st.st_mode):
            digest, mode = digest_of(abspath, st), perm(st.st_mode)
        else:
            digest, mode = entry_digest(abspath, stat_cache)
        h.update(f"{rel}\0{mode:o}\0{digest}\n".encode())
    return h.hexdigest()
