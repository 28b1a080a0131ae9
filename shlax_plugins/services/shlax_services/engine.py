"""Where podman runs: this machine, or the machine of a host backend (``--on TARGET``).

Every podman call is an argv list. On this machine it goes through :mod:`shlax_core.process`;
on another machine through the host backend's public ``run()`` contract (the ``ssh`` backend, or
any other), so this plugin knows nothing of how that backend connects.

Machines whose limits podman cannot meet (``podman run`` asks for RLIMIT_NOFILE and RLIMIT_NPROC
above the hard limits when the process may not raise them, as on this project's CI machines):
the engine probes once whether the limits can be raised and, when they cannot, points podman at
a ``containers.conf`` of its own (``CONTAINERS_CONF``) with ``default_ulimits`` set to the hard
limits and ``runc`` as the runtime — the approach of the podman backend plugin, in a form that
also covers a pod's infra container (``podman pod create`` has no ``--ulimit``). The limits are
stored in each container's configuration, so plain ``podman start`` works on them later.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Callable, Mapping, Optional, Sequence

from shlax_core import process
from shlax_core.backends import Backend
from shlax_core.errors import ShlaxError, StepFailed

#: what rootful podman asks for (the kernel's maxima it sets for root)
_WANTED_NOFILE = 1048576
_WANTED_NPROC = 4194304

# a fixed script: reads this machine's limits and whether they can be raised; no recipe data
_PROBE = (f"cat /proc/self/limits; "
          f"prlimit --nofile={_WANTED_NOFILE}:{_WANTED_NOFILE} --nproc={_WANTED_NPROC}:{_WANTED_NPROC} true "
          "2>/dev/null && echo SHLAX_RAISE=ok; echo SHLAX_RUNC=$(command -v runc); "
          "echo SHLAX_PODMAN=$(command -v podman)")
# writes stdin to a containers.conf under the login user's cache folder, atomically; prints its path
_WRITE_CONF = ('d="${XDG_CACHE_HOME:-$HOME/.cache}/shlax-services"; mkdir -p "$d" '
               '&& cat > "$d/containers.conf.$$" && mv "$d/containers.conf.$$" "$d/containers.conf" '
               '&& printf "%s" "$d/containers.conf"')


class Engine:
    """podman on one machine. ``runner(argv, stdin, env) -> Exec`` runs a command there."""

    def __init__(self, label: str, runner: Callable[..., process.Exec], remote: bool,
                 streamer: Optional[Callable[..., process.Exec]] = None):
        self.label = label
        self.remote = remote
        self._runner = runner
        self._streamer = streamer
        self.env: dict[str, str] = {}
        self.compat: Optional[list[str]] = None  # the ulimits in use when podman's own fail

    # -- commands ------------------------------------------------------------------------------
    def podman(self, *args: str, stdin: Optional[bytes] = None) -> process.Exec:
        return self._runner(["podman", *args], stdin=stdin, env=self.env)

    def must(self, *args: str, what: str, stdin: Optional[bytes] = None) -> process.Exec:
        """A podman call that must succeed: StepFailed with its output tail otherwise."""
        res = self.podman(*args, stdin=stdin)
        if not res.ok:
            raise StepFailed(what, argv=["podman", *args], returncode=res.returncode, tail=res.tail)
        return res

    def stream(self, args: Sequence[str], output: Callable[[str], None]) -> process.Exec:
        assert self._streamer is not None
        return self._streamer(["podman", *args], output=output, env=self.env)

    def listing(self, *args: str) -> list[dict[str, Any]]:
        """A ``--format json`` listing, read leniently: a remote backend may merge podman's
        warnings (stderr) into its output."""
        res = self.must(*args, "--format", "json", what=f"podman {' '.join(args)} failed on {self.label}")
        return parse_json_list(res.output)

    # -- set-up --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check that podman is there and choose between podman's own limits and ours."""
        probe = self._runner(["sh", "-c", _PROBE], stdin=None, env={})
        text = probe.output if probe.output else "\n".join(probe.tail)
        if "SHLAX_PODMAN=/" not in text:
            raise ShlaxError(f"podman is not available on {self.label}",
                             hint="install it (Debian: apt-get install podman runc catatonit "
                                  "golang-github-containernetworking-plugin-dnsname)")
        if "SHLAX_RAISE=ok" in text:
            return
        limits = parse_limits(text)
        # nproc capped as the podman backend does: runc's init may run below the login's hard limit
        caps = {"nofile": 1 << 20, "nproc": 32768}
        ulimits = [f"{name}={v}:{v}" for name, value in sorted(limits.items())
                   for v in [min(caps[name], int(value)) if value.isdigit() else caps[name]]]
        runc = next((line.split("=", 1)[1].strip() for line in text.splitlines()
                     if line.startswith("SHLAX_RUNC=")), "")
        conf = "[containers]\ndefault_ulimits = [" + ", ".join(json.dumps(u) for u in ulimits) + "]\n"
        if runc:
            conf += '[engine]\nruntime = "runc"\n'
        wrote = self._runner(["sh", "-c", _WRITE_CONF], stdin=conf.encode(), env={})
        path = wrote.output.strip().splitlines()[-1] if wrote.ok and wrote.output.strip() else ""
        if not path:
            raise StepFailed(f"cannot write podman's configuration on {self.label}", argv=["sh", "-c", _WRITE_CONF],
                             returncode=wrote.returncode, tail=wrote.tail)
        self.env = {"CONTAINERS_CONF": path}
        self.compat = ulimits


def parse_limits(text: str) -> dict[str, str]:
    """Hard limits from /proc/self/limits: {"nofile": "20000", "nproc": "96364"}."""
    names = {"Max open files": "nofile", "Max processes": "nproc"}
    out = {}
    for line in text.splitlines():
        for label, name in names.items():
            if line.startswith(label):
                fields = line[len(label):].split()
                if len(fields) >= 2:
                    out[name] = fields[1]
    return out


def parse_json_list(text: str) -> list[dict[str, Any]]:
    """The JSON array in podman's output, skipping any warning lines around it."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("[")), None)
    if start is None:
        return []
    end = next((i for i in range(len(lines) - 1, start - 1, -1) if lines[i].rstrip().endswith("]")), None)
    if end is None:
        return []
    try:
        data = json.loads("\n".join(lines[start:end + 1]))
    except ValueError:
        return []
    return data if isinstance(data, list) else []


# -- the two kinds of engine -------------------------------------------------------------------
def local_engine() -> Engine:
    """podman on this machine: stdout and stderr kept apart, Ctrl-C held while podman finishes
    (``process.quiet``), so an interrupted ``up`` never kills a half-made ``podman create``."""

    def runner(argv: Sequence[str], *, stdin: Optional[bytes], env: Mapping[str, str]) -> process.Exec:
        try:
            return process.quiet(argv, check=False, stdin=stdin, env={**os.environ, **env} if env else None)
        except FileNotFoundError:
            return process.Exec(list(argv), 127, "", [f"{argv[0]}: command not found"])

    def streamer(argv: Sequence[str], *, output: Callable[[str], None], env: Mapping[str, str]) -> process.Exec:
        return process.run(argv, check=False, output=output, env={**os.environ, **env})

    return Engine("this machine", runner, remote=False, streamer=streamer)


def host_engine(backend: Backend) -> Engine:
    """podman on a host backend's machine, through its ``run()`` contract only."""

    def runner(argv: Sequence[str], *, stdin: Optional[bytes], env: Mapping[str, str]) -> process.Exec:
        return backend.run(list(argv), env=dict(env) or None, stdin=stdin, check=False, capture=True)

    def streamer(argv: Sequence[str], *, output: Callable[[str], None], env: Mapping[str, str]) -> process.Exec:
        return backend.run(list(argv), env=dict(env) or None, check=False, output=output)

    return Engine(backend.label, runner, remote=True, streamer=streamer)


def save_image(image_id: str) -> bytes:
    """This machine's image as a docker-archive (the same image ID once loaded elsewhere)."""
    proc = subprocess.run(["podman", "save", "--format", "docker-archive", image_id],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise StepFailed(f"podman save {image_id[:12]} failed", argv=["podman", "save", image_id],
                         returncode=proc.returncode, tail=proc.stderr.decode("utf-8", "replace").splitlines()[-20:])
    return proc.stdout
