"""The pluggy hook specifications: every event a plugin may react to.

Named things a recipe picks (actions, backends, caches) are not hooks: they are entry points
loaded by name (see :mod:`shlax_core.plugins`). Hooks are for events and contributions any
plugin may make. A plugin module registers hook implementations with ``@hookimpl``; the module
of every loaded action, backend or cache is registered automatically, and modules listed in the
``shlax.hooks`` entry-point group are registered for every run.

Set ``SHLAX_TRACE_HOOKS=1`` to print every hook call with its arguments and results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.actions import StepContext
    from shlax_core.backends import Backend, Mount
    from shlax_core.recipe import Step, Target

hookspec = pluggy.HookspecMarker("shlax")
hookimpl = pluggy.HookimplMarker("shlax")


@hookspec
def shlax_step_start(target: "Target", step: "Step", host: str) -> None:
    """A step is about to run or be checked.

    :param target: the target being built or applied.
    :param step: the step, with its action name, parameters and recipe location.
    :param host: the label of the backend instance (image name, host name).
    """


@hookspec
def shlax_step_finish(target: "Target", step: "Step", host: str, status: str, elapsed: float) -> None:
    """A step has ended.

    :param status: one of ``cached``, ``done``, ``ok``, ``changed``, ``failed``, ``skipped``.
    :param elapsed: seconds spent on the step.
    """


@hookspec
def shlax_step_mounts(ctx: "StepContext") -> Optional[list["Mount"]]:
    """Extra host folders to mount for one step, for that step only (never committed).

    Every implementation's list is added. Used by cache plugins and by the host-trust
    support to lend a step the host's CA bundle.

    :param ctx: the step context: backend, step, session.
    :return: a list of :class:`~shlax_core.backends.Mount`, or None.
    """


@hookspec
def shlax_step_env(ctx: "StepContext") -> Optional[dict[str, str]]:
    """Extra environment variables for one step's commands (proxies, CA bundle paths).

    Every implementation's mapping is merged. pluggy calls the most recently registered plugin
    first, so on a conflict the plugin registered *first* wins; what the step itself sets (e.g.
    ``env`` of a ``run`` step) wins over every plugin.

    :param ctx: the step context: backend, step, session.
    :return: a mapping of variable names to values, or None.
    """


@hookspec(firstresult=True)
def shlax_base_image(spec: str, backend: "Backend") -> Optional[str]:
    """Provide a base image for a ``base = "SOURCE:ARG"`` that is not a registry reference.

    First non-None result wins. Return a local image reference (ID or name) that the backend
    can start from, building it if needed; return None for specs this plugin does not know.

    :param spec: the ``base`` string from the recipe, e.g. ``debootstrap:bookworm``.
    :param backend: the image backend that needs the base.
    """


@hookspec
def shlax_register_commands(register: Callable[[Any], None]) -> None:
    """Add CLI commands: call ``register(click_command)`` for each.

    Commands are declared in the ``shlax.commands`` entry-point group (name = command name),
    so ``shlax --help`` lists them without importing the plugin; the plugin module is imported
    and this hook called only when one of its commands is invoked.
    """
