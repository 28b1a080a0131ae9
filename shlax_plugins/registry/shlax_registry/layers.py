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

With a remote builder, ``buildah pull``/``push`` run on the builder (through ``backend.buildah``)
while the registry HTTP calls (``tags/list``, the ping) are made from this machine: the registry
must answer under the same name on both. Files buildah takes by path (the auth file of
environment credentials, ``--digestfile``) are made in the builder's private temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from shlax_core.errors import ShlaxError, StepFailed
from shlax_core.hookspecs import hookimpl

from shlax_registry import auth, refs
from shlax_registry.errors import RegistryError
from shlax_registry.settings import Settings, of, state, tls_hint

CACHE_REPO = "localhost/shlax-cache"


def _buildah(backend: Any) -> Any:
    """The backend's buildah command (with its --root/--runroot), or None for other backends."""
    return getattr(backend, "buildah", None)


def _transport(backend: Any) -> Any:
    """The remote builder's transport when buildah runs on another machine, else None."""
    return getattr(_buildah(backend), "transport", None)


def _creds(backend: Any, ref: refs.Ref) -> Any:
    """``--authfile`` arguments for buildah, written where buildah runs (see :mod:`auth`)."""
    return auth.buildah_args(ref.host, _transport(backend), ref.repo, state(backend.session).credentials)


#: print the digest buildah wrote to $1, if it did
READ_DIGEST_SCRIPT = '[ ! -f "$1" ] || cat -- "$1"'


@contextlib.contextmanager
def _digestfile(backend: Any) -> Iterator[tuple[str, Callable[[], str]]]:
    """A path for ``buildah push --digestfile`` on the machine buildah runs on, and how to read
    it back; removed afterwards."""
    transport = _transport(backend)
    if transport is not None:
        remote = transport.path("digest")
        try:
            yield remote, lambda: transport.sh(READ_DIGEST_SCRIPT, remote, what="reading the pushed digest").strip()
        finally:
            transport.remove(remote)
        return
    folder = tempfile.mkdtemp(prefix="shlax-push-")
    path = Path(folder) / "digest"
    try:
        yield str(path), lambda: path.read_text().strip() if path.exists() else ""
    finally:
        if path.exists():
            path.unlink()
        os.rmdir(folder)


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
    with _creds(backend, ref) as creds:
        res = b("pull", "--quiet", _tls(s), "--retry", "1", *creds, ref.with_tag(key).docker(), check=False)
    if not res.ok:
        tail = " ".join(res.tail[-2:]).strip()
        _warn(backend, f"cache-from {ref}: pulling {key[:12]} failed ({tail}); building locally")
        return None
    lines = res.output.strip().splitlines()
    image = lines[-1].strip() if lines else ""
    if not image:
        _warn(backend, f"cache-from {ref}: pulling {key[:12]} gave no image ID; building locally")
        return None
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
    with _creds(backend, ref) as creds:
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
        with _digestfile(backend) as (digestfile, read_digest), _creds(backend, ref) as creds:
            res = b.stream(["push", _tls(s), "--digestfile", digestfile, *creds, name, ref.docker()],
                           output=backend.log, check=False, display=["buildah", "push", name])
            if not res.ok:
                raise StepFailed(f"pushing {name} failed{_push_hint(backend, res, ref, s)}",
                                 argv=["buildah", "push", name], returncode=res.returncode, tail=res.tail)
            digest = read_digest()
        _info(backend, f"pushed {name}" + (f"@{digest}" if digest else ""))
    return True


def _push_hint(backend: Any, res: Any, ref: refs.Ref, s: Settings) -> str:
    """What to do about a failed push, from buildah's output: TLS, or a login (where buildah runs)."""
    text = " ".join(res.tail).lower()
    if s.tls_verify and ("http response to https" in text or "certificate" in text):
        return "; for a plain-HTTP or self-signed registry pass --no-tls-verify (tls_verify = false)"
    if "unauthorized" in text or "authentication required" in text:
        transport = _transport(backend)
        there = f" on {transport.label}" if transport is not None else ""
        return f"; log in first (buildah login {ref.host}{there}) or set {auth.ENV_USER}/{auth.ENV_PASSWORD}"
    return ""
