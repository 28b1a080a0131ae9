"""Content digests of host files and trees, made cheap on unchanged trees by a stat cache.

Like git's index: a file whose (size, mtime, ctime, inode, device) are unchanged since it was last
hashed keeps its digest without being read. ctime is in the key because a user cannot set it: a
file rewritten with the same size and its mtime restored still gets re-read. Entries younger than
two seconds are not trusted (git's "racy" case), so a write in the same tick is never missed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from shlax_core import dirs

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


class StatCache:
    """Digests of host files keyed by path and stat fields; persisted per recipe directory.

    ``clock`` says what time it is when deciding whether an entry is racy (tests set it instead
    of sleeping, and a loaded machine cannot make a test pass or fail by being slow).
    """

    def __init__(self, root: Path, path: Optional[Path] = None, clock: Callable[[], float] = time.time):
        name = hashlib.sha256(str(root).encode()).hexdigest()[:24]
        self.path = path or dirs.cache_root() / "statcache" / f"{name}.json"
        self.clock = clock
        self.entries: dict[str, list] = {}
        #: the signature each file had when this run hashed it (taken before reading it): what
        #: the no-op fast path later compares
        self.seen: dict[str, list] = {}
        self.dirty = False
        self.hits = 0
        self.misses = 0
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def digest(self, path: str, st: os.stat_result) -> str:
        sig = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        self.seen[path] = sig
        entry = self.entries.get(path)
        if entry is not None and entry[:5] == sig:
            self.hits += 1
            return entry[5]
        self.misses += 1
        digest = file_digest(path)
        if self.clock() - max(st.st_mtime, st.st_ctime) > RACY_SECONDS:
            self.entries[path] = [*sig, digest]
            self.dirty = True
        elif path in self.entries:
            del self.entries[path]
            self.dirty = True
        return digest

    def save(self) -> None:
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.entries, separators=(",", ":")))
        os.replace(tmp, self.path)
        self.dirty = False


def entry_digest(abspath: str, stat_cache: StatCache) -> tuple[str, int]:
    """(content digest, permission bits) of a file or symlink (the link text is its content)."""
    st = os.lstat(abspath)
    if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
        stat_cache.seen[abspath] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    if stat.S_ISLNK(st.st_mode):
        return "link:" + hashlib.sha256(os.readlink(abspath).encode()).hexdigest(), 0o777
    if stat.S_ISDIR(st.st_mode):
        return "dir", stat.S_IMODE(st.st_mode)
    return stat_cache.digest(abspath, st), stat.S_IMODE(st.st_mode)


def tree_digest(entries: Iterable[tuple[str, str]], stat_cache: StatCache) -> str:
    """Digest of (relative path, absolute path) pairs: paths, contents and modes; not mtimes."""
    h = hashlib.sha256()
    for rel, abspath in sorted(entries):
        digest, mode = entry_digest(abspath, stat_cache)
        h.update(f"{rel}\0{mode:o}\0{digest}\n".encode())
    return h.hexdigest()
