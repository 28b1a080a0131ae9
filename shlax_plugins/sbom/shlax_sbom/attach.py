"""Pushing an image's SBOM next to it: an OCI 1.1 artifact whose ``subject`` is the image.

The artifact is an image manifest with ``artifactType: application/vnd.cyclonedx+json``, the
empty config (``application/vnd.oci.empty.v1+json``, ``{}``), the CycloneDX document as its one
layer, and ``subject`` = the pushed image manifest's descriptor. Registries that serve the
referrers API (``GET /v2/REPO/referrers/DIGEST``) index it themselves; for those that do not
(distribution 2.8, Docker Hub's older API) the OCI distribution spec's fallback is kept too: an
image index tagged ``sha256-HEX`` (HEX: the image manifest's digest) listing the artifacts that
refer to it, updated by reading, adding and writing it back.

Tools that read SBOMs this way: ``oras discover``, ``cosign tree``, ``regctl artifact list``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

ARTIFACT_TYPE = "application/vnd.cyclonedx+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
TITLE = "sbom.cdx.json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: ``sha256:HEX`` -> ``sha256-HEX``."""
    return digest.replace(":", "-", 1)


def artifact_manifest(document: bytes, subject: dict[str, Any], created: Optional[str]) -> bytes:
    """The artifact manifest's bytes (compact, key order fixed: the same SBOM and image always
    give the same artifact digest)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": _digest(EMPTY), "size": len(EMPTY), "data": "e30="},
        "layers": [{"mediaType": ARTIFACT_TYPE, "digest": _digest(document), "size": len(document),
                    "annotations": {"org.opencontainers.image.title": TITLE}}],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
    }
    if created:
        manifest["annotations"] = {"org.opencontainers.image.created": created}
    return json.dumps(manifest, separators=(",", ":")).encode()


def push(client: Any, repo: str, tag: str, document: bytes, created: Optional[str]) -> dict[str, Any]:
    """Push ``document`` as the SBOM of ``repo:tag`` (already pushed). Returns what was done:
    ``subject``, ``artifact`` (its digest), ``via`` ("referrers API" or the fallback tag)."""
    subject = client.descriptor(repo, tag)
    if subject is None:
        raise LookupError(f"{repo}:{tag} is not in the registry")
    for blob in (EMPTY, document):
        digest = _digest(blob)
        if not client.has_blob(repo, digest):
            client.put_blob(repo, digest, blob)
    body = artifact_manifest(document, subject, created)
    artifact = client.put_manifest(repo, _digest(body), body, OCI_MANIFEST)
    descriptor = {"mediaType": OCI_MANIFEST, "digest": artifact, "size": len(body), "artifactType": ARTIFACT_TYPE}
    if created:
        descriptor["annotations"] = {"org.opencontainers.image.created": created}
    listed = client.referrers(repo, subject["digest"])
    if listed is not None:  # the registry indexes artifacts by their subject on its own
        return {"subject": subject, "artifact": artifact, "via": "referrers API"}
    tag_name = fallback_tag(subject["digest"])
    found = client.get_manifest(repo, tag_name)
    index = found[0] if found is not None and isinstance(found[0].get("manifests"), list) else \
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    index.setdefault("mediaType", OCI_INDEX)
    if not any(d.get("digest") == artifact for d in index["manifests"]):
        index["manifests"].append(descriptor)
        client.put_manifest(repo, tag_name, json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX)
    return {"subject": subject, "artifact": artifact, "via": f"fallback tag {tag_name}"}
