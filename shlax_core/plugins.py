"""Finding plugins: named things through stevedore (by name, only when asked), hooks through pluggy.

Entry-point groups (names are the words users type in recipes):

- ``shlax.actions``  -> an :class:`~shlax_core.actions.Action` subclass
- ``shlax.backends`` -> a :class:`~shlax_core.backends.Backend` subclass
- ``shlax.caches``   -> a :class:`~shlax_core.downloads.Cache` subclass
- ``shlax.commands`` -> a module implementing ``shlax_register_commands``
- ``shlax.hooks``    -> a module of hook implementations, registered for every run
- ``shlax.sections`` -> the parser of a top-level recipe table the plugin owns (name = the TOML
  key, e.g. ``services``); the recipe keeps that table's raw data, the plugin validates it

Loading is guarded per entry point: a plugin that fails to import is reported where it is
needed (and listed by ``shlax plugins``), and never breaks what does not use it.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Iterable, Optional

import pluggy

from shlax_core import hookspecs
from shlax_core.entrypoints import select
from shlax_core.errors import PluginError
from shlax_core.params import closest

GROUPS = {
    "action": "shlax.actions",
    "backend": "shlax.backends",
    "cache": "shlax.caches",
    "command": "shlax.commands",
    "hooks": "shlax.hooks",
    "section": "shlax.sections",
}

#: where a user finds a plugin they do not have yet
KNOWN_PROVIDERS = {
    ("action", "apt"): "shlax-plugin-apt",
    ("cache", "apt"): "shlax-plugin-apt",
    ("action", "pip"): "shlax-plugin-pip",
    ("cache", "pip"): "shlax-plugin-pip",
    ("action", "npm"): "shlax-plugin-npm",
    ("cache", "npm"): "shlax-plugin-npm",
    ("backend", "buildah"): "shlax-plugin-buildah",
    ("backend", "podman"): "shlax-plugin-podman",
    ("backend", "ssh"): "shlax-plugin-ssh",
    ("section", "services"): "shlax-plugin-services",
}


def get_plugin_manager(*, register: Iterable[Any] = ()) -> pluggy.PluginManager:
    """A fresh plugin manager with shlax's hook specs; tests build their own and register in memory."""
    pm = pluggy.PluginManager("shlax")
    pm.add_hookspecs(hookspecs)
    for plugin in register:
        pm.register(plugin)
    pm.check_pending()  # a misspelled hook implementation is an error, not silence
    if os.environ.get("SHLAX_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"[hook] {msg}"))
        pm.enable_tracing()
    return pm


@dataclass
class EntryPoint:
    """One entry point with the distribution that declares it (metadata only; nothing imported)."""

    group: str
    name: str
    value: str
    dist: str
    version: str
    ep: Any = field(repr=False, default=None)


def raw_entry_points(group: str, scanned: Any = None) -> list[EntryPoint]:
    """Every entry point of a group, before any selection (``SHLAX_DISABLE_PLUGINS`` included)."""
    rows = []
    selected = scanned.select(group=group) if scanned is not None else importlib.metadata.entry_points(group=group)
    for ep in selected:
        dist = getattr(ep, "dist", None)
        dname = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "0"
        rows.append(EntryPoint(group, ep.name, ep.value, dname, version, ep))
    return rows


def entry_points(group: str, scanned: Any = None) -> dict[str, list[EntryPoint]]:
    """All entry points of a group by name, one per distinct distribution, minus those
    ``SHLAX_DISABLE_PLUGINS`` hides (:func:`shlax_core.entrypoints.select`). ``scanned``: the
    result of one ``importlib.metadata.entry_points()`` to select from (each scan reads every
    installed distribution's metadata: about 10 ms)."""
    return select(raw_entry_points(group, scanned))


class Plugins:
    """Loads named plugins on demand and registers their modules' hooks with the plugin manager.

    ``extra`` injects in-memory plugins (tests): ``{"action": {"echo": EchoAction}}``. They win
    over installed entry points of the same name.
    """

    def __init__(self, pm: Optional[pluggy.PluginManager] = None,
                 extra: Optional[dict[str, dict[str, Any]]] = None):
        self.pm = pm or get_plugin_manager()
        self.extra = extra or {}
        self._eps: dict[str, dict[str, list[EntryPoint]]] = {}
        self._scanned: Any = None
        self._loaded: dict[tuple[str, str], Any] = {}
        self._hooks_loaded = False
        self._hook_errors: list[PluginError] = []
        self._options: Optional[list[Any]] = None

    # -- metadata (no import) -----------------------------------------------------------------
    def scanned(self) -> Any:
        if self._scanned is None:  # one scan per run serves every kind
            self._scanned = importlib.metadata.entry_points()
        return self._scanned

    def eps(self, kind: str) -> dict[str, list[EntryPoint]]:
        if kind not in self._eps:
            self._eps[kind] = entry_points(GROUPS[kind], self.scanned())
        return self._eps[kind]

    def raw(self, kind: str) -> list[EntryPoint]:
        """Every entry point of ``kind``, blocked ones included (what the fast path records)."""
        return raw_entry_points(GROUPS[kind], self.scanned())

    def names(self, kind: str) -> list[str]:
        return sorted(set(self.eps(kind)) | set(self.extra.get(kind, {})))

    def has(self, kind: str, name: str) -> bool:
        return name in self.extra.get(kind, {}) or name in self.eps(kind)

    # -- loading ------------------------------------------------------------------------------
    def load(self, kind: str, name: str, *, where: Optional[str] = None) -> Any:
        """The plugin object for ``name``; a PluginError that says what to do when it is missing."""
        key = (kind, name)
        if key in self._loaded:
            return self._loaded[key]
        if name in self.extra.get(kind, {}):
            obj = self.extra[kind][name]
            self._remember(key, obj, name, getattr(obj, "version", "") or "0")
            return obj
        candidates = self.eps(kind).get(name)
        if not candidates:
            raise self._missing(kind, name, where)
        if len(candidates) > 1:
            owners = " and ".join(f"{c.dist} {c.version}" for c in candidates)
            raise PluginError(f"the {kind} name {name!r} is claimed by two distributions: {owners}",
                              where=where, hint="uninstall one of them (pip uninstall NAME)")
        ep = candidates[0]
        obj = self._import(ep, where)
        self._remember(key, obj, name, ep.version)
        return obj

    def _import(self, ep: EntryPoint, where: Optional[str]) -> Any:
        from stevedore import DriverManager

        failures: list[BaseException] = []

        def failed(_mgr: Any, _ep: Any, exc: BaseException) -> None:
            failures.append(exc)

        try:
            mgr = DriverManager(ep.group, ep.name, invoke_on_load=False,
                                on_load_failure_callback=failed)
            return mgr.driver
        except Exception as exc:  # NoMatches after a failed import, or MultipleMatches
            error = failures[0] if failures else exc
            raise PluginError(
                f"plugin {ep.name!r} ({ep.dist} {ep.version}) failed to load: "
                f"{type(error).__name__}: {error}", where=where,
                hint=f"reinstall or upgrade it (pip install -U {ep.dist}); `shlax plugins` lists broken plugins"
            ) from None

    def _remember(self, key: tuple[str, str], obj: Any, name: str, version: str) -> None:
        if isinstance(obj, type):
            if not obj.__dict__.get("name"):
                obj.name = name
            obj.version = version
        # hooks and commands entry points name modules; actions, backends, caches name classes
        module = obj if isinstance(obj, ModuleType) else sys.modules.get(getattr(obj, "__module__", ""))
        if module is not None and not self.pm.is_registered(module):
            self.pm.register(module, name=f"{key[0]}:{name}")
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as exc:
                self.pm.unregister(module)
                raise PluginError(f"plugin {name!r} ({module.__name__}) implements an unknown hook: {exc}",
                                  hint="hook names are listed in shlax_core/hookspecs.py and docs/plugins.md"
                                  ) from None
        self._loaded[key] = obj

    def _missing(self, kind: str, name: str, where: Optional[str]) -> PluginError:
        names = self.names(kind)
        sugg = closest(name, names)
        hint_parts = []
        if sugg:
            hint_parts.append(f"did you mean {' or '.join(repr(s) for s in sugg)}?")
        provider = KNOWN_PROVIDERS.get((kind, name))
        if provider:
            hint_parts.append(f"{name!r} is provided by {provider}: pip install {provider}")
        hint_parts.append(f"installed {kind}s: {', '.join(names) or 'none'}")
        return PluginError(f"unknown {kind} {name!r}", where=where, hint="; ".join(hint_parts))

    def load_hooks(self) -> list[PluginError]:
        """Register every ``shlax.hooks`` plugin (done for run/plan, never for --help).

        A hook plugin that fails to load is skipped and returned, for the caller to warn about:
        a broken plugin must not break runs that do not need it.
        """
        if self._hooks_loaded:
            errors, self._hook_errors = self._hook_errors, []  # loaded early for options: said once
            return errors
        self._hooks_loaded = True
        errors = []
        for name in self.names("hooks"):
            try:
                self.load("hooks", name)
            except PluginError as exc:
                errors.append(exc)
        return errors

    def plugin_options(self) -> list[Any]:
        """Every :class:`~shlax_core.options.PluginOptions` the hook plugins declare (``run`` and
        ``plan`` only: this loads the hook plugins; their load errors are kept for the runner)."""
        if self._options is None:
            if not self._hooks_loaded:
                self._hook_errors = self.load_hooks()
            self._options = [o for o in self.pm.hook.shlax_plugin_options() if o is not None]
        return self._options

    # -- listing ------------------------------------------------------------------------------
    def inventory(self) -> list[dict[str, Any]]:
        """Every installed plugin entry, imported, with its load error if any (``shlax plugins``)."""
        rows = []
        for kind, group in GROUPS.items():
            for name, eps in sorted(self.eps(kind).items()):
                for ep in eps:
                    row = {"kind": kind, "name": name, "distribution": ep.dist, "version": ep.version,
                           "object": ep.value, "error": None}
                    if len(eps) > 1:
                        row["error"] = "name claimed by " + " and ".join(e.dist for e in eps)
                    else:
                        try:
                            obj = ep.ep.load()
                            doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
                            row["summary"] = doc[0] if doc else ""
                        except Exception as exc:  # guarded: list it as broken
                            row["error"] = f"{type(exc).__name__}: {exc}"
                    rows.append(row)
        return rows
