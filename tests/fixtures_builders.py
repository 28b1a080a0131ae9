"""A remote builder for buildah targets (``builder = ...``): one real sshd host (tests/fixtures_hosts.py)
in a mount namespace of its own, with a private ``/srv`` holding its image store and a private
``/tmp``, as between real machines. Registered through ``pytest_plugins`` (tests/conftest.py):
the ``builder`` fixture, and the helpers the remote-builder, remote-registry and conformance
tests share."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import BUSYBOX
from fixtures_hosts import Fleet, Host, make_fleet, stop_fleet, wait_port

STORE, RUN = "/srv/shlax-store", "/srv/shlax-run"

#: fixtures_hosts' host setup for a host already set up once (its users exist), plus a private /tmp
_RESTART_SETUP = r"""
set -e
h=$1; cfg=$2; log=$3
mount --make-rprivate /
mount --bind "$h/etc" /etc
for d in home root srv tmp; do mount --bind "$h/$d" "/$d"; done
exec /usr/sbin/sshd -D -f "$cfg" -E "$log"
"""


def restart_with_private_tmp(fleet: Fleet, host: Host, sshd_options: str = "") -> None:
    """Restart a host's sshd with a /tmp of its own (``host.path("/tmp")``), like a real machine:
    a file shlax left in a temporary folder here is not there, and the other way round. The
    fleet's folder must not be under /tmp. ``sshd_options``: lines added to its sshd_config."""
    fleet.stop(host)
    tmp = host.path("/tmp")
    tmp.mkdir(exist_ok=True)
    os.chmod(tmp, 0o1777)
    cfg = fleet.dir / f"{host.name}.sshd_config"
    if sshd_options:
        cfg.write_text(cfg.read_text() + sshd_options)
    host.proc = subprocess.Popen(
        ["unshare", "-m", "--", "sh", "-c", _RESTART_SETUP, "sh", str(host.root), str(cfg),
         str(fleet.dir / f"{host.name}.sshd.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(host.port)


@contextlib.contextmanager
def private_builder(sshd_options: str = "") -> Iterator[tuple[Fleet, Host]]:
    """One sshd host with private /etc, /home, /root, /srv and /tmp; its files live under /var/tmp
    (not /tmp, which it hides) and are removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="shlax-test-builder-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    fleet = make_fleet(base / "fleet", 1)
    try:
        restart_with_private_tmp(fleet, fleet.hosts[0], sshd_options)
        yield fleet, fleet.hosts[0]
    finally:
        stop_fleet(fleet)
        builder_buildah(fleet.hosts[0], "rm", "--all")  # containers this machine opened on its store
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(f"{base}/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def builder(busybox_image: str) -> Iterator[tuple[Fleet, Host]]:
    """One sshd host with a private /tmp, whose private buildah store already holds the busybox
    base image."""
    with private_builder("SetEnv TMPDIR=/tmp\n") as (fleet, host):
        root, run = host.path(STORE), host.path(RUN)
        root.mkdir(parents=True)
        run.mkdir(parents=True)
        subprocess.run(["buildah", "push", "--quiet", busybox_image,
                        f"containers-storage:[overlay@{root}+{run}]{BUSYBOX}"], check=True, capture_output=True)
        yield fleet, host


def builder_buildah(host: Host, *args: str) -> subprocess.CompletedProcess:
    """buildah on the builder's store, seen from this machine."""
    return subprocess.run(["buildah", "--root", str(host.path(STORE)), "--runroot", str(host.path(RUN)), *args],
                          capture_output=True, text=True)


def remote_temp_folders(host: Host) -> list[str]:
    """shlax's temporary folders on the builder (its private /tmp), and any made here by mistake."""
    return glob.glob(f"{host.path('/tmp')}/shlax-remote-*") + glob.glob("/tmp/shlax-remote-*")
