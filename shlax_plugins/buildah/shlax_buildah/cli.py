"""The buildah command line, as argv lists with the target's storage options in front.

A :class:`Buildah` runs ``buildah`` through a *transport*: on this machine (``None``, the default)
or on a remote builder (:class:`shlax_buildah.remote.SSHTransport`), which turns each argv list
into one ssh command line, quoting every element, and turns a dropped connection into a clear
``Unreachable`` error naming the builder.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from shlax_core import process
from shlax_core.errors import ShlaxError, StepFailed
from shlax_core.process import Exec

if TYPE_CHECKING:  # pragma: no cover
    from shlax_buildah.remote import SSHTransport

#: times `buildah images` is asked when an image vanished while it listed the store
LIST_ATTEMPTS = 5


class Buildah:
    """Runs ``buildah`` with optional ``--root``/``--runroot`` (a separate image store)."""

    def __init__(self, root: Optional[str] = None, runroot: Optional[str] = None,
                 transport: Optional["SSHTransport"] = None):
        self.transport = transport
        #: the environment of local buildah processes (None: shlax's own); the backend points
        #: TMPDIR at a private folder it removes at close (see BuildahBackend.open)
        self.env: Optional[dict[str, str]] = None
        if transport is None:
            exe = shutil.which("buildah")
            if exe is None:
                raise ShlaxError("buildah is not installed", hint="apt-get install buildah (Debian/Ubuntu)")
            self.argv0 = [exe]
        else:  # resolved by the builder's own PATH; checked when the transport opens
            self.argv0 = ["buildah"]
        if root:
            self.argv0 += ["--root", root]
        if runroot:
            self.argv0 += ["--runroot", runroot]

    @property
    def remote(self) -> Optional[str]:
        """The builder's label when buildah runs on another machine, else None."""
        return self.transport.label if self.transport is not None else None

    def __call__(self, *args: str, check: bool = True, stdin: Optional[bytes] = None) -> Exec:
        """A short bookkeeping call; output captured."""
        argv = [*self.argv0, *args]
        if self.transport is None:
            return process.quiet(argv, check=check, stdin=stdin, env=self.env)
        res = process.quiet(self.transport.wrap(self.transport.buildah(argv)), check=False, stdin=stdin)
        res = Exec(argv, res.returncode, res.output, res.tail)  # show buildah's argv, not ssh's
        if not res.ok:
            self.transport.check(res)
            if check:
                raise StepFailed(f"command exited with code {res.returncode} on {self.transport.label}",
                                 argv=argv, returncode=res.returncode, tail=res.tail)
        return res

    def stream(self, args: Sequence[str], *, output: Optional[Callable[[str], None]] = None,
               check: bool = True, capture: bool = False, display: Optional[Sequence[str]] = None,
               env: Any = None, stdin: Optional[bytes] = None) -> Exec:
        """A long call whose output is streamed to the reporter; ``stdin`` is fed to it (over
        ssh's own stdin on a remote builder)."""
        argv = [*self.argv0, *args]
        if self.transport is None:
            return process.run(argv, output=output, check=check, capture=capture, display=display,
                               env=env if env is not None else self.env, stdin=stdin)
        res = process.run(self.transport.tracked(self.transport.buildah(argv)), output=output, check=False,
                          capture=capture, display=display if display is not None else argv, env=env, stdin=stdin)
        if not res.ok:
            self.transport.check(res)
            if check:
                raise StepFailed(f"command exited with code {res.returncode} on {self.transport.label}",
                                 argv=list(display) if display is not None else argv,
                                 returncode=res.returncode, tail=res.tail)
        return res

    def images(self, details: bool = False) -> list[dict[str, Any]]:
        """Every image's ``id`` and ``names`` (read from the store's index when it can be); with
        ``details``, buildah's full listing (sizes, creation times)."""
        if self.transport is None and not details:
            from shlax_buildah import store

            usable, root = store.root_of(self.argv0)
            index = store.read_index(root) if usable else None
            if index is not None:
                return index
        for _attempt in range(LIST_ATTEMPTS):
            out = self("images", "--json", "--no-trunc", check=False)
            # buildah lists the store, then looks each image up: one that another process removes
            # in between (a prune, an rmi, a build's cleanup) fails the whole listing with "image
            # not known", and an empty answer would make `cache ls` say "0 layers"; ask again
            if out.ok or not any("image not known" in line for line in out.tail):
                break
        if not out.ok or not out.output.strip():
            return []
        images = json.loads(out.output)
        for image in images:  # full IDs, as `inspect` gives them: a base's ID is part of every step key
            image["id"] = str(image.get("id", "")).removeprefix("sha256:")
        return images

    def image_id(self, ref: str) -> Optional[str]:
        out = self("inspect", "--type", "image", "--format", "{{.FromImageID}}", "--", ref, check=False)
        return out.output.strip() or None if out.ok else None

    def containers(self) -> list[dict[str, Any]]:
        out = self("containers", "--json", check=False)
        if not out.ok or not out.output.strip():
            return []
        return json.loads(out.output)
