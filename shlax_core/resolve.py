"""Resolve a recipe's selected targets: load their backends and actions, validate every parameter.

Everything a user can get wrong is checked here, before anything runs, so a bad recipe runs
nothing and leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shlax_core import params as P
from shlax_core.actions import Action
from shlax_core.backends import Backend
from shlax_core.errors import RecipeError, ShlaxError, place
from shlax_core.recipe import Recipe, Step, Target
from shlax_core.session import Session


@dataclass
class Resolved:
    target: Target
    backend_cls: type[Backend]
    backend_params: Any
    actions: list[Action]


def resolve(recipe: Recipe, names: tuple[str, ...] | list[str], session: Session) -> list[Resolved]:
    """The selected targets, loaded and validated; also the step lists no target uses.

    An error raised here without a location (a plugin's ``prepare`` that knows only a key) gets
    the nearest one: its key under the step or target, else the step's or target's line.
    """
    plugins = session.plugins
    out = []
    for target in recipe.select(names):
        try:
            backend_cls = plugins.load("backend", target.backend, where=recipe.locate(f"{target.path}.backend"))
            bparams = P.build(backend_cls.Params, target.options, path=target.path, locate=recipe.locate,
                              what="option")
        except ShlaxError as exc:
            raise place(exc, recipe.locate, target.path) from None
        out.append(Resolved(target, backend_cls, bparams, [_action(recipe, step, session) for step in target.steps]))
    _check_unused_lists(recipe, session)
    return out


def _action(recipe: Recipe, step: Step, session: Session, prepare: bool = True) -> Action:
    plugins = session.plugins
    try:
        cls = plugins.load("action", step.action, where=step.where)
        data, path = step.data(cls.primary)
        params = P.build(cls.Params, data, path=path, locate=recipe.locate)
        action = cls(params, step, recipe)
        if prepare:
            action.prepare()
        for cache in action.cache_names():
            if not plugins.has("cache", cache):
                raise RecipeError(f"{step.path}: unknown cache {cache!r}", where=step.where,
                                  hint=f"installed caches: {', '.join(plugins.names('cache')) or 'none'}")
    except ShlaxError as exc:
        raise place(exc, recipe.locate, step.path) from None
    return action


def _check_unused_lists(recipe: Recipe, session: Session) -> None:
    """A ``[steps]`` list no target uses is still checked (docs/recipes.md): each step's action is
    loaded by name and its parameters validated, as for a target's steps; nothing runs, and host
    files are not looked at (that is for the target that uses the list)."""
    used = {name for target in recipe.targets.values() for step in target.steps for name in step.via}
    for name, steps in recipe.step_lists.items():
        if name in used:
            continue
        for step in steps:
            if step.action != "use":  # a list it uses is checked on its own
                _action(recipe, step, session, prepare=False)
