"""What a service's container (and a pod) should be: the ``podman create`` argv, and a fingerprint.

The fingerprint is one short hash per setting (image ID, command, env, ports, volumes, ...),
stored as the ``shlax.config`` label. ``up`` compares it with the running container's label:
equal means ``ok`` and nothing is touched; a difference names the settings that changed, and the
container is recreated. Values are hashed, never stored: an environment variable's value does
not end up in a label.

Every option that carries recipe data is written ``--option=value`` as one argv element, so a
value can never be read as another option; the command comes after the image, where podman
reads no options.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from shlax_services import names as N
from shlax_services.spec import Service, bind_source


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def fingerprint(fields: dict[str, Any]) -> dict[str, str]:
    return {k: _digest(v) for k, v in sorted(fields.items())}


def changes(label: Optional[str], wanted: dict[str, str]) -> list[str]:
    """The settings whose hash differs from a container's ``shlax.config`` label."""
    try:
        old = json.loads(label) if label else None
    except ValueError:
        old = None
    if not isinstance(old, dict):
        return ["configuration (made by another version of shlax)"]
    return [k for k in sorted(set(wanted) | set(old)) if wanted.get(k) != old.get(k)]


def _seconds(value: float) -> str:
    return f"{value:g}s"


@dataclass
class PodSpec:
    name: str        # as written in the recipe
    full: str        # the podman pod name
    members: list[Service]
    config: dict[str, str]

    def create_args(self, project: N.Project) -> list[str]:
        args = ["pod", "create", f"--name={self.full}",
                *project.labels({N.POD: self.name, N.CONFIG: json.dumps(self.config, sort_keys=True)}),
                f"--network={project.network}", f"--hostname={self.name}"]
        for svc in self.members:
            args.append(f"--network-alias={svc.name}")
        for svc in self.members:
            args += [f"--publish={p.arg()}" for p in svc.ports]
        return args


def pod_spec(project: N.Project, pod: str, members: list[Service]) -> PodSpec:
    fields = {"network": project.network, "aliases": sorted(s.name for s in members),
              "ports": sorted(p.arg() for s in members for p in s.ports)}
    return PodSpec(pod, project.pod(pod), members, fingerprint(fields))


@dataclass
class ContainerSpec:
    service: Service
    name: str
    image: str                 # the image ID to create from
    config: dict[str, str]
    args: list[str]            # `podman create` options, without the image and command

    def create_args(self) -> list[str]:
        return ["create", *self.args, self.image, *(self.service.params.command or [])]


def container_spec(project: N.Project, svc: Service, image: str,
                   pods: dict[str, PodSpec], recipe_dir: Path, limits: Optional[list[str]] = None) -> ContainerSpec:
    """The container ``up`` wants for ``svc``, created from ``image`` (an image ID). ``limits``:
    the ulimits the engine imposes on this machine (see :mod:`shlax_services.engine`); they are
    stored in the container, so a container made under other limits is made again."""
    p = svc.params
    volumes = []
    for vol in svc.volumes:
        source = project.volume(vol.source) if vol.named else bind_source(recipe_dir, vol)
        volumes.append(":".join([source, vol.dest, *([",".join(vol.options)] if vol.options else [])]))
    health = svc.health
    health_fields = None
    if health is not None:
        health_fields = {"test": health.test, "interval": health.interval, "timeout": health.timeout,
                         "retries": health.retries, "start_period": health.start_period}
    pod = pods.get(p.pod) if p.pod else None
    fields = {
        "image": image, "command": p.command, "env": dict(sorted(p.env.items())),
        "ports": [] if pod else [x.arg() for x in svc.ports], "volumes": volumes, "user": p.user,
        "workdir": p.workdir, "restart": p.restart, "healthcheck": health_fields,
        "network": {"pod": pod.full, "pod_config": pod.config} if pod else
                   {"network": project.network, "alias": svc.name},
        "limits": limits,
    }
    config = fingerprint(fields)
    name = project.container(svc.name)
    args = [f"--name={name}", *project.labels({N.SERVICE: svc.name, N.CONFIG: json.dumps(config, sort_keys=True)})]
    if pod:
        args.append(f"--pod={pod.full}")
    else:
        args += [f"--network={project.network}", f"--network-alias={svc.name}", f"--hostname={svc.name}"]
        args += [f"--publish={x.arg()}" for x in svc.ports]
    args += [f"--volume={v}" for v in volumes]
    args += [f"--env={k}={v}" for k, v in sorted(p.env.items())]
    if p.user is not None:
        args.append(f"--user={p.user}")
    if p.workdir is not None:
        args.append(f"--workdir={p.workdir}")
    args.append(f"--restart={p.restart}")
    if health is not None:
        args += [f"--health-cmd={json.dumps(health.test)}", f"--health-interval={_seconds(health.interval)}",
                 f"--health-timeout={_seconds(health.timeout)}", f"--health-retries={health.retries}",
                 f"--health-start-period={_seconds(health.start_period)}"]
    return ContainerSpec(svc, name, image, config, args)
