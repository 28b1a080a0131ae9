"""Layers and images to and from a registry with ``buildah pull``/``push``: the buildah side of
the core's layer-transfer protocol (:meth:`shlax_core.backends.ImageBackend.pull_layer` and
siblings), which shlax-plugin-registry calls.

With a remote builder the commands run there (through the backend's :class:`Buildah`), and the
files buildah takes by path (an auth file of the caller's credentials, ``--digestfile``) are made
in the builder's private temporary folder. Credentials never reach a command line, where ``ps``
and error reports would show them: they go through a private auth file (mode 0600, removed after
the command); with none, buildah reads its usual auth files (``buildah login``), on the builder
when there is one (only ``portable`` credentials, the environment's, are sent there).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from shlax_core.backends import Login, Transfer, TransferFailed
from shlax_core.process import Exec

from shlax_buildah.cli import Buildah

#: print the digest buildah wrote to $1, if it did
READ_DIGEST_SCRIPT = '[ ! -f "$1" ] || cat -- "$1"'


def _host(ref: str) -> str:
    return ref.split("/", 1)[0]


def auth_json(host: str, login: Login) -> bytes:
    """An ``auth.json`` holding ``login`` for ``host``, for ``buildah --authfile``."""
    if login.identity_token:
        # as docker login writes it: containers/image reads ``identitytoken`` only beside an
        # ``auth`` that decodes to ``user:`` (an empty one makes it skip the entry)
        entry = {"auth": base64.b64encode(f"{login.user}:".encode()).decode(), "identitytoken": login.secret}
    else:
        entry = {"auth": base64.b64encode(f"{login.user}:{login.secret}".encode()).decode()}
    return json.dumps({"auths": {host: entry}}).encode()


@contextlib.contextmanager
def auth_args(b: Buildah, ref: str, transfer: Transfer) -> Iterator[list[str]]:
    """``--authfile FILE`` holding ``transfer.credentials`` for ``ref``'s registry, written where
    buildah runs; nothing without credentials, or on a remote builder for credentials that are
    not ``portable`` (then the builder's own auth files answer)."""
    login = transfer.credentials
    if login is None or (b.transport is not None and not login.portable):
        yield []
        return
    data = auth_json(_host(ref), login)
    if b.transport is not None:
        remote = b.transport.put(data, "auth.json")
        try:
            yield ["--authfile", remote]
        finally:
            b.transport.remove(remote)  # the folder goes at close anyway, even if this cannot run
        return
    folder = tempfile.mkdtemp(prefix="shlax-auth-")
    path = Path(folder) / "auth.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield ["--authfile", str(path)]
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            os.rmdir(folder)


@contextlib.contextmanager
def _digestfile(b: Buildah) -> Iterator[tuple[str, Callable[[], str]]]:
    """A path for ``buildah push --digestfile`` where buildah runs, and how to read it back."""
    transport = b.transport
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


def _tls(transfer: Transfer) -> str:
    return f"--tls-verify={'true' if transfer.tls_verify else 'false'}"


def _failed(b: Buildah, what: str, res: Exec, argv: list[str], ref: str) -> TransferFailed:
    there = f" on {b.transport.label}" if b.transport is not None else ""
    tail = " ".join(res.tail[-2:]).strip()
    return TransferFailed(f"{what} failed ({tail})" if tail else f"{what} failed", argv=argv,
                          returncode=res.returncode, tail=res.tail, login=f"buildah login {_host(ref)}{there}")


def pull(b: Buildah, ref: str, transfer: Transfer) -> str:
    """Pull ``ref`` quietly; its image ID."""
    with auth_args(b, ref, transfer) as creds:
        res = b("pull", "--quiet", _tls(transfer), "--retry", "1", *creds, f"docker://{ref}", check=False)
    if not res.ok:
        raise _failed(b, f"pulling {ref}", res, ["buildah", "pull", ref], ref)
    lines = res.output.strip().splitlines()
    image = lines[-1].strip() if lines else ""
    if not image:
        raise TransferFailed(f"pulling {ref} gave no image ID", argv=["buildah", "pull", ref])
    return image


def pull_base(b: Buildah, ref: str, how: Transfer, output: Callable[[str], Any]) -> None:
    """Pull a base image with buildah's progress streamed to ``output`` (a failure fails the target)."""
    with auth_args(b, ref, how) as creds:
        b.stream(["pull", _tls(how), *creds, "--", ref], output=output)


def push_layer(b: Buildah, image: str, ref: str, transfer: Transfer) -> None:
    with auth_args(b, ref, transfer) as creds:
        res = b("push", "--quiet", _tls(transfer), "--retry", "1", *creds, image, f"docker://{ref}", check=False)
    if not res.ok:
        raise _failed(b, f"pushing {ref}", res, ["buildah", "push", image, ref], ref)


def push_image(b: Buildah, name: str, ref: str, transfer: Transfer, output: Optional[Callable[[str], Any]]) -> str:
    """Push with buildah's progress streamed to ``output``; the pushed digest."""
    with _digestfile(b) as (digestfile, read_digest), auth_args(b, ref, transfer) as creds:
        res = b.stream(["push", _tls(transfer), "--digestfile", digestfile, *creds, name, f"docker://{ref}"],
                       output=output, check=False, display=["buildah", "push", name])
        if not res.ok:
            raise _failed(b, f"pushing {name}", res, ["buildah", "push", name], ref)
        return read_digest()
