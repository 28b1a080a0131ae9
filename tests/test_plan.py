"""`shlax plan` takes the options of `run` and changes nothing anywhere: no pull, no base build, no
registry, no layer use time, no plan history, no fast-path record (real buildah)."""

from __future__ import annotations

import hashlib
import json
import socket
import textwrap
import time
from pathlib import Path

from conftest import buildah, events, run_shlax, statuses


def test_plan_takes_exactly_the_options_of_run() -> None:
    from shlax_core.cli import cli

    def options(name: str) -> set[tuple[str, ...]]:
        return {tuple(sorted(p.opts + p.secondary_opts)) for p in cli.commands[name].params}

    assert options("plan") == options("run")


def listening_port() -> socket.socket:
    """A socket that accepts connections nobody should make: a registry that must not be asked."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    return s


def contacted(s: socket.socket) -> bool:
    try:
        s.accept()[0].close()
        return True
    except BlockingIOError:
        return False


def state(cache: Path) -> dict[str, str]:
    """What a later run depends on in shlax's state folder (the stat cache aside: plan may write it)."""
    out = {}
    for path in sorted(cache.rglob("*")):
        rel = path.relative_to(cache).as_posix()
        if path.is_file() and not rel.startswith(("statcache/", "downloads/", "locks/")) and "lock" not in rel:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_plan_with_every_run_option_changes_nothing(tmp_path, busybox_image, nonce):
    registry = listening_port()
    port = registry.getsockname()[1]
    cache = tmp_path / "cache"
    env = {"SHLAX_CACHE_DIR": str(cache)}
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.p{nonce}]
        base = "{busybox_image}"
        image = "localhost/shlax-test-plan-{nonce}"
        steps = [ {{ run = ["sh", "-c", "echo {nonce} > /n"] }}, {{ run = ["true"] }} ]
    """))
    recipe = str(tmp_path / "shlax.toml")
    assert run_shlax("run", recipe, env=env).returncode == 0
    # layers last used long ago: a plan must not refresh their use times (prune goes by them)
    usage = cache / "layers.json"
    data = json.loads(usage.read_text())
    for entry in data.values():
        entry["used"] = time.time() - 30 * 86400
    usage.write_text(json.dumps(data, sort_keys=True))
    (tmp_path / "shlax.toml").write_text((tmp_path / "shlax.toml").read_text().replace('["true"]', '["false"]'))
    before = state(cache)
    assert any(k.startswith("fastpath/") for k in before) and any(k.startswith("history/") for k in before)

    repo = f"127.0.0.1:{port}/cache/p{nonce}"
    proc = run_shlax("plan", recipe, "--json", "--push", "--cache-to", repo, "--cache-from", repo,
                     "--no-tls-verify", "--pull", "-j", "3", "--fail-fast", "--offline", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "run"]
    assert state(cache) == before
    assert not contacted(registry)
    assert buildah("inspect", "--type", "image", f"localhost/shlax-test-plan-{nonce}", check=False).returncode == 0


def test_plan_reports_a_missing_base_as_will_pull_and_pulls_nothing(tmp_path, nonce):
    registry = listening_port()
    base = f"127.0.0.1:{registry.getsockname()[1]}/shlax-test/base-{nonce}:1"
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.p{nonce}]
        base = "{base}"
        steps = [ {{ run = ["true"] }}, {{ run = ["false"] }} ]
    """))
    proc = run_shlax("plan", str(tmp_path / "shlax.toml"), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [e for e in events(proc.stdout) if e["event"] == "step_end"]
    assert [(s["status"], s["reason"]) for s in steps] == \
        [("run", f"base image {base} is not in the local store: run will pull it")] * 2
    assert not contacted(registry)
    # and in plain words
    plain = run_shlax("plan", str(tmp_path / "shlax.toml"))
    assert f"RUN     run true - base image {base} is not in the local store: run will pull it" in plain.stdout


def test_plan_does_not_build_a_debootstrap_base(tmp_path, nonce):
    mirror = listening_port()  # debootstrap would download from here
    spec = f"debootstrap:bookworm?mirror=http://127.0.0.1:{mirror.getsockname()[1]}/debian-{nonce}"
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.p{nonce}]
        base = "{spec}"
        steps = [ {{ run = ["true"] }} ]
    """))
    proc = run_shlax("plan", str(tmp_path / "shlax.toml"), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (step,) = [e for e in events(proc.stdout) if e["event"] == "step_end"]
    assert step["status"] == "run" and step["reason"].endswith("is not in the local store: run will build it")
    assert "localhost/shlax-base:debootstrap-bookworm-" in step["reason"]
    assert not contacted(mirror)
    assert not [e for e in events(proc.stdout) if e["event"] == "info" and "debootstrap" in e["message"]]
