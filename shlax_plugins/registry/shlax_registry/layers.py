"""The layer cache through a registry, and image pushes: hook implementations active on every run.

- ``--cache-from REPO``: when the local store lacks layers, one ``tags/list`` call says which step
  keys the repository holds; shlax pulls only the *last* of them (a layer image contains all its
  parents) and tags it ``localhost/shlax-cache:<key>``, so the build restarts after it.
- ``--cache-to REPO``: each layer is pushed as ``REPO:<key>`` right after its commit (a failed
  build still shares what it finished), and at the end any layer of the target that is local but
  missing from the repository is pushed too (a machine whose layers predate ``--cache-to``).
- ``--push``: the final image goes to its registry names.

A cache registry that is down or refuses us is a warning and a local build, never a failure; a
failed ``--push`` is a failure (the user asked for it). Registry pushes are idempotent and
content-addressed, so two machines pushing one key at once leave a consistent tag: blobs are
uploaded before the manifest that names them, and the tag ends up on one complete manifest.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from shlax_core.errors import ShlaxError, StepFailed
from shlax_core.hookspecs import hookimpl

from shlax_registry import auth, refs
from shlax_registry.errors import RegistryError
from shlax_registry.settings import Settings, of, state, tls_hint

CACHE_REPO = "localhost/shlax-cache"


def _buildah(backend: Any) -> Any:
    """The backend's buildah command (with its --root/--runroot), or None for other backends."""
    return getattr(backend, "buildah", None)


def _warn(backend: Any, message: str) -> None:
    backend.session.reporter.emit("warning", message=message, target=backend.target.name)


def _info(backend: Any, message: str) -> None:
    backend.session.reporter.emit("info", message=message, target=backend.target.name)


def _tls(s: Settings) -> str:
    return f"--tls-verify={'true' if s.tls_verify else 'false'}"


def _usable(backend: Any, what: str, ref: refs.Ref) -> bool:
    """False (with a warning, once) when the registry is known down or the backend cannot share."""
    st = state(backend.session)
    if _buildah(backend) is None:
        key = f"backend:{backend.target.name}:{what}"
        if key not in st.down:
            st.down[key] = "unsupported"
            _warn(backend, f"{what} {ref}: the {type(backend).name or 'image'} backend cannot share layers "
                           "through a registry; building locally")
        return False
    return ref.host not in st.down


def _mark_down(backend: Any, ref: refs.Ref, what: str, exc: RegistryError, s: Settings) -> None:
    st = state(backend.session)
    if ref.host not in st.down:
        st.down[ref.host] = exc.message
        _warn(backend, f"{what}: {exc.message}{tls_hint(exc, s.tls_verify)}; "
                       f"{'building locally' if what.startswith('cache-from') else 'layers stay local'}")


# -- --cache-from ------------------------------------------------------------------------------------
@hookimpl
def shlax_layers_missing(backend: Any, keys: list[str]) -> Optional[dict[str, str]]:
    s = of(backend)
    ref = s.cache_from
    if ref is None or not keys or not _usable(backend, "cache-from", ref):
        return None
    client = state(backend.session).client(ref.host, s.tls_verify)
    try:
        tags = client.tags(ref.repo)
    except RegistryError as exc:
        _mark_down(backend, ref, f"cache-from {ref}", exc, s)
        return None
    hit = max((i for i, k in enumerate(keys) if k in tags), default=-1)
    if hit < 0:
        _info(backend, f"cache-from {ref}: none of the {len(keys)} missing layers is there")
        return None
    key = keys[hit]
    _info(backend, f"cache-from {ref}: pulling layer {key[:12]} ({hit + 1} of {len(keys)} missing layers)")
    b = _buildah(backend)
    with auth.buildah_args(ref.host) as creds:
        res = b("pull", "--quiet", _tls(s), "--retry", "1", *creds, ref.with_tag(key).docker(), check=False)
    if not res.ok:
        tail = " ".join(res.tail[-2:]).strip()
        _warn(backend, f"cache-from {ref}: pulling {key[:12]} failed ({tail}); building locally")
        return None
    image = res.output.strip().splitlines()[-1].strip()
    if hasattr(backend, "adopt"):  # tagged with the final image's names: one buildah call
        backend.adopt(key, image)
    else:
        b("tag", image, f"{CACHE_REPO}:{key}")
        if hasattr(backend, "images"):
            backend.images(refresh=True)
    state(backend.session).pushed.add((str(ref), key))  # no need to push it back there
    return {key: image}


# -- --cache-to --------------------------------------------------------------------------------------
def _push_layer(backend: Any, s: Settings, ref: refs.Ref, key: str, image: str) -> bool:
    st = state(backend.session)
    if (str(ref), key) in st.pushed:
        return True
    with auth.buildah_args(ref.host) as creds:
        res = _buildah(backend)("push", "--quiet", _tls(s), "--retry", "1", *creds, image,
                                ref.with_tag(key).docker(), check=False)
    if not res.ok:
        tail = " ".join(res.tail[-2:]).strip()
        st.down[ref.host] = tail
        _warn(backend, f"cache-to {ref}: pushing layer {key[:12]} failed ({tail}); layers stay local")
        return False
    st.pushed.add((str(ref), key))
    return True


@hookimpl
def shlax_layer_committed(backend: Any, key: str, image: str) -> None:
    s = of(backend)
    ref = s.cache_to
    if ref is None or not _usable(backend, "cache-to", ref):
        return
    st = state(backend.session)
    if ("checked", ref.host) not in st.pushed:  # fail fast (one request) when the registry is down
        try:
            st.client(ref.host, s.tls_verify).ping()
        except RegistryError as exc:
            _mark_down(backend, ref, f"cache-to {ref}", exc, s)
            return
        st.pushed.add(("checked", ref.host))
    _push_layer(backend, s, ref, key, image)


@hookimpl
def shlax_image_built(backend: Any, image: str, keys: list[str]) -> None:
    s = of(backend)
    ref = s.cache_to
    if ref is None or not _usable(backend, "cache-to", ref):
        return
    st = state(backend.session)
    try:
        tags = st.client(ref.host, s.tls_verify).tags(ref.repo)
    except RegistryError as exc:
        _mark_down(backend, ref, f"cache-to {ref}", exc, s)
        return
    if hasattr(backend, "images"):
        backend.images(refresh=True)
    local = backend.lookup(keys)
    todo = [k for k in keys if k in local and k not in tags and (str(ref), k) not in st.pushed]
    if todo:
        _info(backend, f"cache-to {ref}: pushing {len(todo)} layer(s) it does not have yet")
    for key in todo:
        if not _push_layer(backend, s, ref, key, local[key]):
            return


# -- --push ------------------------------------------------------------------------------------------
@hookimpl
def shlax_push_image(backend: Any, names: list[str]) -> Optional[bool]:
    b = _buildah(backend)
    if b is None:
        return None
    s = of(backend)
    where = getattr(backend.target, "where", None)
    for name in names:
        if name.startswith("localhost/"):
            raise ShlaxError(f"cannot push {name}: it names no registry", where=where,
                             hint='set image = "reg.example:5000/team/app" in the target')
        ref = refs.parse(name, what="image name")
        _info(backend, f"pushing {name}")
        folder = tempfile.mkdtemp(prefix="shlax-push-")
        digestfile = Path(folder) / "digest"
        try:
            with auth.buildah_args(ref.host) as creds:
                res = b.stream(["push", _tls(s), "--digestfile", str(digestfile), *creds, name, ref.docker()],
                               output=backend.log, check=False, display=["buildah", "push", name])
            if not res.ok:
                hint = ""
                text = " ".join(res.tail).lower()
                if s.tls_verify and ("http response to https" in text or "certificate" in text):
                    hint = "; for a plain-HTTP or self-signed registry pass --no-tls-verify (tls_verify = false)"
                elif "unauthorized" in text or "authentication required" in text:
                    hint = f"; log in first (buildah login {ref.host}) or set {auth.ENV_USER}/{auth.ENV_PASSWORD}"
                raise StepFailed(f"pushing {name} failed{hint}", argv=["buildah", "push", name],
                                 returncode=res.returncode, tail=res.tail)
            digest = digestfile.read_text().strip() if digestfile.exists() else ""
            _info(backend, f"pushed {name}" + (f"@{digest}" if digest else ""))
        finally:
            if digestfile.exists():
                digestfile.unlink()
            os.rmdir(folder)
    return True
