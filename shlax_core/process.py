"""Running commands: argv lists only, output streamed line by line, children killed on interrupt."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from shlax_core.errors import StepFailed

#: commands running in worker threads (stages built side by side): an interrupt only reaches
#: the main thread, which stops these with :func:`stop_workers`
_WORKERS: set[subprocess.Popen] = set()
_WORKERS_LOCK = threading.Lock()

TAIL = 20


@dataclass
class Exec:
    """The result of one command."""

    argv: list[str]
    returncode: int
    output: str = ""
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
        stdin: Optional[bytes] = None, check: bool = True, capture: bool = False,
        output: Optional[Callable[[str], None]] = None, display: Optional[Sequence[str]] = None) -> Exec:
    """Run ``argv``; stream merged stdout/stderr lines to ``output``; keep the tail for errors.

    ``display`` is the command as shown to the user in a failure (the step's own argv rather
    than the backend's wrapper). On any exception (Ctrl-C included) the child's process group
    is terminated before the exception propagates, so nothing keeps running behind the user.
    """
    argv = [str(a) for a in argv]
    tail: collections.deque[str] = collections.deque(maxlen=TAIL)
    captured: list[str] = []
    proc = subprocess.Popen(
        argv, env=dict(env) if env is not None else None, cwd=cwd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    worker = threading.current_thread() is not threading.main_thread()
    if worker:
        with _WORKERS_LOCK:
            _WORKERS.add(proc)
    try:
        if stdin is not None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            if capture:
                captured.append(line)
            if output is not None:
                output(line)
        returncode = proc.wait()
    except BaseException:
        terminate(proc)
        raise
    finally:
        if worker:
            with _WORKERS_LOCK:
                _WORKERS.discard(proc)
    result = Exec(argv, returncode, "\n".join(captured), list(tail))
    if check and returncode != 0:
        shown = list(display) if display is not None else argv
        raise StepFailed(f"command exited with code {returncode}", argv=shown, returncode=returncode,
                         tail=list(tail))
    return result


def stop_workers() -> None:
    """Terminate every command running in a worker thread (their own process groups: Ctrl-C and
    SIGTERM reach only shlax); each fails its step, whose cleanup then runs in its thread."""
    with _WORKERS_LOCK:
        running = list(_WORKERS)
    for proc in running:
        terminate(proc)


def terminate(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def quiet(argv: Sequence[str], *, check: bool = True, stdin: Optional[bytes] = None,
          env: Optional[Mapping[str, str]] = None) -> Exec:
    """Run a short bookkeeping command and capture its output (no streaming).

    A Ctrl-C or SIGTERM that arrives meanwhile is held until the command ends: killing
    ``buildah commit`` or ``buildah from`` half-way is what leaves debris behind, while letting it
    finish lets the caller's cleanup see (and remove) what it made.
    """
    proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    pending: Optional[BaseException] = None
    while True:
        try:
            stdout, stderr = proc.communicate(stdin)
            break
        except BaseException as exc:  # KeyboardInterrupt, Interrupted
            pending = pending or exc
            stdin = None
    if pending is not None:
        raise pending
    out = stdout.decode("utf-8", "replace")
    err = stderr.decode("utf-8", "replace")
    result = Exec(list(map(str, argv)), proc.returncode, out, (out + err).splitlines()[-TAIL:])
    if check and proc.returncode != 0:
        raise StepFailed(f"command exited with code {proc.returncode}", argv=result.argv,
                         returncode=proc.returncode, tail=result.tail)
    return result
