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
#: a key in a ``watch`` dict meaning "these inputs cannot be guarded by signatures"
UNWATCHABLE = "*unwatchable*"


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


def signature(path: str) -> Optional[list[int]]:
    """What a later no-op check compares: size, mtime, ctime, inode, device (None: missing)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _walk(top: str, watch: Optional[dict[str, Optional[list[int]]]]):
    """os.walk (top-down, no symlinked dirs followed) that stats each directory *before* listing
    it, so a file added while shlax works always shows as a newer directory signature."""
    if watch is not None:
        watch[top] = signature(top)
    with os.scandir(top) as it:
        entries = list(it)
    dirnames = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    filenames = sorted(e.name for e in entries if not e.is_dir(follow_symlinks=False))
    yield top, dirnames, filenames
    for name in dirnames:
        yield from _walk(os.path.join(top, name), watch)


def select(root: Path, sources: Sequence[str], exclude: Sequence[str], *,
           where: Optional[str] = None, key: str = "src",
           watch: Optional[dict[str, Optional[list[int]]]] = None) -> list[tuple[str, list[Entry]]]:
    """For each source pattern, the matching entries: (source, entries), archive names relative
    to what the source copies (a directory's contents, or the file itself).

    ``watch`` collects the signature of every directory and ignore file read, taken before
    reading them (files' own signatures come from the stat cache when they are hashed).
    """
    real_root = os.path.realpath(root)
    if watch is not None:
        watch[str(root / IGNORE_FILE)] = signature(str(root / IGNORE_FILE))
    spec = ignore_spec(root, exclude)
    out = []
    for src in sources:
        if os.path.isabs(src):
            raise RecipeError(f"{key} {src!r} is absolute: sources are relative to the recipe's directory",
                              where=where, hint=f"move it under {root} and name it relatively")
        pattern = os.path.join(real_root, src)
        if watch is not None and glob.has_magic(src):
            # the directories a glob lists; wildcards above the last component cannot be guarded
            *dirs_part, _last = src.split("/")
            if "**" in src or any(glob.has_magic(d) for d in dirs_part):
                watch[UNWATCHABLE] = None
            static = real_root
            watch[static] = signature(static)
            for part in dirs_part:
                static = os.path.join(static, part)
                watch[static] = signature(static)
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
                for dirpath, dirnames, filenames in _walk(match, watch):
                    for name in [*dirnames, *filenames]:
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
