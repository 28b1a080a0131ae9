"""Registry credentials for shlax's HTTP client and for buildah; never printed.

Where they are found (environment, containers auth files, Docker's config, credential helpers)
is :mod:`shlax_registry.credentials`; this module hands them over.

buildah gets them through a private temporary auth file (mode 0600, removed after the command),
never on its command line, where ``ps`` and error reports would show them: then buildah uses
exactly what shlax's own HTTP calls use, also where buildah could not find them itself (a
``credsStore`` of Docker's config, ``$DOCKER_CONFIG``). When buildah runs on a remote builder,
only the environment's credentials are sent, into the builder's private temporary folder, their
content through ssh's stdin; without them, buildah on a builder reads the *builder's* own auth
files (``buildah login`` there): this machine's files and helpers stay here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from shlax_registry.credentials import ENV_PASSWORD, ENV_USER, Credentials, auth_json, lookup

__all__ = ["ENV_USER", "ENV_PASSWORD", "Credentials", "credentials", "buildah_args"]


def credentials(host: str, repo: Optional[str] = None) -> Optional[Credentials]:
    """The credentials for a registry host, or None for anonymous access."""
    return lookup(host, repo)


@contextlib.contextmanager
def buildah_args(host: str, transport: Optional[Any] = None, repo: Optional[str] = None,
                 memo: Optional[dict[Any, Optional[Credentials]]] = None) -> Iterator[list[str]]:
    """``--authfile FILE`` holding the credentials found for ``host`` (``repo``); nothing when
    there are none (anonymous).

    ``memo`` (a run's own dict) keeps what was found, so a credential helper runs once per
    registry and run, not once per layer pushed.

    ``transport`` is the remote builder's (``shlax_buildah.remote.SSHTransport``) when buildah
    runs there: only the environment's credentials go there (see the module's docstring), the
    file written on the builder, in its private temporary folder."""
    if transport is not None:
        user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
        found = Credentials(user, password, f"${ENV_USER}") if user and password is not None else None
    elif memo is not None:
        if (host, repo) not in memo:
            memo[(host, repo)] = lookup(host, repo)
        found = memo[(host, repo)]
    else:
        found = lookup(host, repo)
    if found is None:
        yield []
        return
    data = auth_json(host, found)
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
