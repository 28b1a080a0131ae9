"""shlax packages: one ``packages`` step for every distribution, like the original's ``Packages``.

The step reads the target's ``/etc/os-release`` when it runs (an image's base is only known
then) and hands its list to the package-manager action that fits: ``ID`` first, then each
``ID_LIKE`` entry (Linux Mint is ``ubuntu debian``: apt). The manager is an ordinary plugin
(``shlax-plugin-apt``, ``-dnf``, ``-pacman``, ``-apk``); when none fits, or the one that fits is
not installed, the step fails with a user error naming the distribution to install.

It is a plugin, not part of the core, because it has to name the manager plugins.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Optional, Sequence

from shlax_core.actions import StepContext
from shlax_core.errors import PluginError, RecipeError
from shlax_core.packaging import PackageAction, PackageParams

#: os-release ID (or ID_LIKE entry) -> the action that installs its packages
MANAGERS = {"debian": "apt", "ubuntu": "apt", "fedora": "dnf", "rhel": "dnf", "centos": "dnf", "rocky": "dnf",
            "almalinux": "dnf", "ol": "dnf", "amzn": "dnf", "arch": "pacman", "manjaro": "pacman",
            "alpine": "apk"}


class Packages(PackageAction):
    """Install packages with the target's own package manager (apt, dnf, pacman or apk).

    Example: ``{ packages = ["curl", "jq"] }``
    """

    def manager(self, ctx: StepContext) -> str:
        facts = ctx.facts()
        ids = [facts.get("ID", ""), *facts.get("ID_LIKE", "").split()]
        for distro in ids:
            if distro in MANAGERS:
                return MANAGERS[distro]
        raise PluginError(f"no package manager known for this target's distribution "
                          f"({' '.join(filter(None, ids)) or 'no /etc/os-release'})", where=self.step.where,
                          hint=f"use the manager's own action instead of `packages` (known: "
                               f"{', '.join(sorted(set(MANAGERS.values())))})")

    def delegate(self, ctx: StepContext) -> tuple[PackageAction, StepContext]:
        """The manager's action for this step's parameters, and a context with its caches."""
        name = self.manager(ctx)
        try:
            cls: Any = ctx.session.plugins.load("action", name)
        except PluginError as exc:
            raise PluginError(f"this target needs the `{name}` action for `packages`: {exc.message}",
                              where=self.step.where, hint=f"pip install shlax-plugin-{name}") from None
        params = cls.Params(**{f.name: getattr(self.params, f.name) for f in dataclasses.fields(PackageParams)})
        problem = params.validate()
        if problem:
            raise RecipeError(f"{self.step.path}: {problem}", where=self.step.where)
        action = cls(params, self.step, self.recipe)
        sub = dataclasses.replace(ctx, action=action, mounts=list(ctx.mounts), env=dict(ctx.env))
        for cache in map(ctx.cache, action.cache_names()):
            sub.mounts.extend(cache.mounts(sub))
            sub.env.update(cache.env(sub))
        return action, sub

    def check(self, ctx: StepContext) -> Optional[bool]:
        action, sub = self.delegate(ctx)
        return action.check(sub)

    def apply(self, ctx: StepContext) -> Optional[bool]:
        return self._delegated(ctx, lambda action, sub: action.apply(sub))

    def apply_added(self, ctx: StepContext, added: Sequence[str]) -> Optional[bool]:
        return self._delegated(ctx, lambda action, sub: action.apply_added(sub, added))

    def _delegated(self, ctx: StepContext, do: Callable[[PackageAction, StepContext], Optional[bool]]) -> Optional[bool]:
        action, sub = self.delegate(ctx)
        with contextlib.ExitStack() as stack:
            for name in action.cache_names():
                stack.enter_context(ctx.cache(name).lock(sub))
            return do(action, sub)
