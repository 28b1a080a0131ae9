"""Where a run's time went: the phases of each step, ``--timings``' table and ``--trace``'s file.

The runner times each step's phases (key hashing, waiting for a cache's lock, running, committing,
pushing; on hosts: checking, applying) with a :class:`Phases`. Their durations travel in the
``step_end`` and ``target_end`` events (``phases``), so JSON consumers see the same figures as the
table. The spans themselves, with their real start times, go to the session's :class:`Timeline`,
which ``--trace FILE`` writes as Chrome trace-event JSON: Perfetto (ui.perfetto.dev) and
chrome://tracing draw it, one track per target (one per host in a fleet).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from shlax_core.output import fmt_time
from shlax_core.filestate import write_json

__all__ = ["Phases", "Timeline", "timings_table"]


class Phases:
    """The named phases of one step or target: summed durations, and spans for the trace."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []  # (name, wall-clock start, seconds)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, start = time.time(), time.monotonic()
        try:
            yield
        finally:
            self.spans.append((name, wall, time.monotonic() - start))

    def add(self, name: str, wall: float, seconds: float) -> None:
        """A phase timed by the caller (``wall``: its start, from ``time.time()``)."""
        self.spans.append((name, wall, seconds))

    def durations(self) -> dict[str, float]:
        """Seconds per phase, in the order the phases first began (the events' ``phases``)."""
        out: dict[str, float] = {}
        for name, _, seconds in self.spans:
            out[name] = out.get(name, 0.0) + seconds
        return {name: round(seconds, 4) for name, seconds in out.items()}


class Timeline:
    """Every timed span of a run, for ``--trace``. Cheap when nobody asked for a trace: spans are
    only kept while ``enabled``."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._tracks: dict[str, int] = {}
        self._events: list[dict[str, Any]] = []

    def _tid(self, track: str) -> int:
        if track not in self._tracks:
            self._tracks[track] = len(self._tracks) + 1
        return self._tracks[track]

    def record(self, track: str, name: str, wall: float, seconds: float, phases: Optional[Phases] = None,
               **args: Any) -> None:
        """One step (or target-level span) on ``track``, with its phases nested under it."""
        if not self.enabled:
            return
        with self._lock:
            tid = self._tid(track)
            self._events.append(_complete(name, "step", wall, seconds, tid, args))
            for phase, start, length in (phases.spans if phases else []):
                self._events.append(_complete(phase, "phase", start, length, tid, {}))

    def trace(self, title: str) -> dict[str, Any]:
        """The Chrome trace-event document (JSON object format)."""
        meta: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": os.getpid(), "tid": 0,
                                       "args": {"name": title}}]
        for track, tid in self._tracks.items():
            meta.append({"name": "thread_name", "ph": "M", "pid": os.getpid(), "tid": tid, "args": {"name": track}})
            meta.append({"name": "thread_sort_index", "ph": "M", "pid": os.getpid(), "tid": tid,
                         "args": {"sort_index": tid}})
        return {"traceEvents": meta + sorted(self._events, key=lambda e: (e["tid"], e["ts"])),
                "displayTimeUnit": "ms"}

    def write(self, path: Path, title: str) -> None:
        """Write the trace, whole or not at all (a reader never sees half a file)."""
        write_json(path, self.trace(title))


def _complete(name: str, cat: str, wall: float, seconds: float, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "cat": cat, "ph": "X", "ts": round(wall * 1e6), "dur": max(1, round(seconds * 1e6)),
            "pid": os.getpid(), "tid": tid, "args": args}


def _t(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else fmt_time(seconds)


def timings_table(events: list[dict[str, Any]]) -> list[str]:
    """``--timings``: one line per step that took time (slowest first), then the total per phase
    over steps and targets."""
    steps = [e for e in events if e.get("event") == "step_end" and e.get("elapsed") is not None
             and e.get("status") not in ("cached",)]
    targets = [e for e in events if e.get("event") == "target_end" and e.get("phases")]
    lines = ["timings (slowest first):"]
    fleet = len({e.get("host") for e in steps}) > 1
    for e in sorted(steps, key=lambda e: -float(e.get("elapsed") or 0)):
        who = f"{e.get('target')}@{e.get('host')}" if fleet else str(e.get("target"))
        phases = "  ".join(f"{k} {_t(v)}" for k, v in (e.get("phases") or {}).items() if v >= 0.01)
        lines.append(f"  {_t(float(e.get('elapsed') or 0)):>7}  {who} {e.get('index')}/{e.get('total')} "
                     f"{e.get('step')} ({e.get('status')}){'  ' + phases if phases else ''}")
    for e in targets:
        phases = "  ".join(f"{k} {_t(v)}" for k, v in e["phases"].items())
        lines.append(f"  {'':>7}  {e.get('target')}: {phases}")
    total: dict[str, float] = {}
    for e in [*steps, *targets]:
        for k, v in (e.get("phases") or {}).items():
            total[k] = total.get(k, 0.0) + float(v)
    if total:
        lines.append("per phase: " + " · ".join(f"{k} {_t(v)}"
                                                 for k, v in sorted(total.items(), key=lambda kv: -kv[1])))
    return lines
