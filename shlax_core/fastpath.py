"""The no-op fast path: an unchanged rebuild answered without the full machinery.

After a successful ``shlax run`` of image targets, the runner records what every step key and
the run's outcome depended on (docs/layers.md, "The no-op fast path"):

- the recipe's bytes (parameters, action names, image configuration, base references);
- the installed Python environment: the signatures of ``sys.path`` directories (a distribution
  installed, upgraded or removed changes them) and of the metadata files of every distribution
  whose entry points the run used (backend, actions, caches, hook plugins);
- those entry points themselves, unselected, so the selection the core makes
  (:func:`shlax_core.entrypoints.select`, ``SHLAX_DISABLE_PLUGINS`` included) is made again;
- the signature of every host file and directory the steps read (taken *before* reading them);
- per target, the backend's entry-point name and what the backend says it can check cheaply
  (:meth:`~shlax_core.backends.ImageBackend.fastpath_info`): e.g. that the recipe's base
  reference still resolves to the recorded base image ID and that the final image still carries
  its names and its final key.

The next ``shlax run`` with the same recipe and targets checks all of that, loading only the
backend's own entry point to call its :meth:`~shlax_core.backends.ImageBackend.fastpath_check`,
and replays the all-``CACHED`` report, the way ``make`` answers "nothing to do". Any difference,
or anything it cannot check, falls through to the full path, which decides for real.
``SHLAX_NO_FASTPATH=1`` turns it off: nothing is read or written.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

from shlax_core.filestate import signature

VERSION = 2
DISABLE_ENV = "SHLAX_NO_FASTPATH"
#: options a fast answer is valid for (``--offline``: an all-cached build touches no network)
NEUTRAL_OPTIONS = ("--json", "--offline")


class Row(NamedTuple):
    """An entry point as recorded: enough to select it again and to load it."""

    kind: str
    name: str
    value: str
    dist: str
    version: str


def enabled() -> bool:
    return not os.environ.get(DISABLE_ENV)


def _record_path(recipe: Path, targets: list[str]) -> Path:
    import hashlib

    from shlax_core import dirs

    name = hashlib.sha256(f"{recipe}\0{','.join(targets)}".encode()).hexdigest()[:24]
    return dirs.cache_root() / "fastpath" / f"{name}.json"


def _environment(dist_paths: list[str]) -> list[Any]:
    """What says the installed shlax and plugins are the ones that made the record."""
    from shlax_core import __version__

    # sys.path[0] is the script's folder or the current one: it differs between `shlax` and
    # `python -m shlax_core`, and holds no installed distribution
    paths = [[p, signature(p)] for p in sys.path[1:] if p]
    metadata = [[f, signature(f)] for d in dist_paths for f in (f"{d}/METADATA", f"{d}/entry_points.txt")]
    return [__version__, sys.prefix, sys.version, paths, metadata]


def _selection(rows: list[Row]) -> dict[str, list[str]]:
    """``kind:name`` -> the distributions the core would take it from (the core's own rules)."""
    from shlax_core.entrypoints import select

    out: dict[str, list[str]] = {}
    for kind in sorted({r.kind for r in rows}):
        for name, chosen in select(r for r in rows if r.kind == kind).items():
            out[f"{kind}:{name}"] = [r.dist for r in chosen]
    return out


def forget(recipe: Path, targets: list[str]) -> None:
    try:
        _record_path(recipe, targets).unlink()
    except OSError:
        pass


def save(recipe: Path, recipe_bytes: bytes, targets: list[str], images: list[dict[str, Any]],
         guards: dict[str, Any], plugins: list[Row], dist_paths: list[str]) -> None:
    """Called by the runner after a successful run whose every target can be checked cheaply."""
    import hashlib

    from shlax_core.filestate import write_json

    if not enabled():
        return
    record = {
        "v": VERSION, "env": _environment(sorted(set(dist_paths))), "dists": sorted(set(dist_paths)),
        "recipe": str(recipe), "recipe_sha": hashlib.sha256(recipe_bytes).hexdigest(), "targets": targets,
        "guards": guards, "plugins": [list(r) for r in plugins], "selected": _selection(plugins),
        "images": images,
    }
    write_json(_record_path(recipe, targets), record)


class Recording:
    """What the runner collects for the record while it builds; ``ok`` turns False as soon as one
    target cannot be checked cheaply (then nothing is recorded)."""

    def __init__(self) -> None:
        self.ok = True
        self.images: list[dict[str, Any]] = []
        self.guards: dict[str, Any] = {}

    def sign_code(self, resolved: Sequence[Any]) -> None:
        """Sign the source files of the backends and actions the targets use, before anything runs
        (they were just imported): an action's ``cache_version`` is in its step keys, and an
        editable install changes it without changing any distribution's metadata."""
        for r in resolved:
            for cls in (r.backend_cls, *(type(a) for a in r.actions or () if a is not None)):
                path = getattr(sys.modules.get(cls.__module__), "__file__", None)
                if path:
                    self.guards[path] = signature(path)

    def add(self, resolved: Any, backend: Any, image: Optional[str], keys: list[str], session: Any,
            templates: Optional[dict[str, Any]] = None) -> None:
        """One image target built (or found whole in the cache) as ``image``; ``keys``: its step
        keys, the final image's last; ``templates``: the files its templates read, signed before
        reading them."""
        if not self.ok:
            return
        if resolved.target.plugin_keys:  # a plugin's work on every run (a registry push...)
            self.ok = False
            return
        info = backend.fastpath_info(image, keys) if image else None
        guards = [a.guards(session) for a in resolved.actions]
        if info is None or any(g is None for g in guards):
            self.ok = False
            return
        for g in guards:
            self.guards.update(g or {})
        self.guards.update(templates or {})
        n = len(resolved.actions)
        names = ", ".join(backend.names()) or image
        self.images.append({
            "target": resolved.target.name, "label": backend.label, "backend": resolved.target.backend,
            "check": info, "steps": [a.describe() for a in resolved.actions],
            "paths": [a.step.path for a in resolved.actions], "image": image, "keys": keys,
            "summary": f"image {names} ({n} cached, 0 run)"})

    def save(self, recipe: Any, targets: list[str], resolved: list[Any], plugins: Any) -> None:
        """Write the record, if every target could be checked and every plugin can be found again
        from its entry point (not one injected in memory by a test)."""
        if not (self.ok and self.images):
            return
        wanted: set[tuple[str, str]] = set()
        for r in resolved:
            wanted.add(("backend", r.target.backend))
            for a in r.actions:
                wanted.add(("action", a.step.action))
                wanted.update(("cache", c) for c in a.cache_names())
        if any(name in plugins.extra.get(kind, {}) for kind, name in wanted):
            return
        rows, dist_paths = [], []
        for kind in ("backend", "action", "cache", "hooks"):
            for ep in plugins.raw(kind):
                if kind == "hooks" or (kind, ep.name) in wanted:
                    path = getattr(getattr(ep.ep, "dist", None), "_path", None)
                    if path is None:  # metadata we cannot watch (not a plain dist-info folder)
                        return
                    rows.append(Row(kind, ep.name, ep.value, ep.dist, ep.version))
                    dist_paths.append(str(path))
        save(recipe.path, recipe.source.encode(), targets, self.images, self.guards, rows, dist_paths)


def _load(value: str) -> Any:
    """An entry point's object from its ``module:attr`` value (what ``EntryPoint.load`` does)."""
    import importlib

    module, _, attrs = value.partition(":")
    obj: Any = importlib.import_module(module.strip())
    for attr in filter(None, attrs.strip().split(".")):
        obj = getattr(obj, attr)
    return obj


def check(recipe: Path, targets: list[str]) -> Optional[dict[str, Any]]:
    """The record, when everything it depends on is unchanged; None otherwise."""
    import hashlib
    import json

    try:
        record = json.loads(_record_path(recipe, targets).read_text())
        data = recipe.read_bytes()
    except (OSError, ValueError):
        return None
    if record.get("v") != VERSION or record.get("recipe_sha") != hashlib.sha256(data).hexdigest():
        return None
    if record["env"] != json.loads(json.dumps(_environment(record["dists"]))):
        return None
    for path, sig in record["guards"].items():
        if signature(path) != sig:
            return None
    rows = [Row(*r) for r in record["plugins"]]
    if _selection(rows) != record["selected"]:  # SHLAX_DISABLE_PLUGINS hides one, or unhides a rival
        return None
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for image in record["images"]:
        by_backend.setdefault(image["backend"], []).append(image["check"])
    for name, checks in by_backend.items():
        (row,) = [r for r in rows if r.kind == "backend" and r.name == name
                  and r.dist in record["selected"][f"backend:{name}"]]
        if not _load(row.value).fastpath_check(checks):
            return None
    return record


def replay(record: dict[str, Any], json_mode: bool, started: float) -> None:
    """Report the run exactly as an all-cached run reports it."""
    from shlax_core.events import Outcome
    from shlax_core.output import JsonReporter, PlainReporter
    from shlax_core.status import Status

    reporter = JsonReporter() if json_mode else PlainReporter()
    reporter.emit("run_start", recipe=record["recipe"], plan=False,
                  targets=[i["target"] for i in record["images"]], fast=True)
    for image in record["images"]:
        where = {"target": image["target"], "host": image["label"]}
        total = len(image["steps"])
        reporter.emit("target_start", **where, backend=image["backend"], steps=total, plan=False)
        for index, (step, path) in enumerate(zip(image["steps"], image["paths"]), 1):
            reporter.emit("step_end", **where, index=index, total=total, step=step, path=path, status=Status.CACHED)
        reporter.emit("target_end", **where, summary=image["summary"], image=image["image"],
                      elapsed=time.monotonic() - started)
    reporter.emit("run_end", status=Outcome.SUCCESS, elapsed=time.monotonic() - started, recap=[], recap_lines=[])
