"""Docker's ignore-file rules (``.dockerignore``, ``.containerignore``), as Docker and buildah read them.

They are not gitignore's, and a file written for Docker means something else under gitignore
rules (``*`` then ``!/bookmarks`` copies ``bookmarks/`` with Docker and nothing with git):

- every pattern is a path from the context root (the recipe's directory), matched with Go's
  ``filepath.Match`` (``*`` and ``?`` stop at ``/``, ``[...]`` classes, ``\\`` escapes) plus
  ``**`` for any number of directories; there is no "at any depth" for a pattern without a
  slash: ``*.pyc`` is ``./*.pyc`` only;
- a leading ``/`` is dropped, the pattern is cleaned (``a//b/./c/`` is ``a/b/c``), so a
  trailing ``/`` means nothing;
- a pattern that matches a directory matches everything under it;
- ``!`` re-includes; the last pattern that matches a path decides (so a file under an excluded
  directory can be re-included);
- a line starting with ``#`` is a comment; blank lines are skipped; surrounding spaces are cut.

Written from Docker's documented behaviour and checked against its cases in tests/test_ignore_files.py.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

_ESCAPE = set(".+()|{}$")  # regex metacharacters that are plain characters in a path pattern


class PatternError(ValueError):
    """A line that is not a valid pattern: (line number, message)."""


@dataclass(frozen=True)
class Rule:
    """One pattern of the file: where it is, as written, and how it matches a path."""

    line: int
    text: str
    reinclude: bool
    match: Callable[[str], bool]
    #: the cleaned pattern's names (``a/*/b`` -> ``["a", "*", "b"]``)
    words: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.text


def _clean(pattern: str) -> str:
    """Go's ``filepath.Clean`` for slash paths (Python keeps a leading ``//``; Go does not)."""
    cleaned = posixpath.normpath(pattern) if pattern else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _matcher(pattern: str, line: int) -> Callable[[str], bool]:
    """How Docker matches one cleaned pattern: a literal compare, a prefix (``dir/**``), a
    suffix (a leading ``**`` with nothing else special), or a regular expression."""
    regex, kind, i, n = "^", "exact", 0, len(pattern)
    first = True
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:  # "**" at the end: everything below
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex += ".*"
                        kind = "regex"
                else:
                    regex += "(.*/)?"
                    kind = "regex"
                if first:
                    kind = "suffix"
                first = False
                continue
            regex += "[^/]*"
            kind = "regex"
        elif ch == "?":
            regex += "[^/]"
            kind = "regex"
        elif ch in _ESCAPE:
            regex += "\\" + ch
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                regex += re.escape(pattern[i])
                kind = "regex"
            else:
                regex += "\\\\"
        elif ch == "[":
            end = _class_end(pattern, i)
            if end < 0:
                raise PatternError(line, f"{pattern!r}: unclosed [ (a character class)")
            regex += _class(pattern[i + 1:end])
            kind = "regex"
            i = end
        elif ch == "]":
            regex += "\\]"
            kind = "regex"
        else:
            regex += re.escape(ch) if ch in "^&~#- \t" else ch
        i += 1
        first = False
    if kind == "exact":
        return lambda path: path == pattern
    if kind == "prefix":
        head = pattern[:-2]
        return lambda path: path.startswith(head)
    if kind == "suffix":
        tail = pattern[2:]
        bare = tail[1:] if tail.startswith("/") else None
        return lambda path: path.endswith(tail) or path == bare
    compiled = re.compile(regex + "$", re.S)
    return lambda path: compiled.match(path) is not None


def _class_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start``, or -1."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    first = True
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            first = False
            continue
        if pattern[i] == "]" and not first:
            return i
        first = False
        i += 1
    return -1


def _class(body: str) -> str:
    """A character class of a pattern as a Python class (``[^...]`` negates, as in Go)."""
    out, i = "[", 0
    if body.startswith("^"):
        out, i = "[^", 1
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out += re.escape(body[i + 1])
            i += 2
            continue
        out += ch if ch == "-" or ch.isalnum() else re.escape(ch)
        i += 1
    return out + "]"


def parse(text: str) -> list[Rule]:
    """The rules of an ignore file, with their line numbers; PatternError for a bad one."""
    rules = []
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        reinclude = pattern.startswith("!")
        if reinclude:
            pattern = pattern[1:].strip()
            if not pattern:
                raise PatternError(number, '"!" alone re-includes nothing: name what to re-include')
        pattern = _clean(pattern)
        if len(pattern) > 1 and pattern.startswith("/"):
            pattern = pattern[1:]
        rules.append(Rule(number, raw.strip(), reinclude, _matcher(pattern, number), tuple(pattern.split("/"))))
    return rules


class DockerIgnore:
    """Answers "is this path excluded?" the way Docker does, walking down a tree.

    A walk carries, for each directory, which rules matched it or one of its parents (a rule
    matching a directory matches everything under it): a path's answer is then one match per rule,
    not one per rule and parent."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = list(rules)

    def state(self, rel: str) -> tuple[bool, ...]:
        """The carried state of the directory ``rel`` ("" for the root), its parents included."""
        state = tuple(False for _ in self.rules)
        if rel in ("", "."):
            return state
        parts = rel.split("/")
        for depth in range(1, len(parts) + 1):
            state = self.step("/".join(parts[:depth]), state)
        return state

    def step(self, rel: str, parent: tuple[bool, ...]) -> tuple[bool, ...]:
        """Which rules match ``rel`` or a parent, given the parent directory's state."""
        return tuple(p or r.match(rel) for p, r in zip(parent, self.rules))

    def decider(self, state: tuple[bool, ...]) -> Optional[Rule]:
        """The last rule matching: it decides (None: no rule matches, the path is kept)."""
        for matched, rule in zip(reversed(state), reversed(self.rules)):
            if matched:
                return rule
        return None

    def excluded(self, state: tuple[bool, ...]) -> bool:
        rule = self.decider(state)
        return rule is not None and not rule.reinclude

    def may_reinclude_below(self, rel: str) -> bool:
        """Could a ``!`` rule keep something under the excluded directory ``rel``? Only then is
        it walked into (Docker does the same). Without ``**``, a pattern of n names matches only
        paths of n names (``*`` stops at ``/``): a rule may reach below ``rel`` only when it is
        longer and its first names match ``rel``'s. With ``**``, it may."""
        parts = rel.split("/")
        for rule in self.rules:
            if not rule.reinclude:
                continue
            words = rule.words
            if any("**" in w for w in words):
                return True
            if len(words) > len(parts) and all(_matcher(w, rule.line)(p) for w, p in zip(words, parts)):
                return True
        return False
