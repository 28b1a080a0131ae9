"""Finding plugins: named things through stevedore (by name, only when asked), hooks through pluggy.

Entry-point groups (names are the words users type in recipes):

- ``shlax.actions``  -> an :class:`~shlax_core.actions.Action` subclass
- ``shlax.backends`` -> a :class:`~shlax_core.backends.Backend` subclass
- ``shlax.caches``   -> a :class:`~shlax_core.downloads.Cache` subclass
- ``shlax.commands`` -> a module implementing ``shlax_register_commands``
- ``shlax.cache_commands`` -> a click command, added to ``shlax cache`` (name = subcommand)
- ``shlax.hooks``    -> a module of hook implementations, registered for every run
- ``shlax.sections`` -> the parser of a top-level recipe table the plugin owns (name = the TOML
  key, e.g. ``services``); the recipe keeps that table's raw data, the plugin validates it

Every group goes through :class:`Plugins` (stevedore, guarded per entry point): a plugin that
fails to import is reported where it is needed (and listed by ``shlax plugins``), and never breaks
what does not use it; ``SHLAX_DISABLE_PLUGINS`` hides entries of every group alike.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from types import ModuleType
from typing import Any, Iterable, Optional

import pluggy

from shlax_core import hookspecs
from shlax_core.entrypoints import GROUPS, EntryPoint, entry_points, raw_entry_points
from shlax_core.errors import PluginError
from shlax_core.params import closest

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


class Plugins:
    """Loads named plugins on demand and registers their modules' hooks with the plugin manager.

    ``extra`` injects in-memory plugins (tests): ``{"action": {"echo": EchoAction}}``. They win
    over installed entry points of the same name. ``installed_hooks=False`` leaves the installed
    ``shlax.hooks`` plugins out of :meth:`load_hooks` (a plugin author's unit tests run no hook
    of somebody else's plugin; ``shlax_core.testing`` builds its managers that way).
    """

    def __init__(self, pm: Optional[pluggy.PluginManager] = None,
                 extra: Optional[dict[str, dict[str, Any]]] = None, *, installed_hooks: bool = True):
        self.pm = pm or get_plugin_manager()
        self.extra = extra or {}
        self.installed_hooks = installed_hooks
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
        try:
            return _driver(ep)
        except Exception as error:
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
        module = _module_of(obj)
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
        names = self.names("hooks") if self.installed_hooks else sorted(self.extra.get("hooks", {}))
        for name in names:
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
        """Every installed plugin entry of every group, imported (guarded), with the hooks its
        module implements and its load error if any (``shlax plugins``)."""
        rows = []
        for kind, group in GROUPS.items():
            for name, eps in sorted(self.eps(kind).items()):
                for ep in eps:
                    row: dict[str, Any] = {"kind": kind, "name": name, "distribution": ep.dist,
                                           "version": ep.version, "object": ep.value, "error": None}
                    if len(eps) > 1:
                        row["error"] = "name claimed by " + " and ".join(e.dist for e in eps)
                    else:
                        try:
                            obj = _driver(ep)
                        except Exception as exc:  # guarded: list it as broken
                            row["error"] = f"{type(exc).__name__}: {exc}"
                        else:
                            row["summary"] = _summary(obj)
                            row["hooks"] = self.hooks_of(obj)
                    rows.append(row)
        return rows

    def hooks_of(self, obj: Any) -> list[str]:
        """The shlax hooks implemented by the module that holds ``obj`` (what registering it adds)."""
        module = _module_of(obj)
        if module is None:
            return []
        return sorted(n for n in dir(module) if n.startswith("shlax_")
                      and self.pm.parse_hookimpl_opts(module, n) is not None)


def _module_of(obj: Any) -> Optional[ModuleType]:
    """The module whose hooks come with a plugin object: hooks and commands entry points name
    modules, actions, backends and caches name classes; other objects (a cache command's click
    command) bring no hooks."""
    if isinstance(obj, ModuleType):
        return obj
    if isinstance(obj, type):
        return sys.modules.get(obj.__module__)
    return None


def _driver(ep: EntryPoint) -> Any:
    """The object an entry point names, loaded through stevedore; the import's own error if it
    fails (stevedore reports it to a callback, then says only "no matches")."""
    from stevedore import DriverManager

    failures: list[BaseException] = []

    def failed(_mgr: Any, _ep: Any, exc: BaseException) -> None:
        failures.append(exc)

    try:
        return DriverManager(ep.group, ep.name, invoke_on_load=False, on_load_failure_callback=failed).driver
    except Exception as exc:  # NoMatches after a failed import, or MultipleMatches
        raise (failures[0] if failures else exc) from None


def _summary(obj: Any) -> str:
    """The first line of a plugin object's docs (a click command's help, else its docstring)."""
    text = obj.__doc__ if isinstance(obj, (type, ModuleType)) else getattr(obj, "help", None) or obj.__doc__
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""
