"""Resolve a recipe's selected targets: load their backends and actions, validate every parameter.

Everything a user can get wrong is checked here, before anything runs, so a bad recipe runs
nothing and leaves nothing behind. Steps holding templates are validated once their variables
are known (:mod:`shlax_core.binding`), still before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shlax_core import params as P
from shlax_core.actions import Action
from shlax_core.backends import Backend
from shlax_core.binding import StepPlan, plan_step
from shlax_core.errors import RecipeError
from shlax_core.recipe import Recipe, Step, Target
from shlax_core.session import Session


@dataclass
class Resolved:
    target: Target
    backend_cls: type[Backend]
    backend_params: Any
    #: the bound actions, in step order (image targets, once bound; see Runner)
    actions: list[Action]
    plans: list[StepPlan] = field(default_factory=list)
    #: the handlers this target's steps notify, by name, in [handlers] order
    handlers: dict[str, list[StepPlan]] = field(default_factory=dict)


def resolve(recipe: Recipe, names: tuple[str, ...] | list[str], session: Session) -> list[Resolved]:
    plugins = session.plugins
    out = []
    for target in recipe.select(names):
        backend_cls = plugins.load("backend", target.backend, where=recipe.locate(f"{target.path}.backend"))
        bparams = P.build(backend_cls.Params, target.options, path=target.path, locate=recipe.locate,
                          what="option")
        plans = [_plan(step, backend_cls, plugins, recipe) for step in target.steps]
        notified = {name for step in target.steps for name in step.notify}
        handlers = {name: [_plan(step, backend_cls, plugins, recipe) for step in steps]
                    for name, steps in recipe.handlers.items() if name in notified}
        actions = [p.action for p in plans if p.action is not None]
        out.append(Resolved(target, backend_cls, bparams, actions if len(actions) == len(plans) else [],
                            plans, handlers))
    return out


def _plan(step: Step, backend_cls: type[Backend], plugins: Any, recipe: Recipe) -> StepPlan:
    if (step.become is not None or step.become_user is not None) and not backend_cls.supports_become:
        raise RecipeError(f"{step.path}: the {backend_cls.name or 'selected'} backend cannot switch users "
                          "per step (become)", where=step.where,
                          hint="remove become/become_user from the step, or use a backend that supports it")
    plan = plan_step(step, plugins, recipe)
    for cache in plan.cls.caches if plan.action is None else plan.action.cache_names():
        if not plugins.has("cache", cache):
            raise RecipeError(f"{step.path}: unknown cache {cache!r}", where=step.where,
                              hint=f"installed caches: {', '.join(plugins.names('cache')) or 'none'}")
    return plan
