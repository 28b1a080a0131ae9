"""The ``[services.NAME]`` tables: parsed and validated before anything runs, errors at file:line.

The core keeps the raw tables (``recipe.sections["services"]``); this module turns them into
:class:`Service` objects with :func:`shlax_core.params.build` (the dataclass validation actions
use), then checks what only the whole set can tell: unknown services or targets, cycles in
``depends_on``, two services publishing one host port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from shlax_core import params as P
from shlax_core.errors import RecipeError
from shlax_core.names import CONTAINER, ENV_NAME
from shlax_core.params import doc
from shlax_core.recipe import Recipe

SECTION = "services"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ENV = ENV_NAME
_VOLUME = CONTAINER  # podman's grammar for every name
_PORT = re.compile(r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):)?(?:(?P<host>\d+):)?"
                   r"(?P<ctr>\d+)(?:/(?P<proto>tcp|udp|sctp))?$")
_SHELLISH = re.compile(r"[\s;&|<>()$`\\\"'*?#~]")
_VOLUME_OPTS = {"ro", "rw", "z", "Z", "U"}


@dataclass
class HealthParams:
    """A healthcheck: the command, and how ``up`` and podman judge it."""

    test: list[str] = doc("the check: an argv list run inside the container; exit 0 = healthy")
    interval: float = doc("seconds between checks (podman's interval, and `up`'s while it waits)", 2.0)
    timeout: float = doc("seconds one check may take", 10.0)
    retries: int = doc("failures in a row before podman marks the container unhealthy", 3)
    start_period: float = doc("seconds after a start during which podman does not count failures", 0.0)
    wait: float = doc("seconds `up` waits for the service to become healthy before it fails", 60.0)

    def validate(self) -> Optional[tuple[str, str]]:
        if not self.test or not self.test[0]:
            return "test", "the healthcheck needs a command (an argv list)"
        if len(self.test) == 1 and _SHELLISH.search(self.test[0]):
            return "test", ("a one-word healthcheck runs through the image's /bin/sh (podman's rule): "
                            "write the command as a list of words, e.g. [\"wget\", \"-q\", \"http://localhost/\"]")
        for key in ("interval", "timeout", "wait"):
            if getattr(self, key) <= 0:
                return key, "must be more than 0 seconds"
        if self.start_period < 0:
            return "start_period", "must be 0 or more seconds"
        if self.retries < 1:
            return "retries", "must be 1 or more"
        return None


@dataclass
class ServiceParams:
    """One ``[services.NAME]`` table."""

    image: str = doc('a target of this recipe (built first when stale), or an image reference with a '
                     'registry or tag ("localhost/db:1", "docker.io/library/postgres:16")')
    command: Optional[list[str]] = doc("the argv to run instead of the image's command", None)
    env: dict[str, str] = doc("environment variables", default_factory=dict)
    ports: list[str] = doc('published ports: "[IP:]HOST:CONTAINER[/tcp|udp|sctp]"', default_factory=list)
    volumes: list[str] = doc('"NAME:/path[:ro]" (a named volume of this recipe, created on first use), '
                             '"./dir:/path[:ro]" or "/abs/dir:/path" (a host folder)', default_factory=list)
    depends_on: list[str] = doc("services started (and healthy, when they have a healthcheck) before this one",
                                default_factory=list)
    healthcheck: Union[list[str], HealthParams, None] = doc(
        "an argv list, or { test = [...], interval, timeout, retries, start_period, wait }", None)
    pod: Optional[str] = doc("a pod shared with other services (one network namespace: they reach each "
                             "other on localhost; ports are published on the pod)", None)
    user: Optional[str] = doc("the user the command runs as (name or uid[:gid])", None)
    workdir: Optional[str] = doc("the working directory of the command (absolute)", None)
    restart: Literal["no", "always", "on-failure", "unless-stopped"] = doc("podman's restart policy", "no")
    stop_timeout: int = doc("seconds `down` (and a recreation) waits after SIGTERM before SIGKILL", 10)

    def validate(self) -> Optional[tuple[str, str]]:
        if not self.image or self.image.startswith("-") or _SHELLISH.search(self.image):
            return "image", f"{self.image!r} is not a target name or an image reference"
        if self.command is not None and not self.command:
            return "command", "an empty command: leave `command` out to run the image's own"
        for key in self.env:
            if not _ENV.match(key):
                return f"env.{key}", "an environment variable name has letters, digits and '_'"
        for i, port in enumerate(self.ports):
            problem = port_problem(port)
            if problem:
                return f"ports[{i}]", problem
        for i, vol in enumerate(self.volumes):
            problem = volume_problem(vol)
            if problem:
                return f"volumes[{i}]", problem
        if self.pod is not None and not _NAME.match(self.pod):
            return "pod", f"pod name {self.pod!r} may hold only lower-case letters, digits, '_' and '-'"
        if self.user is not None and (not self.user or self.user.startswith("-") or _SHELLISH.search(self.user)):
            return "user", f"{self.user!r} is not a user name or uid[:gid]"
        if self.workdir is not None and not self.workdir.startswith("/"):
            return "workdir", "the working directory must be an absolute path"
        if self.stop_timeout < 0:
            return "stop_timeout", "must be 0 or more seconds"
        if isinstance(self.healthcheck, list):  # the short form: the same checks as the table's
            problem = HealthParams(test=self.healthcheck).validate()
            if problem:
                return "healthcheck", problem[1]
        return None


@dataclass(frozen=True)
class Port:
    ip: str
    host: Optional[int]
    container: int
    proto: str

    def arg(self) -> str:
        host = f"{self.host}:" if self.host is not None else (":" if self.ip else "")
        return f"{self.ip + ':' if self.ip else ''}{host}{self.container}/{self.proto}"


@dataclass(frozen=True)
class Volume:
    source: str          # a volume name, or a host path as written
    dest: str
    options: tuple[str, ...]

    @property
    def named(self) -> bool:
        return not self.source.startswith(("/", "./", "../")) and self.source not in (".", "..")


def port_problem(text: str) -> Optional[str]:
    m = _PORT.match(text)
    if not m:
        return (f"port {text!r} is not \"[IP:]HOST:CONTAINER[/tcp|udp|sctp]\" "
                "(e.g. \"8000:80\", \"127.0.0.1:5432:5432\", \"53:53/udp\")")
    for part in ("host", "ctr"):
        if m.group(part) is not None and not 0 < int(m.group(part)) < 65536:
            return f"port {m.group(part)} in {text!r} is out of range (1-65535)"
    ip = m.group("ip")
    if ip and not ip.startswith("[") and any(int(b) > 255 for b in ip.split(".")):
        return f"{ip!r} is not an IPv4 address"
    return None


def parse_port(text: str) -> Port:
    m = _PORT.match(text)
    assert m is not None
    host = m.group("host")
    return Port(m.group("ip") or "", int(host) if host else None, int(m.group("ctr")), m.group("proto") or "tcp")


def volume_problem(text: str) -> Optional[str]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        return f"volume {text!r} is not \"SOURCE:/path[:OPTIONS]\" (SOURCE: a volume name or a host folder)"
    source, dest = parts[0], parts[1]
    if not dest.startswith("/"):
        return f"the mount point {dest!r} in {text!r} must be an absolute path"
    if source.startswith("-") or not source:
        return f"{source!r} is not a volume name or a host folder"
    if not source.startswith(("/", "./", "../")) and source not in (".", "..") and not _VOLUME.match(source):
        return (f"{source!r} is not a volume name (letters, digits, '_', '.', '-') nor a host folder "
                "(start it with / or ./)")
    if len(parts) == 3:
        bad = [o for o in parts[2].split(",") if o not in _VOLUME_OPTS]
        if bad:
            return f"unknown volume option {bad[0]!r} in {text!r} (known: {', '.join(sorted(_VOLUME_OPTS))})"
    return None


def parse_volume(text: str) -> Volume:
    parts = text.split(":")
    return Volume(parts[0], parts[1], tuple(parts[2].split(",")) if len(parts) == 3 else ())


@dataclass
class Service:
    """A validated service, with where it stands in the recipe."""

    name: str
    params: ServiceParams
    path: str                     # "services.web"
    where: str                    # "recipe.toml:12"
    target: Optional[str] = None  # the recipe target that builds its image, if any
    ports: list[Port] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)

    @property
    def health(self) -> Optional[HealthParams]:
        hc = self.params.healthcheck
        if hc is None or isinstance(hc, HealthParams):
            return hc
        return HealthParams(test=list(hc))


@dataclass
class Services:
    """Every service of a recipe, in recipe order."""

    recipe: Recipe
    services: dict[str, Service]

    def select(self, names: tuple[str, ...] | list[str]) -> list[Service]:
        """The named services, everything they depend on and the other members of their pods, in
        start order (all when none)."""
        for name in names:
            if name not in self.services:
                sugg = P.closest(name, self.services)
                raise RecipeError(f"unknown service {name!r}", where=self.recipe.shown,
                                  hint=(f"did you mean {sugg[0]!r}? " if sugg else "")
                                  + f"services: {', '.join(self.services) or 'none'}")
        wanted: set[str] = set()

        def add(name: str) -> None:
            if name not in wanted:
                wanted.add(name)
                svc = self.services[name]
                mates = [s.name for s in self.services.values() if svc.params.pod and s.params.pod == svc.params.pod]
                for other in [*svc.params.depends_on, *mates]:  # a pod is made (again) with all of its members
                    add(other)

        for name in names or list(self.services):
            add(name)
        return [s for s in self.order() if s.name in wanted]

    def order(self) -> list[Service]:
        """Dependencies first; otherwise recipe order."""
        done: list[Service] = []
        seen: set[str] = set()

        def visit(s: Service) -> None:
            if s.name in seen:
                return
            seen.add(s.name)
            for dep in s.params.depends_on:
                visit(self.services[dep])
            done.append(s)

        for s in self.services.values():
            visit(s)
        return done

    def dependents(self, name: str) -> list[str]:
        return [s.name for s in self.services.values() if name in s.params.depends_on]

    def pods(self) -> dict[str, list[Service]]:
        out: dict[str, list[Service]] = {}
        for s in self.services.values():
            if s.params.pod:
                out.setdefault(s.params.pod, []).append(s)
        return out


def load(recipe: Recipe) -> Services:
    """The [services.NAME] tables: containers, pods and networks that run what the recipe builds."""
    raw = recipe.sections.get(SECTION, {})
    loc = recipe.locate
    if not isinstance(raw, dict):
        raise RecipeError("`services` must be a table of services", where=loc(SECTION),
                          hint='write [services.web] then image = "app"')
    services: dict[str, Service] = {}
    for name, data in raw.items():
        path = f"{SECTION}.{name}"
        if not _NAME.match(name):
            raise RecipeError(f"service name {name!r} may hold only lower-case letters, digits, '_' and '-' "
                              "(it is the name other services reach it by)", where=loc(path))
        if not isinstance(data, dict):
            raise RecipeError(f"{path} must be a table", where=loc(path), hint=f"write [{path}]")
        params = P.build(ServiceParams, data, path=path, locate=loc, what="key")
        svc = Service(name, params, path, loc(path))
        svc.ports = [parse_port(p) for p in params.ports]
        svc.volumes = [parse_volume(v) for v in params.volumes]
        svc.target = _image_target(recipe, svc)
        services[name] = svc
    result = Services(recipe, services)
    _check_links(result)
    _check_ports(result)
    _check_binds(result)
    return result


def _image_target(recipe: Recipe, svc: Service) -> Optional[str]:
    image = svc.params.image
    if image in recipe.targets:
        return image
    if not any(c in image for c in "/:@"):
        sugg = P.closest(image, recipe.targets)
        raise RecipeError(
            f"{svc.path}.image: {image!r} is not a target of this recipe", where=recipe.locate(f"{svc.path}.image"),
            hint=(f"did you mean {sugg[0]!r}? " if sugg else "")
            + f"targets: {', '.join(recipe.targets) or 'none'}; an image from elsewhere needs its full "
            "reference, e.g. \"localhost/db:latest\" or \"docker.io/library/postgres:16\"")
    return None


def _check_links(s: Services) -> None:
    loc = s.recipe.locate
    for svc in s.services.values():
        for i, dep in enumerate(svc.params.depends_on):
            if dep not in s.services:
                sugg = P.closest(dep, s.services)
                raise RecipeError(f"{svc.path}.depends_on: unknown service {dep!r}",
                                  where=loc(f"{svc.path}.depends_on[{i}]"),
                                  hint=(f"did you mean {sugg[0]!r}? " if sugg else "")
                                  + f"services: {', '.join(s.services)}")
            if dep == svc.name:
                raise RecipeError(f"{svc.path}.depends_on: a service cannot depend on itself",
                                  where=loc(f"{svc.path}.depends_on[{i}]"))
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = chain[chain.index(name):] + [name]
            first = s.services[cycle[0]]
            raise RecipeError(f"services depend on each other in a cycle: {' -> '.join(cycle)}",
                              where=loc(f"{first.path}.depends_on"),
                              hint="remove one of these depends_on entries")
        state[name] = 1
        for dep in s.services[name].params.depends_on:
            visit(dep, [*chain, name])
        state[name] = 2

    for name in s.services:
        visit(name, [])


def _check_ports(s: Services) -> None:
    """Two services publishing the same host port (same protocol, overlapping addresses) would
    make the second fail at start: say so before anything starts."""
    loc = s.recipe.locate
    seen: dict[tuple[int, str], list[tuple[str, str, str]]] = {}
    for svc in s.services.values():
        for i, port in enumerate(svc.ports):
            if port.host is None:
                continue
            for ip, other, text in seen.get((port.host, port.proto), []):
                if not ip or not port.ip or ip == port.ip:
                    raise RecipeError(
                        f"{svc.path}.ports: host port {port.host}/{port.proto} is already published by "
                        f"service {other!r} ({text!r})", where=loc(f"{svc.path}.ports[{i}]"),
                        hint="give each service its own host port")
            seen.setdefault((port.host, port.proto), []).append((port.ip, svc.name, svc.params.ports[i]))


def _check_binds(s: Services) -> None:
    """A host folder written relative to the recipe must exist (podman would refuse to start)."""
    loc = s.recipe.locate
    for svc in s.services.values():
        for i, vol in enumerate(svc.volumes):
            if not vol.named and not vol.source.startswith("/"):
                path = (s.recipe.dir / vol.source).resolve()
                if not path.exists():
                    raise RecipeError(f"{svc.path}.volumes: the host folder {vol.source!r} does not exist "
                                      f"({path})", where=loc(f"{svc.path}.volumes[{i}]"),
                                      hint="create it, or use a named volume (\"NAME:/path\")")


def bind_source(recipe_dir: Path, vol: Volume) -> str:
    """A host folder's absolute path (relative ones are relative to the recipe)."""
    if vol.source.startswith("/"):
        return vol.source
    return str((recipe_dir / vol.source).resolve())

