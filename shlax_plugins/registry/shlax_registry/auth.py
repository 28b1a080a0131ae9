"""Registry credentials for shlax's HTTP client and for the image backend; never printed.

Where they are found (environment, containers auth files, Docker's config, credential helpers)
is :mod:`shlax_registry.credentials`; this module hands them over.

The image backend gets them with each transfer (:func:`login`, a
:class:`shlax_core.backends.Login`) and keeps them off command lines (buildah: a private auth
file, mode 0600, removed after the command): then buildah uses exactly what shlax's own HTTP
calls use, also where buildah could not find them itself (a ``credsStore`` of Docker's config,
``$DOCKER_CONFIG``). Only the environment's credentials are ``portable``: sent to a remote
builder; without them, buildah on a builder reads the *builder's* own auth files (``buildah
login`` there): this machine's files and helpers stay here.
"""

from __future__ import annotations

from typing import Any, Optional

from shlax_core.backends import Login

from shlax_registry.credentials import ENV_PASSWORD, ENV_USER, Credentials, lookup

__all__ = ["ENV_USER", "ENV_PASSWORD", "Credentials", "credentials", "login"]


def credentials(host: str, repo: Optional[str] = None) -> Optional[Credentials]:
    """The credentials for a registry host, or None for anonymous access."""
    return lookup(host, repo)


def login(host: str, repo: Optional[str] = None, memo: Optional[dict[Any, Optional[Credentials]]] = None
          ) -> Optional[Login]:
    """What the image backend logs in with for ``host`` (``repo``), or None (anonymous).

    ``memo`` (a run's own dict) keeps what was found, so a credential helper runs once per
    registry and run, not once per layer pushed."""
    if memo is None:
        found = lookup(host, repo)
    else:
        if (host, repo) not in memo:
            memo[(host, repo)] = lookup(host, repo)
        found = memo[(host, repo)]
    if found is None:
        return None
    return Login(found.user, found.secret, identity_token=found.identity_token,
                 portable=found.source == f"${ENV_USER}")
