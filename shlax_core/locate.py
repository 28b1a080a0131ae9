"""Find the line of a key path in TOML source, so errors point at ``recipe.toml:LINE``.

tomllib gives values, not positions. This scanner walks the source once and records the line
where each key path (``targets.app.steps[2].copy.dest``) starts. It only needs to be right for
files tomllib already accepted, and falls back to the nearest known parent path.
"""

from __future__ import annotations

import re
from typing import Optional

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class _Scanner:
    def __init__(self, text: str):
        self.s = text
        self.i = 0
        self.line = 1
        self.lines: dict[str, int] = {}
        self.aot: dict[str, int] = {}

    # -- low level -------------------------------------------------------------------------
    def peek(self, n: int = 1) -> str:
        return self.s[self.i:self.i + n]

    def adv(self, n: int = 1) -> None:
        chunk = self.s[self.i:self.i + n]
        self.line += chunk.count("\n")
        self.i += n

    def skip_ws(self, newlines: bool) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.adv()
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.adv()
            else:
                break

    def string(self) -> str:
        for q in ('"""', "'''"):
            if self.peek(3) == q:
                self.adv(3)
                start = self.i
                while self.i < len(self.s) and self.peek(3) != q:
                    self.adv(2 if q == '"""' and self.peek() == "\\" else 1)
                value = self.s[start:self.i]
                self.adv(3)
                while self.peek() == q[0]:
                    self.adv()
                return value
        q = self.peek()
        self.adv()
        start = self.i
        while self.i < len(self.s) and self.s[self.i] != q and self.s[self.i] != "\n":
            self.adv(2 if q == '"' and self.s[self.i] == "\\" else 1)
        value = self.s[start:self.i]
        self.adv()
        return value

    def key(self) -> list[str]:
        parts = []
        while True:
            self.skip_ws(False)
            if self.peek() == '"':  # a basic string: its escapes mean what tomllib makes of them
                parts.append(_unescape(self.string()))
            elif self.peek() == "'":
                parts.append(self.string())
            else:
                m = _BARE.match(self.s, self.i)
                if not m:
                    break
                parts.append(m.group())
                self.adv(len(m.group()))
            self.skip_ws(False)
            if self.peek() == ".":
                self.adv()
                continue
            break
        return parts

    # -- structure -------------------------------------------------------------------------
    def record(self, path: str, line: int) -> None:
        self.lines.setdefault(path, line)

    def value(self, path: str) -> None:
        self.skip_ws(False)
        c = self.peek()
        if c == "[":
            self.adv()
            index = 0
            while True:
                self.skip_ws(True)
                if self.peek() == "]" or self.i >= len(self.s):
                    self.adv()
                    return
                self.record(f"{path}[{index}]", self.line)
                self.value(f"{path}[{index}]")
                index += 1
                self.skip_ws(True)
                if self.peek() == ",":
                    self.adv()
        elif c == "{":
            self.adv()
            while True:
                self.skip_ws(True)
                if self.peek() == "}" or self.i >= len(self.s):
                    self.adv()
                    return
                line = self.line
                key = self.key()
                if not key:
                    self.adv()
                    continue
                for n in range(1, len(key) + 1):
                    self.record(".".join([path, *key[:n]]), line)
                self.skip_ws(False)
                if self.peek() == "=":
                    self.adv()
                self.value(".".join([path, *key]))
                self.skip_ws(True)
                if self.peek() == ",":
                    self.adv()
        elif c in ('"', "'"):
            self.string()
        else:
            while self.i < len(self.s) and self.s[self.i] not in ",]}\n#":
                self.adv()

    def resolve(self, parts: list[str], line: int) -> str:
        """The key path of a table header's keys: a key naming an array of tables means its
        latest element (``[t.s.sub]`` after ``[[t.s]]`` is ``t.s[N].sub``). Records each prefix."""
        path = ""
        for part in parts:
            path = f"{path}.{part}" if path else part
            self.record(path, line)
            if path in self.aot:
                path = f"{path}[{self.aot[path]}]"
        return path

    def run(self) -> dict[str, int]:
        table: list[str] = []
        while True:
            self.skip_ws(True)
            if self.i >= len(self.s):
                return self.lines
            line = self.line
            if self.peek(2) == "[[":
                self.adv(2)
                key = self.key()
                parent = self.resolve(key[:-1], line)
                name = f"{parent}.{key[-1]}" if parent else (key[-1] if key else "")
                n = self.aot.get(name, -1) + 1
                self.aot[name] = n
                table = [f"{name}[{n}]"]
                self.record(name, line)
                self.record(table[0], line)
                self.adv(2)
            elif self.peek() == "[":
                self.adv()
                key = self.key()
                table = [self.resolve(key, line)] if key else []
                self.adv()
            else:
                key = self.key()
                if not key:
                    self.adv()
                    continue
                full = table + key
                for n in range(1, len(full) + 1):
                    self.record(".".join(full[:n]), line)
                self.skip_ws(False)
                if self.peek() == "=":
                    self.adv()
                self.value(".".join(full))


def _unescape(raw: str) -> str:
    """A basic string's escapes (``\\"``, ``\\u0061``...) decoded, as the parser does."""
    if "\\" not in raw:
        return raw
    try:
        from shlax_core.tomlfile import tomllib

        return tomllib.loads(f'k = "{raw}"')["k"]
    except Exception:
        return raw


class Locator:
    """Maps key paths of one recipe file to ``file:line`` strings."""

    def __init__(self, filename: str, text: str):
        self.filename = filename
        try:
            self.lines = _Scanner(text).run()
        except Exception:  # a locator must never hide the real error
            self.lines = {}

    def line(self, path: str) -> Optional[int]:
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def __call__(self, path: str) -> str:
        line = self.line(path)
        return f"{self.filename}:{line}" if line else self.filename
