"""The layer cache through a registry, and image pushes: hook implementations active on every run.

- ``--cache-from REPO``: when the local store lacks layers, one ``tags/list`` call says which step
  keys the repository holds; shlax pulls only the *last* of them (a layer image contains all its
  parents) and the image backend takes it as the layer for that key, so the build restarts after it.
- ``--cache-to REPO``: each layer is pushed as ``REPO:<key>`` right after its commit (a failed
  build still shares what it finished), and at the end any layer of the target that is local but
  missing from the repository is pushed too (a machine whose layers predate ``--cache-to``).
- ``--push``: the final image goes to its registry names.

A cache registry that is down or refuses us is a warning and a local build, never a failure; a
failed ``--push`` is a failure (the user asked for it). Registry pushes are idempotent and
content-addressed, so two machines pushing one key at once leave a consistent tag: blobs are
uploaded before the manifest that names them, and the tag ends up on one complete manifest.

The layers and images themselves move through the image backend's layer-transfer protocol
(:meth:`~shlax_core.backends.ImageBackend.pull_layer`, ``push_layer``, ``push_image``): the backend
knows its store and its tools (with a remote builder, buildah pulls and pushes there); this plugin
knows the registry (``tags/list`` and the ping, made from this machine: the registry must answer
under the same name on both), the options and the credentials.
"""

from __future__ import annotations

from typing import Any, Optional

from shlax_core.backends import Transfer, TransferFailed
from shlax_core.errors import ShlaxError, StepFailed
from shlax_core.hookspecs import hookimpl
from shlax_core.options import PluginOptions

from shlax_registry import auth, refs
from shlax_registry.errors import RegistryError
from shlax_registry.settings import Settings, declared, of, state, tls_hint


@hookimpl
def shlax_plugin_options() -> PluginOptions:
    """``--push``, ``--cache-to``, ``--cache-from``, ``--tls-verify`` and the same target keys."""
    return declared()


def _transfer(backend: Any, s: Settings, ref: refs.Ref) -> Transfer:
    """TLS and the credentials found for ``ref``'s registry (once per registry and run)."""
    return Transfer(tls_verify=s.tls_verify,
                    credentials=auth.login(ref.host, ref.repo, state(backend.session).credentials))


@hookimpl
def shlax_transfer(backend: Any) -> Transfer:
    """The backend's own pulls (its base image) take ``--no-tls-verify`` / ``tls_verify = false``;
    credentials stay the backend's own (its tools' auth files), as before this plugin asked."""
    return Transfer(tls_verify=of(backend).tls_verify)


def _warn(backend: Any, message: str) -> None:
    backend.session.reporter.emit("warning", message=message, target=backend.target.name)


def _info(backend: Any, message: str) -> None:
    backend.session.reporter.emit("info", message=message, target=backend.target.name)


def _usable(backend: Any, what: str, ref: refs.Ref) -> bool:
    """False (with a warning, once) when the registry is known down or the backend cannot share."""
    st = state(backend.session)
    if not backend.transfers_layers:
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


def _tail(exc: TransferFailed) -> str:
    return " ".join(exc.tail[-2:]).strip() or exc.message


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
    try:
        image = backend.pull_layer(key, str(ref.with_tag(key)), _transfer(backend, s, ref))
    except TransferFailed as exc:
        problem = "gave no image ID" if not exc.tail else f"failed ({_tail(exc)})"
        _warn(backend, f"cache-from {ref}: pulling {key[:12]} {problem}; building locally")
        return None
    state(backend.session).pushed.add((str(ref), key))  # no need to push it back there
    return {key: image}


# -- --cache-to --------------------------------------------------------------------------------------
def _push_layer(backend: Any, s: Settings, ref: refs.Ref, key: str, image: str) -> bool:
    st = state(backend.session)
    if (str(ref), key) in st.pushed:
        return True
    try:
        backend.push_layer(key, image, str(ref.with_tag(key)), _transfer(backend, s, ref))
    except TransferFailed as exc:
        tail = _tail(exc)
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
    if s.push:
        _push_image(backend, s)
    ref = s.cache_to
    if ref is None or not _usable(backend, "cache-to", ref):
        return
    st = state(backend.session)
    try:
        tags = st.client(ref.host, s.tls_verify).tags(ref.repo)
    except RegistryError as exc:
        _mark_down(backend, ref, f"cache-to {ref}", exc, s)
        return
    local = backend.lookup(keys, fresh=True)
    todo = [k for k in keys if k in local and k not in tags and (str(ref), k) not in st.pushed]
    if todo:
        _info(backend, f"cache-to {ref}: pushing {len(todo)} layer(s) it does not have yet")
    for key in todo:
        if not _push_layer(backend, s, ref, key, local[key]):
            return


# -- --push ------------------------------------------------------------------------------------------
def _push_image(backend: Any, s: Settings) -> None:
    """The final image to each of its names' registries: a failure fails the target."""
    where = backend.target.where_of("push") if "push" in backend.target.plugin_keys else backend.target.where
    if not backend.transfers_layers:
        raise ShlaxError(f"the {type(backend).name or 'image'} backend cannot push images", where=where,
                         hint="use an image backend that can (buildah), or drop push / --push")
    for name in backend.names():
        if name.startswith("localhost/"):
            raise ShlaxError(f"cannot push {name}: it names no registry", where=where,
                             hint='set image = "reg.example:5000/team/app" in the target')
        ref = refs.parse(name, what="image name")
        _info(backend, f"pushing {name}")
        try:
            digest = backend.push_image(name, str(ref), _transfer(backend, s, ref))
        except TransferFailed as exc:
            raise StepFailed(f"pushing {name} failed{_push_hint(exc, ref, s)}", argv=exc.argv or ["push", name],
                             returncode=exc.returncode or 1, tail=exc.tail) from None
        _info(backend, f"pushed {name}" + (f"@{digest}" if digest else ""))


def _push_hint(exc: TransferFailed, ref: refs.Ref, s: Settings) -> str:
    """What to do about a failed push, from the tool's output: TLS, or a login (where it runs)."""
    text = " ".join(exc.tail).lower()
    if s.tls_verify and ("http response to https" in text or "certificate" in text):
        return "; for a plain-HTTP or self-signed registry pass --no-tls-verify (tls_verify = false)"
    if "unauthorized" in text or "authentication required" in text:
        login = exc.login or f"log in to {ref.host}"
        return f"; log in first ({login}) or set {auth.ENV_USER}/{auth.ENV_PASSWORD}"
    return ""
