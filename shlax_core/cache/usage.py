"""When each layer was made and last used, so ``shlax cache prune`` can drop the coldest first.

Builds never delete layers (two variants of a recipe keep theirs); only prune does.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable

from shlax_core import dirs
from shlax_core.filestate import write_json

#: a layer's "used" time is refreshed at most this often: an unchanged rebuild writes nothing
TOUCH_EVERY = 3600.0


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
    now = time.time()
    current = load()
    if not info and all(now - current.get(k, {}).get("used", 0) < TOUCH_EVERY for k in keys):
        return
    from filelock import FileLock

    path = _path()
    with FileLock(str(path) + ".lock"):
        data = load()
        now = time.time()
        for key in keys:
            entry = data.setdefault(key, {"created": now})
            entry["used"] = now
            entry.update({k: v for k, v in info.items() if v is not None})
        write_json(path, data, sort_keys=True)


def forget(keys: Iterable[str]) -> None:
    from filelock import FileLock

    path = _path()
    with FileLock(str(path) + ".lock"):
        data = load()
        for key in keys:
            data.pop(key, None)
        write_json(path, data, sort_keys=True)
