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
from shlax_core.errors import RecipeError
from shlax_core.recipe import Recipe, Target
from shlax_core.session import Session


@dataclass
class Resolved:
    target: Target
    backend_cls: type[Backend]
    backend_params: Any
    actions: list[Action]


def resolve(recipe: Recipe, names: tuple[str, ...] | list[str], session: Session) -> list[Resolved]:
    plugins = session.plugins
    out = []
    for target in recipe.select(names):
        backend_cls = plugins.load("backend", target.backend, where=recipe.locate(f"{target.path}.backend"))
        bparams = P.build(backend_cls.Params, target.options, path=target.path, locate=recipe.locate,
                          what="option")
        actions = []
        for step in target.steps:
            cls = plugins.load("action", step.action, where=step.where)
            data, path = step.data(cls.primary)
            params = P.build(cls.Params, data, path=path, locate=recipe.locate)
            action = cls(params, step, recipe)
            action.prepare()
            for cache in action.cache_names():
                if not plugins.has("cache", cache):
                    raise RecipeError(f"{step.path}: unknown cache {cache!r}", where=step.where,
                                      hint=f"installed caches: {', '.join(plugins.names('cache')) or 'none'}")
            actions.append(action)
        out.append(Resolved(target, backend_cls, bparams, actions))
    return out
