"""Registry credentials: the containers auth file, or two environment variables; never printed.

Lookup order (the one buildah and podman use, so ``buildah login`` / ``podman login`` just work):
``$REGISTRY_AUTH_FILE``, ``$XDG_RUNTIME_DIR/containers/auth.json``,
``~/.config/containers/auth.json``, ``~/.docker/config.json``. ``SHLAX_REGISTRY_USER`` and
``SHLAX_REGISTRY_PASSWORD`` (CI secrets) win over the files, for every registry shlax talks to.

buildah gets environment credentials through a private temporary auth file (mode 0600, removed
after the command), never on its command line, where ``ps`` and error reports would show them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional

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
        auths = data.get("auths") or {}
        for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"):
            entry = auths.get(key)
            if entry and entry.get("auth"):
                try:
                    decoded = base64.b64decode(entry["auth"]).decode()
                except (ValueError, UnicodeDecodeError):
                    continue
                u, _, p = decoded.partition(":")
                return u, p
    return None


@contextlib.contextmanager
def buildah_args(host: str) -> Iterator[list[str]]:
    """``--authfile FILE`` when credentials come from the environment; else nothing (buildah
    reads the usual auth files itself)."""
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    if not (user and password is not None):
        yield []
        return
    folder = tempfile.mkdtemp(prefix="shlax-auth-")
    path = Path(folder) / "auth.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        with os.fdopen(fd, "w") as f:
            json.dump({"auths": {host: {"auth": token}}}, f)
        yield ["--authfile", str(path)]
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            os.rmdir(folder)
