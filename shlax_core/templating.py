"""Jinja2 templates for step parameters and the ``template`` action: sandboxed, strict, located.

Imported only when a recipe holds a template string or a ``template`` step: ``shlax --help``
and the no-op fast path never load Jinja2. One :class:`Templates` per run compiles each
distinct source once (a fleet renders the same string for every host).

- **Sandboxed** (``jinja2.sandbox.SandboxedEnvironment``): a template reads variables, it cannot
  reach Python internals.
- **Strict** (``StrictUndefined``): an undefined variable or attribute is an error naming the
  parameter's ``file:line`` (or the template file's line), never an empty string.
- Files a template includes must sit inside the recipe's directory; their signatures are kept
  for the no-op fast path (``watched``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from shlax_core.errors import RecipeError
from shlax_core.filestate import signature

HINT = ("define it in the recipe's [vars], the target's vars or the inventory (host or group vars), "
        "or pass --var NAME=VALUE; see docs/recipes.md")


class UndefinedVariable(RecipeError):
    """A template read a variable (or attribute) that no source defines."""


class _RecipeLoader(jinja2.BaseLoader):
    """Template files from the recipe's directory only; records each file's signature."""

    def __init__(self, root: Path, watched: dict[str, Optional[list[int]]]):
        self.root = os.path.realpath(root)
        self.watched = watched
        #: per thread (hosts render in parallel): the files the current render_file() read
        self.local = threading.local()

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        path = os.path.normpath(os.path.join(self.root, template))
        real = os.path.realpath(path)
        inside = lambda p: p == self.root or p.startswith(self.root + os.sep)  # noqa: E731
        if os.path.isabs(template) or not inside(path) or not inside(real):
            raise jinja2.TemplateNotFound(f"{template} (templates are read from the recipe's directory only)")
        sig = signature(path)
        self.watched[path] = sig
        recording = getattr(self.local, "recording", None)
        if recording is not None:
            recording[path] = sig
        try:
            with open(path, encoding="utf-8") as f:
                source = f.read()
        except (OSError, UnicodeDecodeError):
            raise jinja2.TemplateNotFound(template) from None
        mtime = os.path.getmtime(path)
        return source, path, lambda: os.path.getmtime(path) == mtime


class Templates:
    """The run's template environment."""

    def __init__(self, root: Path):
        self.root = root
        #: every file a template read: path -> signature taken before reading it
        self.watched: dict[str, Optional[list[int]]] = {}
        self.env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                        keep_trailing_newline=True, cache_size=0,
                                        loader=_RecipeLoader(root, self.watched))
        self._compiled: dict[str, Any] = {}

    def _compile(self, source: str, where: Optional[str], key: str) -> Any:
        found = self._compiled.get(source)
        if found is None:
            try:
                found = self.env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise RecipeError(f"{key}: template syntax error: {exc.message}", where=where,
                                  hint="see https://jinja.palletsprojects.com/templates/") from None
            self._compiled[source] = found
        return found

    def render(self, source: str, variables: Mapping[str, Any], *, where: Optional[str], key: str) -> str:
        """Render one parameter string; errors name the parameter and its ``file:line``."""
        template = self._compile(source, where, key)
        try:
            return template.render(variables)
        except Exception as exc:  # noqa: BLE001 - every template failure is the recipe's
            raise _error(exc, key, where) from None

    def render_file(self, relative: str, variables: Mapping[str, Any], *, where: Optional[str],
                    key: str) -> tuple[str, dict[str, Optional[list[int]]]]:
        """Render a template file of the recipe's directory; also the files it read (signatures)."""
        loader: _RecipeLoader = self.env.loader  # type: ignore[assignment]
        loader.local.recording = recording = {}
        try:
            try:
                template = self.env.get_template(relative)
            except jinja2.TemplateNotFound as exc:
                raise RecipeError(f"{key}: no template file {exc.name}", where=where,
                                  hint="paths are relative to the recipe's directory") from None
            except jinja2.TemplateSyntaxError as exc:
                raise RecipeError(f"template syntax error: {exc.message}",
                                  where=f"{_shown(exc.filename, self.root)}:{exc.lineno}") from None
            try:
                text = template.render(variables)
            except Exception as exc:  # noqa: BLE001
                raise _error(exc, key, where, self.root) from None
            return text, recording
        finally:
            loader.local.recording = None


def _shown(filename: Optional[str], root: Optional[Path]) -> str:
    if not filename:
        return "?"
    if root is not None:
        try:
            return os.path.relpath(filename, root)
        except ValueError:
            pass
    return filename


def _error(exc: BaseException, key: str, where: Optional[str], root: Optional[Path] = None) -> RecipeError:
    """A template failure as a recipe error: the template file's line when it came from one."""
    line_where = where
    tb = exc.__traceback__
    while tb is not None:  # Jinja rewrites tracebacks so that template lines appear as frames
        name = tb.tb_frame.f_code.co_filename
        if root is not None and name.startswith(str(os.path.realpath(root))) or name == "<template>":
            if name != "<template>":
                line_where = f"{_shown(name, root)}:{tb.tb_lineno}"
        tb = tb.tb_next
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, jinja2.UndefinedError):
        return UndefinedVariable(f"{key}: undefined variable: {message}", where=line_where, hint=HINT)
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return RecipeError(f"{key}: not allowed in a template: {message}", where=line_where)
    if isinstance(exc, jinja2.TemplateNotFound):
        return RecipeError(f"{key}: no template file {exc.name}", where=line_where,
                           hint="paths are relative to the recipe's directory")
    return RecipeError(f"{key}: template error: {type(exc).__name__}: {message}", where=line_where)
