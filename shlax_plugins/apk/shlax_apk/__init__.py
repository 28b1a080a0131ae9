"""shlax apk: the ``apk`` action and the ``apk`` download cache (Alpine Linux).

Image steps see ``<download cache>/apk/<ID>-<VERSION_ID>/`` mounted at ``/etc/apk/cache``, where
apk keeps the packages and indexes it downloads when that folder exists: they stay on the host,
never in the layer, one build at a time per release. ``apk update`` runs only when the indexes
are older than ``update_max_age`` or ``/etc/apk/repositories`` changed; offline (``--offline``)
``apk add --no-network`` installs from the cache alone. Host backends check ``apk info`` first.

Untested against a real apk: Debian ships no apk-tools, so the tests check the commands and the
cache layout only (see docs/caches.md).
"""

from __future__ import annotations

import re
from typing import Sequence

from shlax_core.downloads import DownloadCache
from shlax_core.packaging import PackageAction


class ApkCache(DownloadCache):
    """apk's package cache on the host, per release (``alpine-3.20.1``...)."""

    paths = {"/etc/apk/cache": "cache"}
    per_release = True
    sharing = "locked"  # apk locks its database: two builds at once would fail
    partial = ("*.apk.part*", ".*.tmp*")
    sources = ("/etc/apk/repositories",)


class Apk(PackageAction):
    """Install Alpine packages with apk, from the host's apk cache.

    Example: ``{ apk = ["curl", "jq=1.7.1-r0"] }``
    """

    caches = ("apk",)
    update_cmd = ("apk", "update")
    install_cmd = ("apk", "add")
    upgrade_cmd = ("apk", "upgrade")
    query_cmd = ("apk", "info", "-v")  # every installed package: NAME-VERSION-rN
    offline_flags = ("--no-network",)
    lists = ("/etc/apk/cache", "APKINDEX.*")
    not_found = (r"^\s+(\S+) \(no such package\)",)
    not_cached = r"--no-network|network (?:error|unavailable)|UNTRUSTED|No such file or directory"
    stale = r"no such package|404|No such file or directory"
    unchanged = r"\A(?![\s\S]*\((?:\d+)/(?:\d+)\) (?:Installing|Upgrading))"

    def query(self, names: Sequence[str]) -> list[str]:
        return list(self.query_cmd)

    def parse_installed(self, output: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for m in re.finditer(r"^(\S+)-(\d[^-\s]*-r\d+)$", output, re.M):
            found.setdefault(m.group(1), set()).update({m.group(2), m.group(2).rsplit("-r", 1)[0]})
        return found
