"""Real SSH hosts for the host-backend tests and the fleet benchmark.

Each "host" is a real ``sshd`` on its own loopback port, started inside its own mount namespace
(``unshare -m``) with private copies of ``/etc``, ``/home``, ``/root`` and ``/srv``: a user created
or a file copied on one host is invisible to the others and to this machine. Every host has its
own host key and a private, empty ``/usr/local/sbin`` (first on root's and sudo's PATH: tests
put fake commands there, e.g. a ``systemctl``, since these hosts run no systemd). The client
side (key, ssh_config with one ``Host hN`` alias per host, known_hosts) lives in a private
folder, so nothing of the user's own ~/.ssh is read or changed.

Each host also gets a ``deploy`` user (login shell /bin/sh) with passwordless sudo, and a
``nosudo`` user without it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pytest

# runs inside the new mount namespace as root, before sshd: a fixed script, arguments in "$@"
_HOST_SETUP = r"""
set -e
h=$1; cfg=$2; log=$3
mount --make-rprivate /
mount --bind "$h/etc" /etc
for d in home root srv; do mount --bind "$h/$d" "/$d"; done
# a private, empty /usr/local/sbin (first on root's and sudo's PATH): tests put fakes there
mount --bind "$h/usr/local/sbin" /usr/local/sbin
useradd --create-home --shell /bin/sh deploy
usermod -p '*' deploy
echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/shlax-deploy
chmod 0440 /etc/sudoers.d/shlax-deploy
useradd --create-home --shell /bin/sh nosudo
usermod -p '*' nosudo
exec /usr/sbin/sshd -D -f "$cfg" -E "$log"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd on port {port} did not start")


@dataclass
class Host:
    name: str
    port: int
    root: Path             # the host's private tree: root/etc, root/home, root/root, root/srv
    host_key: Path
    proc: Optional[subprocess.Popen] = None

    def path(self, inside: str) -> Path:
        """Where a path of the host (under /etc, /home, /root, /srv or /usr/local/sbin) lives on
        this machine."""
        return self.root / inside.lstrip("/")


@dataclass
class Fleet:
    dir: Path
    key: Path
    ssh_config: Path
    known_hosts: Path
    hosts: list[Host] = field(default_factory=list)

    def names(self, n: Optional[int] = None) -> list[str]:
        return [h.name for h in self.hosts[:n]]

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def target_options(self) -> str:
        """TOML lines pointing an ssh target at this fleet's private client files."""
        return f'ssh_config = "{self.ssh_config}"\n'

    def stop(self, host: Host) -> None:
        if host.proc is not None and host.proc.poll() is None:
            host.proc.terminate()
            try:
                host.proc.wait(10)
            except subprocess.TimeoutExpired:
                host.proc.kill()
                host.proc.wait()
        host.proc = None

    def start(self, host: Host) -> None:
        cfg = self.dir / f"{host.name}.sshd_config"
        log = self.dir / f"{host.name}.sshd.log"
        host.proc = subprocess.Popen(
            ["unshare", "-m", "--", "sh", "-c", _HOST_SETUP, "sh", str(host.root), str(cfg), str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(host.port)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "shlax-test", "-f", str(path)],
                   check=True)


def make_fleet(base: Path, count: int) -> Fleet:
    """Start ``count`` hosts h1..hN; the caller stops them with :func:`stop_fleet`."""
    for tool in ("sshd", "ssh", "unshare", "useradd", "sudo"):
        assert shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists(), f"{tool} is missing (.ci/setup.d/30-hosts.sh)"
    os.makedirs("/run/sshd", exist_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    key = base / "id_ed25519"
    _keygen(key)
    authorized = base / "authorized_keys"
    authorized.write_text((base / "id_ed25519.pub").read_text())
    fleet = Fleet(base, key, base / "ssh_config", base / "known_hosts")
    known, config = [], []
    for i in range(1, count + 1):
        name = f"h{i}"
        root = base / name
        root.mkdir()
        subprocess.run(["cp", "-a", "/etc", str(root / "etc")], check=True)
        # read by sshd as the logging-in user: must sit on a path every user can traverse
        (root / "etc" / "ssh").mkdir(exist_ok=True)
        shutil.copy(authorized, root / "etc" / "ssh" / "shlax_authorized_keys")
        os.chmod(root / "etc" / "ssh" / "shlax_authorized_keys", 0o644)
        for d in ("home", "root", "srv", "usr/local/sbin"):
            (root / d).mkdir(parents=True)
        os.chmod(root / "root", 0o700)
        host = Host(name, free_port(), root, base / f"{name}_host_key")
        _keygen(host.host_key)
        (base / f"{name}.sshd_config").write_text(
            f"Port {host.port}\nListenAddress 127.0.0.1\nHostKey {host.host_key}\n"
            f"PidFile {base}/{name}.pid\nAuthorizedKeysFile /etc/ssh/shlax_authorized_keys\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "StrictModes no\nMaxSessions 100\nMaxStartups 100:30:200\nPrintMotd no\nUseDNS no\n"
            "Subsystem sftp internal-sftp\n")
        known.append(f"[127.0.0.1]:{host.port} {(base / f'{name}_host_key.pub').read_text().split(' ')[0]} "
                     f"{(base / f'{name}_host_key.pub').read_text().split(' ')[1]}")
        config.append(f"Host {name}\n  HostName 127.0.0.1\n  Port {host.port}\n  User root\n")
        fleet.hosts.append(host)
    fleet.known_hosts.write_text("\n".join(known) + "\n")
    fleet.ssh_config.write_text(
        "\n".join(config) + f"\nHost *\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {fleet.known_hosts}\n  StrictHostKeyChecking yes\n")
    for host in fleet.hosts:
        fleet.start(host)
    return fleet


def close_masters(fleet: Fleet) -> None:
    """End the ssh master connections shlax kept open to this fleet's hosts (ControlPersist)."""
    try:
        from shlax_ssh import control
    except ImportError:
        return
    ports = {h.port for h in fleet.hosts}
    for m in control.masters():
        if str(m.get("ssh_config") or "").startswith(str(fleet.dir)) or m.get("port") in ports \
                or str(m.get("known_hosts") or "").startswith(str(fleet.dir)):
            control.close(m["socket"])


def stop_fleet(fleet: Fleet) -> None:
    close_masters(fleet)
    for host in fleet.hosts:
        fleet.stop(host)


@pytest.fixture(scope="session")
def ssh_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Four real sshd hosts h1..h4 (see the module docstring); stopped at the end of the session."""
    fleet = make_fleet(tmp_path_factory.mktemp("fleet"), 4)
    try:
        yield fleet
    finally:
        stop_fleet(fleet)
