"""Recipes: TOML -> :class:`Recipe` (targets and their steps), with ``file:line`` errors.

Format (full reference in docs/recipes.md)::

    [steps]                         # named step lists, reused with { use = "NAME" }
    python = [ { apt = ["python3"] } ]

    [targets.app]
    backend = "buildah"             # default: buildah when `base` is set
    base = "debootstrap:bookworm"   # everything but `backend` and `steps` is a backend option
    image = "localhost/app"
    steps = [
      { use = "python" },
      { copy = { src = "app/", dest = "/app" } },
      { run = ["make", "install"], workdir = "/app" },
    ]

Any other top-level table belongs to a plugin that declares it in the ``shlax.sections``
entry-point group (``[services.web]`` -> the ``services`` entry point): the recipe keeps its raw
data in :attr:`Recipe.sections` and the plugin validates it, with ``recipe.locate`` for
``file:line``. Only entry-point metadata is read; no plugin is imported.

A step is a table whose *first key* names the action. Its value is either a table of the action's
parameters or the value of the action's primary parameter; the other keys of the step are more
parameters. Loading the recipe imports no plugin: actions and backends are resolved later, for
the selected targets only (:mod:`shlax_core.resolve`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from shlax_core import buildenv, tomlfile
from shlax_core.buildenv import Settings
from shlax_core.errors import RecipeError
from shlax_core.locate import Locator
from shlax_core.names import VARIABLE
from shlax_core.params import closest

DEFAULT_FILE = "shlax.toml"
TOP_KEYS = ("steps", "targets", "vars", "handlers")
TARGET_CORE_KEYS = ("backend", "steps", "description", "vars", "env", "workdir")
#: keys of a step that belong to the step, not to its action
STEP_OPTIONS = ("become", "become_user", "notify")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Step:
    """One step as written: the action name, its raw value, and where it stands in the recipe."""

    action: str
    value: Any
    options: dict[str, Any]
    path: str
    where: str
    via: tuple[str, ...] = ()
    #: step options: run this step through the backend's privilege switch (None: the target's default)
    become: Optional[bool] = None
    become_user: Optional[str] = None
    #: handlers to run at the end of the host's run when this step changed something
    notify: tuple[str, ...] = ()
    #: the handler this step belongs to ([handlers] table), if any
    handler: Optional[str] = None
    #: the build-wide env and workdir in force for this step (:mod:`shlax_core.buildenv`)
    settings: Settings = field(default_factory=Settings)

    def data(self, primary: Optional[str]) -> tuple[dict[str, Any], str]:
        """The parameters as one table, and the key path they live at (for errors)."""
        if isinstance(self.value, dict):
            clash = set(self.value) & set(self.options)
            if clash:
                raise RecipeError(f"{self.path}: {sorted(clash)[0]!r} is given twice",
                                  where=self.where, hint="give each parameter once")
            return {**self.value, **self.options}, f"{self.path}.{self.action}"
        if primary is None:
            raise RecipeError(f"{self.path}.{self.action} must be a table of parameters",
                              where=self.where,
                              hint=f"write {{ {self.action} = {{ ... }} }}; `shlax actions {self.action}` lists them")
        if primary in self.options:
            raise RecipeError(f"{self.path}: {primary!r} is given twice", where=self.where)
        return {primary: self.value, **self.options}, self.path

    @property
    def label(self) -> str:
        return self.path


@dataclass
class Target:
    name: str
    backend: str
    options: dict[str, Any]
    steps: list[Step]
    path: str
    where: str
    description: str = ""
    locate: Optional[Locator] = field(repr=False, default=None)
    #: the target's own ``vars`` table (over the recipe's ``[vars]``)
    vars: dict[str, Any] = field(default_factory=dict)
    #: the targets that copy from this one's image (it is their stage; :mod:`shlax_core.stages`)
    feeds: tuple[str, ...] = ()
    #: the keys plugins own (``shlax_plugin_options``), validated, by plugin: set when resolved
    parts: dict[str, Any] = field(default_factory=dict)
    #: which of the target's keys were plugins' (such a target is never on the fast path)
    plugin_keys: set[str] = field(default_factory=set)

    def where_of(self, key: str) -> str:
        """``file:line`` of one of this target's keys (``base``, ``hosts[1]``), for backends' errors."""
        return self.locate(f"{self.path}.{key}") if self.locate is not None else self.where


@dataclass
class Recipe:
    path: Path
    targets: dict[str, Target]
    step_lists: dict[str, list[Step]]
    locate: Locator = field(repr=False, default=None)  # type: ignore[assignment]
    #: the text that was parsed (the no-op fast path keys on it, not on the file as it is later)
    source: str = field(repr=False, default="")
    #: raw data of the top-level tables owned by plugins (``shlax.sections``), by key
    sections: dict[str, Any] = field(default_factory=dict)
    #: ``[vars]``: variables for every step's templates
    vars: dict[str, Any] = field(default_factory=dict)
    #: ``[handlers]``: named step lists run at the end of a host's run when notified
    handlers: dict[str, list[Step]] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def shown(self) -> str:
        """The recipe's file name as the user typed it (for messages)."""
        return self.locate.filename if self.locate is not None else str(self.path)

    def select(self, names: tuple[str, ...] | list[str]) -> list[Target]:
        """The targets to run, in recipe order; all of them when ``names`` is empty."""
        if not names:
            if not self.targets:
                raise RecipeError("the recipe has no targets", where=self.shown,
                                  hint="add a [targets.NAME] table with a `steps` list")
            return list(self.targets.values())
        chosen = []
        for name in names:
            if name not in self.targets:
                sugg = closest(name, self.targets)
                raise RecipeError(
                    f"unknown target {name!r}", where=self.shown,
                    hint=(f"did you mean {sugg[0]!r}? " if sugg else "")
                    + f"targets: {', '.join(self.targets) or 'none'}")
            chosen.append(self.targets[name])
        return chosen


def find(path: Optional[str]) -> Path:
    """The recipe file: the argument, or shlax.toml in the current directory."""
    p = Path(path) if path else Path(DEFAULT_FILE)
    if p.is_dir():
        p = p / DEFAULT_FILE
    if not p.is_file():
        raise RecipeError(f"no recipe at {p}", hint="pass the recipe file: shlax run path/to/recipe.toml"
                          if not path else "check the path")
    return p.resolve()


def load(path: Optional[str]) -> Recipe:
    """Parse and structurally validate a recipe; imports no plugin."""
    p = find(path)
    # the name as the user typed it, with shlax.toml added when they named a directory
    typed = Path(path) if path else Path(DEFAULT_FILE)
    shown = str(typed / DEFAULT_FILE if typed.is_dir() else typed)
    return parse(tomlfile.read(p, shown, "recipe"), p, shown)


def parse(text: str, path: Path, shown: Optional[str] = None) -> Recipe:
    shown = shown or str(path)
    data = tomlfile.loads(text, shown)
    loc = Locator(shown, text)
    sections = _sections(data, loc)
    raw_lists = data.get("steps", {})
    if not isinstance(raw_lists, dict):
        raise RecipeError("`steps` at the top level must be a table of named step lists",
                          where=loc("steps"), hint='write [steps] then python = [ { apt = ["python3"] } ]')
    step_lists: dict[str, list[Step]] = {}
    for name, items in raw_lists.items():
        step_lists[name] = _steps(items, f"steps.{name}", loc)
    recipe_vars = _vars(data.get("vars", {}), "vars", loc)
    handlers = _handlers(data.get("handlers", {}), step_lists, loc)
    raw_targets = data.get("targets", {})
    if not isinstance(raw_targets, dict):
        raise RecipeError("`targets` must be a table of targets", where=loc("targets"),
                          hint="write [targets.NAME]")
    targets: dict[str, Target] = {}
    for name, raw in raw_targets.items():
        tpath = f"targets.{name}"
        if not _NAME.match(name):
            raise RecipeError(f"target name {name!r} may hold only letters, digits, '.', '_' and '-'",
                              where=loc(tpath))
        if not isinstance(raw, dict):
            raise RecipeError(f"{tpath} must be a table", where=loc(tpath), hint=f"write [{tpath}]")
        options = {k: v for k, v in raw.items() if k not in TARGET_CORE_KEYS}
        backend = raw.get("backend")
        if backend is None:
            if "base" in raw:
                backend = "buildah"
            else:
                raise RecipeError(f"{tpath} needs a `backend`", where=loc(tpath),
                                  hint='e.g. backend = "buildah" (with base = "...") or "local", "ssh", "podman"')
        if not isinstance(backend, str):
            raise RecipeError(f"{tpath}.backend must be a string", where=loc(f"{tpath}.backend"))
        if "steps" not in raw:
            raise RecipeError(f"{tpath} has no `steps` list", where=loc(tpath),
                              hint='add steps = [ { run = ["true"] } ]')
        start = Settings()
        if "env" in raw:
            start = start.add_env(buildenv.parse_env(raw["env"], f"{tpath}.env", loc))
        if "workdir" in raw:
            start = start.set_workdir(buildenv.parse_workdir(raw["workdir"], f"{tpath}.workdir", loc))
        steps = _settle(_expand(_steps(raw["steps"], f"{tpath}.steps", loc), step_lists, loc, ()), start)
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise RecipeError(f"{tpath}.description must be a string", where=loc(f"{tpath}.description"))
        target_vars = _vars(raw.get("vars", {}), f"{tpath}.vars", loc)
        _check_notify(steps, handlers)
        targets[name] = Target(name, backend, options, steps, tpath, loc(tpath), description, locate=loc,
                               vars=target_vars)
    from shlax_core import stages  # noqa: PLC0415 (stages reads recipes: imported after them)

    for name, target in targets.items():
        target.feeds = tuple(t.name for t in targets.values() if any(src == name for src, _ in
                                                                     stages.depends_on(targets, t)))
    # named lists must be valid even when no target uses them: check `use` references now
    for name, items in step_lists.items():
        _check_notify(_expand(items, step_lists, loc, (name,)), handlers)
    return Recipe(path, targets, step_lists, loc, text, sections=sections, vars=recipe_vars, handlers=handlers)


def _sections(data: dict[str, Any], loc: Locator) -> dict[str, Any]:
    """The top-level tables that are not the core's, each owned by an installed plugin."""
    extra = [key for key in data if key not in TOP_KEYS]
    if not extra:
        return {}
    from shlax_core.plugins import KNOWN_PROVIDERS, Plugins  # only for recipes that need it

    owners = Plugins().names("section")  # entry-point metadata only: nothing is imported
    for key in extra:
        if key in owners:
            continue
        sugg = closest(key, [*TOP_KEYS, *owners])
        provider = KNOWN_PROVIDERS.get(("section", key))
        if provider:
            hint = f"[{key}] tables belong to the {provider} plugin: pip install {provider}"
        elif sugg:
            hint = f"did you mean {sugg[0]!r}?"
        else:
            hint = ("a recipe has [steps] (named step lists) and [targets.NAME] tables"
                    + (f"; installed plugins add: {', '.join(owners)}" if owners else ""))
        raise RecipeError(f"unknown top-level key {key!r}", where=loc(key), hint=hint)
    return {key: data[key] for key in extra}


#: names templates give a meaning of their own (see docs/recipes.md)
RESERVED_VARS = ("host", "facts", "target")
_VAR = VARIABLE


def _vars(raw: Any, path: str, loc: Locator) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecipeError(f"`{path}` must be a table of variables", where=loc(path),
                          hint='write [vars] then port = 8080, or vars = { port = 8080 }')
    for key in raw:
        check_var_name(key, f"{path}.{key}", loc(f"{path}.{key}"))
    return dict(raw)


def check_var_name(key: str, path: str, where: Optional[str]) -> None:
    """Variable names are template identifiers, and not one of the reserved names."""
    if not _VAR.match(key):
        raise RecipeError(f"{path}: variable name {key!r} must be letters, digits and '_', not starting "
                          "with a digit", where=where, hint="templates name it {{ NAME }}")
    if key in RESERVED_VARS:
        raise RecipeError(f"{path}: {key!r} is reserved for templates ({', '.join(RESERVED_VARS)})",
                          where=where, hint="choose another name")


def _handlers(raw: Any, lists: dict[str, list[Step]], loc: Locator) -> dict[str, list[Step]]:
    if not isinstance(raw, dict):
        raise RecipeError("`handlers` must be a table of named steps", where=loc("handlers"),
                          hint='write [handlers] then restart-web = { service = "nginx", state = "restarted" }')
    out: dict[str, list[Step]] = {}
    for name, value in raw.items():
        path = f"handlers.{name}"
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            steps = _steps(items, path, loc)
        else:
            steps = _steps(items, path, loc)
            steps = [Step(s.action, s.value, s.options, path, s.where, become=s.become,
                          become_user=s.become_user, notify=s.notify) for s in steps]
        steps = _settle(_expand(steps, lists, loc, ()), Settings())
        for step in steps:
            if step.notify:
                raise RecipeError(f"{step.path}: a handler cannot notify other handlers", where=step.where,
                                  hint="list every step the handler runs in the handler itself")
            step.handler = name
        out[name] = steps
    return out


def _check_notify(steps: list[Step], handlers: dict[str, list[Step]]) -> None:
    for step in steps:
        for name in step.notify:
            if name not in handlers:
                sugg = closest(name, handlers)
                raise RecipeError(f"{step.path}: notify names no handler {name!r}", where=step.where,
                                  hint=(f"did you mean {sugg[0]!r}? " if sugg else "")
                                  + f"handlers: {', '.join(handlers) or 'none (declare them under [handlers])'}")


def _steps(items: Any, path: str, loc: Locator) -> list[Step]:
    if not isinstance(items, list):
        raise RecipeError(f"{path} must be a list of steps", where=loc(path),
                          hint='write steps = [ { run = ["echo", "hi"] } ]')
    steps = []
    for i, item in enumerate(items):
        spath = f"{path}[{i}]"
        if not isinstance(item, dict) or not item:
            raise RecipeError(f"{spath} must be a table naming an action, e.g. {{ run = [\"make\"] }}",
                              where=loc(spath))
        action, value = next(iter(item.items()))
        options = dict(list(item.items())[1:])
        if action in buildenv.PSEUDO_STEPS:  # { env = {...} } / { workdir = "..." }: for the steps after it
            if options:
                raise RecipeError(f"{spath}: a {{ {action} = ... }} step takes nothing else",
                                  where=loc(f"{spath}.{next(iter(options))}"),
                                  hint=f"it sets the {action} of every later step; "
                                       "give a `run` its own env/workdir as its parameters")
            parsed = (buildenv.parse_env(value, f"{spath}.env", loc) if action == "env"
                      else buildenv.parse_workdir(value, f"{spath}.workdir", loc))
            steps.append(Step(action, parsed, {}, spath, loc(spath)))
            continue
        become, become_user, notify = _step_options(options, spath, loc)
        steps.append(Step(action, value, options, spath, loc(spath), become=become, become_user=become_user,
                          notify=notify))
    return steps


def _step_options(options: dict[str, Any], path: str, loc: Locator
                  ) -> tuple[Optional[bool], Optional[str], tuple[str, ...]]:
    """Take the step's own keys (become, become_user, notify) out of its action's parameters."""
    become = options.pop("become", None)
    if become is not None and not isinstance(become, bool):
        raise RecipeError(f"{path}.become must be true or false", where=loc(f"{path}.become"),
                          hint="become = true runs this step through sudo (as root, or become_user)")
    become_user = options.pop("become_user", None)
    if become_user is not None and (not isinstance(become_user, str) or not become_user
                                    or become_user.startswith("-")):
        raise RecipeError(f"{path}.become_user must be a user name", where=loc(f"{path}.become_user"))
    notify = options.pop("notify", [])
    if isinstance(notify, str):
        notify = (notify,)
    elif isinstance(notify, list) and all(isinstance(n, str) for n in notify):
        notify = tuple(notify)
    else:
        raise RecipeError(f"{path}.notify must be a handler name or a list of them", where=loc(f"{path}.notify"),
                          hint='write notify = "restart-web"')
    return become, become_user, notify


def _settle(steps: list[Step], start: Settings) -> list[Step]:
    """Drop the ``env``/``workdir`` pseudo-steps, giving every other step the settings in force
    at its place (``use`` splices a list's pseudo-steps too: they apply after it, as text would)."""
    out: list[Step] = []
    current = start
    for step in steps:
        if step.action == "env":
            current = current.add_env(step.value)
        elif step.action == "workdir":
            current = current.set_workdir(step.value)
        else:
            step.settings = current
            out.append(step)
    return out


def _expand(steps: list[Step], lists: dict[str, list[Step]], loc: Locator,
            chain: tuple[str, ...]) -> list[Step]:
    out: list[Step] = []
    for step in steps:
        if step.action != "use":
            out.append(Step(step.action, step.value, step.options, step.path, step.where, chain,
                            become=step.become, become_user=step.become_user, notify=step.notify,
                            handler=step.handler))
            continue
        name = step.value
        if step.options or not isinstance(name, str) or step.notify or step.become is not None \
                or step.become_user is not None:
            raise RecipeError(f"{step.path}: `use` takes the name of a step list, alone",
                              where=step.where, hint='write { use = "python" }')
        if name not in lists:
            sugg = closest(name, lists)
            raise RecipeError(f"{step.path}: unknown step list {name!r}", where=step.where,
                              hint=(f"did you mean {sugg[0]!r}? " if sugg else "")
                              + f"step lists: {', '.join(lists) or 'none (define them under [steps])'}")
        if name in chain:
            raise RecipeError(f"{step.path}: step list {name!r} uses itself "
                              f"({' -> '.join([*chain, name])})", where=step.where)
        out.extend(_expand(lists[name], lists, loc, (*chain, name)))
    return out
