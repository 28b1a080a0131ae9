"""The live terminal view: on a real pseudo-terminal, a run with output finishes and shows each step's status."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap
import time


def run_on_pty(argv: list[str], env: dict, timeout: float = 60) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
        raise AssertionError("the live view did not finish: " + b"".join(chunks).decode(errors="replace"))
    os.close(master)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def test_live_view_on_a_terminal(tmp_path):
    (tmp_path / "shlax.toml").write_text(textwrap.dedent("""
        [targets.here]
        backend = "local"
        steps = [
          { run = ["sh", "-c", "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.2; done"] },
          { run = ["sh", "-c", "echo boom; exit 4"] },
        ]
    """))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(TERM="xterm-256color", NO_COLOR="1", COLUMNS="120")
    code, out = run_on_pty([sys.executable, "-m", "shlax_core", "run", str(tmp_path / "shlax.toml")], env)
    assert code == 1
    assert "CHANGED" in out and "FAILED" in out
    assert "exit code: 4" in out and "boom" in out
    assert "line 3" in out            # the running step's output tail was shown live
    assert "\x1b[3" not in out          # NO_COLOR: no colour codes
