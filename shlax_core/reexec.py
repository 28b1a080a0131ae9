"""One run started again under a command a backend needs (a user namespace for rootless builds).

An image backend may need the whole run inside something only a wrapper command sets up: a
non-root user's buildah store is mounted and written in the user namespace of ``buildah
unshare`` (uid 0 there is the user, the image's other ids come from /etc/subuid). The run then
starts again under that prefix (:meth:`ImageBackend.run_under`) and builds exactly as root does:
same code path, same layers, same cleanup. This process stays as a thin parent:

- it starts the inner run in a process group of its own, so the terminal's Ctrl-C reaches this
  process only, not the wrapper (``buildah unshare`` exits at once on SIGINT or SIGTERM, without
  passing them on, and would leave the run cleaning up behind the shell's back);
- SIGINT, SIGTERM and SIGHUP are passed on to the inner shlax process itself (it writes its PID
  to a file this process names in ``SHLAX_REEXEC_PIDFILE``), which stops its step, removes its
  working container and mounts and exits; this process waits for it;
- the exit code is the inner run's.

The inner run never starts again (``SHLAX_REEXEC`` stays set in it); the PID file's variable is
removed from its environment once used.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from shlax_core.filestate import write_atomic

ENV_MARK = "SHLAX_REEXEC"
ENV_PIDFILE = "SHLAX_REEXEC_PIDFILE"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def inside() -> bool:
    """True in a run that was started again: it must not start again."""
    return os.environ.get(ENV_MARK) == "1"


def announce() -> None:
    """In the inner run: tell the outer process our PID (then forget the variables)."""
    path = os.environ.pop(ENV_PIDFILE, None)  # ENV_MARK stays: no nested run starts again
    if path:
        try:
            write_atomic(path, str(os.getpid()))
        except OSError:
            pass  # the outer process then signals the whole inner group: cruder, still a stop


def command(prefix: Sequence[str], args: Sequence[str]) -> list[str]:
    """The inner run's command line: ``prefix``, then this Python running shlax with ``args``."""
    return [*prefix, sys.executable, "-m", "shlax_core", *args]


def run_under(prefix: Sequence[str], args: Optional[Sequence[str]] = None) -> int:
    """Run this shlax command again under ``prefix``; return its exit code."""
    folder = tempfile.mkdtemp(prefix="shlax-reexec-")
    pidfile = os.path.join(folder, "pid")
    env = {**os.environ, ENV_MARK: "1", ENV_PIDFILE: pidfile}
    argv = command(prefix, sys.argv[1:] if args is None else args)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    child = subprocess.Popen(argv, env=env, process_group=0)

    def forward(signum: int, _frame: Any) -> None:
        try:
            pid = int(Path(pidfile).read_text())
        except (OSError, ValueError):
            pid = 0
        try:
            if pid:
                os.kill(pid, signum)
            else:  # not started yet: nothing was built, the wrapper may go too
                os.killpg(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    old = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:
                continue
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        started = os.path.exists(pidfile)
        shutil.rmtree(folder, ignore_errors=True)
    if code < 0:
        code = 128 - code
    if not started and code not in (0, 2):
        # the wrapper failed before shlax ran under it: its own message is above
        sys.stderr.write(f"shlax: error: {' '.join(prefix)} could not start this run (exit code {code}); "
                         "see its message above\n")
        return 2
    return code
