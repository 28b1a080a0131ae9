"""The SBOM of every image a build makes, and its push beside the image (docs/sbom.md).

Registered for every run (``shlax.hooks`` entry point). When an image target succeeds, the
image's CycloneDX document is made (or read: it is kept per image ID, so an unchanged image
costs one file check) and a ``sbom`` info event names where it is kept. When the image was pushed
(``--push`` / ``push = true``), the document follows it to each of its registry names as an OCI
1.1 artifact whose ``subject`` is the pushed manifest (:mod:`shlax_sbom.attach`).

``SHLAX_SBOM=0`` turns both off. Images built on a remote builder get none; as non-root an info
line says how to make it (`buildah unshare shlax sbom IMAGE`); the build never fails for it.
"""

from __future__ import annotations

import os
from typing import Any

from shlax_core.errors import ShlaxError
from shlax_core.hookspecs import hookimpl

ENV = "SHLAX_SBOM"


def _emit(backend: Any, level: str, message: str, **extra: Any) -> None:
    backend.session.reporter.emit(level, message=message, target=backend.target.name, **extra)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("shlax-plugin-sbom")
    except metadata.PackageNotFoundError:
        return "0"


@hookimpl(trylast=True)  # after the registry plugin's: the image is pushed before its SBOM
def shlax_image_built(backend: Any, image: str, keys: list[str]) -> None:
    if os.environ.get(ENV, "1") == "0" or getattr(backend, "plan", False):
        return
    b = getattr(backend, "buildah", None)
    if b is None or getattr(b, "transport", None) is not None:
        return  # not a local buildah store: nothing shlax can open here
    from shlax_sbom import image as sbom_image

    if os.geteuid() != 0 and not sbom_image.store_path(image).exists():
        # reading the image needs `buildah mount`, which needs root (or `buildah unshare`)
        _emit(backend, "info", "no SBOM at build time as non-root: run `buildah unshare shlax sbom IMAGE`")
        return
    names = backend.names()  # none for a stage that only feeds other targets
    try:
        text, path = sbom_image.sbom(image, _version(), argv0=list(b.argv0), name=names[0] if names else None)
    except ShlaxError as exc:
        _emit(backend, "warning", f"no SBOM for {image[:12]}: {exc.message}")
        return
    _emit(backend, "info", f"SBOM: {path}")
    if _pushing(backend):
        _push(backend, text)


def _pushing(backend: Any) -> bool:
    """--push or the target's push = true, as the registry plugin reads them."""
    from shlax_registry.settings import of

    return of(backend).push


def _push(backend: Any, text: str) -> None:
    """The SBOM as an artifact referring to each pushed name's manifest."""
    import json

    from shlax_core.errors import StepFailed
    from shlax_registry import refs
    from shlax_registry.errors import RegistryError
    from shlax_registry.settings import of, state

    from shlax_sbom import attach

    s = of(backend)
    document = text.encode()
    created = (json.loads(text).get("metadata") or {}).get("timestamp")
    for name in backend.names():
        if name.startswith("localhost/"):
            continue
        ref = refs.parse(name, what="image name")
        client = state(backend.session).client(ref.host, s.tls_verify)
        try:
            done = attach.push(client, ref.repo, ref.tag or "latest", document, created)
        except (RegistryError, LookupError) as exc:
            raise StepFailed(f"pushing the SBOM of {name} failed: {exc}") from None
        _emit(backend, "info", f"SBOM of {name}@{done['subject']['digest']} pushed as {done['artifact']} "
                               f"({done['via']})")
