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
    from shlax_core.backends import Backend, Mount, Transfer
    from shlax_core.options import PluginOptions
    from shlax_core.recipe import Step, Target

hookspec = pluggy.HookspecMarker("shlax")
hookimpl = pluggy.HookimplMarker("shlax")


@hookspec
def shlax_step_start(target: "Target", step: "Step", host: str) -> None:
    """A step is about to run (image targets) or be checked (host targets). Cached image steps
    and plans of image targets do not start.

    :param target: the target being built or applied.
    :param step: the step, with its action name, parameters and recipe location.
    :param host: the label of the backend instance (image name, host name).
    """


@hookspec
def shlax_step_finish(target: "Target", step: "Step", host: str, status: str, elapsed: float) -> None:
    """A step has ended: on image targets every step, cached ones included (``shlax plan``
    calls it only for host targets); not when the no-op fast path answers, which loads no plugin.

    :param status: a :class:`shlax_core.status.Status` (a ``str``): ``cached``, ``done`` (image
        targets), ``ok``, ``changed``, ``change`` (host targets; ``change`` in a plan),
        ``failed``, ``unreachable``.
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


@hookspec(firstresult=True)
def shlax_layers_missing(backend: "Backend", keys: list[str]) -> Optional[dict[str, str]]:
    """Layers the local store lacks: a plugin may fetch some (e.g. from a registry cache).

    Called by image builds (never by ``plan``) when the local layer cache does not hold the
    whole target. ``keys`` are in build order, the final image's key last; each key is a hash
    of its parent, so a plugin only needs the *last* key it can provide: that layer contains
    every earlier one. First non-None result wins.

    :param backend: the image backend; fetched layers must be usable by its ``start()``.
    :param keys: the missing step keys after the longest local prefix, final image key last.
    :return: key -> local image ID for each layer made available, or None.
    """


@hookspec
def shlax_layer_committed(backend: "Backend", key: str, image: str) -> None:
    """A step layer (or the final image) was just committed under its key.

    :param backend: the image backend that committed it.
    :param key: the step key (the final image's key for the last call of a build).
    :param image: the local image ID.
    """


@hookspec
def shlax_image_built(backend: "Backend", image: str, keys: list[str]) -> None:
    """An image target succeeded (built, or found whole in the cache) and is tagged.

    :param backend: the image backend, still open.
    :param image: the final image ID.
    :param keys: every step key of the target in build order, the final image key last.
    """


@hookspec(firstresult=True)
def shlax_transfer(backend: "Backend") -> Optional["Transfer"]:
    """How this image backend reaches registries for its own pulls (the base image): TLS and
    credentials, from the plugin that owns the registry options. First non-None result wins;
    with none, the backend's tools decide (``registries.conf``, ``buildah login``).

    :param backend: the image backend about to pull.
    :return: a :class:`~shlax_core.backends.Transfer`, or None.
    """


@hookspec
def shlax_plugin_options() -> Optional["PluginOptions"]:
    """Options this plugin adds to ``shlax run`` and ``shlax plan``, and target keys it owns.

    Called when ``run`` or ``plan`` is parsed or shows its ``--help`` (never for ``shlax --help``)
    and before a recipe's targets are validated; implement it in a ``shlax.hooks`` module, which
    keeps to light imports (click and the core). See :mod:`shlax_core.options`.

    :return: a :class:`~shlax_core.options.PluginOptions`, or None.
    """
