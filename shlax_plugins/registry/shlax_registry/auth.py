"""Registry credentials: the containers auth file, or two environment variables; never printed.

Lookup order (the one buildah and podman use, so ``buildah login`` / ``podman login`` just work):
``$REGISTRY_AUTH_FILE``, ``$XDG_RUNTIME_DIR/containers/auth.json``,
``~/.config/containers/auth.json``, ``~/.docker/config.json``. ``SHLAX_REGISTRY_USER`` and
``SHLAX_REGISTRY_PASSWORD`` (CI secrets) win over the files, for every registry shlax talks to.

buildah gets environment credentials through a private temporary auth file (mode 0600, removed
after the command), never on its command line, where ``ps`` and error reports would show them.
When buildah runs on a remote builder, that file is written there, into the builder's private
temporary folder, its content sent through ssh's stdin. Without the environment variables,
buildah on a builder reads the *builder's* own auth files (``buildah login`` there).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

ENV_USER = "SHLAX_REGISTRY_USER"
ENV_PASSWORD = "SHLAX_REGISTRY_PASSWORD"


def auth_files() -> list[Path]:
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    home = Path(os.path.expanduser("~"))
    files += [home / ".config" / "containers" / "auth.json", home / ".docker" / "config.json"]
    return files


def credentials(host: str) -> Optional[tuple[str, str]]:
    """(user, password) for a registry host, or None for anonymous access."""
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    if user and password is not None:
        return user, password
    for path in auth_files():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        auths = data.get("auths") if isinstance(data, dict) else None
        if not isinstance(auths, dict):
            continue  # not an auth file (buildah would say so when it reads it)
        for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"):
            entry = auths.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("auth"), str) and entry["auth"]:
                try:
                    decoded = base64.b64decode(entry["auth"], validate=True).decode()
                except (ValueError, UnicodeDecodeError):
                    continue
                u, sep, p = decoded.partition(":")
                if sep and u:
                    return u, p
    return None


def _auth_json(host: str, user: str, password: str) -> bytes:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": token}}}).encode()


@contextlib.contextmanager
def buildah_args(host: str, transport: Optional[Any] = None) -> Iterator[list[str]]:
    """``--authfile FILE`` when credentials come from the environment; else nothing (buildah
    reads the usual auth files itself: on a builder, the builder's).

    ``transport`` is the remote builder's (``shlax_buildah.remote.SSHTransport``) when buildah
    runs there: the file is written on the builder, in its private temporary folder."""
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    if not (user and password is not None):
        yield []
        return
    data = _auth_json(host, user, password)
    if transport is not None:
        remote = transport.put(data, "auth.json")
        try:
            yield ["--authfile", remote]
        finally:
            transport.remove(remote)  # the folder goes at close anyway, even if this cannot run
        return
    folder = tempfile.mkdtemp(prefix="shlax-auth-")
    path = Path(folder) / "auth.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield ["--authfile", str(path)]
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            os.rmdir(folder)
