"""shlax pacman: the ``pacman`` action and the ``pacman`` download cache (Arch Linux).

Image steps see ``<download cache>/pacman/<ID>-<VERSION>/{pkg,sync}`` mounted at pacman's own
``/var/cache/pacman/pkg`` and ``/var/lib/pacman/sync``, one build at a time per release: the
packages and sync databases a step downloads stay on the host, never in the layer. ``pacman -Sy``
runs only when the databases are older than ``update_max_age`` or ``/etc/pacman.conf`` changed;
installs (``pacman -S --needed``) take packages from the cache before the network, so offline
(``--offline``) they install from it alone. Host backends check ``pacman -Q`` first.
"""

from __future__ import annotations

from shlax_core.downloads import DownloadCache
from shlax_core.packaging import PackageAction


class PacmanCache(DownloadCache):
    """pacman's packages and sync databases on the host, per release (Arch: ``arch-rolling``)."""

    paths = {"/var/cache/pacman/pkg": "pkg", "/var/lib/pacman/sync": "sync"}
    per_release = True
    sharing = "locked"  # pacman locks its database: two builds at once would fail
    partial = ("*.part", "download-*/*")
    sources = ("/etc/pacman.conf", "/etc/pacman.d/*")


class Pacman(PackageAction):
    """Install Arch packages with pacman, from the host's pacman cache.

    Example: ``{ pacman = ["curl", "jq"] }``
    """

    caches = ("pacman",)
    update_cmd = ("pacman", "-Sy", "--noconfirm")
    install_cmd = ("pacman", "-S", "--needed", "--noconfirm")
    upgrade_cmd = ("pacman", "-Su", "--noconfirm")
    query_cmd = ("pacman", "-Q", "--")
    lists = ("/var/lib/pacman/sync", "*.db")
    not_found = (r"^error: target not found: (\S+)",)
    not_cached = r"failed retrieving file|failed to retrieve some files"
    stale = r"target not found|failed retrieving file|404"
    unchanged = r"there is nothing to do"
    error_line = r"^error: (.*)$"

    def parse_installed(self, output: str) -> dict[str, set[str]]:
        pairs = (line.split() for line in output.splitlines() if not line.startswith("error:"))
        return {p[0]: {p[1], p[1].rsplit("-", 1)[0]} for p in pairs if len(p) == 2}
