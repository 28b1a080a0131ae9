"""What exists on the engine's machine: this recipe's objects (by label) and every name in use.

Four listings (containers, pods, volumes, networks), whatever the number of services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from shlax_core.errors import ShlaxError

from shlax_services import names as N
from shlax_services.engine import Engine

_HEALTH = re.compile(r"\((healthy|unhealthy|starting)\)")


def _labels(row: dict[str, Any]) -> dict[str, str]:
    return row.get("Labels") or row.get("labels") or {}


def _name(row: dict[str, Any]) -> str:
    names = row.get("Names")
    if isinstance(names, list) and names:
        return names[0]
    return row.get("Name") or row.get("name") or ""


@dataclass
class Container:
    id: str
    name: str
    service: str
    state: str          # created, running, exited, paused, ...
    config: Optional[str]
    image_id: str
    status: str         # podman's human status ("Up 3 minutes (healthy)")
    ports: list[str] = field(default_factory=list)
    pod: str = ""

    @property
    def health(self) -> str:
        m = _HEALTH.search(self.status)
        return m.group(1) if m else ""


@dataclass
class Observed:
    containers: dict[str, Container]        # this recipe's, by service
    extra: list[Container]                  # this recipe's, for services no longer in it
    pods: dict[str, dict[str, Any]]         # this recipe's, by pod name as written
    volumes: set[str]                       # this recipe's volume names (full)
    network: bool                           # this recipe's network exists
    taken: dict[str, set[str]]              # names in use by others: kind -> names


def _ports(row: dict[str, Any]) -> list[str]:
    out = []
    for p in row.get("Ports") or []:
        host = p.get("host_port")
        ip = p.get("host_ip") or ""
        span = int(p.get("range") or 1)
        text = f"{ip + ':' if ip else ''}{host}->{p.get('container_port')}/{p.get('protocol', 'tcp')}"
        out.append(text if span <= 1 else f"{text} (+{span - 1})")
    return out


def observe(engine: Engine, project: N.Project, services: set[str]) -> Observed:
    rid = project.recipe_id
    containers: dict[str, Container] = {}
    extra: list[Container] = []
    taken: dict[str, set[str]] = {"container": set(), "pod": set(), "volume": set(), "network": set()}
    for row in engine.listing("ps", "-a"):
        labels = _labels(row)
        name = _name(row)
        if row.get("IsInfra"):  # a pod's own container: it goes with its pod
            taken["container"].add(name)
            continue
        if labels.get(N.RECIPE) != rid:
            taken["container"].add(name)
            continue
        c = Container(row.get("Id", ""), name, labels.get(N.SERVICE, ""), str(row.get("State", "")).lower(),
                      labels.get(N.CONFIG), row.get("ImageID", ""), str(row.get("Status", "")), _ports(row),
                      row.get("PodName") or "")
        if c.service in services and c.service not in containers and c.name == project.container(c.service):
            containers[c.service] = c
        else:
            extra.append(c)
    pods: dict[str, dict[str, Any]] = {}
    for row in engine.listing("pod", "ps"):
        labels = _labels(row)
        if labels.get(N.RECIPE) == rid and labels.get(N.POD):
            pods[labels[N.POD]] = row
        else:
            taken["pod"].add(_name(row))
    volumes = set()
    for row in engine.listing("volume", "ls"):
        (volumes if _labels(row).get(N.RECIPE) == rid else taken["volume"]).add(_name(row))
    network = False
    for row in engine.listing("network", "ls"):
        if _name(row) == project.network and _labels(row).get(N.RECIPE) == rid:
            network = True
        else:
            taken["network"].add(_name(row))
    return Observed(containers, extra, pods, volumes, network, taken)


def refuse_taken(observed: Observed, wanted: dict[str, list[str]], where: str) -> None:
    """A name this recipe needs is held by something shlax did not make for it: stop before
    anything changes (shlax never touches objects that are not its own)."""
    for kind, names in wanted.items():
        for name in names:
            if name in observed.taken.get(kind, set()):
                raise ShlaxError(f"a {kind} named {name!r} exists and was not made by this recipe",
                                 where=where,
                                 hint=f"shlax only touches its own: remove or rename that {kind} yourself "
                                      f"(podman {kind} rm {name}), or move the recipe (names come from its folder)")
