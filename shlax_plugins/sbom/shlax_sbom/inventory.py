"""What is installed in a root file system, read from the package managers' own records.

No scanner and no guessing: dpkg's status database (what apt and dpkg installed), Python
distributions' ``*.dist-info/METADATA`` (what pip installed, in a venv or the system), and each
``node_modules/**/package.json`` (what npm installed). Every path is read inside ``root`` and
never through a symlink that leaves it: an image's content is data, not a place to follow links.
"""

from __future__ import annotations

import email.parser
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Iterator, Optional
from urllib.parse import quote

#: folders of an image that hold no installed packages (pseudo file systems, caches, user data)
SKIP_TOP = {"proc", "sys", "dev", "run", "tmp", "var/tmp", "var/cache", "var/log", "boot", "media", "mnt"}


@dataclass(frozen=True)
class Package:
    """One installed package: its ecosystem (``deb``, ``pypi``, ``npm``), name, version, where
    its record lies in the image, and what its record says of its license."""

    kind: str
    name: str
    version: str
    path: str
    license: Optional[str] = None
    arch: Optional[str] = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def purl(self, distro: Optional[str] = None) -> str:
        """The package URL (purl spec): how scanners and registries name a package."""
        if self.kind == "deb":
            qualifiers = [f"arch={self.arch}"] if self.arch else []
            if distro:
                qualifiers.append(f"distro={distro}")
            tail = ("?" + "&".join(qualifiers)) if qualifiers else ""
            return f"pkg:deb/debian/{quote(self.name)}@{quote(self.version)}{tail}"
        if self.kind == "pypi":
            name = self.name.lower().replace("_", "-").replace(".", "-")
            return f"pkg:pypi/{quote(name)}@{quote(self.version)}"
        if self.name.startswith("@") and "/" in self.name:
            scope, name = self.name.split("/", 1)
            return f"pkg:npm/{quote(scope)}/{quote(name)}@{quote(self.version)}"
        return f"pkg:npm/{quote(self.name)}@{quote(self.version)}"


def _inside(root: str, rel: str) -> Optional[str]:
    """``root/rel`` when no component of ``rel`` is a symlink (so the path stays in ``root``)."""
    path = root
    for part in rel.strip("/").split("/"):
        if part in ("", ".", ".."):
            return None
        path = os.path.join(path, part)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return None
        except OSError:
            return None
    return path


def _read(root: str, rel: str, limit: int = 64 << 20) -> Optional[str]:
    path = _inside(root, rel)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def os_release(root: str) -> dict[str, str]:
    """The image's /etc/os-release (or /usr/lib/os-release) as a dict."""
    text = _read(root, "etc/os-release") or _read(root, "usr/lib/os-release") or ""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def dpkg_packages(root: str) -> list[Package]:
    """Packages dpkg has installed ("install ok installed"), from /var/lib/dpkg/status."""
    text = _read(root, "var/lib/dpkg/status")
    if not text:
        return []
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        last = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and last:
                continue  # a continuation line (descriptions, conffiles): not needed
            key, sep, value = line.partition(":")
            if sep:
                last = key.strip()
                fields[last] = value.strip()
        if not fields.get("Package") or not fields.get("Status", "").endswith(" installed"):
            continue
        extra = {k: fields[k] for k in ("Source", "Maintainer") if fields.get(k)}
        out.append(Package("deb", fields["Package"], fields.get("Version", ""), "/var/lib/dpkg/status",
                           arch=fields.get("Architecture"), extra=extra))
    return sorted(out, key=lambda p: (p.name, p.arch or ""))


def _walk(root: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk of ``root`` (relative folder names), not into symlinks nor the folders that hold
    no packages."""
    for top, dirs, files in os.walk(root, followlinks=False):
        rel = os.path.relpath(top, root)
        rel = "" if rel == "." else rel
        dirs[:] = sorted(d for d in dirs if os.path.join(rel, d) not in SKIP_TOP)
        yield rel, dirs, files


def _dist_info(root: str, folder: str, parser: email.parser.HeaderParser) -> Optional[Package]:
    """A Python distribution from its ``*.dist-info/METADATA``."""
    text = _read(root, os.path.join(folder, "METADATA"))
    if text is None:
        return None
    meta = parser.parsestr(text)
    name, version = meta.get("Name"), meta.get("Version")
    if not name or not version:
        return None
    lic = meta.get("License-Expression") or _short(meta.get("License"))
    return Package("pypi", name, version, "/" + folder, license=lic)


def _npm(root: str, folder: str) -> Optional[Package]:
    """An npm package from ``node_modules/[@SCOPE/]NAME/package.json``."""
    text = _read(root, os.path.join(folder, "package.json"), limit=8 << 20)
    try:
        meta = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    name, version = meta.get("name"), meta.get("version")
    if not (isinstance(name, str) and isinstance(version, str) and name and version):
        return None
    lic = meta.get("license")
    return Package("npm", name, version, "/" + folder, license=lic if isinstance(lic, str) else None)


def _in_node_modules(rel: str) -> bool:
    """Is ``rel`` a package folder: ``.../node_modules/NAME`` or ``.../node_modules/@SCOPE/NAME``?"""
    parent = os.path.dirname(rel)
    if os.path.basename(parent) == "node_modules":
        return not os.path.basename(rel).startswith((".", "@"))
    return os.path.basename(parent).startswith("@") and os.path.basename(os.path.dirname(parent)) == "node_modules"


def language_packages(root: str) -> tuple[list[Package], list[Package]]:
    """(Python distributions, npm packages) installed anywhere in the image (system, /usr/local,
    venvs, apps' node_modules), in one walk of the tree."""
    python, npm = [], []
    parser = email.parser.HeaderParser()
    for rel, dirs, files in _walk(root):
        for d in [d for d in dirs if d.endswith(".dist-info")]:
            found = _dist_info(root, os.path.join(rel, d), parser)
            if found is not None:
                python.append(found)
        dirs[:] = [d for d in dirs if not d.endswith(".dist-info")]
        if "package.json" in files and _in_node_modules(rel):
            found = _npm(root, rel)
            if found is not None:
                npm.append(found)
    return (sorted(python, key=lambda p: (p.name.lower(), p.path)), sorted(npm, key=lambda p: (p.name, p.path)))


def _short(text: Optional[str]) -> Optional[str]:
    """A METADATA ``License`` field when it is a name, not a whole license text."""
    if not text:
        return None
    text = text.strip()
    return text if text and "\n" not in text and len(text) <= 80 and text.upper() != "UNKNOWN" else None


def installed(root: str) -> list[Package]:
    """Everything the three package managers recorded in ``root``."""
    python, npm = language_packages(root)
    return [*dpkg_packages(root), *python, *npm]
