"""What each step's key was made of at its last build, so ``shlax plan`` can say *why* a step runs.

Stored per recipe file and target under the cache dir; losing it only loses the explanations.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from shlax_core import dirs
from shlax_core.filestate import write_json


def _file(recipe: Path, target: str) -> Path:
    name = hashlib.sha256(f"{recipe}\0{target}".encode()).hexdigest()[:24]
    return dirs.cache_root() / "history" / f"{name}.json"


def load(recipe: Path, target: str) -> list[dict[str, Any]]:
    try:
        return json.loads(_file(recipe, target).read_text())
    except (OSError, ValueError):
        return []


def save(recipe: Path, target: str, parts: list[dict[str, Any]]) -> None:
    write_json(_file(recipe, target), parts, sort_keys=True, default=str)


def why(current: dict[str, Any], previous: Optional[dict[str, Any]]) -> str:
    """A short reason a step's key differs from the one it had last time."""
    if previous is None:
        return "never built"
    if previous.get("key") == current.get("key"):
        return "layer missing (pruned or removed)"
    if previous.get("action") != current.get("action"):
        return f"action changed ({previous.get('action')} -> {current.get('action')})"
    if previous.get("version") != current.get("version"):
        old, new = str(previous.get("version")), str(current.get("version"))
        if old.startswith("cache_version ") and new.startswith("cache_version "):
            return f"{current.get('action')} cache_version changed ({old.split(' ', 1)[1]} -> {new.split(' ', 1)[1]})"
        return f"{current.get('action')} plugin version changed ({old} -> {new})"
    if previous.get("params") != current.get("params"):
        old, new = previous.get("params") or {}, current.get("params") or {}
        if isinstance(old, dict) and isinstance(new, dict):
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if changed:
                return "parameters changed: " + ", ".join(changed)
        return "parameters changed"
    if previous.get("inputs") != current.get("inputs"):
        old, new = previous.get("inputs") or {}, current.get("inputs") or {}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return "input changed: " + ", ".join(changed[:5])
    if previous.get("parent") != current.get("parent"):
        return "an earlier step or the base image changed"
    return "key changed"
