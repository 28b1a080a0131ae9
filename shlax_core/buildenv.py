"""Build-wide ``env`` and ``workdir``: a target's (and a step list's) settings for every command.

A target's ``env`` / ``workdir`` keys, and the ``{ env = {...} }`` / ``{ workdir = "..." }``
pseudo-steps of a step list, are what a Containerfile's ``ENV`` and ``WORKDIR`` say: every later
step that runs a command gets them (docs/recipes.md, "Build-wide env and workdir"). The recipe
loader attaches to each step the declarations in force there (:class:`Settings`); the runner
puts them in the step's key (raw, as written: the base image is already in the key) and the
step's context expands them when its first command runs.

``${NAME}`` in a value expands to the value set earlier, or else to the variable's starting
value: the image's own environment (``PATH`` is the image backend's default when the image sets none), or
the machine's on host targets. A name defined nowhere is an error at the declaration's
``file:line``, not an empty string: ``PATH = "/opt/venv/bin:${PAHT}"`` expanding to
``/opt/venv/bin:`` would break every later command with "not found", far from the typo.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from shlax_core import names
from shlax_core.errors import RecipeError

if TYPE_CHECKING:  # pragma: no cover
    from typing import Sequence

    from shlax_core.actions import Action
    from shlax_core.backends import Backend
    from shlax_core.locate import Locator

#: the pseudo-steps of a step list: their names are not actions
PSEUDO_STEPS = ("env", "workdir")
#: ``$$`` (a literal ``$``), ``${NAME}``, or a malformed ``${...``
_TOKEN = re.compile(r"\$\$|\$\{([^}]*)(\}?)")


@dataclass(frozen=True)
class Decl:
    """One ``NAME = VALUE`` of a build-wide env, or a workdir (``name`` None), where written."""

    name: Optional[str]
    value: str
    where: Optional[str]
    path: str


@dataclass(frozen=True)
class Settings:
    """The build-wide declarations in force for one step, in the order they were written."""

    env: tuple[Decl, ...] = ()
    workdir: Optional[Decl] = None

    def __bool__(self) -> bool:
        return bool(self.env) or self.workdir is not None

    def key(self) -> dict[str, Any]:
        """What goes into the key of a step that runs commands: the values as written."""
        out: dict[str, Any] = {}
        if self.env:
            out["(env)"] = [[d.name, d.value] for d in self.env]
        if self.workdir is not None:
            out["(workdir)"] = self.workdir.value
        return out

    def add_env(self, decls: list[Decl]) -> "Settings":
        return Settings((*self.env, *decls), self.workdir)

    def set_workdir(self, decl: Decl) -> "Settings":
        return Settings(self.env, decl)


def _check_value(value: Any, path: str, where: Optional[str]) -> str:
    if not isinstance(value, str):
        raise RecipeError(f"{path} must be a string, not {type(value).__name__} ({value!r})", where=where,
                          hint='environment values are strings: write PORT = "8000"')
    for m in _TOKEN.finditer(value):
        if m.group(0) == "$$":
            continue
        inner, closed = m.group(1), m.group(2)
        if not closed or not names.ENV_NAME.match(inner):
            raise RecipeError(f"{path}: {m.group(0)!r} is not a variable reference", where=where,
                              hint="write ${NAME} (letters, digits, _); $$ is a literal $ "
                                   "(no ${NAME:-default} forms)")
    return value


def parse_env(raw: Any, path: str, loc: "Locator") -> list[Decl]:
    """A build-wide ``env`` table, checked: names are variable names, values strings."""
    if not isinstance(raw, dict):
        raise RecipeError(f"{path} must be a table of environment variables", where=loc(path),
                          hint='write env = { PATH = "/opt/venv/bin:${PATH}", LANG = "C.UTF-8" }')
    decls = []
    for name, value in raw.items():
        vpath = f"{path}.{name}"
        if not names.ENV_NAME.match(name):
            raise RecipeError(f"{vpath}: {name!r} is not a variable name (letters, digits and _, not "
                              "starting with a digit)", where=loc(vpath))
        decls.append(Decl(name, _check_value(value, vpath, loc(vpath)), loc(vpath), vpath))
    return decls


def parse_workdir(raw: Any, path: str, loc: "Locator") -> Decl:
    """A build-wide ``workdir``: an absolute path (``${NAME}`` allowed)."""
    value = _check_value(raw, path, loc(path))
    problem = None if value.startswith("${") else names.absolute_path(value, what="workdir")
    if problem:
        raise RecipeError(f"{path}: {problem}", where=loc(path), hint='write workdir = "/app"')
    return Decl(None, value, loc(path), path)


def expand(value: str, lookup: Callable[[str], Optional[str]], decl: Decl) -> str:
    """``value`` with every ``${NAME}`` replaced; an undefined name is an error at ``decl``."""

    def one(m: "re.Match[str]") -> str:
        if m.group(0) == "$$":
            return "$"
        found = lookup(m.group(1))
        if found is None:
            raise RecipeError(f"{decl.path}: ${{{m.group(1)}}} is not defined: it is set neither earlier "
                              "in the build-wide env nor in the starting environment", where=decl.where,
                              hint=f"set {m.group(1)} in an earlier env, or check the spelling")
        return found

    return _TOKEN.sub(one, value)


class _Starts:
    """Each machine's starting environment, read once per variable (a backend per machine)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: "weakref.WeakKeyDictionary[Backend, dict[str, Optional[str]]]" = weakref.WeakKeyDictionary()

    def get(self, backend: "Backend", name: str) -> Optional[str]:
        with self._lock:
            known = self._seen.setdefault(backend, {})
            if name in known:
                return known[name]
        value = backend.start_env(name)
        with self._lock:
            known[name] = value
        return value


_STARTS = _Starts()


def resolve(settings: Settings, backend: "Backend") -> tuple[dict[str, str], Optional[str]]:
    """The environment and working folder a step's commands get, every ``${NAME}`` expanded."""
    env: dict[str, str] = {}

    def lookup(name: str) -> Optional[str]:
        return env[name] if name in env else _STARTS.get(backend, name)

    for decl in settings.env:
        env[decl.name or ""] = expand(decl.value, lookup, decl)
    workdir = None
    if settings.workdir is not None:
        workdir = expand(settings.workdir.value, lookup, settings.workdir)
        problem = names.absolute_path(workdir, what="workdir")
        if problem:
            raise RecipeError(f"{settings.workdir.path}: {problem} (after expansion)", where=settings.workdir.where)
    return env, workdir


def check(actions: "Sequence[Action]", backend: "Backend") -> None:
    """Expand every step's settings once before an image build runs any step: an undefined
    ``${NAME}`` is then an error before anything is built (the image's environment is known
    from its configuration, at no cost)."""
    seen: set[int] = set()
    for action in actions:
        settings = action.step.settings
        if action.runs_commands and settings and id(settings) not in seen:
            seen.add(id(settings))
            resolve(settings, backend)
