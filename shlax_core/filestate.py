"""Host files as shlax keeps state about them: what says a file is unchanged, and writing a state
file whole or not at all.

One signature for every place that asks "is this the file I saw?" (the stat cache, the no-op
fast path's guards, copy's watch list): size, mtime, ctime, inode and device, the way git's index
sees a file. ctime is in it because a user cannot set it. And one atomic write for every record
shlax keeps (layer usage, plan history, the fast path's records, traces, download-cache digests):
a reader, or a run killed halfway, never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Union


def stat_signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """size, mtime, ctime (nanoseconds), inode, device of a stat result."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def signature(path: str) -> Optional[list[int]]:
    """The signature of ``path`` itself (a link is not followed), or None when it is missing."""
    try:
        return list(stat_signature(os.lstat(path)))
    except OSError:
        return None


@contextlib.contextmanager
def replacing(path: Union[str, Path]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; it replaces ``path`` when the block ends without
    an error, and is removed otherwise. The folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_atomic(path: Union[str, Path], data: Union[str, bytes]) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` whole or not at all."""
    with replacing(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(path: Union[str, Path], value: Any, **dumps: Any) -> None:
    """Write ``value`` as JSON to ``path`` whole or not at all (``dumps``: json.dumps options)."""
    write_atomic(path, json.dumps(value, **dumps))
