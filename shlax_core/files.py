"""Selecting host files for ``copy``: globs, exclusions (ignore files), and the recipe-dir fence.

Every source must stay inside the recipe's directory, symlinks included: a recipe cannot read
``~/.ssh`` by accident or through a link.

One ignore file of the recipe's directory is read, the first that exists of ``.shlaxignore``
(gitignore's rules, through pathspec), ``.containerignore`` and ``.dockerignore`` (Docker's
rules, :mod:`shlax_core.dockerignore`; buildah prefers .containerignore the same way). A step's
``exclude`` patterns (gitignore's rules) leave out more.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

from shlax_core import dockerignore
from shlax_core.errors import RecipeError
from shlax_core.filestate import signature

IGNORE_FILE = ".shlaxignore"
#: read with Docker's rules, in this order, when there is no .shlaxignore
DOCKER_IGNORE_FILES = (".containerignore", ".dockerignore")
IGNORE_FILES = (IGNORE_FILE, *DOCKER_IGNORE_FILES)
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


def ignore_file(root: Path) -> Optional[Path]:
    """The ignore file a copy from ``root`` reads: the first of :data:`IGNORE_FILES` there."""
    for name in IGNORE_FILES:
        if (root / name).is_file():
            return root / name
    return None


def _git_lines(lines: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """Lines that are patterns (no blank line, no comment) and their labels, kept in step: a
    pattern's index in the spec is then its label's."""
    kept = [(line, label) for line, label in zip(lines, labels) if line.strip() and not line.startswith("#")]
    return [k[0] for k in kept], [k[1] for k in kept]


class Ignores:
    """What a copy leaves out, asked entry by entry while walking down a tree.

    ``state`` is what a walk carries from a directory to its entries (Docker's rules need which
    patterns matched a parent; gitignore's need nothing: an ignored directory is never entered).
    """

    def __init__(self, root: Path, exclude: Sequence[str]):
        self.file = ignore_file(root)
        self.docker: Optional[dockerignore.DockerIgnore] = None
        file_lines: list[str] = []
        if self.file is not None and self.file.name in DOCKER_IGNORE_FILES:
            try:
                self.docker = dockerignore.DockerIgnore(dockerignore.parse(self.file.read_text()))
            except dockerignore.PatternError as exc:
                line, message = exc.args
                raise RecipeError(f"{self.file.name}:{line}: {message}", where=f"{self.file}:{line}",
                                  hint="patterns follow Docker's rules (Go's filepath.Match plus **)") from None
        elif self.file is not None:
            file_lines = self.file.read_text().splitlines()
        lines, self.labels = _git_lines(
            [*file_lines, *exclude],
            [*(f"{IGNORE_FILE}:{i}" for i in range(1, len(file_lines) + 1)),
             *(f"exclude[{i}]" for i in range(len(exclude)))])
        self.spec: Any = None
        if lines:
            import pathspec

            self.spec = pathspec.GitIgnoreSpec.from_lines(lines)  # git's own rules
        self._git = ignorer(self.spec)

    @property
    def active(self) -> bool:
        return self.docker is not None or self.spec is not None

    def root(self, rel: str) -> Any:
        """The state of the directory ``rel`` (relative to the recipe's directory, "." for itself)."""
        return self.docker.state("" if rel == "." else rel) if self.docker is not None else None

    def check(self, rel: str, is_dir: bool, parent: Any) -> tuple[bool, Any, bool]:
        """(excluded, state for its entries, walk into it) for the entry ``rel`` of a directory
        whose state is ``parent``. An excluded directory is walked into only when a Docker ``!``
        rule may keep something under it."""
        state = None
        if self.docker is not None:
            state = self.docker.step(rel, parent)
            if self.docker.excluded(state):
                return True, state, is_dir and self.docker.may_reinclude_below(rel)
        if self._git is not None and self._git(rel + "/" if is_dir else rel):
            return True, state, False
        return False, state, True

    def excluded(self, rel: str, is_dir: bool) -> bool:
        """The same answer for one path, its parents' rules worked out from the top."""
        parent, _, _name = rel.rpartition("/")
        return self.check(rel, is_dir, self.root(parent or "."))[0]

    def why(self, rel: str, is_dir: bool) -> Optional[str]:
        """The rule that leaves ``rel`` out: ``FILE:LINE `pattern` `` or ``exclude[N] `pattern` ``."""
        if self.docker is not None and self.file is not None:
            rule = self.docker.decider(self.docker.state(rel))
            if rule is not None and not rule.reinclude:
                return f"{self.file.name}:{rule.line} `{rule.text}`"
        if self.spec is not None:
            result = self.spec.check_file(rel + "/" if is_dir else rel)
            if result.include and result.index is not None:
                return f"{self.labels[result.index]} `{self.spec.patterns[result.index].pattern}`"
        return None


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


def _tree(match: str, rel_match: str, ignores: Ignores, real_root: str, src: str, where: Optional[str],
          watch: Optional[dict[str, Optional[list[int]]]]) -> tuple[list[Entry], int]:
    """Everything under the directory ``match`` that is not ignored, top-down, and how many
    entries the ignores left out.

    Symlinks are fenced one by one; nothing else needs to be: the walk follows no link, so any
    other entry's real path is its top's (fenced) real path followed by its own names. A
    directory that is left out but walked into (a Docker ``!`` rule may keep something under it)
    is added just before the first entry kept under it, so its kept files have their folder."""
    entries: list[Entry] = []
    dropped = 0
    top_len = len(os.path.join(match, ""))
    rel_prefix = "" if rel_match == "." else rel_match + "/"
    states: dict[str, Any] = {match: ignores.root(rel_match)} if ignores.active else {}
    held: dict[str, Entry] = {}  # left-out directories walked into, not added (yet)
    for dirpath, listing in _walk(match, watch):
        parent = states.get(dirpath)
        for entry in list(listing):
            full = entry.path
            arcname = full[top_len:]
            is_dir = entry.is_dir(follow_symlinks=False)
            if ignores.active:
                excluded, state, descend = ignores.check(rel_prefix + arcname, is_dir, parent)
                if is_dir and descend:
                    states[full] = state
                if excluded:
                    dropped += 1
                    if not is_dir:
                        continue
                    if not descend:
                        listing.remove(entry)
                        continue
                    held[full] = Entry(arcname, full, "dir")
                    continue
            if entry.is_symlink():
                _fence(full, real_root, src, where)
                kind = "link"
            else:
                kind = "dir" if is_dir else "file"
            if held:
                _release(held, dirpath, entries)
            entries.append(Entry(arcname, full, kind))
    return entries, dropped


def _release(held: dict[str, Entry], dirpath: str, entries: list[Entry]) -> None:
    """Add the held directories above an entry of ``dirpath``, top-down."""
    chain = []
    while dirpath in held:
        chain.append(held.pop(dirpath))
        dirpath = os.path.dirname(dirpath)
    entries.extend(reversed(chain))


def _emptied(src: str, key: str, match: str, rel_match: str, ignores: Ignores, where: Optional[str]) -> RecipeError:
    """A source whose files the ignores all left out: name the rules that did it."""
    reasons: dict[str, int] = {}
    prefix = "" if rel_match == "." else rel_match + "/"
    seen = 0
    for dirpath, _dirs, names in os.walk(match):
        for name in names:
            rel = prefix + os.path.relpath(os.path.join(dirpath, name), match)
            why = ignores.why(rel, False)
            if why:
                reasons[why] = reasons.get(why, 0) + 1
            seen += 1
        if seen >= 1000:  # enough to name the rules
            break
    named = sorted(reasons, key=lambda r: -reasons[r])[:3]
    if ignores.docker is not None:
        rules = ("Docker's rules: a pattern is a path from the recipe's directory (no match at any depth "
                 "without **), a match on a folder covers what is under it, the last matching pattern wins, "
                 "and `!PATH` keeps PATH")
    else:
        rules = "gitignore's rules: a file under an ignored folder cannot be kept by a later `!` pattern"
    return RecipeError(f"{key} {src!r} copies no file: every file in it is left out by "
                       + (", ".join(named) if named else "the ignore rules"),
                       where=where, hint=f"keep what the copy needs, or copy another source; {rules}")


def select(root: Path, sources: Sequence[str], exclude: Sequence[str], *,
           where: Optional[str] = None, key: str = "src",
           watch: Optional[dict[str, Optional[list[int]]]] = None) -> list[tuple[str, list[Entry]]]:
    """For each source pattern, the matching entries: (source, entries), archive names relative
    to what the source copies (a directory's contents, or the file itself).

    ``watch`` collects the signature of every directory and ignore file read, taken before
    reading them (files' own signatures come from the stat cache when they are hashed): all the
    ignore files, since one appearing changes which is read.

    A source that had files, all of which the ignores left out, is an error naming the rules:
    an empty copy is never what was meant.
    """
    real_root = os.path.realpath(root)
    if watch is not None:
        for name in IGNORE_FILES:
            watch[str(root / name)] = signature(str(root / name))
    ignores = Ignores(root, exclude)
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
        kept = 0
        for match in matches:
            _fence(match, real_root, src, where)
            rel_root = os.path.relpath(match, real_root)
            is_dir = os.path.isdir(match) and not os.path.islink(match)
            if ignores.active and glob.has_magic(src) and ignores.excluded(rel_root, os.path.isdir(match)):
                continue  # a glob skips ignored files; a file named outright is copied
            kept += 1
            if is_dir:
                entries, dropped = _tree(match, rel_root, ignores, real_root, src, where, watch)
                if dropped and not any(e.kind != "dir" for e in entries):
                    raise _emptied(src, key, match, rel_root, ignores, where)
                out.append((match, entries))
            else:
                kind = "link" if os.path.islink(match) else "file"
                out.append((match, [Entry(os.path.basename(match), match, kind)]))
        if not kept:
            rules = sorted({ignores.why(os.path.relpath(m, real_root), os.path.isdir(m)) or "?" for m in matches})
            raise RecipeError(f"{key} {src!r} copies no file: every match is left out by {', '.join(rules[:3])}",
                              where=where, hint="name a file outright to copy it anyway, or change the rule")
    return out


def _fence(path: str, real_root: str, src: str, where: Optional[str]) -> None:
    target = os.path.realpath(path)
    if not _inside(target, real_root) or not _inside(os.path.abspath(path), real_root):
        raise RecipeError(f"copy source {src!r} escapes the recipe's directory"
                          + (f" (through the symlink {path})" if os.path.islink(path) else ""),
                          where=where, hint=f"only files under {real_root} can be copied")
