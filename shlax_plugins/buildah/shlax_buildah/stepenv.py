"""The environment every step of a buildah build gets from the backend itself.

Registered when a buildah target is built (not at import: the fast path imports the backend
module and nothing more, pluggy included).
"""

from __future__ import annotations

from typing import Any, Optional

from shlax_core.hookspecs import hookimpl

from shlax_buildah import repro


@hookimpl
def shlax_step_env(ctx: Any) -> Optional[dict[str, str]]:
    # the backend's own module registers this one: its class is recognised by module, not imported
    if type(ctx.backend).__module__ == "shlax_buildah.backend":
        return repro.step_env()
    return None
