"""The CycloneDX 1.5 JSON document of an image's packages.

Deterministic: the same image (by ID) gives the same bytes. The serial number is derived from the
image ID and the timestamp is the image's own creation time, so a reproducible image has a
reproducible SBOM.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional, Sequence

from shlax_sbom.inventory import Package

SPEC_VERSION = "1.5"


def _distro(release: dict[str, str]) -> Optional[str]:
    """purl's ``distro`` qualifier, e.g. ``debian-12``."""
    if release.get("ID") and release.get("VERSION_ID"):
        return f"{release['ID']}-{release['VERSION_ID']}"
    return release.get("ID") or None


def document(image_ref: str, image_id: str, created: Optional[str], packages: Sequence[Package],
             release: dict[str, str], tool_version: str) -> dict[str, Any]:
    distro = _distro(release)
    components = []
    seen: set[str] = set()
    for p in packages:
        purl = p.purl(distro)
        ref = purl if purl not in seen else f"{purl}#{p.path}"  # one package in two venvs: two components
        seen.add(ref)
        c: dict[str, Any] = {"type": "library", "bom-ref": ref, "name": p.name, "version": p.version, "purl": purl}
        if p.license:
            c["licenses"] = [{"license": {"name": p.license}}]
        props = [{"name": "shlax:package:type", "value": p.kind}, {"name": "shlax:path", "value": p.path}]
        props += [{"name": f"shlax:deb:{k.lower()}", "value": v} for k, v in sorted(p.extra.items())]
        c["properties"] = props
        components.append(c)
    root: dict[str, Any] = {"type": "container", "bom-ref": f"image:{image_id}", "name": image_ref,
                            "version": f"sha256:{image_id}"}
    metadata: dict[str, Any] = {
        "tools": {"components": [{"type": "application", "name": "shlax", "version": tool_version}]},
        "component": root,
        "properties": [{"name": "shlax:image:id", "value": image_id}],
    }
    if created:
        metadata["timestamp"] = created
    if release.get("PRETTY_NAME"):
        metadata["properties"].append({"name": "shlax:os", "value": release["PRETTY_NAME"]})
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'shlax-sbom:' + image_id)}",
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": [{"ref": root["bom-ref"], "dependsOn": [c["bom-ref"] for c in components]}],
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
