"""What plugins add to ``shlax run``/``shlax plan`` and to targets, and the typed run options.

A plugin declares a :class:`PluginOptions` from the ``shlax_plugin_options`` hook (in a module of
the ``shlax.hooks`` entry-point group): command-line options, the typed value they make, and the
target keys it owns. The core adds the options to ``run`` and ``plan`` only when one of those two
commands is parsed or asked for ``--help`` (``shlax --help`` imports no plugin), validates the
target keys like a backend's own (``file:line``, the key, what to write), and hands each plugin
its own typed values: ``session.options.of(owner)`` and ``target.parts[owner]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence


@dataclass(frozen=True)
class PluginOptions:
    """One plugin's contribution to ``run``/``plan`` and to targets."""

    #: the plugin's name: the key of its values (``session.options.of(owner)``, ``target.parts[owner]``)
    owner: str
    #: click options added to ``run`` and ``plan`` (their parameter names unique among plugins)
    cli: Sequence[Any] = ()
    #: a dataclass made from the options' values (one field per parameter name); None: a dict
    Values: Optional[type] = None
    #: a dataclass of the target keys this plugin owns, beside the backend's (validated like them)
    Params: Optional[type] = None
    #: the kinds of targets those keys are valid on: "image", "host"
    kinds: tuple[str, ...] = ("image",)
    #: the timing phase (``--timings``) the commit hooks' time is shown under when the user gave
    #: one of these options (e.g. "push"); otherwise "hooks", when noticeable
    phase: str = "hooks"


@dataclass(frozen=True)
class RunOptions:
    """The options of one ``run``/``plan`` beyond the core's own switches (on the session)."""

    #: ``--var NAME=VALUE``, as typed
    vars: tuple[str, ...] = ()
    #: each plugin's values (its ``Values`` instance), by owner
    plugins: Mapping[str, Any] = field(default_factory=dict)
    #: owners of the plugin options the user gave (not left at their defaults): such a run does
    #: registry or other outside work, so it is never recorded for the no-op fast path
    given: frozenset[str] = frozenset()
    #: the timing phase of each owner's commit hooks (:attr:`PluginOptions.phase`)
    phases: Mapping[str, str] = field(default_factory=dict)

    def of(self, owner: str) -> Any:
        """The plugin's values, or None when it declared no options (or is not loaded)."""
        return self.plugins.get(owner)


def make_values(declared: PluginOptions, values: Mapping[str, Any]) -> Any:
    """The plugin's typed values from the parsed options (defaults for those not on the line)."""
    mine = {getattr(o, "name", None): values.get(getattr(o, "name", None), getattr(o, "default", None))
            for o in declared.cli}
    mine.pop(None, None)
    return declared.Values(**mine) if declared.Values is not None else dict(mine)
