"""shlax dnf: the ``dnf`` action and the ``dnf`` download cache (Fedora, RHEL, Alma, Rocky).

Image steps see ``<download cache>/dnf/<ID>-<VERSION_ID>/`` mounted at ``/var/cache/dnf``, one
build at a time per release, and dnf runs with ``keepcache``: the RPMs and repository metadata a
step downloads stay on the host, never in the layer. The metadata is refreshed (``dnf makecache
--refresh``) only when older than ``update_max_age`` or when the image's ``.repo`` files changed;
installs never refresh it on their own (``metadata_expire=-1``). ``--offline`` installs with
``--cacheonly``. Host backends check ``rpm -q`` first and use the host's own cache and settings.
"""

from __future__ import annotations

from shlax_core import trust
from shlax_core.actions import StepContext
from shlax_core.downloads import DownloadCache
from shlax_core.packaging import PackageAction


class DnfCache(DownloadCache):
    """dnf's cache (RPMs and metadata) on the host, per release (``fedora-40``, ``rocky-9.4``...)."""

    paths = {"/var/cache/dnf": "cache"}
    per_release = True
    sharing = "locked"  # dnf locks its cache: two builds at once would fail
    sources = ("/etc/yum.repos.d/*.repo", "/etc/dnf/dnf.conf")


class Dnf(PackageAction):
    """Install RPM packages with dnf, from the host's dnf cache.

    ``NAME=VERSION`` pins a version (dnf is given ``NAME-VERSION``).

    Example: ``{ dnf = ["curl", "jq"] }``
    """

    caches = ("dnf",)
    update_cmd = ("dnf", "makecache", "--refresh")
    install_cmd = ("dnf", "install", "-y")
    upgrade_cmd = ("dnf", "upgrade", "-y")
    query_cmd = ("rpm", "-q", "--qf", "%{NAME}\t%{VERSION}\t%{VERSION}-%{RELEASE}\n", "--")
    offline_flags = ("--cacheonly",)
    lists = ("/var/cache/dnf", "*.solv")
    not_found = (r"^No match for argument: (\S+)",)
    not_cached = r"[Cc]ache-only|cacheonly|not downloaded|Cannot download"
    stale = r"No match for argument|Status code: 404|Cannot download"
    unchanged = r"^Nothing to do\.$"
    error_line = r"^Error: (.*)$"

    def flags(self, ctx: StepContext) -> list[str]:
        opts = ["--setopt=install_weak_deps=False", *super().flags(ctx)]
        if ctx.is_image:
            opts += ["--setopt=keepcache=True", "--setopt=metadata_expire=-1"]
            if any(m.target == trust.CA_TARGET for m in ctx.mounts):
                opts.append(f"--setopt=sslcacert={trust.CA_TARGET}")
        return opts

    def pin(self, name: str, version: str) -> str:
        return f"{name}-{version}"
