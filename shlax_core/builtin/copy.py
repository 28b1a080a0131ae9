"""The ``copy`` action: files, directories and globs from the recipe's directory into the target.

Semantics follow a Dockerfile's COPY: a directory source copies its *contents* into ``dest``; a
file source goes into ``dest`` when ``dest`` ends with ``/`` or there are several sources, and
*is* ``dest`` otherwise. Files travel as one tar archive (modes and owner set in it), so every
backend extracts them the same way.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional, Union

from shlax_core import names
from shlax_core.actions import Action, StepContext
from shlax_core.errors import RecipeError
from shlax_core.cache.hashing import entry_digest, tree_digest
from shlax_core.files import UNWATCHABLE, Entry, select
from shlax_core.params import doc


@dataclass
class CopyParams:
    src: Union[str, list[str]] = doc("files, directories or globs, relative to the recipe file")
    dest: str = doc("absolute path in the target; a directory when it ends with / or for several sources")
    mode: Optional[str] = doc('permission bits for copied files, octal, e.g. "0644"', None)
    owner: Optional[str] = doc('"user" or "user:group" owning the copied files', None)
    exclude: list[str] = doc("gitignore-style patterns to leave out, on top of the ignore file", default_factory=list)
    from_: Optional[str] = doc("a stage (another target of the recipe) or an image reference to copy from; "
                               "`src` are then absolute paths in its image", None)

    def validate(self) -> Optional[tuple[str, str]]:
        if not self.dest.startswith("/"):
            return "dest", f"dest {self.dest!r} must be an absolute path"
        if self.from_ is not None:
            if not self.from_ or self.from_.startswith("-"):
                return "from", f"from {self.from_!r} is not a target name or an image reference"
            for src in self.sources:
                if names.absolute_path(src, what="src"):
                    return "src", (f"src {src!r} must be an absolute path in the image of {self.from_!r} "
                                   "(a copy from another image)")
            if self.exclude:
                return "exclude", "exclude is for copies from the recipe's folder, not from another image"
        if self.mode is not None:
            try:
                if not 0 <= int(self.mode, 8) <= 0o7777:
                    raise ValueError
            except ValueError:
                return "mode", f"mode {self.mode!r} must be octal permission bits like \"0644\""
        if isinstance(self.src, list) and not self.src:
            return "src", "src is an empty list"
        if self.owner is not None and names.owner(self.owner):
            return "owner", names.owner(self.owner) or ""
        return None

    @property
    def sources(self) -> list[str]:
        return [self.src] if isinstance(self.src, str) else list(self.src)


class Copy(Action):
    """Copy files from the recipe's directory into the target.

    Example: ``{ copy = { src = ["pyproject.toml", "app/"], dest = "/app/", owner = "app" } }``
    """
    runs_commands = False  # the build-wide env and workdir do not change what it writes

    Params = CopyParams

    def prepare(self) -> None:
        self._groups: Optional[list[tuple[str, list[Entry]]]] = None
        #: (image ID or None, what it is) of a copy from another image: set by shlax_core.stages
        self.source: tuple[Optional[str], str] = (None, "")
        src = self.params.from_
        if src is not None:
            if src not in self.recipe.targets and names.image_reference(src, what="image to copy from"):
                raise RecipeError(f"{self.step.path}.copy.from: {src!r} is neither a target of the recipe nor "
                                  "an image reference", where=self.recipe.locate(f"{self.step.path}.copy.from"),
                                  hint=f"targets: {', '.join(self.recipe.targets)}; or an image such as "
                                       "\"docker.io/library/golang:1.22\"")
            self._watch = {}
            return
        self._select()

    def key_params(self):
        params = super().key_params()
        source = params.pop("from_", None)  # absent when unset: copies from the folder keep their keys
        if source is not None:
            params["from"] = source
        return params

    def _select(self) -> list[tuple[str, list[Entry]]]:
        """The selected entries, by source; raises RecipeError on a bad source."""
        if getattr(self, "_groups", None) is None:
            p = self.params
            where = self.recipe.locate(f"{self.step.path}.copy.src")
            self._watch: dict[str, Optional[list]] = {}
            self._groups = select(self.recipe.dir, p.sources, p.exclude, where=where, watch=self._watch)
        return self._groups  # type: ignore[return-value]

    def plan(self) -> Iterator[tuple[str, Entry]]:
        """(destination path, entry) for every file, made as they are asked for: a copy of many
        files keeps one record a file (its entry), not two."""
        p = self.params
        groups = self._select()
        into_dir = p.dest.endswith("/") or len(groups) > 1
        join = posixpath.join
        for match, entries in groups:
            if os.path.isdir(match) and not os.path.islink(match):
                yield from ((join(p.dest, e.arcname.replace(os.sep, "/")), e) for e in entries)
            elif into_dir:
                yield from ((join(p.dest, e.arcname), e) for e in entries)
            else:
                yield from ((p.dest, e) for e in entries)

    def inputs(self, session) -> Mapping[str, str]:
        if self.params.from_ is not None:  # the source image's content, by ID (a stale stage: unknown yet)
            return {"image": self.source[0] or f"unknown: {self.source[1]}"}
        return {"files": tree_digest(((dest, e.path) for dest, e in self.plan()), session.stat_cache)}

    def guards(self, session) -> Optional[Mapping[str, Optional[list]]]:
        if self.params.from_ is not None:  # a stage is watched as a target of the run; an image is not
            return {} if self.params.from_ in self.recipe.targets else None
        if UNWATCHABLE in self._watch:
            return None
        signature = session.stat_cache.signature
        files = {e.path: signature(e.path) for _, e in self.plan()}
        if any(sig is None for sig in files.values()):
            return None
        return {**self._watch, **files}

    def describe(self) -> str:
        src = ", ".join(self.params.sources)
        if self.params.from_ is not None:
            src = f"{self.params.from_}:{src}"
        return f"copy {src if len(src) < 50 else src[:47] + '...'} -> {self.params.dest}"

    def archive(self, directory: str) -> Path:
        """Write the tar archive to extract at ``/``: destination paths, modes, owner."""
        p = self.params
        mode = int(p.mode, 8) if p.mode else None
        path = Path(directory) / "copy.tar"
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for dest, entry in self.plan():
                info = tar.gettarinfo(entry.path, arcname=dest.lstrip("/"))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0 if entry.kind == "dir" else info.mtime
                if mode is not None and entry.kind == "file":
                    info.mode = mode
                if entry.kind == "file":
                    with open(entry.path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        return path

    def check(self, ctx: StepContext) -> Optional[bool]:
        """Host backends: satisfied when every file's content digest and mode already match."""
        files = [(dest, e) for dest, e in self.plan() if e.kind == "file"]
        want_mode = int(self.params.mode, 8) if self.params.mode else None
        # one call (one round trip) for the whole copy
        for (dest, entry), st in zip(files, ctx.stat_many([dest for dest, _ in files])):
            digest, mode = entry_digest(entry.path, ctx.session.stat_cache)
            if not st.exists or st.digest != digest or st.mode != (want_mode if want_mode is not None else mode):
                return False
            if self.params.owner and getattr(st, "owner", None) not in (None, *self._owners()):
                return False
        return bool(files) or None

    def _owners(self) -> tuple[str, ...]:
        owner = self.params.owner or ""
        return (owner, owner if ":" in owner else f"{owner}:{owner}")

    def apply(self, ctx: StepContext) -> Optional[bool]:
        if self.params.from_ is not None:
            image = self.source[0]
            if image is None:
                raise RecipeError(f"{self.step.path}.copy.from: no image to copy from ({self.source[1]})",
                                  where=self.recipe.locate(f"{self.step.path}.copy.from"))
            ctx.backend.copy_from(image, self.params.sources, self.params.dest,  # type: ignore[attr-defined]
                                  owner=self.params.owner, mode=self.params.mode)
            return True
        with tempfile.TemporaryDirectory(prefix="shlax-copy-") as tmp:
            ctx.put_archive(self.archive(tmp), "/", owner=self.params.owner,
                                    paths=[dest for dest, _ in self.plan()])
        return True
