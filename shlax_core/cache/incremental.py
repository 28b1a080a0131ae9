"""Incremental package steps: a package list that only grew builds on the previous list's layer.

A step's plain key hashes its whole parameter list; adding ``jq`` to a 200-package apt step
changes it, and a plain rebuild reinstalls the 200. When an action says the step's parameters are
those of its last build with items only added (:meth:`~shlax_core.actions.Action.grown_from`),
the step has the same parent as then, and that build's layer still exists, the step builds on
that layer installing just the added items, and is committed under its own key::

    incremental key = step_key(previous layer's key, action, version, {"added": [...]}, {})

That key says how the layer was made, so a cache hit on it can only return a layer made that
way. The step's history entry keeps both keys (``plain`` and ``key``, with ``made``): the next run
of the same recipe finds the step under the key it was last built with, and the steps after it
chain from that key. Where the previous layer is gone (another machine, a prune), the step builds
from scratch under its plain key. ``--no-cache`` never looks. See docs/layers.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from shlax_core.cache import keys

Lookup = Callable[[Sequence[str]], dict[str, str]]
#: incremental layers stacked on one step at most: past that the step rebuilds whole, so an image
#: does not grow a layer per edit of its package list
MAX_DEPTH = 3


@dataclass
class Chain:
    """The keys of a target's steps, the layers found, where the build restarts, and whether the
    first step to run builds on a previous layer."""

    parts: list[dict[str, Any]]
    found: dict[str, str]
    start: int
    #: (step index, added items, the previous layer's image) for a step that builds incrementally
    grown: Optional[tuple[int, list[str], str]] = None
    lookups: list[list[str]] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [p["key"] for p in self.parts]


def incremental_key(previous_key: str, action: str, version: str, added: Sequence[str]) -> str:
    return keys.step_key(previous_key, action, version, {"added": list(added)}, {})


def chain(bodies: Sequence[dict[str, Any]], parent: str, previous: Sequence[Optional[dict[str, Any]]],
          aliases: bool = True) -> list[dict[str, Any]]:
    """Key each step on its parent. With ``aliases``, a step whose plain key is the one its last
    build had, made incrementally, takes that build's key (and the steps after chain from it)."""
    parts = []
    for i, body in enumerate(bodies):
        plain = keys.step_key(parent, body["action"], body["version"], body["params"], body["inputs"])
        part = {"parent": parent, **body, "key": plain}
        prev = previous[i] if i < len(previous) else None
        if aliases and prev and prev.get("plain") == plain and prev.get("made") and prev.get("key") != plain:
            part.update(key=prev["key"], plain=plain, made=prev["made"])
        parts.append(part)
        parent = part["key"]
    return parts


def _start(parts: list[dict[str, Any]], found: dict[str, str]) -> int:
    return max((i for i, p in enumerate(parts) if p["key"] in found), default=-1)


def resolve(actions: Sequence[Any], bodies: Sequence[dict[str, Any]], base: str,
            previous: Sequence[Optional[dict[str, Any]]], lookup: Lookup, final: Callable[[str], str],
            enabled: bool = True) -> Chain:
    """Key every step, look the layers up (with the final image's key, ``final(last step's key)``,
    in the same call), and decide whether the first step to run can build on its previous layer.
    Not ``enabled`` (``--no-cache``): plain keys, nothing looked up."""
    parts = chain(bodies, base, previous if enabled else [])
    last = lambda ps, default=base: ps[-1]["key"] if ps else default  # noqa: E731
    wanted = [*(p["key"] for p in parts), final(last(parts))]
    found = lookup(wanted) if enabled else {}
    result = Chain(parts, found, _start(parts, found), lookups=[wanted])
    if not enabled:
        return result
    if any("plain" in p and p["key"] not in found for p in parts):
        # a layer made incrementally is gone: plain keys from there on
        result.parts = chain(bodies, base, previous, aliases=False)
        wanted = [*(p["key"] for p in result.parts), final(last(result.parts))]
        result.found = lookup(wanted)
        result.lookups.append(wanted)
        result.start = _start(result.parts, result.found)
    i = result.start + 1
    prev = previous[i] if i < len(previous) else None
    if i >= len(parts) or not prev or not prev.get("key"):
        return result
    part = result.parts[i]
    if any(prev.get(k) != part[k] for k in ("parent", "action", "version", "inputs")):
        return result
    before, now = dict(prev.get("params") or {}), dict(part["params"])
    if before.pop("(become)", None) != now.pop("(become)", None):
        return result
    added = actions[i].grown_from(before)
    if not added:
        return result
    depth = int((prev.get("made") or {}).get("depth", 0)) + 1
    if depth > MAX_DEPTH:
        return result
    key = incremental_key(prev["key"], part["action"], part["version"], added)
    tail = chain(bodies[i + 1:], key, previous[i + 1:])
    wanted = [prev["key"], key, *(p["key"] for p in tail), final(last(tail, key))]
    more = lookup(wanted)
    result.lookups.append(wanted)
    if key not in more and prev["key"] not in more:
        return result  # the previous layer is gone: from scratch, plain key
    result.parts[i] = {**part, "key": key, "plain": part["key"], "made": {"from": prev["key"], "added": added,
                                                                          "depth": depth}}
    result.parts[i + 1:] = tail
    result.found.update(more)
    result.start = _start(result.parts, result.found)
    if key not in more:
        result.grown = (i, list(added), more[prev["key"]])
    return result
