"""Ctrl-C and SIGTERM during a run: both unwind the same way, and cleanup is not interrupted.

Used by the runner, by the host runs it drives and by plugin commands that make things to remove
(``shlax up``): every ``finally`` runs, and a second Ctrl-C while removing a working container or
a mount cannot leave half of it behind.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator

from shlax_core.errors import Interrupted


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while cleaning up, so a second Ctrl-C cannot leave debris."""
    try:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C: every ``finally`` runs and removes what it made."""
    try:
        old = signal.signal(signal.SIGTERM, _raise_interrupted)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
