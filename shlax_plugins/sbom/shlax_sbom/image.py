"""An image's SBOM: read from its files through a read-only look at the image, kept by image ID.

The image is opened with ``buildah from`` + ``buildah mount`` (a working container that is
removed afterwards, interrupt or not); nothing is written into it. An image's content never
changes for a given ID, so the document is kept in shlax's cache folder under that ID and
computed once.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from shlax_core import dirs
from shlax_core.errors import ShlaxError
from shlax_core.filestate import write_atomic

from shlax_sbom import cyclonedx, inventory


def _buildah(*args: str, check: bool = True, argv0: Sequence[str] = ("buildah",)) -> subprocess.CompletedProcess:
    return subprocess.run([*argv0, *args], capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL)


def inspect(ref: str, argv0: Sequence[str] = ("buildah",)) -> dict[str, Any]:
    """``buildah inspect`` of a local image; a clear error when there is none by that name."""
    proc = _buildah("inspect", "--type", "image", "--", ref, check=False, argv0=argv0)
    if proc.returncode != 0:
        raise ShlaxError(f"no image {ref!r} in the local image store",
                         hint="name an image `buildah images` lists (shlax run builds it; buildah pull fetches one)")
    return json.loads(proc.stdout)


def store_path(image_id: str) -> Path:
    """Where the SBOM of an image is kept (documented in docs/sbom.md)."""
    return dirs.cache_root() / "sbom" / f"{image_id}.cdx.json"


def sbom(ref: str, version: str, argv0: Sequence[str] = ("buildah",), name: Optional[str] = None) -> tuple[str, Path]:
    """(the CycloneDX JSON text, where it is kept) of the local image ``ref``; ``argv0``: buildah
    with its store options (a build's own store); ``name``: what the document calls the image
    (default ``ref``)."""
    if len(ref) == 64 and all(c in "0123456789abcdef" for c in ref):  # an ID: kept already?
        try:
            return store_path(ref).read_text(), store_path(ref)
        except OSError:
            pass
    if os.geteuid() != 0:
        raise ShlaxError("shlax sbom reads the image through `buildah mount`, which needs root",
                         hint="run it as root, or inside `buildah unshare` for a rootless store")
    info = inspect(ref, argv0)
    image_id = info.get("FromImageID") or ""
    if not image_id:
        raise ShlaxError(f"buildah gave no ID for the image {ref!r}")
    path = store_path(image_id)
    try:
        return path.read_text(), path
    except OSError:
        pass
    created = (info.get("OCIv1") or {}).get("created") or (info.get("Docker") or {}).get("created")
    container = f"shlax-sbom-{uuid.uuid4().hex[:10]}"
    try:
        _buildah("from", "--pull=never", f"--name={container}", "--", image_id, argv0=argv0)
        root = _buildah("mount", "--", container, argv0=argv0).stdout.strip()
        packages = inventory.installed(root)
        release = inventory.os_release(root)
    except subprocess.CalledProcessError as exc:
        raise ShlaxError(f"cannot open the image {ref!r}: {(exc.stderr or '').strip()[-300:]}") from None
    finally:
        _buildah("rm", "--", container, check=False, argv0=argv0)
    text = cyclonedx.dumps(cyclonedx.document(name or ref, image_id, _rfc3339(created), packages, release, version))
    write_atomic(path, text)
    return text, path


def _rfc3339(created: Optional[str]) -> Optional[str]:
    """The image's creation time, to the second, as CycloneDX's ``date-time`` takes it."""
    if not created:
        return None
    head = created.split(".")[0].rstrip("Z")
    return head + "Z" if "T" in head and "+" not in head else created
