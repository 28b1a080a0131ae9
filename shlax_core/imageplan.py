"""Planning an image target: every step's key, which layers exist, where the build restarts, and
why each step that is not cached would run. Nothing here builds; the runner reports a plan (``shlax
plan``) or builds from it (``shlax run``), so both answer from the same decisions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from shlax_core import __version__, buildenv, stages
from shlax_core.backends import ImageBackend
from shlax_core.binding import become_of
from shlax_core.cache import history, incremental, keys
from shlax_core.resolve import Resolved
from shlax_core.session import Session
from shlax_core.timeline import Phases


@dataclass
class ImagePlan:
    """What an image target is made of and what its build must do."""

    #: the base image's ID; None in a plan that cannot see the base (run would pull or build it)
    base_id: Optional[str]
    #: each step's key and what it was computed from (saved as the target's history)
    parts: list[dict[str, Any]]
    #: the final image's key (the image configuration over the last step's key)
    final_key: str
    #: key -> image ID of every layer found (locally, or fetched by a plugin)
    found: dict[str, str]
    #: index of the last step whose layer exists (-1: none); the build restarts after it
    start: int
    #: (step index, items added, the layer it builds on) when a package step grows its previous layer
    grown: Optional[tuple[int, list[str], str]]
    #: the parts of the target's last build (``shlax plan``'s reasons compare with them)
    previous: list[dict[str, Any]]
    #: per step: the time its key took ("key" phase); the build adds run, commit, push
    phases: list[Phases] = field(default_factory=list)

    @property
    def step_keys(self) -> list[str]:
        return [p["key"] for p in self.parts]

    @property
    def all_keys(self) -> list[str]:
        """Every step key and the final image's, in build order."""
        return [*self.step_keys, self.final_key]

    @property
    def whole(self) -> bool:
        """The final image exists: nothing to build, only names to give."""
        return self.final_key in self.found

    def cached(self, index: int) -> bool:
        """Step ``index`` (0-based) needs no work."""
        return index <= self.start or self.whole

    def missing(self) -> list[str]:
        """The keys after the last local layer, the final image's last (what a plugin may fetch)."""
        return [*self.step_keys[self.start + 1:], self.final_key]

    def add_found(self, more: dict[str, str]) -> None:
        """Layers a plugin fetched: the build restarts after the last of them."""
        self.found.update(more)
        self.start = max((i for i, k in enumerate(self.step_keys) if k in self.found), default=-1)
        if self.grown is not None and self.grown[0] <= self.start:
            self.grown = None

    def grows(self, index: int) -> Optional[list[str]]:
        """The items step ``index`` adds on its previous layer, when it is built incrementally."""
        return self.grown[1] if self.grown is not None and self.grown[0] == index else None

    def restart_image(self) -> Optional[str]:
        """The image the working container starts from (None: the base)."""
        if self.grown is not None:
            return self.grown[2]
        return self.found[self.step_keys[self.start]] if self.start >= 0 else None

    def reason(self, index: int, no_cache: bool, base_note: Optional[str]) -> str:
        """Why step ``index`` would run (``shlax plan``)."""
        added = self.grows(index)
        if added is not None:
            return "incremental: on the previous layer, installs " + " ".join(added)
        if no_cache:
            return "--no-cache"
        if self.base_id is None:
            return base_note or "the base image is not in the local store"
        previous = self.previous[index] if index < len(self.previous) else None
        return history.why(self.parts[index], previous)


def plan_image(r: Resolved, backend: ImageBackend, session: Session, recipe_path: Any,
               lookup_phases: Phases) -> ImagePlan:
    """Compute the keys of ``r``'s steps over its base, and ask the backend which layers exist
    (one lookup, timed in ``lookup_phases``). The backend is open; in a plan nothing changes."""
    base_id = backend.base_key()
    stages.bind(r.actions, backend, session)  # copies from other images: their IDs are inputs
    if base_id is not None:  # an undefined ${NAME} in a build-wide env: an error before any step
        buildenv.check(r.actions, backend)
    phases = [Phases() for _ in r.actions]
    bodies: list[dict[str, Any]] = []
    for a, ph in zip(r.actions, phases):
        wall, t0 = time.time(), time.monotonic()
        params = a.key_params()
        become = become_of(a.step)
        if become is not None:  # who a step runs as changes its layer (absent: keys as before)
            params = {**params, "(become)": [become.enabled, become.user]}
        if a.runs_commands and a.step.settings:  # build-wide env/workdir (absent: keys as before)
            params = {**params, **a.step.settings.key()}
        bodies.append({"action": a.name, "version": a.key_version(), "params": params,
                       "inputs": dict(a.inputs(session))})
        ph.add("key", wall, time.monotonic() - t0)
    config = (r.backend_cls.version or __version__, backend.config_data())

    def final_of(last: str) -> str:
        return keys.step_key(last, "image-config", config[0], config[1], {})

    previous = history.load(recipe_path, r.target.name)
    base = keys.base_key(base_id or "")
    with lookup_phases("lookup"):
        # plain keys, or the keys a package step was last built incrementally with (cache/incremental.py)
        chain = incremental.resolve(r.actions, bodies, base, previous, backend.lookup, final_of,
                                    enabled=not session.no_cache and base_id is not None)
    final_key = final_of(chain.parts[-1]["key"] if chain.parts else base)
    return ImagePlan(base_id, chain.parts, final_key, chain.found, chain.start, chain.grown, previous, phases)
