"""Image run configurations: reading them, and the ``buildah config`` flags that turn one into another.

The final image is the last step's commit with the target's configuration set on it (no extra
commit), so the last step's layer carries that configuration. Every other layer carries the
base image's. A working container started from such a layer is set back to the base's
configuration before anything else: a later step layer, or the final image of a changed
configuration, is then exactly what it would be had the layer been committed bare.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

#: what ``buildah commit`` adds to every image it writes; not part of anyone's configuration
IDENTITY_LABEL = "io.buildah.version"


def normal(config: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The fields a shlax target configures, in a comparable form."""
    c = config or {}
    env: dict[str, str] = {}
    for item in c.get("Env") or []:
        k, _, v = str(item).partition("=")
        env[k] = v
    labels = {k: v for k, v in (c.get("Labels") or {}).items() if k != IDENTITY_LABEL}
    return {"env": env, "labels": labels, "ports": sorted(c.get("ExposedPorts") or {}),
            "cmd": list(c.get("Cmd") or []), "entrypoint": list(c.get("Entrypoint") or []),
            "workdir": c.get("WorkingDir") or "", "user": c.get("User") or ""}


def reset_args(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``buildah config`` flags making ``current`` (a :func:`normal` form) equal ``wanted``;
    empty when they are already equal."""
    args: list[str] = []
    for flag, key in (("--env", "env"), ("--label", "labels")):
        for k in current[key]:
            if k not in wanted[key]:
                args.append(f"{flag}={k}-")
        for k, v in wanted[key].items():
            if current[key].get(k) != v:
                args.append(f"{flag}={k}={v}")
    for port in current["ports"]:
        if port not in wanted["ports"]:
            args.append(f"--port={port}-")
    for port in wanted["ports"]:
        if port not in current["ports"]:
            args.append(f"--port={port}")
    for flag, key in (("--entrypoint", "entrypoint"), ("--cmd", "cmd")):
        if current[key] != wanted[key]:
            args.append(f"{flag}={json.dumps(wanted[key]) if wanted[key] else ''}")
    for flag, key in (("--workingdir", "workdir"), ("--user", "user")):
        if current[key] != wanted[key]:
            args.append(f"{flag}={wanted[key]}")
    return args
