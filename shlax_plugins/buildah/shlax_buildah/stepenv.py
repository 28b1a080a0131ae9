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
    from shlax_buildah.backend import BuildahBackend

    if isinstance(ctx.backend, BuildahBackend):
        return repro.step_env()
    return None
