"""Step keys: what makes a layer reusable.

key = sha256(parent key, action name, plugin version (or the action's ``cache_version``), canonical
parameters, host input digests).
Changing any of these changes the key of the step and, through ``parent``, of every later step;
nothing else does (not mtimes, not the recipe's formatting, not the step's position alone).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

KEY_VERSION = "shlax-key-1"


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def step_key(parent: str, action: str, version: str, params: Any, inputs: Mapping[str, str]) -> str:
    payload = canonical_json({
        "v": KEY_VERSION, "parent": parent, "action": action, "version": version,
        "params": params, "inputs": dict(inputs),
    })
    return hashlib.sha256(payload.encode()).hexdigest()


def base_key(image_id: str) -> str:
    """The parent key of a target's first step: its base image's resolved ID."""
    return hashlib.sha256(f"{KEY_VERSION}:base:{image_id}".encode()).hexdigest()
