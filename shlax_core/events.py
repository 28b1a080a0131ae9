"""The events a run emits, typed: one definition for the runner, the reporters, the fast path's
replay and docs/output.md (tests/test_docs_match_code.py checks the three agree).

Events travel as plain dicts (``Reporter.emit(name, **fields)``), so ``--json`` prints them as
they are; these ``TypedDict``\\ s say which fields each carries. Every event also has ``event``
and ``time``; events of a target have ``target`` and ``host``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Optional, TypedDict

from shlax_core.status import Status


class Outcome(str, Enum):
    """How a target, a host or the whole run ended (``target_end``/``run_end`` ``status``)."""

    SUCCESS = "success"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    INTERRUPTED = "interrupted"
    #: a host not started because of ``--fail-fast``
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class Where(TypedDict, total=False):
    target: str
    host: str


class RunStart(TypedDict, total=False):
    recipe: str
    plan: bool
    targets: list[str]
    #: the no-op fast path answered
    fast: bool


class TargetStart(Where, total=False):
    backend: str
    steps: int
    plan: bool
    fleet: bool


class StepStart(Where, total=False):
    index: int
    total: int
    step: str
    path: str


class OutputLine(Where, total=False):
    line: str
    index: int


class StepError(TypedDict, total=False):
    """``step_end``'s ``error``: a failed command's argv, code and tail; a user error's hint."""

    message: str
    argv: list[str]
    returncode: int
    tail: list[str]
    hint: str


class StepEnd(StepStart, total=False):
    status: Status
    elapsed: float
    phases: dict[str, float]
    #: plans of image targets: why the step would run
    reason: str
    #: a package step built on its previous layer: the items it adds
    incremental: list[str]
    error: StepError


class TargetEnd(Where, total=False):
    summary: str
    elapsed: float
    image: Optional[str]
    phases: dict[str, float]
    status: Outcome


class Message(Where, total=False):
    message: str


class RecapRow(TypedDict, total=False):
    """One target or host in ``run_end``'s ``recap`` (:class:`shlax_core.hostrun.HostResult`)."""

    target: str
    host: str
    counts: dict[str, int]
    status: Outcome
    image: Optional[str]
    fleet: bool
    #: why the host failed: "STEP: message"
    cause: Optional[str]


class RunEnd(TypedDict, total=False):
    status: Outcome
    elapsed: float
    recap: list[RecapRow]
    recap_lines: list[str]


#: event name -> its fields
EVENTS: dict[str, type] = {
    "run_start": RunStart, "target_start": TargetStart, "step_start": StepStart, "output": OutputLine,
    "step_end": StepEnd, "target_end": TargetEnd, "info": Message, "warning": Message, "run_end": RunEnd,
}


def fields(event: str) -> set[str]:
    """The fields ``event`` may carry beside ``event``, ``time``, ``target`` and ``host``."""
    cls: Any = EVENTS[event]
    own = set(cls.__required_keys__ | cls.__optional_keys__) - {"target", "host"}
    inner = {"step_end": StepError, "run_end": RecapRow}.get(event)
    return own | (set(inner.__optional_keys__) if inner is not None else set())
