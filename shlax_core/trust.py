"""Host trust for steps that download: the host's CA bundle and proxy variables, lent per step.

Users behind a TLS-intercepting proxy (and this project's own test bed) only build when package
managers in the container trust what the host trusts. The bundle is mounted read-only for the
step and environment variables point at it; nothing is written to a layer.

It lives in the core because it knows no package manager: :class:`shlax_core.downloads.DownloadCache`
adds :func:`mounts` and :func:`env` to every step that uses a download cache, so a cache plugin
only names the variables its tool reads the bundle from (``ca_env``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Sequence

from shlax_core.backends import Mount

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.actions import StepContext

#: where the host's bundle appears inside build containers (under /run: a tmpfs when the image runs)
CA_TARGET = "/run/shlax/ca-certificates.crt"
DEFAULT_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                   "/etc/ssl/cert.pem")
PROXY_VARS = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy",
              "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")


def host_bundle() -> Optional[str]:
    """The CA bundle the host trusts: ``$SSL_CERT_FILE``, else the distribution's bundle."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), *DEFAULT_BUNDLES):
        if candidate and os.path.isfile(candidate):
            return os.path.realpath(candidate)
    return None


def proxies() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in PROXY_VARS and v}


def mounts(ctx: "StepContext") -> list[Mount]:
    """The bundle, read-only, for image steps; host backends keep their own trust.

    Several caches of one step each ask for it: it is mounted once (the runner collects each
    cache's mounts into ``ctx.mounts`` in turn).
    """
    bundle = host_bundle()
    if not ctx.is_image or bundle is None or any(m.target == CA_TARGET for m in ctx.mounts):
        return []
    return [Mount(bundle, CA_TARGET, readonly=True)]


def env(ctx: "StepContext", names: Sequence[str]) -> dict[str, str]:
    """``names`` (PIP_CERT, NODE_EXTRA_CA_CERTS...) pointed at the mounted bundle, plus proxies."""
    if not ctx.is_image:
        return {}
    out = proxies()
    if host_bundle() is not None:
        out.update({name: CA_TARGET for name in ("SSL_CERT_FILE", *names)})
    return out
