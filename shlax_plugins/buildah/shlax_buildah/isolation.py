"""Choosing how ``buildah run`` isolates a step.

buildah's default OCI runtime (crun) fails on hosts with hybrid cgroups ("cgroups in hybrid mode
not supported"), a common CI and older-distribution setup. shlax picks ``chroot`` there by
itself; the target's ``isolation`` option or ``BUILDAH_ISOLATION`` override the choice.
"""

from __future__ import annotations

import os
from typing import Optional

RUNTIME_ERRORS = ("cgroups in hybrid mode", "OCI runtime", "crun:", "runc:", "error running container")


def choose(explicit: Optional[str] = None) -> str:
    if explicit:
        return explicit
    env = os.environ.get("BUILDAH_ISOLATION")
    if env:
        return env
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "chroot"  # cgroup v1 or hybrid: the OCI runtime cannot create the container
    return "oci"


def runtime_failure(tail: list[str]) -> Optional[str]:
    """The runtime's own complaint when a container could not even start, else None."""
    for line in tail:
        if any(sig in line for sig in RUNTIME_ERRORS) and "exit status" not in line:
            return line.strip()
    return None
