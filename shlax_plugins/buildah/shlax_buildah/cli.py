"""The buildah command line, as argv lists with the target's storage options in front."""

from __future__ import annotations

import json
import shutil
from typing import Any, Callable, Optional, Sequence

from shlax_core import process
from shlax_core.errors import ShlaxError
from shlax_core.process import Exec


class Buildah:
    """Runs ``buildah`` with optional ``--root``/``--runroot`` (a separate image store)."""

    def __init__(self, root: Optional[str] = None, runroot: Optional[str] = None):
        exe = shutil.which("buildah")
        if exe is None:
            raise ShlaxError("buildah is not installed", hint="apt-get install buildah (Debian/Ubuntu)")
        self.argv0 = [exe]
        if root:
            self.argv0 += ["--root", root]
        if runroot:
            self.argv0 += ["--runroot", runroot]

    def __call__(self, *args: str, check: bool = True, stdin: Optional[bytes] = None) -> Exec:
        """A short bookkeeping call; output captured."""
        return process.quiet([*self.argv0, *args], check=check, stdin=stdin)

    def stream(self, args: Sequence[str], *, output: Optional[Callable[[str], None]] = None,
               check: bool = True, capture: bool = False, display: Optional[Sequence[str]] = None,
               env: Any = None) -> Exec:
        """A long call whose output is streamed to the reporter."""
        return process.run([*self.argv0, *args], output=output, check=check, capture=capture,
                           display=display, env=env)

    def images(self) -> list[dict[str, Any]]:
        out = self("images", "--json", "--no-trunc", check=False)
        if not out.ok or not out.output.strip():
            return []
        images = json.loads(out.output)
        for image in images:  # full IDs, as `inspect` gives them: a base's ID is part of every step key
            image["id"] = str(image.get("id", "")).removeprefix("sha256:")
        return images

    def image_id(self, ref: str) -> Optional[str]:
        out = self("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref, check=False)
        return out.output.strip() or None if out.ok else None

    def containers(self) -> list[dict[str, Any]]:
        out = self("containers", "--json", check=False)
        if not out.ok or not out.output.strip():
            return []
        return json.loads(out.output)
