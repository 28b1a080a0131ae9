"""What a killed shlax leaves (SIGKILL, a crash, a power cut) is found and removed by the next run
or by `shlax cache prune`, and said; what a live build or someone else made is never touched.
Also: a SIGTERM before the runner took over exits 130 like any interrupt."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import buildah, run_shlax, working_containers

SHLAX = [sys.executable, "-m", "shlax_core"]


def recipe(path: Path, base: str, name: str, marker: str) -> Path:
    """A step that runs until stopped; ``marker`` is on its command line (a loop keeps its shell)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.{name}]
        base = "{base}"
        steps = [
          {{ run = ["sh", "-c", "echo one-{name} > /one"] }},
          {{ run = ["sh", "-c", "echo started-{marker}; while [ ! -e /stop ]; do sleep 0.2; done", "{marker}"] }},
        ]
    """))
    return path / "shlax.toml"


def start(path: Path, env: dict, marker: str) -> subprocess.Popen:
    """`shlax run` in the background, returned once its long step runs."""
    proc = subprocess.Popen([*SHLAX, "run", str(path), "--json"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    for line in proc.stdout:
        if f'"line": "started-{marker}"' in line:
            return proc
    raise AssertionError(proc.stderr.read() if proc.stderr else "no output")


def processes(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-f", marker], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


@pytest.fixture
def env(tmp_path) -> dict:
    scratch = tmp_path / "tmp"  # TMPDIR of the builds: buildah's folders are made here
    scratch.mkdir()
    return {**os.environ, "NO_COLOR": "1", "TMPDIR": str(scratch)}


def killed_build(tmp_path: Path, env: dict, base: str, nonce: str) -> tuple[str, str]:
    """A build killed with SIGKILL in its second step: (its working container, its step marker)."""
    marker = f"step-k{nonce}"
    proc = start(recipe(tmp_path / "killed", base, f"k{nonce}", marker), env, marker)
    proc.kill()
    proc.communicate(timeout=60)
    (container,) = working_containers(f"k{nonce}")
    assert processes(marker), "the step should outlive a SIGKILL of shlax (its own session)"
    assert [p.name for p in Path(env["TMPDIR"]).iterdir() if p.name.startswith("shlax-buildah-")]
    return container, marker


def test_next_run_removes_what_a_killed_run_left(tmp_path, env, busybox_image, nonce):
    container, marker = killed_build(tmp_path, env, busybox_image, nonce)
    # someone else's container with a name like ours: no record names it, it stays
    stranger = f"shlax-k{nonce}-{os.urandom(4).hex()}"
    buildah("from", "--pull=never", "--name", stranger, busybox_image)
    try:
        other = recipe(tmp_path / "next", busybox_image, f"n{nonce}", f"step-n{nonce}")
        other.write_text(other.read_text().replace("while [ ! -e /stop ]; do sleep 0.2; done", "true"))
        proc = subprocess.run([*SHLAX, "run", str(other)], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        warning = next(line for line in proc.stdout.splitlines() if line.startswith("warning: removed"))
        assert container in warning and "which is gone (killed or crashed)" in warning, warning
        assert working_containers(f"k{nonce}") == [stranger]
        assert processes(marker) == []  # the orphaned `buildah run` and its step were stopped
        assert list(Path(env["TMPDIR"]).iterdir()) == []
        # said once: the next run has nothing to say
        again = subprocess.run([*SHLAX, "run", str(other)], env=env, capture_output=True, text=True, timeout=600)
        assert "warning: removed" not in again.stdout
    finally:
        buildah("rm", stranger, check=False)


def test_a_live_build_is_left_alone(tmp_path, env, busybox_image, nonce):
    marker = f"step-l{nonce}"
    live = start(recipe(tmp_path / "live", busybox_image, f"l{nonce}", marker), env, marker)
    try:
        other = recipe(tmp_path / "other", busybox_image, f"o{nonce}", f"step-o{nonce}")
        other.write_text(other.read_text().replace("while [ ! -e /stop ]; do sleep 0.2; done", "true"))
        proc = subprocess.run([*SHLAX, "run", str(other)], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "warning: removed" not in proc.stdout
        prune = run_shlax("cache", "prune", "--older-than", "1000d", env={"TMPDIR": env["TMPDIR"]})
        assert prune.returncode == 0 and "warning" not in prune.stdout, prune.stdout
        assert len(working_containers(f"l{nonce}")) == 1 and processes(marker)
        assert live.poll() is None
    finally:
        live.send_signal(signal.SIGTERM)
        live.communicate(timeout=120)
    assert live.returncode == 130
    assert working_containers(f"l{nonce}") == []


def test_plan_says_what_a_killed_run_left_and_keeps_it(tmp_path, env, busybox_image, nonce):
    container, marker = killed_build(tmp_path, env, busybox_image, nonce)
    other = recipe(tmp_path / "plan", busybox_image, f"p{nonce}", f"step-p{nonce}")
    proc = subprocess.run([*SHLAX, "plan", str(other)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"warning: would remove {container}" in proc.stdout, proc.stdout
    assert working_containers(f"k{nonce}") == [container] and processes(marker)
    prune = run_shlax("cache", "prune", "--older-than", "1000d", env={"TMPDIR": env["TMPDIR"]})
    assert f"warning: removed {container}" in prune.stdout, prune.stdout
    assert working_containers(f"k{nonce}") == [] and processes(marker) == []


def test_cache_prune_removes_what_a_killed_run_left(tmp_path, env, busybox_image, nonce):
    container, marker = killed_build(tmp_path, env, busybox_image, nonce)
    dry = run_shlax("cache", "prune", "--older-than", "1000d", "--dry-run", env={"TMPDIR": env["TMPDIR"]})
    assert dry.returncode == 0, dry.stderr
    assert f"warning: would remove {container}" in dry.stdout, dry.stdout
    assert working_containers(f"k{nonce}") == [container]
    prune = run_shlax("cache", "prune", "--older-than", "1000d", env={"TMPDIR": env["TMPDIR"]})
    assert prune.returncode == 0, prune.stderr
    assert f"warning: removed {container}" in prune.stdout, prune.stdout
    assert working_containers(f"k{nonce}") == [] and processes(marker) == []
    assert list(Path(env["TMPDIR"]).iterdir()) == []


def test_sigterm_before_the_runner_starts_exits_130(tmp_path, monkeypatch):
    """The console entry point installs the handler first: a SIGTERM while shlax starts unwinds
    like Ctrl-C, not as a kill (143). Here the fast path's record is a FIFO nobody writes, so
    reading it, the first thing `shlax run` does, waits."""
    from shlax_core import fastpath

    recipe = tmp_path / "shlax.toml"
    recipe.write_text('[targets.t]\nbackend = "local"\nsteps = []\n')
    monkeypatch.setenv("SHLAX_CACHE_DIR", str(tmp_path / "cache"))
    record = fastpath._record_path(recipe.resolve(), [])
    record.parent.mkdir(parents=True)
    os.mkfifo(record)
    proc = subprocess.Popen([*SHLAX, "run", str(recipe)], env={**os.environ, "NO_COLOR": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = None
    try:
        while writer is None:  # a FIFO opens for writing once its reader has it open
            try:
                writer = os.open(record, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)  # it waits for the record's first byte: still starting
        out, err = proc.communicate(timeout=60)
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "shlax: interrupted" in err and "Traceback" not in err
