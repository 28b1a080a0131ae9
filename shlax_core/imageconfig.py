"""Image configuration set per target (``[targets.NAME.config]``): shared by image backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

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
        for i, port in enumerate(self.ports):
            number, _, proto = port.partition("/")
            if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
                return f"ports[{i}]", f"port {port!r} is not PORT or PORT/tcp|udp|sctp"
        return None
