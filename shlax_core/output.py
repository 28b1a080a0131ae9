"""The one reporter: actions and backends emit events; this module alone writes to the terminal.

Three renderings of the same events:

- ``LiveReporter`` on a terminal: the current step with its elapsed time and the tail of its
  output, a status per step (CACHED / RUN / DONE / FAILED / OK / CHANGED), the total time;
- ``PlainReporter`` off a terminal: one line per event, output lines indented (CI logs);
- ``JsonReporter`` with ``--json``: one JSON object per line.

``NO_COLOR`` is honoured. Events are dicts with an ``event`` key; see docs/output.md.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from typing import IO, Any, Optional

from shlax_core.status import Status

#: a step's status -> the word printed and its live-view style (one definition: shlax_core.status)
STATUS_WORDS = {s.value: s.word for s in Status}
STATUS_STYLE = {s.value: s.style for s in Status}


def fmt_time(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s"


class Reporter:
    """Base reporter: thread-safe dispatch of events to ``handle``."""

    def __init__(self, stream: Optional[IO[str]] = None):
        self.stream = stream or sys.stdout
        self.lock = threading.RLock()
        self.events: list[dict[str, Any]] = []
        #: every step_end and target_end, whatever the subclass shows (``--timings`` reads them)
        self.ends: list[dict[str, Any]] = []
        self.failed = False

    def emit(self, event: str, **data: Any) -> None:
        """One event; its fields are typed in :mod:`shlax_core.events` (``EVENTS[event]``)."""
        data = {"event": event, "time": round(time.time(), 3), **data}
        with self.lock:
            if event == "step_end" and data.get("status") in ("failed", "unreachable"):
                self.failed = True
            if event in ("step_end", "target_end"):
                self.ends.append(data)
            self.handle(data)

    def handle(self, data: dict[str, Any]) -> None:
        self.events.append(data)

    def close(self) -> None:
        """Stop any live display."""

    # helpers for callers
    def output(self, line: str, **where: Any) -> None:
        self.emit("output", line=line, **where)

    def warning(self, message: str) -> None:
        self.emit("warning", message=message)


class JsonReporter(Reporter):
    def handle(self, data: dict[str, Any]) -> None:
        self.stream.write(json.dumps(data, default=str) + "\n")
        self.stream.flush()


def _where(d: dict[str, Any]) -> str:
    host = d.get("host")
    target = d.get("target", "")
    return f"{target}@{host}" if host and host != target else str(target)


def _failure_lines(d: dict[str, Any]) -> list[str]:
    lines = []
    err = d.get("error") or {}
    if err.get("message"):
        lines.append(f"    error: {err['message']}")
    if err.get("hint"):
        lines.append(f"    hint: {err['hint']}")
    if err.get("argv"):
        lines.append(f"    command: {' '.join(_quote(a) for a in err['argv'])}")
    if err.get("returncode") is not None:
        lines.append(f"    exit code: {err['returncode']}")
    if err.get("tail"):
        lines.append("    last output:")
        lines.extend(f"    | {line}" for line in err["tail"][-15:])
    return lines


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(str(arg))


class PlainReporter(Reporter):
    """One line per event, written as it happens: for logs and pipes. Output of a running step is
    indented with ``|``.

    ``buffer_hosts`` groups the lines of a fleet's machines (``target_start`` with ``fleet``:
    several machines of one host target, handled in parallel) per machine: each machine's lines
    are written together when it finishes, so parallel hosts do not interleave. Image targets and
    single machines are never held back.
    """

    def __init__(self, stream: Optional[IO[str]] = None, show_output: bool = True,
                 buffer_hosts: bool = False):
        super().__init__(stream)
        self.show_output = show_output
        self.buffer_hosts = buffer_hosts
        self.buffers: dict[tuple[Any, Any], list[str]] = {}

    def write(self, text: str, group: Optional[tuple[Any, Any]] = None) -> None:
        if group is not None:
            self.buffers.setdefault(group, []).append(text)
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def flush_group(self, group: tuple[Any, Any]) -> None:
        lines = self.buffers.pop(group, None)
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def handle(self, d: dict[str, Any]) -> None:
        e = d["event"]
        key = (d.get("target"), d.get("host"))
        if e == "target_start" and self.buffer_hosts and d.get("fleet"):
            self.buffers[key] = []
        group = key if key in self.buffers else None
        if e == "run_start":
            self.write(f"shlax: {d['recipe']}")
        elif e == "target_start":
            self.write(f"{_where(d)}: {d.get('backend')} target, {d.get('steps')} steps", group)
        elif e == "step_start":
            self.write(f"{_where(d)} {_position(d)} {'RUN':<7} {d['step']}", group)
        elif e == "output" and self.show_output:
            self.write(f"    | {d['line']}", group)
        elif e == "step_end":
            word = STATUS_WORDS.get(d["status"], d["status"].upper())
            extra = f" ({fmt_time(d['elapsed'])})" if d.get("elapsed") else ""
            reason = f" - {d['reason']}" if d.get("reason") else ""
            self.write(f"{_where(d)} {_position(d)} {word:<7} {d['step']}{extra}{reason}", group)
            if d["status"] in ("failed", "unreachable"):
                for line in _failure_lines(d):
                    self.write(line, group)
        elif e == "target_end":
            self.write(f"{_where(d)}: {d['summary']} in {fmt_time(d['elapsed'])}", group)
            if group is not None:
                self.flush_group(group)
        elif e == "run_end":
            self.flush()  # machines an interrupt stopped before their end: their finished steps still show
            for line in d.get("recap_lines", []):
                self.write(line)
            self.write(f"{d['status']} in {fmt_time(d['elapsed'])}")
        elif e in ("warning", "info"):
            self.write(f"{e}: {d['message']}", group)


    def flush(self) -> None:
        """Write every machine's buffered lines now."""
        for lines in self.buffers.values():
            if lines:
                self.stream.write("\n".join(lines) + "\n")
        self.buffers.clear()
        self.stream.flush()

    def close(self) -> None:
        self.flush()


def _position(d: dict[str, Any]) -> str:
    """``[3/5]``, or ``[handler NAME]`` for a handler's step."""
    if d.get("handler"):
        return f"[handler {d['handler']}]"
    return f"[{d['index']}/{d['total']}]"


class LiveReporter(PlainReporter):
    """A live view on a terminal (rich): finished steps scroll, the running one stays at the bottom
    with its elapsed time and the last lines of its output."""

    TAIL = 6

    def __init__(self, stream: Optional[IO[str]] = None):
        super().__init__(stream)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=self.stream, highlight=False)
        self.running: dict[tuple, dict[str, Any]] = {}
        self.tails: dict[tuple, deque] = {}
        self.started = time.monotonic()
        self.live = Live(get_renderable=self.render, console=self.console, refresh_per_second=8,
                         transient=True)
        self.live.start()

    def render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        # No self.lock here: rich calls this from its refresh thread while holding its own lock, and
        # emit() holds self.lock while printing through rich: taking both would deadlock. Copies of
        # the dicts are enough for a frame.
        grid = Table.grid(padding=(0, 1))
        for key, d in list(self.running.items()):
            elapsed = time.monotonic() - d["_t"]
            grid.add_row(Text(f"{_where(d)} {_position(d)}", style="bold"),
                         Text("RUN", style="yellow"), Text(d["step"]), Text(fmt_time(elapsed), style="dim"))
            for line in list(self.tails.get(key, ())):
                grid.add_row("", "", Text("│ " + line[:200], style="dim"), "")
        grid.add_row(Text(f"total {fmt_time(time.monotonic() - self.started)}", style="dim"))
        return grid

    def print(self, text: Any, style: Optional[str] = None) -> None:
        self.live.console.print(text, style=style)

    def handle(self, d: dict[str, Any]) -> None:
        from rich.text import Text

        e = d["event"]
        key = (d.get("target"), d.get("host"), d.get("index"))
        if e == "step_start":
            self.running[key] = {**d, "_t": time.monotonic()}
            self.tails[key] = deque(maxlen=self.TAIL)
        elif e == "output":
            if key in self.tails:
                self.tails[key].append(d["line"])
        elif e == "step_end":
            self.running.pop(key, None)
            self.tails.pop(key, None)
            status = d["status"]
            line = Text()
            line.append(f"{_where(d)} {_position(d)} ", style="bold")
            line.append(f"{STATUS_WORDS.get(status, status.upper()):<7} ", style=STATUS_STYLE.get(status, ""))
            line.append(d["step"])
            if d.get("elapsed"):
                line.append(f" {fmt_time(d['elapsed'])}", style="dim")
            if d.get("reason"):
                line.append(f" - {d['reason']}", style="dim")
            self.print(line)
            if status in ("failed", "unreachable"):
                for text in _failure_lines(d):
                    self.print(Text(text, style="red" if not text.startswith("    |") else "dim"))
        elif e == "target_end":
            self.print(Text(f"{_where(d)}: {d['summary']} in {fmt_time(d['elapsed'])}", style="bold"))
        elif e == "run_end":
            for text in d.get("recap_lines", []):
                self.print(text)
            self.print(Text(f"{d['status']} in {fmt_time(d['elapsed'])}",
                            style="bold green" if d["status"] == "success" else "bold red"))
        elif e in ("warning", "info"):
            self.print(Text(f"{e}: {d['message']}", style="yellow" if e == "warning" else ""))
        elif e == "run_start":
            self.print(Text(f"shlax: {d['recipe']}", style="dim"))

    def close(self) -> None:
        self.live.stop()


def make_reporter(json_mode: bool = False, stream: Optional[IO[str]] = None,
                  live: Optional[bool] = None, buffer_hosts: bool = False) -> Reporter:
    stream = stream or sys.stdout
    if json_mode:
        return JsonReporter(stream)
    if live is None:
        live = stream.isatty() and os.environ.get("TERM") != "dumb" and not os.environ.get("CI")
    if live:
        return LiveReporter(stream)
    return PlainReporter(stream, buffer_hosts=buffer_hosts)
