"""When each layer was made and last used, so ``shlax cache prune`` can drop the coldest first.

Builds never delete layers (two variants of a recipe keep theirs); only prune does.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterable

from filelock import FileLock

from shlax_core import dirs


def _path():
    return dirs.state("layers.json")


def load() -> dict[str, dict[str, Any]]:
    try:
        return json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}


def touch(keys: Iterable[str], **info: Any) -> None:
    """Mark layers used now (and record ``info`` such as the image ID, target, step)."""
    keys = list(keys)
    if not keys:
        return
    path = _path()
    with FileLock(str(path) + ".lock"):
        data = load()
        now = time.time()
        for key in keys:
            entry = data.setdefault(key, {"created": now})
            entry["used"] = now
            entry.update({k: v for k, v in info.items() if v is not None})
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)


def forget(keys: Iterable[str]) -> None:
    path = _path()
    with FileLock(str(path) + ".lock"):
        data = load()
        for key in keys:
            data.pop(key, None)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)
