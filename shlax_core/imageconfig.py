"""Image configuration set per target (``[targets.NAME.config]``): shared by image backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from shlax_core import names
from shlax_core.params import doc


@dataclass
class ImageConfig:
    """What a container started from the image runs, and how."""

    cmd: Optional[list[str]] = doc("default command, an argv list", None)
    entrypoint: Optional[list[str]] = doc("entrypoint, an argv list", None)
    env: dict[str, str] = doc("environment variables", default_factory=dict)
    workdir: Optional[str] = doc("working directory", None)
    user: Optional[str] = doc("user (name or uid[:gid]) the container runs as", None)
    labels: dict[str, str] = doc("OCI labels", default_factory=dict)
    ports: list[str] = doc('exposed ports, e.g. ["8000/tcp"]', default_factory=list)

    def validate(self) -> Any:
        """(key, problem) for a value that would not reach the image as written."""
        problem = names.env_names(self.env)
        if problem:
            return "env", problem
        if self.user is not None and names.owner(self.user, what="user"):
            return "user", names.owner(self.user, what="user")
        if self.workdir is not None and names.absolute_path(self.workdir, what="workdir"):
            return "workdir", names.absolute_path(self.workdir, what="workdir")
        for key in self.labels:
            if not key or key.startswith("-") or "=" in key or any(c.isspace() for c in key):
                return "labels", f"{key!r} is not a label name (e.g. org.opencontainers.image.source)"
        for i, port in enumerate(self.ports):
            number, _, proto = port.partition("/")
            if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
                return f"ports[{i}]", f"port {port!r} is not PORT or PORT/tcp|udp|sctp"
        return None
