"""Names and labels: how shlax recognises the containers, pods, volumes and networks it made.

A recipe is identified by a hash of its absolute path (``shlax.recipe`` label). Every object
carries it; ``up``, ``down``, ``ps`` and ``logs`` only ever touch objects with their recipe's
label, and refuse to take a name that something else already holds.

Object names start with a *project* name: the recipe's folder name and 6 characters of the
hash (``shop-3fa2c1``): the network is ``shop-3fa2c1``, the ``web`` service's container
``shop-3fa2c1-web``, the ``data`` volume ``shop-3fa2c1-data``, the ``stack`` pod
``shop-3fa2c1-stack``. A recipe moved to another path is another project.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

RECIPE = "shlax.recipe"
RECIPE_PATH = "shlax.recipe.path"
SERVICE = "shlax.service"
POD = "shlax.pod"
VOLUME = "shlax.volume"
CONFIG = "shlax.config"


@dataclass(frozen=True)
class Project:
    recipe_id: str
    name: str
    recipe_path: str

    @classmethod
    def of(cls, recipe_path: Path) -> "Project":
        full = str(recipe_path.resolve())
        rid = hashlib.sha256(full.encode()).hexdigest()[:16]
        folder = re.sub(r"[^a-z0-9]+", "-", recipe_path.resolve().parent.name.lower()).strip("-") or "shlax"
        return cls(rid, f"{folder[:24]}-{rid[:6]}", full)

    @property
    def network(self) -> str:
        return self.name

    def container(self, service: str) -> str:
        return f"{self.name}-{service}"

    def volume(self, name: str) -> str:
        return f"{self.name}-{name}"

    def pod(self, name: str) -> str:
        return f"{self.name}-{name}"

    def labels(self, extra: Optional[dict[str, str]] = None) -> list[str]:
        """``--label=K=V`` arguments (one argv element each: a value cannot become an option)."""
        pairs = {RECIPE: self.recipe_id, RECIPE_PATH: self.recipe_path, **(extra or {})}
        return [f"--label={k}={v}" for k, v in pairs.items()]
