"""The podman backend: a real container as a host — created if absent, kept running, checked in
place on the next run, committed to an image that then runs."""

from __future__ import annotations

import subprocess
import textwrap
import uuid

from conftest import events, run_shlax, statuses

RUN_ARGS = ["--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True)


def test_podman_container_apply_idempotent_commit_and_run(busybox_image, tmp_path):
    name = f"shlax-test-{uuid.uuid4().hex[:8]}"
    image = f"localhost/{name}-img"
    (tmp_path / "app.conf").write_text("port = 8080\n")
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.box]
        backend = "podman"
        image = "{busybox_image}"
        container = "{name}"
        commit = "{image}"
        steps = [
          {{ copy = {{ src = "app.conf", dest = "/etc/app/app.conf", mode = "0600" }} }},
          {{ run = ["sh", "-c", "echo built > /etc/app/stamp"], creates = "/etc/app/stamp" }},
          {{ run = ["sh", "-c", "echo $GREETING > /etc/app/greeting"], env = {{ GREETING = "hello there" }}, unless = ["test", "-s", "/etc/app/greeting"] }},
        ]
    """))
    recipe = str(tmp_path / "shlax.toml")
    try:
        # plan on an absent container changes nothing and leaves nothing behind
        plan = run_shlax("plan", recipe, "--json")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert statuses(plan.stdout) == ["change", "change", "change"]
        assert podman("container", "exists", name).returncode != 0
        assert not [c for c in podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
                    if c.startswith("shlax-plan-")]

        first = run_shlax("run", recipe, "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        assert statuses(first.stdout) == ["changed", "changed", "changed"]
        assert podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"
        out = podman("exec", name, "cat", "/etc/app/app.conf", "/etc/app/greeting").stdout
        assert out == "port = 8080\nhello there\n"
        assert podman("exec", name, "stat", "-c", "%a", "/etc/app/app.conf").stdout.strip() == "600"
        committed = [e for e in events(first.stdout) if e["event"] == "target_end"][0]
        assert "committed" in committed["summary"]

        second = run_shlax("run", recipe, "--json")
        assert second.returncode == 0
        assert statuses(second.stdout) == ["ok", "ok", "ok"]

        # the committed image runs and holds the files
        ran = podman("run", "--rm", *RUN_ARGS, image, "cat", "/etc/app/stamp", "/etc/app/app.conf")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "built\nport = 8080\n"

        # the container went away behind shlax's back: it is created again from the image
        podman("rm", "-f", "-t", "0", name)
        third = run_shlax("run", recipe, "--json")
        assert third.returncode == 0 and statuses(third.stdout) == ["changed", "changed", "changed"]
    finally:
        podman("rm", "-f", "-t", "0", name)
        podman("rmi", "-f", image)


def test_podman_failures_are_clear(busybox_image, tmp_path):
    (tmp_path / "shlax.toml").write_text(textwrap.dedent("""
        [targets.box]
        backend = "podman"
        container = "shlax-test-never-created"
        steps = [ { run = ["true"] } ]
    """))
    proc = run_shlax("run", str(tmp_path / "shlax.toml"))
    assert proc.returncode == 1
    assert "does not exist and the target names no `image`" in proc.stdout
    name = f"shlax-test-{uuid.uuid4().hex[:8]}"
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.box]
        backend = "podman"
        image = "{busybox_image}"
        container = "{name}"
        remove = true
        steps = [ {{ run = ["sh", "-c", "exit 3"] }} ]
    """))
    try:
        proc = run_shlax("run", str(tmp_path / "shlax.toml"))
        assert proc.returncode == 1
        assert "exit code: 3" in proc.stdout
        assert podman("container", "exists", name).returncode != 0  # remove = true, even on failure
    finally:
        podman("rm", "-f", "-t", "0", name)
