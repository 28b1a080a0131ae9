"""Exceptions: one base for mistakes a user can fix, so the CLI can print them without a traceback."""

from __future__ import annotations

from typing import Optional, Sequence


class ShlaxError(Exception):
    """An error the user can fix: printed as one clear message, exit code 2.

    ``where`` is ``file:line`` (or just a file, or a key path) and ``hint`` says what to do.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: Optional[str] = None, hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class RecipeError(ShlaxError):
    """The recipe is malformed: syntax, unknown key, wrong type, unknown action or target."""


class PluginError(ShlaxError):
    """A plugin named by the recipe is missing, broken, or claimed by two distributions."""


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
