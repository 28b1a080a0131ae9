"""Image run configurations: reading them, and the ``buildah config`` flags that turn one into another.

The final image is the last step's commit with the target's configuration set on it (no extra
commit), so the last step's layer carries that configuration. Every other layer carries the
base image's. A working container started from such a layer is set back to the base's
configuration before anything else: a later step layer, or the final image of a changed
configuration, is then exactly what it would be had the layer been committed bare.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Mapping, Optional, Sequence, Union

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
    health = c.get("Healthcheck") or None
    if health is not None:
        health = {"test": list(health.get("Test") or []),
                  **{k: int(health.get(k) or 0) for k in ("Interval", "Timeout", "StartPeriod", "Retries")}}
    return {"env": env, "labels": labels, "ports": sorted(c.get("ExposedPorts") or {}),
            "cmd": list(c.get("Cmd") or []), "entrypoint": list(c.get("Entrypoint") or []),
            "workdir": c.get("WorkingDir") or "", "user": c.get("User") or "",
            "healthcheck": health, "stop_signal": c.get("StopSignal") or "",
            "volumes": sorted(c.get("Volumes") or {})}


def healthcheck_args(test: Sequence[str], interval: Union[str, int], timeout: Union[str, int],
                     start_period: Union[str, int], retries: int) -> list[str]:
    """``buildah config`` flags setting a healthcheck exactly (durations: Go strings, or
    nanoseconds). buildah splits ``--healthcheck`` into words as a shell would (quotes
    honoured, nothing expanded): each element quoted comes back as that element."""
    def duration(value: Union[str, int]) -> str:
        return f"{value}ns" if isinstance(value, int) else value

    return [f"--healthcheck={' '.join(shlex.quote(t) for t in test)}", f"--healthcheck-interval={duration(interval)}",
            f"--healthcheck-timeout={duration(timeout)}", f"--healthcheck-start-period={duration(start_period)}",
            f"--healthcheck-retries={retries}"]


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
    for volume in current["volumes"]:
        if volume not in wanted["volumes"]:
            args.append(f"--volume={volume}-")
    for volume in wanted["volumes"]:
        if volume not in current["volumes"]:
            args.append(f"--volume={volume}")
    if current["stop_signal"] != wanted["stop_signal"]:
        args.append(f"--stop-signal={wanted['stop_signal']}")
    if current["healthcheck"] != wanted["healthcheck"]:
        h = wanted["healthcheck"]
        args += ["--healthcheck="] if h is None else healthcheck_args(
            h["test"], h["Interval"], h["Timeout"], h["StartPeriod"], h["Retries"])
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
