"""Selecting host files for ``copy``: globs, exclusions (.shlaxignore), and the recipe-dir fence.

Every source must stay inside the recipe's directory, symlinks included: a recipe cannot read
``~/.ssh`` by accident or through a link.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from shlax_core.errors import RecipeError

IGNORE_FILE = ".shlaxignore"


@dataclass(frozen=True)
class Entry:
    """One file, directory or symlink to copy: its path in the archive and on the host."""

    arcname: str
    path: str
    kind: str  # "file" | "dir" | "link"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def ignore_spec(root: Path, patterns: Sequence[str]):
    """A pathspec of the recipe dir's .shlaxignore plus the step's own ``exclude`` patterns."""
    lines = list(patterns)
    ignore = root / IGNORE_FILE
    if ignore.is_file():
        lines = ignore.read_text().splitlines() + lines
    if not lines:
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)  # git's own rules; "gitwildmatch" is deprecated


def select(root: Path, sources: Sequence[str], exclude: Sequence[str], *,
           where: Optional[str] = None, key: str = "src") -> list[tuple[str, list[Entry]]]:
    """For each source pattern, the matching entries: (source, entries), archive names relative
    to what the source copies (a directory's contents, or the file itself)."""
    real_root = os.path.realpath(root)
    spec = ignore_spec(root, exclude)
    out = []
    for src in sources:
        if os.path.isabs(src):
            raise RecipeError(f"{key} {src!r} is absolute: sources are relative to the recipe's directory",
                              where=where, hint=f"move it under {root} and name it relatively")
        pattern = os.path.join(real_root, src)
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(src) else (
            [pattern] if os.path.lexists(pattern) else [])
        if not matches:
            raise RecipeError(f"{key} {src!r} matches nothing in {root}", where=where,
                              hint="check the name; paths are relative to the recipe file")
        for match in matches:
            _fence(match, real_root, src, where)
            rel_root = os.path.relpath(match, real_root)
            if spec is not None and glob.has_magic(src) and os.path.isdir(match) and spec.match_file(rel_root + "/"):
                continue
            if os.path.isdir(match) and not os.path.islink(match):
                entries = []
                for dirpath, dirnames, filenames in os.walk(match):
                    dirnames.sort()
                    for name in [*dirnames, *sorted(filenames)]:
                        full = os.path.join(dirpath, name)
                        rel = os.path.relpath(full, real_root)
                        is_dir = os.path.isdir(full) and not os.path.islink(full)
                        if spec is not None and spec.match_file(rel + ("/" if is_dir else "")):
                            if is_dir:
                                dirnames.remove(name)
                            continue
                        _fence(full, real_root, src, where)
                        kind = "link" if os.path.islink(full) else ("dir" if is_dir else "file")
                        entries.append(Entry(os.path.relpath(full, match), full, kind))
                out.append((match, entries))
            else:
                if spec is not None and glob.has_magic(src) and spec.match_file(rel_root):
                    continue  # a glob skips ignored files; a file named outright is copied
                kind = "link" if os.path.islink(match) else "file"
                out.append((match, [Entry(os.path.basename(match), match, kind)]))
    return out


def _fence(path: str, real_root: str, src: str, where: Optional[str]) -> None:
    target = os.path.realpath(path)
    if not _inside(target, real_root) or not _inside(os.path.abspath(path), real_root):
        raise RecipeError(f"copy source {src!r} escapes the recipe's directory"
                          + (f" (through the symlink {path})" if os.path.islink(path) else ""),
                          where=where, hint=f"only files under {real_root} can be copied")
