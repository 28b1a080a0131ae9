"""Image configuration set per target (``[targets.NAME.config]``): shared by image backends."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Optional, Union

from shlax_core import names
from shlax_core.params import doc

#: a Go duration, as Docker's HEALTHCHECK options and buildah take them ("30s", "1m30s", "500ms")
DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


@dataclass
class Healthcheck:
    """Docker's HEALTHCHECK, in the words of its image configuration (and of compose files)."""

    test: Union[list[str], str] = doc('["CMD", PROGRAM, ARGS...] (an argv), ["CMD-SHELL", "COMMAND"] or a '
                                      'string (run by /bin/sh -c), or ["NONE"] (no check, not even the base\'s)')
    interval: str = doc('time between two checks, a duration ("30s", "1m30s")', "30s")
    timeout: str = doc("time after which a check counts as failed", "30s")
    start_period: str = doc("time after the start when failures do not count", "0s")
    retries: int = doc("failures in a row that make the container unhealthy", 3)

    @property
    def argv(self) -> list[str]:
        """The check as the image configuration holds it (``Test``)."""
        return ["CMD-SHELL", self.test] if isinstance(self.test, str) else list(self.test)

    def validate(self) -> Any:
        test = self.argv
        kind = test[0] if test else ""
        if isinstance(self.test, str) and not self.test.strip():
            return "test", "the check is an empty command"
        if kind not in ("CMD", "CMD-SHELL", "NONE"):
            return "test", (f"{test!r} must start with \"CMD\" (an argv follows), \"CMD-SHELL\" (one command line "
                            "follows) or be [\"NONE\"], as in a Dockerfile's HEALTHCHECK or a compose file")
        if kind == "CMD" and len(test) < 2:
            return "test", '["CMD"] needs the program to run: ["CMD", "curl", "-f", "http://localhost/"]'
        if kind == "CMD-SHELL" and (len(test) != 2 or not test[1].strip()):
            return "test", '["CMD-SHELL", COMMAND] takes one command line: ["CMD-SHELL", "curl -f http://x/ || exit 1"]'
        if kind == "NONE" and len(test) != 1:
            return "test", '["NONE"] takes nothing after it'
        for key in ("interval", "timeout", "start_period"):
            if not DURATION.match(getattr(self, key)):
                return key, f"{getattr(self, key)!r} is not a duration like \"30s\", \"1m30s\" or \"500ms\""
        if self.retries < 0:
            return "retries", f"retries {self.retries} must be 0 or more"
        return None


def signal_problem(value: str) -> Optional[str]:
    """A stop signal as Docker takes it: SIGTERM, TERM, SIGRTMIN+3 or a number."""
    if value.isdigit():
        return None if 0 < int(value) <= 64 else f"signal number {value} is not between 1 and 64"
    name = value[3:] if value.startswith("SIG") else value
    if re.fullmatch(r"RTMIN(\+\d+)?|RTMAX(-\d+)?", name) or f"SIG{name}" in signal.Signals.__members__:
        return None
    return f"{value!r} is not a signal (e.g. \"SIGTERM\", \"SIGQUIT\", \"SIGINT\" or a number)"


@dataclass
class ImageConfig:
    """What a container started from the image runs, and how."""

    #: keys a Dockerfile has and a recipe does not take: why, and what to do instead
    refused: ClassVar[dict[str, str]] = {
        "onbuild": ("ONBUILD is not supported: its instructions would run in somebody else's later build, "
                    "unseen where they are written. Put those steps in the recipe that builds on this image "
                    "(a target whose base is this image)"),
    }

    cmd: Optional[list[str]] = doc("default command, an argv list", None)
    entrypoint: Optional[list[str]] = doc("entrypoint, an argv list", None)
    env: dict[str, str] = doc("environment variables", default_factory=dict)
    workdir: Optional[str] = doc("working directory", None)
    user: Optional[str] = doc("user (name or uid[:gid]) the container runs as", None)
    labels: dict[str, str] = doc("OCI labels", default_factory=dict)
    ports: list[str] = doc('exposed ports, e.g. ["8000/tcp"]', default_factory=list)
    healthcheck: Optional[Healthcheck] = doc("how to tell the container is healthy (Docker's HEALTHCHECK)", None)
    stop_signal: Optional[str] = doc('the signal that stops the container, e.g. "SIGQUIT"', None)
    volumes: list[str] = doc("paths a container gets a volume at (VOLUME)", default_factory=list)
    format: Optional[Literal["oci", "docker"]] = doc(
        "image format; default: docker when there is a healthcheck (OCI has none), else oci", None)

    @property
    def image_format(self) -> str:
        """The format the final image is committed in."""
        return self.format or ("docker" if self.healthcheck is not None else "oci")

    def key_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """The canonical ``data`` of this configuration without the keys added after the first
        release that keep their defaults: final images configured before them keep their keys."""
        later = {"healthcheck": None, "stop_signal": None, "volumes": [], "format": None}
        return {k: v for k, v in data.items() if not (k in later and v == later[k])}

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
        if self.stop_signal is not None and signal_problem(self.stop_signal):
            return "stop_signal", signal_problem(self.stop_signal)
        for i, path in enumerate(self.volumes):
            problem = names.absolute_path(path, what="volume")
            if problem:
                return f"volumes[{i}]", problem
        return None
