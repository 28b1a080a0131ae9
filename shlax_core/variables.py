"""Variables for templates: where they come from, in which order they win, and which strings of a
step are templates at all.

Sources, the later winning (docs/recipes.md, "Variables and templates"):

1. the recipe's ``[vars]``;
2. the target's ``vars``;
3. what the backend knows of one machine (an ssh inventory's ``[vars]``, group ``vars``, the
   host's own ``vars``: :meth:`~shlax_core.backends.Backend.variables`);
4. ``--var NAME=VALUE`` on the command line.

Plus three reserved names: ``target`` (the target's name), ``host`` (the machine: ``name``,
``address``, ``user``, ``port``, ``groups``; host targets only) and ``facts`` (``hostname``,
``distribution``, ``release``, ``codename``, ``architecture``; host targets only, gathered once
per host when a template uses them).

Nothing else is a source: not the environment, not files. The no-op fast path of image builds
stays exact because the recipe's bytes cover 1 and 2, and a run with ``--var`` neither uses
nor writes a fast-path record.

A string is a template only when it holds ``{{``, ``{%`` or ``{#``: every other string is used
as written and costs nothing (Jinja2 is not even imported).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional

from shlax_core.errors import RecipeError

MARKERS = ("{{", "{%", "{#")


def is_template(value: str) -> bool:
    return "{" in value and any(m in value for m in MARKERS)


def templates_in(data: Any, path: str) -> Iterator[tuple[str, str]]:
    """(key path, template string) for every template string inside ``data``."""
    if isinstance(data, str):
        if is_template(data):
            yield path, data
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from templates_in(item, f"{path}[{i}]")
    elif isinstance(data, dict):
        for key, item in data.items():
            yield from templates_in(item, f"{path}.{key}")


def has_templates(data: Any) -> bool:
    return next(templates_in(data, ""), None) is not None


def parse_cli(items: Optional[list[str]] | tuple[str, ...]) -> dict[str, str]:
    """``--var NAME=VALUE`` options -> {NAME: VALUE} (values are strings)."""
    from shlax_core.recipe import check_var_name

    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep:
            raise RecipeError(f"--var {item!r} is not NAME=VALUE", hint="e.g. --var port=8080")
        check_var_name(name, f"--var {name}", None)
        out[name] = value
    return out


def merged(*layers: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        if layer:
            out.update(layer)
    return out


class PendingFacts:
    """Stands for ``facts`` in the check made before anything runs: any fact reads as a
    placeholder, and the step is marked to be rendered again once the host's facts are known."""

    PLACEHOLDER = "FACT"

    def __init__(self) -> None:
        self.used = False

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        self.used = True
        return self.PLACEHOLDER

    def __getitem__(self, name: str) -> str:
        self.used = True
        return self.PLACEHOLDER

    def __contains__(self, name: object) -> bool:
        self.used = True
        return True
