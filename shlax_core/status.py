"""The statuses a step can end with: one definition for the runner, the reporters, the hook docs.

A ``Status`` is a ``str``, so events stay plain JSON (``"status": "cached"``) and comparisons with
the bare words keep working; the printed word and the live view's style live here too, so a new
status cannot be emitted without the reporters knowing how to show it.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """How a step ended (``step_end`` events, ``shlax_step_finish``'s ``status``)."""

    #: image target: the step's layer was reused
    CACHED = "cached"
    #: image target, ``shlax plan``: the step will run
    RUN = "run"
    #: image target: the step ran and its layer was committed
    DONE = "done"
    #: host target: already satisfied, nothing done
    OK = "ok"
    #: host target: applied
    CHANGED = "changed"
    #: host target, ``shlax plan``: would be applied
    CHANGE = "change"
    #: the step failed (a command, or a user error only running could reveal)
    FAILED = "failed"
    #: the host could not be reached, or dropped during the step
    UNREACHABLE = "unreachable"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__

    @property
    def word(self) -> str:
        """The word the reporters print: ``CACHED``, ``DONE``..."""
        return self.value.upper()

    @property
    def style(self) -> str:
        """The live view's rich style for the word."""
        return _STYLES[self]

    @property
    def failed(self) -> bool:
        return self in (Status.FAILED, Status.UNREACHABLE)


_STYLES = {
    Status.CACHED: "cyan", Status.RUN: "yellow", Status.DONE: "green", Status.OK: "green",
    Status.CHANGED: "yellow", Status.CHANGE: "yellow", Status.FAILED: "bold red",
    Status.UNREACHABLE: "bold red",
}
