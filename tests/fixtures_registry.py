"""A real OCI registry on loopback (Debian's ``docker-registry``), and empty buildah stores that
play the part of other machines.

The registry speaks plain HTTP on 127.0.0.1 (tests pass ``--no-tls-verify``); it is started once
per session with a config of its own and stopped at the end. A missing ``docker-registry`` is a
failure (CI installs it: .ci/setup.d/40-registry.sh), never a skip.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import buildah
from fixtures_hosts import free_port

REGISTRY_BIN = "/usr/bin/docker-registry"


@dataclass
class LocalRegistry:
    host: str          # "127.0.0.1:PORT"
    root: Path         # its storage
    proc: subprocess.Popen

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.host}{path}", timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def tags(self, repo: str) -> set[str]:
        status, body = self.get(f"/v2/{repo}/tags/list")
        return set(json.loads(body).get("tags") or []) if status == 200 else set()

    def manifest(self, repo: str, tag: str) -> dict:
        req = urllib.request.Request(f"http://{self.host}/v2/{repo}/manifests/{tag}", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
                      "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def has_blob(self, repo: str, digest: str) -> bool:
        req = urllib.request.Request(f"http://{self.host}/v2/{repo}/blobs/{digest}", method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status == 200
        except urllib.error.HTTPError:
            return False


def start_registry(base: Path, extra_config: str = "") -> LocalRegistry:
    assert Path(REGISTRY_BIN).exists(), "docker-registry is missing (.ci/setup.d/40-registry.sh)"
    port = free_port()
    (base / "data").mkdir(parents=True, exist_ok=True)
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + extra_config)
    log = (base / "registry.log").open("wb")
    # docker-registry reads REGISTRY_* variables as configuration: none of ours may leak in
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)
    reg = LocalRegistry(f"127.0.0.1:{port}", base / "data", proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if reg.get("/v2/")[0] in (200, 401):
                return reg
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"docker-registry did not start: {(base / 'registry.log').read_text()[-2000:]}")


def stop_registry(reg: LocalRegistry) -> None:
    if reg.proc.poll() is None:
        reg.proc.terminate()
        try:
            reg.proc.wait(10)
        except subprocess.TimeoutExpired:
            reg.proc.kill()
            reg.proc.wait()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A real registry on 127.0.0.1:<free port> (plain HTTP), for the whole session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        stop_registry(reg)


# -- a registry with token authentication ------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """A token service of the Docker token protocol, as Docker Hub, GitLab or Harbor run one in
    front of the same registry: ``GET /token?service=...&scope=repository:NAME:ACTIONS`` with
    optional Basic credentials answers a JWT (RS256, its certificate in the ``x5c`` header) that
    the real docker-registry checks against the certificate in its ``rootcertbundle``, with the
    actions each user may have. A wrong password is a 401; no credentials give anonymous access
    (here: nothing). Every token issued is recorded in :attr:`issued`.

    The OAuth2 form of the protocol too: ``POST`` to the realm with
    ``grant_type=refresh_token&refresh_token=...&service=...&scope=...&client_id=...`` (form
    data) trades an identity token (:attr:`refresh_tokens`, what ``docker login`` keeps for
    registries that give one, or a credential helper's ``<token>`` user) for an access token;
    an unknown refresh token, or a request without ``client_id``, is a 401/400. Requests are
    recorded in :attr:`posts` as (grant_type, client_id)."""

    dir: Path
    service: str = "shlax-test-registry"
    issuer: str = "shlax-test-token-service"
    users: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=lambda: {
        "alice": ("alice-pw", ("pull", "push")), "bob": ("bob-pw", ("pull",))})
    ttl: int = 300
    issued: list[tuple[str, list[str]]] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=lambda: {"alice-identity-token": "alice"})
    posts: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key, self.cert = self.dir / "token.key", self.dir / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-subj", "/CN=shlax-test-token-service", "-days", "2",
                        "-addext", "basicConstraints=critical,CA:TRUE"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self.reply(*owner.answer(self.path, self.headers.get("Authorization", "")))

            def do_POST(self) -> None:  # noqa: N802
                self.reply(*owner.oauth(self.body().decode(), self.headers.get("Content-Type", "")))

            def body(self) -> bytes:
                """The request body, by Content-Length or chunked (Go's clients, buildah's
                among them, send a form of unknown length chunked)."""
                if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()

            def reply(self, code: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        if query.get("service", [""])[0] != self.service:
            return 400, {"details": "unknown service"}
        user, allowed = "", ()
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            known = self.users.get(user)
            if known is None or known[0] != password:
                return 401, {"details": "incorrect username or password"}
            allowed = known[1]
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        return 200, self.issue(user, allowed, scopes)

    def oauth(self, form: str, content_type: str) -> tuple[int, dict[str, Any]]:
        """The OAuth2 POST: a refresh token (identity token) for an access token."""
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return 400, {"error": "unsupported_request"}
        fields = urllib.parse.parse_qs(form)
        grant = fields.get("grant_type", [""])[0]
        client = fields.get("client_id", [""])[0]
        self.posts.append((grant, client))
        if fields.get("service", [""])[0] != self.service:
            return 400, {"error": "invalid_request", "details": "unknown service"}
        if not client:
            return 400, {"error": "invalid_request", "details": "missing client_id"}
        if grant != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        user = self.refresh_tokens.get(fields.get("refresh_token", [""])[0])
        if user is None:
            return 401, {"error": "invalid_grant", "details": "unknown refresh token"}
        scopes = [s for value in fields.get("scope", []) for s in value.split(" ") if s]
        answer = self.issue(user, self.users[user][1], scopes)
        answer.pop("token")
        return 200, answer

    def issue(self, user: str, allowed: tuple[str, ...], scopes: list[str]) -> dict[str, Any]:
        """A signed JWT granting ``user`` what ``allowed`` permits of ``scopes``."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a in allowed]
            if kind == "repository" and granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + self.ttl, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        head = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing = f"{_b64url(json.dumps(head).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing.encode(),
                                   check=True, capture_output=True).stdout
        self.issued.append((user, scopes))
        token = f"{signing}.{_b64url(signature)}"
        return {"token": token, "access_token": token, "expires_in": self.ttl,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}


@dataclass
class TokenRegistry:
    registry: LocalRegistry
    tokens: TokenServer

    @property
    def host(self) -> str:
        return self.registry.host


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """The real docker-registry with token authentication, its token service in this process:
    alice may pull and push, bob may only pull, anonymous may do nothing."""
    base = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(base)
    reg = start_registry(base, "auth:\n  token:\n"
                               f"    realm: {tokens.realm}\n    service: {tokens.service}\n"
                               f"    issuer: {tokens.issuer}\n    rootcertbundle: {tokens.cert}\n")
    try:
        yield TokenRegistry(reg, tokens)
    finally:
        stop_registry(reg)
        tokens.stop()


@pytest.fixture(scope="session")
def registry_busybox(registry: LocalRegistry, busybox_image: str) -> str:
    """The busybox test image, pushed to the registry: a base every store can pull with the same
    image ID (a registry base, as real teams use), so step keys agree across "machines"."""
    ref = f"{registry.host}/shlax-test/busybox:latest"
    buildah("push", "--tls-verify=false", busybox_image, f"docker://{ref}")
    return ref


@dataclass
class Store:
    """Another machine's image store: ``buildah --root ROOT --runroot RUNROOT``."""

    root: Path
    runroot: Path

    def buildah(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["buildah", "--root", str(self.root), "--runroot", str(self.runroot), *args],
                              capture_output=True, text=True, check=check)

    def toml(self) -> str:
        """Target options that point a buildah target at this store."""
        return f'root = "{self.root}"\nrunroot = "{self.runroot}"\n'

    def pull(self, ref: str) -> str:
        return self.buildah("pull", "--quiet", "--tls-verify=false", f"docker://{ref}").stdout.strip()

    def images(self) -> list[dict]:
        out = self.buildah("images", "--json", check=False).stdout
        return json.loads(out) if out.strip() else []

    def destroy(self) -> None:
        self.buildah("rm", "--all", check=False)
        self.buildah("rmi", "--all", "--force", check=False)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(self.root))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


@pytest.fixture
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A fresh, empty image store (a second machine); removed after the test."""
    base = tmp_path_factory.mktemp("store")
    store = Store(base / "root", base / "runroot")
    try:
        yield store
    finally:
        store.destroy()


@pytest.fixture
def make_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Factory of fresh stores (several machines in one test); all removed after the test."""
    made: list[Store] = []

    def make() -> Store:
        base = tmp_path_factory.mktemp("store")
        store = Store(base / "root", base / "runroot")
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            store.destroy()
