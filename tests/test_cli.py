"""The CLI and the reporter: statuses, plan reasons, failures, JSON events, plain output, exit codes."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_recipe_errors import shlax_cli

LOCAL = '''
[targets.t]
backend = "local"
steps = [
  { run = ["echo", "first"] },
  { run = "echo line-$i; i=1; while [ $i -le 30 ]; do echo out-$i; i=$((i+1)); done; exit 3", shell = "/bin/sh" },
  { run = ["touch", "never"] },
]
'''
COLOR = re.compile(r"\x1b\[[0-9;]*m")


def write(tmp_path: Path, text: str = LOCAL) -> Path:
    (tmp_path / "shlax.toml").write_text(text)
    return tmp_path


# -- with the recording backend -------------------------------------------------------------------

IMAGE = '[targets.i]\nbackend = "fake-image"\nimage = "localhost/i"\nsteps = [\n  { run = ["a"] },\n  { run = ["b"] },\n]\n'


def test_image_run_then_cached(shlax_recipe) -> None:
    project = shlax_recipe(IMAGE)
    first = project.run()
    assert first.statuses == ["done", "done"]
    # with no image configuration the last step is committed once, as the image (finish)
    assert [c["call"] for c in first.calls] == ["open", "base", "lookup", "start", "run", "commit", "run",
                                                "finish", "close"]
    assert "i: image localhost/i (0 cached, 2 run)" in first.output
    second = project.run()
    assert second.statuses == ["cached", "cached"]
    assert [c["call"] for c in second.calls] == ["open", "base", "lookup", "tag", "close"]
    assert "CACHED  run a" in second.output


def test_plan_says_why(shlax_recipe) -> None:
    project = shlax_recipe(IMAGE)
    plan = project.plan()
    assert [(s["status"], s["reason"]) for s in plan.steps] == [("run", "never built"), ("run", "never built")]
    assert not [c for c in plan.calls if c["call"] in ("run", "commit", "start")]   # plan runs nothing
    project.run()
    project.write("shlax.toml", IMAGE.replace('["b"]', '["b", "--fast"]'))
    plan = project.plan()
    assert [(s["status"], s.get("reason")) for s in plan.steps] == [("cached", None),
                                                                    ("run", "parameters changed: command")]
    assert "RUN     run b --fast - parameters changed: command" in plan.output


def test_failed_image_step_commits_nothing(shlax_recipe) -> None:
    project = shlax_recipe(IMAGE)
    project.reply(["b"], returncode=2, output="compiling\nerror: bad thing")
    result = project.run()
    assert result.code == 1
    assert result.statuses == ["done", "failed"]
    assert [c["call"] for c in result.calls].count("commit") == 1
    assert result.calls[-1]["call"] == "close"
    error = result.steps[-1]["error"]
    assert error == {"message": "command exited with code 2", "argv": ["b"], "returncode": 2,
                     "tail": ["compiling", "error: bad thing"]}
    out = result.output
    assert "FAILED  run b" in out and "command: b" in out and "exit code: 2" in out
    assert "| error: bad thing" in out


def test_host_check_then_apply(shlax_recipe) -> None:
    project = shlax_recipe('[targets.h]\nbackend = "fake"\nsteps = [\n'
                           '  { copy = { src = "f.txt", dest = "/etc/f.txt", mode = "0600" } },\n'
                           '  { run = ["make"], creates = "/usr/bin/tool" },\n]\n', files={"f.txt": "x"})
    first = project.run()
    assert first.statuses == ["changed", "changed"]
    assert first.archives[0]["files"] == {"/etc/f.txt": b"x"}
    assert first.archives[0]["modes"] == {"/etc/f.txt": 0o600}
    project.recorder.files["/usr/bin/tool"] = project.recorder.files["/etc/f.txt"]
    second = project.run()
    assert second.statuses == ["ok", "ok"]
    assert second.commands == []
    assert "h: ok=2 changed=0 failed=0" in second.output
    assert project.plan().statuses == ["ok", "ok"]


def test_fleet_recap(shlax_recipe) -> None:
    project = shlax_recipe('[targets.f]\nbackend = "fake"\nhosts = ["a", "b"]\nsteps = [ { run = ["x"] } ]\n')
    result = project.run()
    assert result.code == 0
    assert sorted(c["host"] for c in result.calls if c["call"] == "run") == ["a", "b"]
    assert "recap:" in result.output and "f@a" in result.output and "f@b" in result.output


# -- through the real CLI ------------------------------------------------------------------------

def test_failure_report_and_exit_code_1(tmp_path: Path) -> None:
    proc = shlax_cli(["run"], write(tmp_path))
    assert proc.returncode == 1
    out = proc.stdout
    assert "t [1/3] CHANGED run echo first" in out
    assert "t [2/3] FAILED" in out
    assert "command: /bin/sh -c" in out
    assert "exit code: 3" in out
    report = out.split("last output:", 1)[1]
    assert "| out-30" in report and "| out-5\n" not in report     # the tail, not everything
    assert not (tmp_path / "never").exists()
    assert out.rstrip().splitlines()[-1].startswith("failed in ")
    assert "Traceback" not in proc.stderr


def test_json_events(tmp_path: Path) -> None:
    proc = shlax_cli(["run", "--json"], write(tmp_path))
    assert proc.returncode == 1
    events = [json.loads(line) for line in proc.stdout.splitlines()]   # one object per line
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and "target_start" in kinds
    assert {"step_start", "step_end", "output", "target_end"} <= set(kinds)
    failed = next(e for e in events if e["event"] == "step_end" and e["status"] == "failed")
    assert failed["index"] == 2 and failed["total"] == 3 and failed["path"] == "targets.t.steps[1]"
    assert failed["error"]["returncode"] == 3 and failed["error"]["tail"][-1] == "out-30"
    assert events[-1]["status"] == "failed"
    assert all(isinstance(e["time"], float) for e in events)
    out = next(e for e in events if e["event"] == "output")
    assert out == {**out, "line": "first", "target": "t", "host": "t", "index": 1}


def test_plain_output_off_a_tty_has_no_escape_codes(tmp_path: Path) -> None:
    proc = shlax_cli(["run"], write(tmp_path))
    assert "\x1b" not in proc.stdout + proc.stderr


def pty_run(args: list[str], cwd: Path, **env: str) -> str:
    """Run the CLI on a pseudo-terminal (the live view) and return everything it printed."""
    master, slave = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
    full_env.update(TERM="xterm-256color", SHLAX_CACHE_DIR=str(cwd / ".cache"), COLUMNS="120", **env)
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", *args], cwd=cwd, env=full_env,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.time() + 60
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
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
    proc.wait(timeout=30)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_live_view_on_a_tty_uses_colour(tmp_path: Path) -> None:
    out = pty_run(["run"], write(tmp_path))
    assert COLOR.search(out)
    assert "FAILED" in out and "exit code: 3" in out


def test_live_view_shows_the_running_steps_output(tmp_path: Path) -> None:
    """The running step's output tail is on screen while it runs. No time window: the step
    prints, then waits until this test has seen the line rendered (the command shows
    ``$((1+2))``, so only its output, not its description, says ``line 3``)."""
    waiting = ('[targets.here]\nbackend = "local"\nsteps = [\n'
               '  { run = ["sh", "-c", "echo line $((1+2)); while [ ! -e go ]; do sleep 0.05; done"] },\n]\n')
    cwd = write(tmp_path, waiting)
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
    env.update(TERM="xterm-256color", SHLAX_CACHE_DIR=str(cwd / ".cache"), COLUMNS="120", NO_COLOR="1")
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "run"], cwd=cwd, env=env,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    try:
        deadline = time.time() + 120   # a safety net for a hung run, not a measured window
        while b"line 3" not in seen and time.time() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
        assert b"line 3" in seen, seen.decode("utf-8", "replace")
        (cwd / "go").touch()
        while True:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                seen += data
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert "CHANGED" in seen.decode("utf-8", "replace")   # then the step's status


def test_no_color_on_a_tty(tmp_path: Path) -> None:
    out = pty_run(["run"], write(tmp_path), NO_COLOR="1")
    colours = [c for c in COLOR.findall(out) if re.search(r"[;\[]3[0-7]|[;\[]9[0-7]|38;", c)]
    assert colours == []
    assert "FAILED" in out


def test_exit_code_0(tmp_path: Path) -> None:
    proc = shlax_cli(["run"], write(tmp_path, '[targets.t]\nbackend = "local"\nsteps = [ { run = ["true"] } ]\n'))
    assert proc.returncode == 0
    assert proc.stdout.rstrip().splitlines()[-1].startswith("success in ")


def test_exit_code_70_names_the_plugin(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["run"], write(tmp_path, '[targets.t]\nbackend = "local"\nsteps = [ { hello = "crash" } ]\n'))
    assert proc.returncode == 70
    assert "shlax: internal error in shlax-plugin-hello: ZeroDivisionError" in proc.stderr
    assert "not in your recipe" in proc.stderr


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_exit_code_130_on_sigint(tmp_path: Path) -> None:
    write(tmp_path, '[targets.t]\nbackend = "local"\nsteps = [ { run = ["sleep", "30"] }, { run = ["touch", "never"] } ]\n')
    env = {**os.environ, "SHLAX_CACHE_DIR": str(tmp_path / ".cache")}
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not children(proc.pid) and time.time() < deadline:   # the step's command is running
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "interrupted" in out + err
    assert not (tmp_path / "never").exists()
    assert "Traceback" not in err


def test_version(tmp_path: Path) -> None:
    proc = shlax_cli(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("shlax, version ")


def test_usage_error_is_exit_2(tmp_path: Path) -> None:
    proc = shlax_cli(["run", "--no-such-option"], tmp_path)
    assert proc.returncode == 2
    assert "No such option" in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["cache", "prune"], "say what to prune"),
    (["cache", "prune", "--older-than", "soon"], "age 'soon' is not like 12h"),
    (["cache", "prune", "--max-size", "big"], "size 'big' is not like 500M"),
])
def test_cache_prune_user_errors(tmp_path: Path, args: list[str], fragment: str) -> None:
    proc = shlax_cli(args, tmp_path, SHLAX_DISABLE_PLUGINS="shlax-plugin-buildah")
    assert proc.returncode == 2
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
