"""The ``apt`` action and the ``apt`` download cache: Debian/Ubuntu packages, from the host's cache.

Image steps see the host's archives and lists for the image's release, mounted at apt's own paths
(``<download cache>/apt/<ID>-<CODENAME>/{archives,lists}``), one build at a time per release:
a rebuilt layer downloads only packages never seen before, ``apt-get update`` runs only when the
cached lists are older than ``update_max_age`` (or the image's sources changed), and ``shlax run
--offline`` installs from the cached archives alone. Image configurations that delete downloaded
archives (Docker's ``docker-clean``) are hidden for the step under an empty file. Host backends
check ``dpkg-query`` first and report ``ok`` when every package is installed already.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from shlax_core import trust
from shlax_core.backends import Mount
from shlax_core.downloads import DownloadCache
from shlax_core.packaging import PackageAction, PackageParams
from shlax_core.params import doc

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.actions import StepContext

CONF_TARGET = "/run/shlax/apt.conf"
#: apt options every image step gets: keep what was downloaded, write no binary cache into the layer,
#: download as root (the mounted folders belong to the host's root, not to the image's _apt).
#: Two more only because a build container is thrown away (measured, docs/caches.md): dpkg does not
#: fsync every file it unpacks (``--force-unsafe-io``: a crash mid-step loses the step, which is
#: never committed anyway), and ``apt-get update`` fetches no translated descriptions (a third of
#: what bookworm's update downloads). They are command-line options and a config file mounted for
#: the step: nothing of them is written to the image.
IMAGE_OPTIONS = {"APT::Keep-Downloaded-Packages": "true", "Binary::apt::APT::Keep-Downloaded-Packages": "true",
                 "Dir::Cache::pkgcache": "", "Dir::Cache::srcpkgcache": "", "APT::Sandbox::User": "root",
                 "Dpkg::Options::": "--force-unsafe-io", "Acquire::Languages": "none"}


class AptCache(DownloadCache):
    """apt archives and lists on the host, per release (``debian-bookworm``, ``ubuntu-jammy``...)."""

    paths = {"/var/cache/apt/archives": "archives", "/var/lib/apt/lists": "lists"}
    per_release = True
    sharing = "locked"  # apt locks its folders: two builds at once would fail
    partial = ("partial/*",)
    env_vars = {"DEBIAN_FRONTEND": "noninteractive"}
    image_env = {"APT_CONFIG": CONF_TARGET}
    sources = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*")
    # image configs that delete the archives apt just downloaded (docker-clean and the like)
    probe_script = r"grep -l -s -E 'rm .*archives/\*\.deb' /etc/apt/apt.conf.d/* || true"

    def extra_mounts(self, ctx: "StepContext") -> Sequence[Mount]:
        conf = self.lend_file("shlax-apt.conf", "".join(f'{k} "{v}";\n' for k, v in IMAGE_OPTIONS.items()))
        empty = self.lend_file("empty.conf", "")
        cleaners = [line for line in self.probe(ctx)[0] if line.startswith("/")]
        return [Mount(str(conf), CONF_TARGET, readonly=True), *(Mount(str(empty), p, readonly=True) for p in cleaners)]

    def prune_folder(self, folder: Path) -> list[Path]:
        """Like ``apt-get autoclean``: archives superseded by a newer version of the same package."""
        newest: dict[tuple[str, str], Path] = {}
        doomed = []
        for deb in sorted(folder.glob("*.deb"), key=lambda p: p.stat().st_mtime):
            parts = deb.name[:-4].split("_")
            if len(parts) == 3:
                if (parts[0], parts[2]) in newest:
                    doomed.append(newest[(parts[0], parts[2])])
                newest[(parts[0], parts[2])] = deb
        return doomed


@dataclass
class AptParams(PackageParams):
    recommends: bool = doc("also install recommended packages (off by default: smaller images)", False)

    pattern = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9\-]+)?([=/][A-Za-z0-9.+~:\-]+)?$")
    what = "a Debian package name (lower case, optionally =VERSION or /RELEASE)"


class Apt(PackageAction):
    """Install packages with apt-get, from the host's apt cache.

    Recommends are left out unless ``recommends = true``. Package lists are refreshed only when
    older than ``update_max_age``; offline (``--offline``) nothing is fetched at all.

    Example: ``{ apt = ["python3", "python3-venv", "curl"] }``
    """

    Params = AptParams
    caches = ("apt",)
    update_cmd = ("apt-get", "update")
    install_cmd = ("apt-get", "install", "-y", "-q")
    upgrade_cmd = ("apt-get", "upgrade", "-y", "-q")
    query_cmd = ("dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n", "--")
    offline_flags = ("--no-download", "-o", "Acquire::Retries=0")
    lists = ("/var/lib/apt/lists", "*Packages*")
    fresh_glob = "*Release"
    not_found = (r"^E: Unable to locate package (\S+)", r"^E: Package '([^']+)' has no installation candidate")
    not_cached = r"--no-download|Can't find a source|Unable to fetch"
    stale = r"404\s+Not Found|Unable to locate package|has no installation candidate|Unable to fetch some archives"
    unchanged = r"^0 upgraded, 0 newly installed, 0 to remove"
    update_errors = r"^(?:Err:|E:|W: Failed)"
    error_line = r"^E: (.*)$"

    def flags(self, ctx: "StepContext") -> list[str]:
        opts = ["-o", "DPkg::Lock::Timeout=600", *super().flags(ctx)]
        if ctx.is_image:
            opts += [arg for key, value in IMAGE_OPTIONS.items() for arg in ("-o", f"{key}={value}")]
            if any(m.target == trust.CA_TARGET for m in ctx.mounts):
                opts += ["-o", f"Acquire::https::CAInfo={trust.CA_TARGET}"]
        if not self.params.recommends:
            opts += ["-o", "APT::Install-Recommends=false"]
        return opts

    def parse_installed(self, output: str) -> dict[str, set[str]]:
        return {name: {version} for name, version, status in
                (line.split("\t") for line in output.splitlines() if line.count("\t") == 2) if status.startswith("ii")}
