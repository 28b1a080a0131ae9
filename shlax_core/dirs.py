"""Where shlax keeps its state on the host: the user's cache dir (XDG), overridable for tests."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SHLAX_CACHE_DIR``, else the user's cache dir (``~/.cache/shlax``)."""
    env = os.environ.get("SHLAX_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("shlax", appauthor=False))


def download_cache(name: str) -> Path:
    return cache_root() / "downloads" / name


def state(name: str) -> Path:
    path = cache_root() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
