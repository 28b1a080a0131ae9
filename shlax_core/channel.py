"""The controller side of the remote helper (:mod:`shlax_core.remote_helper`): one process per
host whose stdin/stdout carry every command, check and file transfer of a run.

A host backend starts the transport (an ssh session, ``podman exec -i``, ...) with
:func:`bootstrap_command` as the remote command and hands the process to :class:`Channel`.
The helper answers with a *hello* frame holding the host's facts; then each call is one request
and its answer, in the same connection, with no new process on either side except the command
itself. A host without python3 answers nothing: :meth:`Channel.open` raises :class:`NoPython`
and the backend falls back to one remote command per call.
"""

from __future__ import annotations

import collections
import json
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from shlax_core.backends import Stat
from shlax_core.errors import StepFailed
from shlax_core.process import TAIL, Exec

_HEAD = struct.Struct(">II")
#: exit code of the remote shell when python3 is missing
NO_PYTHON = 127


class ChannelLost(Exception):
    """The helper's stream ended: the connection dropped or the helper was killed."""


class NoPython(Exception):
    """The host has no python3: the caller falls back to one command per call."""


class BecomeRefused(Exception):
    """``sudo -n -u USER`` was refused on the host (it needs a password, or is not allowed)."""

    def __init__(self, user: str, message: str, code: Optional[int]):
        super().__init__(message)
        self.user = user
        self.message = message
        self.code = code


_PROGRAM: list[bytes] = []


def program() -> bytes:
    """The helper's source, compressed (read once from the package)."""
    if not _PROGRAM:
        source = (Path(__file__).parent / "remote_helper.py").read_bytes()
        _PROGRAM.append(zlib.compress(source, 9))
    return _PROGRAM[0]


def bootstrap_command() -> str:
    """The remote shell command: python3 reads the helper from stdin (a fixed text, no data)."""
    return ("exec python3 -c 'import sys,zlib;_S=zlib.decompress(sys.stdin.buffer.read(%d));exec(_S)'"
            % len(program()))


def bootstrap_argv() -> list[str]:
    """The same as an argv list, for transports that take one (``podman exec -i``)."""
    return ["python3", "-c", "import sys,zlib;_S=zlib.decompress(sys.stdin.buffer.read(%d));exec(_S)"
            % len(program())]


class Channel:
    """Requests to one helper process, one at a time (each host has its own thread)."""

    def __init__(self, proc: subprocess.Popen, label: str):
        self.proc = proc
        self.label = label
        self.facts: dict[str, Any] = {}
        assert proc.stdin is not None and proc.stdout is not None
        self._in = proc.stdin
        self._out = proc.stdout

    # -- framing -------------------------------------------------------------------------------
    def _send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        data = json.dumps(header).encode()
        try:
            self._in.write(_HEAD.pack(len(data), len(payload)) + data + payload)
            self._in.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise ChannelLost(str(exc)) from None

    def _read(self, n: int) -> bytes:
        data = self._out.read(n)
        if data is None or len(data) < n:
            raise ChannelLost("end of stream")
        return data

    def _receive(self) -> tuple[dict[str, Any], bytes]:
        hlen, plen = _HEAD.unpack(self._read(_HEAD.size))
        header = json.loads(self._read(hlen))
        return header, (self._read(plen) if plen else b"")

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> dict[str, Any]:
        """Send the program, read the hello; the host's facts."""
        self._send_raw(program())
        try:
            hello, _ = self._receive()
        except ChannelLost:
            code = self.proc.wait()
            if code == NO_PYTHON:
                raise NoPython() from None
            raise
        if hello.get("t") != "hello":
            raise ChannelLost(f"unexpected first frame {hello.get('t')!r}")
        self.facts = hello.get("facts") or {}
        return self.facts

    def _send_raw(self, data: bytes) -> None:
        try:
            self._in.write(data)
            self._in.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise ChannelLost(str(exc)) from None

    def close(self, timeout: float = 15) -> None:
        """Ask the helper to leave and wait for the transport process."""
        try:
            self._send({"op": "exit"})
            self._in.close()
        except (ChannelLost, OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    # -- requests ------------------------------------------------------------------------------
    def _final(self, header: dict[str, Any], become: Optional[str]) -> dict[str, Any]:
        if header.get("t") == "become-failed":
            raise BecomeRefused(become or "?", header.get("message", ""), header.get("code"))
        if header.get("t") == "error":
            raise StepFailed(f"the remote helper on {self.label} failed: {header.get('message')}")
        return header

    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            cwd: Optional[str] = None, stdin: Optional[bytes] = None, become: Optional[str] = None,
            capture: bool = False, output: Optional[Callable[[str], None]] = None) -> Exec:
        """Run ``argv`` on the host; output lines are streamed to ``output`` as they come."""
        req: dict[str, Any] = {"op": "run", "argv": [str(a) for a in argv], "stdin": stdin is not None}
        if env:
            req["env"] = dict(env)
        if cwd:
            req["cwd"] = cwd
        if become:
            req["become"] = become
        self._send(req, stdin or b"")
        tail: collections.deque[str] = collections.deque(maxlen=TAIL)
        captured: list[str] = []
        pending = b""
        while True:
            header, payload = self._receive()
            if header.get("t") == "out":
                pending += payload
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._line(raw, tail, captured, capture, output)
                continue
            if pending:
                self._line(pending, tail, captured, capture, output)
            header = self._final(header, become)
            code = int(header.get("code", 1))
            return Exec(list(req["argv"]), code, "\n".join(captured), list(tail))

    @staticmethod
    def _line(raw: bytes, tail: Any, captured: list[str], capture: bool,
              output: Optional[Callable[[str], None]]) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        tail.append(line)
        if capture:
            captured.append(line)
        if output is not None:
            output(line)

    def stat(self, paths: Sequence[str], *, become: Optional[str] = None, digest: bool = True) -> list[Stat]:
        """Existence, mode, owner and sha256 of every path, in one request."""
        req: dict[str, Any] = {"op": "stat", "paths": list(paths), "digest": digest}
        if become:
            req["become"] = become
        self._send(req)
        header, _ = self._receive()
        header = self._final(header, become)
        out = []
        for item in header.get("items") or []:
            if item is None:
                out.append(Stat(False))
            elif item[0] == "dir":
                out.append(Stat(True, item[1], is_dir=True, owner=item[2]))
            else:
                out.append(Stat(True, item[1], item[3], owner=item[2]))
        return out

    def ping(self, become: Optional[str] = None) -> None:
        """One round trip (with ``become``: starts that user's helper, or raises BecomeRefused)."""
        req: dict[str, Any] = {"op": "ping"}
        if become:
            req["become"] = become
        self._send(req)
        self._final(self._receive()[0], become)

