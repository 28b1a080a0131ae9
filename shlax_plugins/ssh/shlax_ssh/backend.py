"""The ``ssh`` backend: one host reached through the system's OpenSSH client.

Using ``ssh`` itself (not a Python SSH library) means the user's ssh_config, agent, jump hosts and
known_hosts work as they do on the command line, with OpenSSH's own key exchange.

Per host and run, :meth:`SSHBackend.open` starts **one** ssh process: its session runs the remote
helper (:mod:`shlax_core.remote_helper`, in the host's python3), which then carries every command,
check and file transfer of the run as messages; no further ssh process is started. The
connection under it is a master (``ControlMaster=auto``) kept ``persist`` seconds after the run
(``ControlPersist``) on a socket in shlax's private control folder (:mod:`shlax_ssh.control`):
the next run within that time rides on it with no new key exchange. ``shlax hosts list`` and
``shlax hosts close`` show and end those masters.

A host without python3 gets the same connection with one ssh session per command.

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
from shlax_core.backends import Backend, Become, Mount, Stat, facts_from
from shlax_core.channel import BecomeRefused, Channel, ChannelLost, NoPython, bootstrap_command
from shlax_core.errors import ShlaxError, StepFailed, Unreachable, Unsupported
from shlax_core.remote import EXTRACT_SCRIPT, STAT_SCRIPT, command_line, parse_stat, wrap

from shlax_ssh import control, mux
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

    supports_become = True

    def __init__(self, target: Any, params: Any, session: Any, label: Optional[str] = None):
        if isinstance(params, SSHParams):  # constructed directly: must name exactly one host
            hosts = expand(params, getattr(session, "recipe_dir", None))
            if len(hosts) != 1:
                raise ShlaxError("an SSHBackend instance reaches one host; use expand() for fleets")
            params = hosts[0]
        super().__init__(target, params, session, label=label or params.label)
        self.host: SSHHost = params
        self._socket: Optional[str] = None
        self._uid: Optional[str] = None
        self._channel: Optional[Channel] = None
        self._in_call = False  # a request to the helper is under way (see _free_channel)
        self._errors: Any = None

    @classmethod
    def variables(cls, params: Any) -> dict[str, Any]:
        return dict(getattr(params, "vars", None) or {})

    @classmethod
    def host_info(cls, params: Any) -> dict[str, Any]:
        return {"name": params.label, "address": params.host, "user": params.user, "port": params.port,
                "groups": list(getattr(params, "groups", ()) or ())}

    # -- the ssh command line ------------------------------------------------------------------
    def ssh_argv(self, *extra: str) -> list[str]:
        """``ssh`` with this host's options and the control socket; ``extra`` go before the host."""
        argv = self._options()
        if self._socket:
            argv += ["-o", f"ControlPath={self._socket}"]
        return [*argv, *extra, "--", self.host.host]

    def _options(self) -> list[str]:
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
        return argv

    def display(self) -> list[str]:
        """A short ssh command line naming this host, for messages."""
        h = self.host
        return ["ssh", *(["-p", str(h.port)] if h.port else []), (f"{h.user}@" if h.user else "") + h.host]

    def _remote(self, argv: Sequence[str], user: Optional[str] = None,
                become: Optional[Become] = None) -> list[str]:
        """The full ssh argv running ``argv`` on the host (no-python fallback: one session per call)."""
        return [*self.ssh_argv("-o", "ControlMaster=no", "-T"),
                command_line([*self._switch(user, become), *argv])]

    def _become_user(self, become: Optional[Become]) -> Optional[str]:
        """Whom a call runs as through sudo: the step's choice, else the host's default."""
        if become is None:
            return self.host.become_user if self.host.become else None
        return (become.user or self.host.become_user) if become.enabled else None

    def _switch(self, user: Optional[str], become: Optional[Become] = None) -> list[str]:
        target = self._become_user(become)
        if target:
            return ["sudo", "-n", "-H", "-u", user or target, "--"]
        if user and user != self.host.user and user != self._login_user():
            return ["runuser", "-u", user, "--"]
        return []

    def _login_user(self) -> str:
        if self._uid is None:
            if self._channel is not None:
                self._uid = str(self._channel.facts.get("user", ""))
            else:
                res = process.run(self._remote(["id", "-un"]), check=False, capture=True)
                self._uid = res.output.strip() if res.ok else ""
        return self._uid

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        if shutil.which("ssh") is None:
            raise ShlaxError("the ssh backend needs OpenSSH's `ssh` client",
                             hint="install it: apt-get install openssh-client")
        options = [*self._options(), "--", self.host.host]
        h = self.host
        self._socket = control.socket_for(options, [h.ssh_config or "~/.ssh/config",
                                                    h.known_hosts or "~/.ssh/known_hosts"])
        persist = f"{self.host.persist}s" if self.host.persist > 0 else "1s"
        argv = self.ssh_argv("-T", "-o", "ControlMaster=auto", "-o", f"ControlPersist={persist}",
                             "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3")
        self._errors = tempfile.TemporaryFile()
        # the master a previous run left: ask it for the session directly (no ssh process at all)
        proc: Any = mux.open_session(self._socket, bootstrap_command(), self._errors,
                                     timeout=self.host.connect_timeout * 3)
        if proc is None:
            # a session of its own: Ctrl-C reaches shlax, which ends the step and closes this itself
            proc = subprocess.Popen([*argv, bootstrap_command()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=self._errors, start_new_session=True)
        channel = Channel(proc, self.label)
        try:
            channel.open()
        except NoPython:
            channel.close()
            self._fallback_open()
            return
        except ChannelLost:
            code = _wait(proc, self.host.connect_timeout * 3 + 30)
            lines = self._stderr()
            message, tail = explain(self.label, self.host, lines, timed_out=code is None)
            if code not in (None, SSH_FAILED) and lines:
                message = f"{self.label}: the remote helper did not start (exit code {code})"
            raise Unreachable(message, argv=self.display(), tail=tail) from None
        self._channel = channel
        control.remember(self._socket, self._meta())
        if self.host.become:
            self._check_become(None)

    def _meta(self) -> dict[str, Any]:
        h = self.host
        return {"label": self.label, "host": h.host, "user": h.user, "port": h.port, "persist": h.persist,
                "ssh_config": h.ssh_config, "known_hosts": h.known_hosts, "destination": (f"{h.user}@" if h.user else "") + h.host + (f":{h.port}" if h.port else "")}

    def _stderr(self) -> list[str]:
        if self._errors is None:
            return []
        self._errors.seek(0)
        text = self._errors.read().decode("utf-8", "replace")
        return [line.rstrip() for line in text.splitlines() if line.strip()]

    def _fallback_open(self) -> None:
        """No python3 on the host: the master stays up; each call is one session on it."""
        if self.host.become:
            res = process.run(self._remote(["true"]), check=False, capture=True)
            if not res.ok:
                self._dropped(res)
                raise self._refused(self.host.become_user, "\n".join(res.tail), res.returncode)

    def _refused(self, user: str, why: str, code: Optional[int]) -> StepFailed:
        return StepFailed(
            f"{self.label}: become: `sudo -n -u {user}` was refused "
            f"(sudo needs a password, or {self.host.user or 'the login user'} may not use it); "
            "give the login user passwordless sudo or log in as root",
            argv=["sudo", "-n", "-u", user, "true"], returncode=code, tail=why.splitlines()[-5:])

    def _check_become(self, become: Optional[Become]) -> None:
        user = self._become_user(become)
        if user and self._channel is not None:
            try:
                self._channel.ping(become=user)
            except BecomeRefused as exc:
                raise self._refused(user, exc.message, exc.code) from None
            except ChannelLost:
                raise self._lost() from None

    def alive(self) -> bool:
        """Is the master connection still up?"""
        return bool(self._socket) and control.alive(self._socket)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._errors is not None:
            self._errors.close()
            self._errors = None
        if self._socket and self.host.persist <= 0:
            control.close(self._socket)
        self._socket = None

    def _lost(self) -> Unreachable:
        return Unreachable(f"{self.label}: the connection was lost during the step "
                           "(host down, rebooted or network cut)", argv=self.display(), tail=self._stderr()[-5:])

    def _dropped(self, res: process.Exec) -> None:
        """ssh exits 255 for its own failures: when the master is gone, the host dropped."""
        if res.returncode == SSH_FAILED and not self.alive():
            raise Unreachable(f"{self.label}: the connection was lost during the step "
                              "(host down, rebooted or network cut)", argv=res.argv[-1:],
                              returncode=res.returncode, tail=res.tail[-5:])

    # -- facts ---------------------------------------------------------------------------------
    def facts(self) -> dict[str, str]:
        if self._channel is not None:
            return dict(self._channel.facts.get("os_release") or {})
        return super().facts()

    def host_facts(self) -> dict[str, str]:
        if self._channel is not None:
            f = self._channel.facts
            return facts_from(f.get("os_release") or {}, str(f.get("hostname", "")), str(f.get("architecture", "")))
        return super().host_facts()

    # -- commands and files --------------------------------------------------------------------
    def _free_channel(self) -> Optional[Channel]:
        """The helper's channel, unless a call on it is under way: a call made from inside
        another's ``output`` callback (the helper answers one request at a time) takes a session
        of its own on the master connection instead, as on a host without python3."""
        return None if self._channel is None or self._in_call else self._channel

    def _call(self, fn: Callable[[], Any], become: Optional[Become]) -> Any:
        self._in_call = True
        try:
            return fn()
        except BecomeRefused as exc:
            raise self._refused(exc.user, exc.message, exc.code) from None
        except ChannelLost:
            raise self._lost() from None
        finally:
            self._in_call = False

    def _helper_argv(self, argv: Sequence[str], user: Optional[str],
                     become: Optional[Become]) -> tuple[list[str], Optional[str]]:
        """The argv and the helper user a call runs with: sudo is the helper's, once per user."""
        target = self._become_user(become)
        if target:
            return list(argv), (user or target)
        if user and user != self.host.user and user != self._login_user():
            return ["runuser", "-u", user, "--", *argv], None
        return list(argv), None

    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None,
            mounts: Sequence[Mount] = (), stdin: Optional[bytes] = None,
            check: bool = True, capture: bool = False,
            output: Optional[Callable[[str], None]] = None, become: Optional[Become] = None) -> process.Exec:
        if mounts:  # mounts lend host folders to build containers; a remote host keeps its own
            raise Unsupported(f"the ssh backend cannot lend this machine's folders to a step on {self.label} "
                              f"(asked to mount {', '.join(m.target for m in mounts)})",
                              hint="mounts are for image builds; a host keeps its own download caches")
        channel = self._free_channel()
        if channel is not None:
            full, as_user = self._helper_argv(argv, user, become)
            res = self._call(lambda: channel.run(full, env=env, cwd=workdir, stdin=stdin, become=as_user,
                                                 capture=capture, output=output), become)
            res.argv = list(argv)
        else:
            res = process.run(self._remote(wrap(argv, env=env, workdir=workdir), user, become), stdin=stdin,
                              check=False, capture=capture, output=output, display=argv)
            if not res.ok:
                self._dropped(res)
        if not res.ok and check:
            raise StepFailed(f"command exited with code {res.returncode} on {self.label}",
                             argv=list(argv), returncode=res.returncode, tail=res.tail)
        return res

    def put_archive(self, archive: Path, dest: str, *, owner: Optional[str] = None,
                    paths: Sequence[str] = (), become: Optional[Become] = None) -> None:
        script = ["sh", "-c", EXTRACT_SCRIPT, "sh", dest, owner or "", *paths]
        data = Path(archive).read_bytes()
        if self._free_channel() is not None:
            res = self.run(script, stdin=data, check=False, capture=True, become=become)
            code, tail = res.returncode, res.tail
        else:
            argv = self._remote(script, become=become)
            proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            code, tail = proc.returncode, proc.stdout.decode("utf-8", "replace").splitlines()[-20:]
            if code != 0:
                self._dropped(process.Exec(argv, code, "", tail))
        if code != 0:
            raise StepFailed(f"extracting files under {dest} failed on {self.label}",
                             argv=["tar", "-x", "-C", dest], returncode=code, tail=tail)

    def stat(self, path: str, become: Optional[Become] = None) -> Stat:
        return self.stat_many([path], become=become)[0]

    def stat_many(self, paths: Sequence[str], become: Optional[Become] = None) -> list[Stat]:
        if not paths:
            return []
        channel = self._free_channel()
        if channel is not None:
            user = self._become_user(become)
            return self._call(lambda: channel.stat(paths, become=user), become)
        out = []
        for path in paths:
            res = process.run(self._remote(["sh", "-c", STAT_SCRIPT, "sh", path], become=become),
                              check=False, capture=True)
            if not res.ok:
                self._dropped(res)
                raise StepFailed(f"cannot inspect {path} on {self.label}", argv=["stat", path],
                                 returncode=res.returncode, tail=res.tail)
            out.append(parse_stat(res.output, path))
        return out


def _wait(proc: Any, timeout: float) -> Optional[int]:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if isinstance(proc, mux.MuxSession):
            proc.kill()
        else:
            process.terminate(proc, grace=2)
        return None
