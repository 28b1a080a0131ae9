"""Exceptions: one base for mistakes a user can fix, so the CLI can print them without a traceback."""

from __future__ import annotations

from typing import Callable, Optional, Sequence


class ShlaxError(Exception):
    """An error the user can fix: printed as one clear message, exit code 2.

    ``where`` is ``file:line`` (or just a file) and ``hint`` says what to do. Code that knows
    which key is wrong but not the file it came from (a backend's ``expand``, an action's
    ``prepare``) gives ``key``, relative to the table it was handed (``hosts[1]``, ``base``):
    the core turns it into ``file:line`` with the recipe's locator (:func:`place`).
    """

    exit_code = 2

    def __init__(self, message: str, *, where: Optional[str] = None, hint: Optional[str] = None,
                 key: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint
        self.key = key

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def place(exc: ShlaxError, locate: Callable[[str], str], path: str) -> ShlaxError:
    """Give an error without a location the nearest one: its ``key`` under ``path`` (the key path
    of the table the raising code was handed), else ``path`` itself. Returns ``exc``."""
    if exc.where is None:
        exc.where = locate(f"{path}.{exc.key}" if exc.key else path)
    return exc


class RecipeError(ShlaxError):
    """The recipe is malformed: syntax, unknown key, wrong type, unknown action or target."""


class PluginError(ShlaxError):
    """A plugin named by the recipe is missing, broken, or claimed by two distributions."""


class Unsupported(ShlaxError):
    """A backend was asked for something it cannot do (a mount on a host backend, ...).

    Backends refuse loudly instead of dropping a feature silently: a step that needs a mount it
    does not get would run "successfully" and build the wrong thing.
    """


class StepFailed(Exception):
    """A step failed while running: the build stops, nothing of the step is committed.

    Not a ShlaxError: it is reported as a FAILED step with its command and output tail,
    and makes the run exit with code 1.
    """

    def __init__(self, message: str, *, argv: Optional[Sequence[str]] = None,
                 returncode: Optional[int] = None, tail: Sequence[str] = ()):
        super().__init__(message)
        self.message = message
        self.argv = list(argv) if argv else None
        self.returncode = returncode
        self.tail = list(tail)


class Unreachable(StepFailed):
    """A host could not be reached (connection refused, auth failure, host key mismatch)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind, clean up, commit nothing."""


class InternalError(Exception):
    """An unexpected exception inside a plugin, labelled with the plugin that raised it."""

    def __init__(self, plugin: str, error: BaseException):
        super().__init__(f"internal error in plugin {plugin!r}: {type(error).__name__}: {error}")
        self.plugin = plugin
        self.error = error
