"""Selecting host files for ``copy``: globs, exclusions (.shlaxignore), and the recipe-dir fence.

Every source must stay inside the recipe's directory, symlinks included: a recipe cannot read
``~/.ssh`` by accident or through a link.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

from shlax_core.errors import RecipeError

IGNORE_FILE = ".shlaxignore"
#: a key in a ``watch`` dict meaning "these inputs cannot be guarded by signatures"
UNWATCHABLE = "*unwatchable*"


class Entry(NamedTuple):
    """One file, directory or symlink to copy: its path in the archive and on the host.

    A tuple: a copy of 100,000 files makes 100,000 of them, and a tuple is the cheapest record
    to make and to keep."""

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


def _walk(top: str, watch: Optional[dict[str, Optional[list[int]]]]) -> Iterator[tuple[str, list[os.DirEntry]]]:
    """Top-down walk (no symlinked directory followed) that stats each directory *before* listing
    it, so a file added while shlax works always shows as a newer directory signature. Yields
    (directory, its entries sorted by name); the caller prunes a subdirectory from the walk by
    removing its entry from the list. Entries come from ``scandir``: telling a directory, a
    symlink and a file apart costs no stat call."""
    if watch is not None:
        watch[top] = signature(top)
    with os.scandir(top) as it:
        entries = sorted(it, key=lambda e: e.name)
    yield top, entries
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, watch)


def ignorer(spec) -> Optional[Callable[[str], bool]]:
    """``spec.match_file``, or the same answers from one regex when no pattern re-includes (``!``):
    then a path is ignored exactly when some pattern matches. One ``re.match`` costs ~1 µs where
    pathspec's general matcher costs ~30 (a second and a half per 50,000 files)."""
    if spec is None:
        return None
    patterns = [p for p in spec.patterns if p.include is not None]
    if not patterns:
        return None
    if any(not p.include or getattr(p, "regex", None) is None for p in patterns):
        return spec.match_file
    # pathspec names a group in each pattern (the directory marker); a name cannot repeat
    parts = [re.sub(r"\(\?P<\w+>", "(?:", p.regex.pattern) for p in patterns]
    combined = re.compile("|".join(f"(?:{part})" for part in parts))
    return lambda path: combined.match(path) is not None


def _tree(match: str, rel_match: str, ignored: Optional[Callable[[str], bool]], real_root: str,
          src: str, where: Optional[str], watch: Optional[dict[str, Optional[list[int]]]]) -> list[Entry]:
    """Everything under the directory ``match`` that is not ignored, top-down.

    Symlinks are fenced one by one; nothing else needs to be: the walk follows no link, so any
    other entry's real path is its top's (fenced) real path followed by its own names."""
    entries = []
    top_len = len(os.path.join(match, ""))
    rel_prefix = "" if rel_match == "." else rel_match + "/"
    for _dirpath, listing in _walk(match, watch):
        for entry in list(listing):
            full = entry.path
            arcname = full[top_len:]
            is_dir = entry.is_dir(follow_symlinks=False)
            if ignored is not None and ignored(rel_prefix + arcname + ("/" if is_dir else "")):
                if is_dir:
                    listing.remove(entry)
                continue
            if entry.is_symlink():
                _fence(full, real_root, src, where)
                kind = "link"
            else:
                kind = "dir" if is_dir else "file"
            entries.append(Entry(arcname, full, kind))
    return entries


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
    ignored = ignorer(spec)
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
                out.append((match, _tree(match, rel_root, ignored, real_root, src, where, watch)))
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
