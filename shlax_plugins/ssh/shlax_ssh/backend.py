"""The ``ssh`` backend: one host reached through the system's OpenSSH client.

Using ``ssh`` itself (not a Python SSH library) means the user's ssh_config, agent, jump hosts and
known_hosts work as they do on the command line. :meth:`SSHBackend.open` starts one master
connection (``ControlMaster``) on a socket in a private temporary folder; every command then
rides on it, so a step costs one round trip, and :meth:`SSHBackend.close` stops the master and
removes the folder.

Host keys are checked strictly unless the recipe says otherwise: an unknown or changed key is a
clear per-host error, never silently accepted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from shlax_core import process
from shlax_core.backends import Backend, Mount, Stat
from shlax_core.errors import ShlaxError, StepFailed, Unreachable
from shlax_core.remote import EXTRACT_SCRIPT, STAT_SCRIPT, command_line, parse_stat, wrap

from shlax_ssh.faults import explain
from shlax_ssh.params import SSHHost, SSHParams, expand

_CHECKING = {"strict": "yes", "accept-new": "accept-new", "off": "no"}
SSH_FAILED = 255


class SSHBackend(Backend):
    """An SSH host, or a fleet of them (``hosts`` / ``inventory``): one instance per host."""

    Params = SSHParams

    @classmethod
    def expand(cls, params: Any, base_dir: Optional[Path] = None) -> list[tuple[str, Any]]:
        return [(h.label, h) for h in expand(params, base_dir)]

    def __init__(self, target: Any, params: Any, session: Any, label: Optional[str] = None):
        if isinstance(params, SSHParams):  # constructed directly: must name exactly one host
            hosts = expand(params, getattr(session, "recipe_dir", None))
            if len(hosts) != 1:
                raise ShlaxError("an SSHBackend instance reaches one host; use expand() for fleets")
            params = hosts[0]
        super().__init__(target, params, session, label=label or params.label)
        self.host: SSHHost = params
        self._dir: Optional[str] = None
        self._socket: Optional[str] = None
        self._uid: Optional[str] = None

    # -- the ssh command line ------------------------------------------------------------------
    def ssh_argv(self, *extra: str) -> list[str]:
        """``ssh`` with this host's options and the control socket; ``extra`` go before the host."""
        h = self.host
        argv = ["ssh"]
        if h.ssh_config:
            argv += ["-F", h.ssh_config]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={h.connect_timeout}",
                 "-o", f"StrictHostKeyChecking={_CHECKING[h.host_key_checking]}"]
        if h.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={h.known_hosts}"]
        elif h.host_key_checking == "off":
            argv += ["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
        if h.port:
            argv += ["-p", str(h.port)]
        if h.user:
            argv += ["-l", h.user]
        if h.identity:
            argv += ["-i", h.identity, "-o", "IdentitiesOnly=yes"]
        if h.jump:
            argv += ["-J", h.jump]
        for key, value in h.options.items():
            argv += ["-o", f"{key}={value}"]
        if self._socket:
            argv += ["-o", f"ControlPath={self._socket}"]
        return [*argv, *extra, "--", h.host]

    def display(self) -> list[str]:
        """A short ssh command line naming this host, for messages."""
        h = self.host
        return ["ssh", *(["-p", str(h.port)] if h.port else []), (f"{h.user}@" if h.user else "") + h.host]

    def _remote(self, argv: Sequence[str], user: Optional[str] = None) -> list[str]:
        """The full ssh argv running ``argv`` on the host, through sudo when asked to."""
        return [*self.ssh_argv("-o", "ControlMaster=no", "-T"), command_line([*self._switch(user), *argv])]

    def _switch(self, user: Optional[str]) -> list[str]:
        h = self.host
        if h.become:
            return ["sudo", "-n", "-H", "-u", user or h.become_user, "--"]
        if user and user != h.user and user != self._login_user():
            return ["runuser", "-u", user, "--"]
        return []

    def _login_user(self) -> str:
        if self._uid is None:
            res = process.run(self._remote(["id", "-un"]), check=False, capture=True)
            self._uid = res.output.strip() if res.ok else ""
        return self._uid

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        if shutil.which("ssh") is None:
            raise ShlaxError("the ssh backend needs OpenSSH's `ssh` client",
                             hint="install it: apt-get install openssh-client")
        self._dir = tempfile.mkdtemp(prefix="shlax-ssh-")
        if len(self._dir) > 80:  # unix socket paths are limited to ~108 bytes
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = tempfile.mkdtemp(prefix="shlax-ssh-", dir="/tmp")
        socket = os.path.join(self._dir, "cm")
        log = os.path.join(self._dir, "master.log")
        # what ssh says before its log is open (a bad -J, a bad option) and what a jump host's own
        # ssh says go to stderr: kept in a file, not a pipe, since the master keeps it open
        errors = os.path.join(self._dir, "stderr.log")
        self._socket = socket
        argv = self.ssh_argv("-M", "-f", "-N", "-E", log, "-o", f"ControlPersist={self.host.persist}",
                             "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3")
        try:
            with open(errors, "wb") as stderr:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=stderr, timeout=self.host.connect_timeout * 3 + 30)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
        lines = _read_lines(errors) + _read_lines(log)
        if code != 0 or not os.path.exists(socket):
            self._socket = None
            message, tail = explain(self.label, self.host, lines, timed_out=code == -1)
            raise Unreachable(message, argv=self.display(), tail=tail)
        if self.host.become:
            res = process.run(self._remote(["true"]), check=False, capture=True)
            if not res.ok:
                self._dropped(res)
                raise StepFailed(
                    f"{self.label}: become: `sudo -n -u {self.host.become_user}` was refused "
                    f"(sudo needs a password, or {self.host.user or 'the login user'} may not use it); "
                    "give the login user passwordless sudo or log in as root",
                    argv=["sudo", "-n", "-u", self.host.become_user, "true"], returncode=res.returncode,
                    tail=res.tail)

    def alive(self) -> bool:
        """Is the master connection still up?"""
        if not self._socket or not os.path.exists(self._socket):
            return False
        res = subprocess.run(self.ssh_argv("-O", "check"), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return res.returncode == 0

    def close(self) -> None:
        if self._socket and os.path.exists(self._socket):
            try:
                subprocess.run(self.ssh_argv("-O", "exit"), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self._socket = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _dropped(self, res: process.Exec) -> None:
        """ssh exits 255 for its own failures: when the master is gone, the host dropped."""
        if res.returncode == SSH_FAILED and not self.alive():
            raise Unreachable(f"{self.label}: the connection was lost during the step "
                              "(host down, rebooted or network cut)", argv=res.argv[-1:],
                              returncode=res.returncode, tail=res.tail[-5:])

    # -- commands and files --------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None,
            mounts: Sequence[Mount] = (), stdin: Optional[bytes] = None,
            check: bool = True, capture: bool = False,
            output: Optional[Callable[[str], None]] = None) -> process.Exec:
        # mounts lend host download caches to build containers; a remote host keeps its own caches
        res = process.run(self._remote(wrap(argv, env=env, workdir=workdir), user), stdin=stdin, check=False,
                          capture=capture, output=output, display=argv)
        if not res.ok:
            self._dropped(res)
            if check:
                raise StepFailed(f"command exited with code {res.returncode} on {self.label}",
                                 argv=list(argv), returncode=res.returncode, tail=res.tail)
        return res

    def put_archive(self, archive: Path, dest: str, *, owner: Optional[str] = None,
                    paths: Sequence[str] = ()) -> None:
        argv = self._remote(["sh", "-c", EXTRACT_SCRIPT, "sh", dest, owner or "", *paths])
        with open(archive, "rb") as f:
            proc = subprocess.run(argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = proc.stdout.decode("utf-8", "replace").splitlines()[-20:]
            res = process.Exec(argv, proc.returncode, "", tail)
            self._dropped(res)
            raise StepFailed(f"extracting files under {dest} failed on {self.label}",
                             argv=["tar", "-x", "-C", dest], returncode=proc.returncode, tail=tail)

    def stat(self, path: str) -> Stat:
        res = process.run(self._remote(["sh", "-c", STAT_SCRIPT, "sh", path]), check=False, capture=True)
        if not res.ok:
            self._dropped(res)
            raise StepFailed(f"cannot inspect {path} on {self.label}", argv=["stat", path],
                             returncode=res.returncode, tail=res.tail)
        return parse_stat(res.output, path)


def _read_lines(path: str) -> list[str]:
    try:
        return [line.rstrip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []
