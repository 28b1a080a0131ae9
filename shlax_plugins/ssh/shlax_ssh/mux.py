"""A session on a running OpenSSH master, asked for directly over its control socket.

When the host's master is already up (a previous run left it, ``ControlPersist``), starting an
``ssh`` client only to relay one session costs a process and its start-up (~7 ms of CPU, more
in wall time) per host and run. OpenSSH's multiplexing protocol (PROTOCOL.mux, "passenger"
sessions) lets any process of the same user ask the master for a session and hand it three
file descriptors for the remote command's stdin, stdout and stderr; the master then relays
them itself. :func:`open_session` does that, and returns an object that quacks like the
``subprocess.Popen`` the backend would otherwise have (``stdin``, ``stdout``, ``wait``,
``poll``, ``kill``). Anything unexpected (no master, a stale socket, another protocol
version) returns None and the backend starts ``ssh`` as usual, which also replaces a stale
socket.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import IO, Optional

HELLO = 0x00000001
NEW_SESSION = 0x10000002
S_PERMISSION_DENIED = 0x80000002
S_FAILURE = 0x80000003
S_EXIT_MESSAGE = 0x80000004
S_SESSION_OPENED = 0x80000006
S_TTY_ALLOC_FAIL = 0x80000008
VERSION = 4
NO_ESCAPE = 0xFFFFFFFF


class MuxError(Exception):
    pass


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, *parts: bytes) -> None:
        body = b"".join(parts)
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise MuxError("the master closed the control connection")
            out += chunk
        return out

    def receive(self) -> tuple[int, bytes]:
        (length,) = struct.unpack(">I", self._exact(4))
        body = self._exact(length)
        (kind,) = struct.unpack(">I", body[:4])
        return kind, body[4:]


class MuxSession:
    """The remote command's pipes, and its exit status read from the control socket."""

    def __init__(self, conn: _Conn, stdin: IO[bytes], stdout: IO[bytes]):
        self._conn = conn
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: Optional[int] = None
        self.pid = 0

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is not None:
            return self.returncode
        self._conn.sock.settimeout(timeout)
        try:
            while True:
                kind, body = self._conn.receive()
                if kind == S_EXIT_MESSAGE:
                    self.returncode = struct.unpack(">II", body[:8])[1]
                    break
                if kind == S_TTY_ALLOC_FAIL:
                    continue
                raise MuxError(f"unexpected message {kind:#x}")
        except socket.timeout:
            import subprocess

            raise subprocess.TimeoutExpired("ssh (mux)", timeout or 0) from None
        except (MuxError, OSError):
            self.returncode = 255  # the master went away: as ssh reports its own failures
        finally:
            self._close()
        return self.returncode

    def poll(self) -> Optional[int]:
        return self.returncode

    def kill(self) -> None:
        """Drop the session: the master closes its channel, the helper sees its input end."""
        if self.returncode is None:
            self.returncode = -9
        self._close()

    terminate = kill

    def _close(self) -> None:
        for f in (self.stdin, self.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self._conn.sock.close()
        except OSError:
            pass


def open_session(path: str, command: str, stderr: IO[bytes], timeout: float = 30) -> Optional[MuxSession]:
    """A session running ``command`` on the master listening at ``path``; None if there is none."""
    if not os.path.exists(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    passed: list[int] = []
    kept: list[int] = []
    try:
        sock.connect(path)
        conn = _Conn(sock)
        conn.send(struct.pack(">II", HELLO, VERSION))
        kind, body = conn.receive()
        if kind != HELLO or struct.unpack(">I", body[:4])[0] != VERSION:
            raise MuxError("not a mux master of protocol version 4")
        rid = int(time.monotonic() * 1000) & 0x7FFFFFFF
        conn.send(struct.pack(">II", NEW_SESSION, rid), _string(b""),
                  struct.pack(">IIIII", 0, 0, 0, 0, NO_ESCAPE), _string(b""), _string(command.encode()))
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        passed += [in_r, out_w]
        kept += [in_w, out_r]
        for fd in (in_r, out_w, stderr.fileno()):  # stdin, stdout, stderr, one message each
            socket.send_fds(sock, [b"\0"], [fd])
        kind, body = conn.receive()
        if kind != S_SESSION_OPENED:
            raise MuxError(f"the master refused the session ({kind:#x})")
    except (OSError, MuxError, struct.error):
        sock.close()
        for fd in passed + kept:
            _close_fd(fd)
        return None
    for fd in passed:  # the master holds its own copies now
        _close_fd(fd)
    sock.settimeout(None)
    return MuxSession(conn, os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"))


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


__all__ = ["open_session", "MuxSession", "MuxError"]
