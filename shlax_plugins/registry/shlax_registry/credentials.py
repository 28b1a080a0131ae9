"""Where registry credentials are found: the places users already keep them.

Users log in with ``podman login``, ``buildah login``, ``skopeo login`` or ``docker login`` and
expect every tool to find the result; CI systems hand secrets over in variables. This module reads
all of them, in the order containers/image (buildah, podman, skopeo) reads its files, with the
Docker CLI's own rules for Docker's file:

1. ``SHLAX_REGISTRY_USER`` and ``SHLAX_REGISTRY_PASSWORD`` (CI secrets), for every registry;
2. ``$REGISTRY_AUTH_FILE``, else ``$XDG_RUNTIME_DIR/containers/auth.json`` (where ``podman login``
   writes);
3. ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config/containers/auth.json``);
4. ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (``docker login``);
5. ``~/.dockercfg`` (Docker's legacy file).

In each file, for a registry: its ``credHelpers`` entry names a credential helper, else an
``auths`` entry holds ``auth`` (base64 of ``user:password``) or an ``identitytoken``, else the
file's ``credsStore`` names the helper that holds every registry's credentials. A helper is the
program ``docker-credential-NAME`` on ``PATH``, run as ``docker-credential-NAME get`` with the
server on stdin, answering ``{"ServerURL", "Username", "Secret"}`` (Docker's protocol, which
``docker-credential-pass``, ``-secretservice``, ``-ecr-login``, ``-gcr`` and others speak).

Keys are matched the way containers/image matches them: ``reg.example:5000``,
``https://reg.example:5000``, ``https://reg.example:5000/v1/`` all name one registry; an
``auth.json`` key may also name a namespace (``reg.example/team/app``, the longest match wins).
Docker Hub has many names (``docker.io``, ``index.docker.io``, ``registry-1.docker.io``, and
``https://index.docker.io/v1/``, the key ``docker login`` writes): any of them finds the others'
credentials, and a helper is asked for ``https://index.docker.io/v1/``, as Docker asks it.

A helper's answer with the user ``<token>`` (and an ``identitytoken`` in a file) is an OAuth2
refresh token, not a password: the client trades it at the token service (Docker's protocol),
and never sends it as Basic credentials.

What is found is never printed: errors name the file and the helper, not the secret.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from shlax_core.errors import ShlaxError

ENV_USER = "SHLAX_REGISTRY_USER"
ENV_PASSWORD = "SHLAX_REGISTRY_PASSWORD"
#: Docker Hub's names; the first is the key ``docker login`` writes and helpers are asked for
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
#: what Docker's helpers and Docker call an identity (OAuth2 refresh) token in place of a user
TOKEN_USER = "<token>"
#: a helper that asks a hardware key or a passphrase may take a while, but not for ever
HELPER_TIMEOUT = 60.0


class CredentialsError(ShlaxError):
    """A credential helper named in a file cannot run or fails: the user fixes the helper or the
    file (exit 2), whichever registry operation asked; shlax never goes on anonymously as if
    nothing were configured."""


@dataclass(frozen=True)
class Credentials:
    """A user and a secret for one registry, and where they came from (for messages)."""

    user: str
    secret: str = field(repr=False)
    source: str = ""
    #: ``secret`` is an OAuth2 refresh token (Docker's identity token), not a password
    identity_token: bool = False


def normalize(key: str) -> str:
    """A registry key as containers/image compares it: no scheme, no ``/v1/`` path, Docker
    Hub's names all ``docker.io``; a namespace key (``host/team/app``) keeps its path."""
    text = key.strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            # a URL: only its host counts (``https://index.docker.io/v1/``)
            text = text[len(scheme):].split("/", 1)[0]
            break
    host, sep, path = text.partition("/")
    if host in DOCKER_HUB:
        host = "docker.io"
    return host + (sep + path.rstrip("/") if path.rstrip("/") else "")


def helper_server(host: str) -> str:
    """What a credential helper is asked for: Docker Hub's legacy URL, else the host."""
    return DOCKER_HUB_KEY if normalize(host) == "docker.io" else host


def files() -> list[tuple[Path, str]]:
    """The credential files to read, in order, with their kind (``auth.json``, ``docker``,
    ``dockercfg``)."""
    home = Path(os.path.expanduser("~"))
    found: list[tuple[Path, str]] = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        found.append((Path(os.environ["REGISTRY_AUTH_FILE"]), "auth.json"))
    elif os.environ.get("XDG_RUNTIME_DIR"):
        found.append((Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json", "auth.json"))
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    found.append((config_home / "containers" / "auth.json", "auth.json"))
    docker_dir = Path(os.environ["DOCKER_CONFIG"]) if os.environ.get("DOCKER_CONFIG") else home / ".docker"
    found.append((docker_dir / "config.json", "docker"))
    found.append((home / ".dockercfg", "dockercfg"))
    return found


def lookup(host: str, repo: Optional[str] = None) -> Optional[Credentials]:
    """The credentials for ``host`` (and ``repo``, for namespace keys), or None: anonymous.

    Raises :class:`CredentialsError` when a configured credential helper cannot be run or fails
    for another reason than "no credentials for this server"."""
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    if user and password is not None:
        return Credentials(user, password, f"${ENV_USER}")
    for path, kind in files():
        data = _read(path)
        if data is None:
            continue
        found = _in_file(data, kind, path, host, repo)
        if found is not None:
            return found
    return None


def _read(path: Path) -> Optional[dict[str, Any]]:
    """A file's JSON object, or None when it is missing or not JSON (buildah would say so when
    it reads it; shlax goes on to the next file, as for any file of the wrong shape)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _candidates(host: str, repo: Optional[str]) -> list[str]:
    """Normalized keys that may hold ``host``'s credentials, most specific first."""
    base = normalize(host)
    keys = []
    parts = [p for p in (repo or "").split("/") if p]
    for n in range(len(parts), 0, -1):
        keys.append(base + "/" + "/".join(parts[:n]))
    keys.append(base)
    return keys


def _match(table: Any, host: str, repo: Optional[str]) -> Optional[tuple[str, Any]]:
    """The (original key, value) of ``table`` that names ``host``/``repo`` best."""
    if not isinstance(table, dict):
        return None
    by_key: dict[str, tuple[str, Any]] = {}
    for key, value in table.items():
        if isinstance(key, str):
            by_key.setdefault(normalize(key), (key, value))
    for key in _candidates(host, repo):
        if key in by_key:
            return by_key[key]
    return None


def _in_file(data: dict[str, Any], kind: str, path: Path, host: str, repo: Optional[str]) -> Optional[Credentials]:
    if kind == "dockercfg":
        auths: Any = data  # the legacy file is the ``auths`` table itself
    else:
        auths = data.get("auths")
        helpers = _match(data.get("credHelpers"), host, repo)
        if helpers is not None and isinstance(helpers[1], str) and helpers[1]:
            return run_helper(helpers[1], host, path, f"credHelpers[{helpers[0]!r}]")
    entry = _match(auths, host, repo)
    if entry is not None and isinstance(entry[1], dict):
        found = _entry(entry[1], f"{path} (auths[{entry[0]!r}])")
        if found is not None:
            return found
    store = data.get("credsStore") if kind != "dockercfg" else None
    if isinstance(store, str) and store:
        return run_helper(store, host, path, "credsStore")
    return None


def _entry(entry: dict[str, Any], source: str) -> Optional[Credentials]:
    """An ``auths`` entry: ``auth`` (base64 ``user:password``), or an ``identitytoken``."""
    token = entry.get("identitytoken")
    raw = entry.get("auth")
    if isinstance(raw, str) and raw:
        try:
            decoded = base64.b64decode(raw, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            decoded = ""
        user, sep, password = decoded.partition(":")
        if isinstance(token, str) and token:
            return Credentials(user or TOKEN_USER, token, source, identity_token=True)
        if sep and user:
            return Credentials(user, password.strip("\x00"), source)
    elif isinstance(token, str) and token:
        return Credentials(TOKEN_USER, token, source, identity_token=True)
    return None


def run_helper(name: str, host: str, path: Path, key: str) -> Optional[Credentials]:
    """``docker-credential-NAME get``, the server on stdin: its credentials, or None when it has
    none for this server (Docker's helpers say "credentials not found" and exit 1).

    ``path`` and ``key`` say where the helper was named (for errors and :attr:`Credentials.source`)."""
    program = f"docker-credential-{name}"
    where = f"{path} ({key})"
    found = shutil.which(program)
    if found is None:
        raise CredentialsError(f"the credential helper {program} is not on PATH", where=where,
                               hint=f"install {program}, or remove {key} from {path}")
    server = helper_server(host)
    hint = f"try it: echo {server} | {program} get"
    try:
        res = subprocess.run([found, "get"], input=server.encode(), capture_output=True, timeout=HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"the credential helper {program} did not answer within {HELPER_TIMEOUT:g}s "
                               f"for {server}", where=where, hint=hint) from None
    except OSError as exc:
        raise CredentialsError(f"the credential helper {program} cannot run: {exc.strerror}", where=where,
                               hint=f"check {found}") from None
    out = res.stdout.decode(errors="replace").strip()
    err = res.stderr.decode(errors="replace").strip()
    if res.returncode != 0:
        if "credentials not found" in out.lower() or "credentials not found" in err.lower():
            return None
        # a failing helper's output is its error message, never a secret (a secret is only in a
        # successful answer); still, kept short and printable
        reason = _printable((out or err)[:200]) or f"exit code {res.returncode}"
        raise CredentialsError(f"the credential helper {program} failed for {server}: {reason}", where=where,
                               hint=hint)
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if not (isinstance(answer, dict) and isinstance(answer.get("Username"), str)
            and isinstance(answer.get("Secret"), str)):
        raise CredentialsError(f"the credential helper {program} answered {server} with something that is not "
                               'JSON {"Username": ..., "Secret": ...}', where=where, hint=hint)
    user, secret = answer["Username"], answer["Secret"]
    if not secret:
        return None
    return Credentials(user, secret, f"{where}: {program}", identity_token=user == TOKEN_USER)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
