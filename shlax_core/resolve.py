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
from shlax_core.backends import Backend, ImageBackend
from shlax_core.binding import StepPlan, known_keys, plan_step
from shlax_core.buildenv import PSEUDO_STEPS
from shlax_core.variables import has_templates
from shlax_core.errors import RecipeError, ShlaxError, place
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
    """The selected targets, loaded and validated; also the step lists no target uses.

    An error raised here without a location (a plugin's ``prepare`` that knows only a key) gets
    the nearest one: its key under the step or target, else the step's or target's line.
    """
    plugins = session.plugins
    out = []
    for target in recipe.select(names):
        try:
            backend_cls = plugins.load("backend", target.backend, where=recipe.locate(f"{target.path}.backend"))
            bparams = target_params(target, backend_cls, plugins, recipe)
        except ShlaxError as exc:
            raise place(exc, recipe.locate, target.path) from None
        plans = [_plan(step, backend_cls, plugins, recipe) for step in target.steps]
        notified = {name for step in target.steps for name in step.notify}
        handlers = {name: [_plan(step, backend_cls, plugins, recipe) for step in steps]
                    for name, steps in recipe.handlers.items() if name in notified}
        actions = [p.action for p in plans if p.action is not None]
        out.append(Resolved(target, backend_cls, bparams, actions if len(actions) == len(plans) else [],
                            plans, handlers))
    _check_unused_lists(recipe, session)
    return out


def target_params(target: Target, backend_cls: type[Backend], plugins: Any, recipe: Recipe) -> Any:
    """The backend's params of ``target``, validated. The keys plugins own (``shlax_plugin_options``)
    are taken out first, each plugin's validated into its ``Params`` (``target.parts[owner]``); a
    key the backend declares stays the backend's. Errors name the key's ``file:line``."""
    kind = "image" if issubclass(backend_cls, ImageBackend) else "host"
    rest = dict(target.options)
    own = set(P.fields(backend_cls.Params))
    target.parts, target.plugin_keys = {}, set()
    elsewhere: dict[str, str] = {}  # a plugin's key on a kind of target it does not apply to
    known = set(own)
    for declared in plugins.plugin_options():
        if declared.Params is None:
            continue
        keys = set(P.fields(declared.Params)) - own
        if kind not in declared.kinds:
            elsewhere.update({k: f"{declared.owner} ({', '.join(declared.kinds)} targets)" for k in keys})
            continue
        known |= keys
        mine = {k: rest.pop(k) for k in list(rest) if k in keys}
        target.parts[declared.owner] = P.build(declared.Params, mine, path=target.path, locate=recipe.locate,
                                               what="option")
        target.plugin_keys.update(mine)
    for key in rest:
        if key not in own:  # said here, where the plugins' keys are known too
            sugg = P.closest(key, known)
            hint = (f"{key!r} belongs to {elsewhere[key]}" if key in elsewhere else
                    f"did you mean {' or '.join(repr(s) for s in sugg)}?" if sugg else
                    f"known options: {', '.join(sorted(known))}" if known else "this takes no options")
            raise RecipeError(f"unknown option {key!r} in {target.path}", where=recipe.locate(f"{target.path}.{key}"),
                              hint=hint)
    return P.build(backend_cls.Params, rest, path=target.path, locate=recipe.locate, what="option")


def _plan(step: Step, backend_cls: type[Backend], plugins: Any, recipe: Recipe) -> StepPlan:
    if (step.become is not None or step.become_user is not None) and not backend_cls.supports_become:
        raise RecipeError(f"{step.path}: the {backend_cls.name or 'selected'} backend cannot switch users "
                          "per step (become)", where=step.where,
                          hint="remove become/become_user from the step, or use a backend that supports it")
    try:
        plan = plan_step(step, plugins, recipe)
        for cache in plan.cls.caches if plan.action is None else plan.action.cache_names():
            if not plugins.has("cache", cache):
                raise RecipeError(f"{step.path}: unknown cache {cache!r}", where=step.where,
                                  hint=f"installed caches: {', '.join(plugins.names('cache')) or 'none'}")
    except ShlaxError as exc:
        raise place(exc, recipe.locate, step.path) from None
    return plan


def _check_unused_lists(recipe: Recipe, session: Session) -> None:
    """A ``[steps]`` list no target uses is still checked (docs/recipes.md): each step's action is
    loaded by name and its parameters validated, as for a target's steps; nothing runs, and host
    files are not looked at (that is for the target that uses the list). Parameters holding
    templates are checked for unknown names only (their values depend on the machine)."""
    used = {name for target in recipe.targets.values() for step in target.steps for name in step.via}
    plugins = session.plugins
    for name, steps in recipe.step_lists.items():
        if name in used:
            continue
        for step in steps:
            if step.action in ("use", *PSEUDO_STEPS):  # a used list is checked on its own; env/workdir on load
                continue
            try:
                cls = plugins.load("action", step.action, where=step.where)
                data, path = step.data(cls.primary)
                if cls.uses_variables or has_templates(data):
                    known_keys(cls.Params, data, path, recipe)
                else:
                    P.build(cls.Params, data, path=path, locate=recipe.locate)
            except ShlaxError as exc:
                raise place(exc, recipe.locate, step.path) from None
