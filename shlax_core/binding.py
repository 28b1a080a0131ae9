"""Steps bound to one machine: template parameters rendered with that machine's variables.

:func:`plan_step` loads a step's action and, when nothing in the step can vary, makes its one
action instance for every machine at once (most steps: no Jinja2 involved). A step holding a
template string, or an action that reads the variables itself (``template``), is kept as data
and :meth:`Binder.bind` makes an instance per machine: render every template string, then
validate the parameters exactly as a literal step is validated, then ``prepare()``.
Rendering happens before the parameters are canonicalised, so a variable's value is part of
the step's cache key wherever it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from shlax_core import params as P
from shlax_core.actions import Action
from shlax_core.backends import Become
from shlax_core.errors import RecipeError
from shlax_core.recipe import Recipe, Step
from shlax_core.variables import has_templates, is_template


@dataclass
class StepPlan:
    """One step of a target, ready to bind."""

    step: Step
    cls: type[Action]
    data: dict[str, Any]
    path: str
    #: the instance for every machine, when nothing in the step varies; None: bind per machine
    action: Optional[Action] = None

    def describe(self) -> str:
        """A label before binding (the bound action's describe() once bound)."""
        return self.action.describe() if self.action is not None else self.step.action


def plan_step(step: Step, plugins: Any, recipe: Recipe) -> StepPlan:
    cls = plugins.load("action", step.action, where=step.where)
    data, path = step.data(cls.primary)
    if cls.uses_variables or has_templates(data):
        known_keys(cls.Params, data, path, recipe)
        return StepPlan(step, cls, data, path)
    params = P.build(cls.Params, data, path=path, locate=recipe.locate)
    action = cls(params, step, recipe)
    action.prepare()
    return StepPlan(step, cls, data, path, action)


def known_keys(cls: type, data: dict[str, Any], path: str, recipe: Recipe) -> None:
    """Unknown parameter names are mistakes whatever the variables: report them now."""
    known = P.fields(cls)
    for key in data:
        if key not in known:
            sugg = P.closest(key, known)
            raise RecipeError(f"unknown parameter {key!r} in {path}", where=recipe.locate(f"{path}.{key}"),
                              hint=f"did you mean {' or '.join(repr(s) for s in sugg)}?" if sugg
                              else f"known parameters: {', '.join(sorted(known))}")


def become_of(step: Step) -> Optional[Become]:
    """The step's ``become``/``become_user`` options; None when it sets neither."""
    if step.become is None and step.become_user is None:
        return None
    return Become(enabled=step.become is not False, user=step.become_user)


class Binder:
    """Makes per-machine action instances; one per run (it holds the template environment)."""

    def __init__(self, recipe: Recipe, session: Any):
        self.recipe = recipe
        self.session = session
        self._templates: Any = None

    @property
    def templates(self) -> Any:
        if self._templates is None:
            from shlax_core.templating import Templates  # Jinja2 only when a recipe needs it

            self._templates = Templates(self.recipe.dir)
        return self._templates

    def bind(self, plan: StepPlan, variables: Mapping[str, Any]) -> Action:
        if plan.action is not None:
            return plan.action
        data = self._render(plan.data, plan.path, variables)
        params = P.build(plan.cls.Params, data, path=plan.path, locate=self.recipe.locate)
        action = plan.cls(params, plan.step, self.recipe)
        action.variables = variables
        action.templates = self.templates
        action.prepare()
        return action

    def _render(self, data: Any, key: str, variables: Mapping[str, Any]) -> Any:
        if isinstance(data, str):
            if not is_template(data):
                return data
            return self.templates.render(data, variables, where=self.recipe.locate(key), key=key)
        if isinstance(data, list):
            return [self._render(v, f"{key}[{i}]", variables) for i, v in enumerate(data)]
        if isinstance(data, dict):
            return {k: self._render(v, f"{key}.{k}", variables) for k, v in data.items()}
        return data

    def watched(self) -> dict[str, Any]:
        """Files templates read (signatures before reading), for the fast path's guards."""
        return dict(self._templates.watched) if self._templates is not None else {}
