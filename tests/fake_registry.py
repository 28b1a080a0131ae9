"""A registry that misbehaves on purpose: an HTTP server in the test process, on loopback.

A registry is outside input. To prove shlax survives any answer, this server answers chosen
requests badly (wrong status, invalid JSON, a list where an object belongs, keys missing or of
the wrong type, a body cut short of its Content-Length, no answer at all, a body that trickles
in, a reset connection, a redirect loop, an endless body, bytes that are not HTTP) and forwards
every other request to a real registry (Debian's ``docker-registry``, tests/fixtures_registry.py),
so ``buildah push`` and ``pull`` through it work as against the real thing.

It can also play a registry with token authentication (the Docker token protocol, as Docker
Hub, GitLab or Harbor speak it): requests need ``Authorization: Bearer TOKEN``, a 401 carries a
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge, and ``/token`` hands out
tokens for the scopes a user may have, after checking a Basic password. Tokens expire on the
server's own clock, which a test moves forward (:attr:`FakeRegistry.now`): expiry without waiting.

Rules are matched in the order they were added; ``times`` limits how often a rule answers.
Everything it saw is in :attr:`FakeRegistry.seen` (method, path, headers), for assertions.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

Answer = Callable[["Handler"], None]


# -- answers ---------------------------------------------------------------------------------------
def status(code: int, body: bytes = b"", headers: Optional[dict[str, str]] = None) -> Answer:
    """``code`` with ``body`` (401 here carries no challenge unless ``headers`` add one)."""

    def answer(h: "Handler") -> None:
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    return answer


def body(data: Any, code: int = 200, content_type: str = "application/json") -> Answer:
    """A 200 (or ``code``) whose body is ``data``: bytes as they are, anything else as JSON."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return status(code, raw, {"Content-Type": content_type})


def truncated(declared: int = 4096, sent: bytes = b'{"tags": ["a') -> Answer:
    """Says ``Content-Length: declared``, sends ``sent``, then closes the connection."""

    def answer(h: "Handler") -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        h.wfile.write(sent)
        h.wfile.flush()
        h.close_connection = True

    return answer


def hang() -> Answer:
    """Reads the request, then answers nothing until the server stops (past any client timeout)."""

    def answer(h: "Handler") -> None:
        h.server.release.wait()  # type: ignore[attr-defined]
        h.close_connection = True

    return answer


def trickle(every: float = 0.2, declare: bool = True) -> Answer:
    """A 200 whose body comes one byte every ``every`` seconds, until the client hangs up: no
    single read ever waits long enough for a socket timeout, so only a deadline on the whole
    document stops it."""

    def answer(h: "Handler") -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if declare:
            h.send_header("Content-Length", str(1 << 20))
        h.end_headers()
        h.wfile.write(b'{"tags": ["')
        try:
            while not h.server.release.wait(every):  # type: ignore[attr-defined]
                h.wfile.write(b"x")
                h.wfile.flush()
        except OSError:
            pass
        h.close_connection = True

    return answer


def reset(after_headers: bool = False) -> Answer:
    """Closes the connection with a TCP reset: at once, or after the headers and some body."""

    def answer(h: "Handler") -> None:
        if after_headers:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "100000")
            h.end_headers()
            h.wfile.write(b'{"tags": [')
            h.wfile.flush()
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        h.connection.close()

    return answer


def redirect_loop() -> Answer:
    """302 to the same URL, for ever."""

    def answer(h: "Handler") -> None:
        h.send_response(302)
        h.send_header("Location", h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return answer


def huge(size: int = 1 << 34, declare: bool = True) -> Answer:
    """A body of ``size`` bytes (16 GiB by default), sent until the client hangs up."""

    def answer(h: "Handler") -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if declare:
            h.send_header("Content-Length", str(size))
        h.end_headers()
        chunk = b'["' + b"x" * 65530 + b'",'
        sent = 0
        try:
            while sent < size and not h.server.release.is_set():  # type: ignore[attr-defined]
                h.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        h.close_connection = True

    return answer


def garbage() -> Answer:
    """Bytes that are not an HTTP answer, then a closed connection."""

    def answer(h: "Handler") -> None:
        h.wfile.write(b"SSH-2.0-OpenSSH_9.2 this is not a registry\r\n\r\n")
        h.wfile.flush()
        h.close_connection = True

    return answer


# -- the server ------------------------------------------------------------------------------------
@dataclass
class Rule:
    method: str                 # "GET", "HEAD", ... or "*"
    path: re.Pattern            # searched in the request path (with its query)
    answer: Answer
    times: Optional[int] = None
    used: int = 0


@dataclass
class TokenAuth:
    """Token authentication: users (name -> (password, actions allowed on every repository))."""

    users: dict[str, tuple[str, tuple[str, ...]]]
    service: str = "fake-registry"
    ttl: int = 300                                   # seconds of server clock
    anonymous: tuple[str, ...] = ()                  # actions granted without credentials
    tokens: dict[str, tuple[str, set[str], float]] = field(default_factory=dict)  # token -> user, grants, expiry
    issued: list[tuple[str, list[str]]] = field(default_factory=list)             # (user, scopes asked)


class FakeRegistry:
    def __init__(self, upstream: Optional[str] = None, token_auth: Optional[TokenAuth] = None):
        self.upstream = upstream
        self.auth = token_auth
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.now = time.time()          # the server's clock, for token expiry: tests move it
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.server.release = threading.Event()  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="fake-registry", daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def on(self, method: str, path: str, answer: Answer, times: Optional[int] = None) -> "FakeRegistry":
        self.rules.append(Rule(method, re.compile(path), answer, times))
        return self

    def clear(self) -> None:
        self.rules.clear()
        self.seen.clear()

    def reset(self) -> None:
        """As new, for the next test: rules and requests forgotten, hung answers let go."""
        self.server.release.set()  # type: ignore[attr-defined]
        self.server.release = threading.Event()  # type: ignore[attr-defined]
        self.clear()

    def start(self) -> "FakeRegistry":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.release.set()  # type: ignore[attr-defined]
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def requests(self, method: str = "", path: str = "") -> list[str]:
        return [p for m, p, _ in self.seen if (not method or m == method) and re.search(path, p)]

    def _rule(self, method: str, path: str) -> Optional[Answer]:
        with self.lock:
            for rule in self.rules:
                if rule.method in ("*", method) and rule.path.search(path) and (rule.times is None or rule.used < rule.times):
                    rule.used += 1
                    return rule.answer
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-registry"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeRegistry:
        return self.server.fake  # type: ignore[attr-defined]

    def handle_one_request(self) -> None:
        # a TLS client hello (clients try https first): answer like a plain-HTTP server at once,
        # rather than wait for a request line that never comes
        try:
            first = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            first = b""
        if first == b"\x16":
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.close_connection = True
            return
        super().handle_one_request()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        data = self._body()
        fake = self.fake
        with fake.lock:
            fake.seen.append((self.command, self.path, dict(self.headers)))
        path = urllib.parse.urlsplit(self.path).path
        if fake.auth is not None and path == "/token":
            return self._token()
        answer = fake._rule(self.command, self.path)
        if answer is not None:
            return answer(self)
        if fake.auth is not None and path.startswith("/v2") and not self._authorized(path):
            return
        if fake.upstream is None:
            return status(404, b'{"errors":[{"code":"NOT_FOUND","message":"no upstream"}]}')(self)
        self._forward(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    # -- forwarding to the real registry -------------------------------------------------------------
    def _forward(self, data: bytes) -> None:
        conn = http.client.HTTPConnection(self.fake.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "authorization", "transfer-encoding", "content-length", "connection")}
        if self.command not in ("GET", "HEAD") or data:
            headers["Content-Length"] = str(len(data))
        conn.request(self.command, self.path, body=data if data else None, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            if k.lower() == "location":  # keep the client talking to us, not to the registry behind
                v = v.replace(f"http://{self.fake.upstream}", f"http://{self.fake.host}")
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload) if self.command != "HEAD" else resp.getheader("Content-Length") or 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        conn.close()

    # -- token authentication ------------------------------------------------------------------------
    def _scope(self, path: str) -> str:
        m = re.match(r"^/v2/(.+?)/(tags|manifests|blobs)/", path)
        if not m:
            return ""
        actions = "pull" if self.command in ("GET", "HEAD") else "pull,push"
        return f"repository:{m.group(1)}:{actions}"

    def _authorized(self, path: str) -> bool:
        auth = self.fake.auth
        assert auth is not None
        scope = self._scope(path)
        got = self.headers.get("Authorization", "")
        ok = False
        error = ""
        if got.startswith("Bearer "):
            found = auth.tokens.get(got[len("Bearer "):])
            if found is None:
                error = "invalid_token"
            elif found[2] <= self.fake.now:
                error = "invalid_token"  # expired
            elif scope:
                _user, grants, _exp = found
                repo, actions = scope.rsplit(":", 1)
                ok = all(f"{repo}:{a}" in grants for a in actions.split(","))
                error = "" if ok else "insufficient_scope"
            else:
                ok = True
        if ok:
            return True
        challenge = f'Bearer realm="http://{self.fake.host}/token",service="{auth.service}"'
        if scope:
            challenge += f',scope="{scope}"'
        if error:
            challenge += f',error="{error}"'
        status(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
               {"WWW-Authenticate": challenge, "Content-Type": "application/json"})(self)
        return False

    def _token(self) -> None:
        auth = self.fake.auth
        assert auth is not None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        user = ""
        allowed: tuple[str, ...] = auth.anonymous
        got = self.headers.get("Authorization", "")
        if got.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(got[6:]).decode().partition(":")
            except ValueError:
                user, password = "", ""
            known = auth.users.get(user)
            if known is None or known[0] != password:
                return status(401, b'{"details":"incorrect username or password"}',
                              {"Content-Type": "application/json",
                               "WWW-Authenticate": f'Basic realm="{auth.service}"'})(self)
            allowed = known[1]
        if query.get("service", [""])[0] != auth.service:
            return status(400, b'{"details":"unknown service"}', {"Content-Type": "application/json"})(self)
        grants = set()
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            if kind == "repository":
                grants |= {f"repository:{repo}:{a}" for a in actions.split(",") if a in allowed}
        token = secrets.token_hex(16)
        with self.fake.lock:
            auth.tokens[token] = (user, grants, self.fake.now + auth.ttl)
            auth.issued.append((user, scopes))
        body({"token": token, "access_token": token, "expires_in": auth.ttl,
              "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})(self)
