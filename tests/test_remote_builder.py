"""Remote builders: a buildah target with ``builder = ...`` builds on another machine over SSH.

The builder is a real sshd (tests/fixtures_hosts.py) in its own mount namespace with a private
``/srv`` and a private ``/tmp`` (a temporary file made on one side is not on the other, as between
real machines). Its image store is put under that ``/srv`` (``root``/``runroot`` apply on the
builder), so an image that shows up in the builder's store, and not in this machine's, was built
there.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import BUSYBOX, events, statuses
from fixtures_builders import RUN, STORE, builder_buildah, private_builder, remote_temp_folders
from fixtures_hosts import Fleet, Host, free_port

def write(tmp_path: Path, fleet: Fleet, nonce: str, third: str = "cat /app/hello.txt > /data/copy",
          builder: str = "") -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "hello.txt").write_text("hello from afar\n")
    builder = builder or f'{{ host = "h1", ssh_config = "{fleet.ssh_config}" }}'
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.r{nonce}]
        base = "{BUSYBOX}"
        image = "localhost/shlax-test-remote-{nonce}"
        root = "{STORE}"
        runroot = "{RUN}"
        builder = {builder}
        steps = [
          {{ run = ["sh", "-c", "mkdir -p /data && echo {nonce} > /data/nonce"] }},
          {{ copy = {{ src = "app/", dest = "/app/", mode = "0640" }} }},
          {{ run = ["sh", "-c", "{third}"] }},
        ]
    """))
    return recipe


def read_in_builder(host: Host, image: str, path: str) -> str:
    ctr = builder_buildah(host, "from", "--pull=never", image).stdout.strip()
    try:
        mnt = builder_buildah(host, "mount", ctr).stdout.strip()
        return Path(mnt, path.lstrip("/")).read_text()
    finally:
        builder_buildah(host, "rm", ctr)


def remote_leftovers(host: Host, nonce: str) -> list[str]:
    names = builder_buildah(host, "containers", "--format", "{{.ContainerName}}").stdout.split()
    return [n for n in names if n.startswith(f"shlax-r{nonce}")] + remote_temp_folders(host)


def test_builds_on_the_builder_then_rebuilds_from_cache(builder, tmp_path, shlax, nonce):
    fleet, host = builder
    recipe = write(tmp_path, fleet, nonce)
    image = f"localhost/shlax-test-remote-{nonce}:latest"

    first = shlax("run", str(recipe), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["done", "done", "done"]
    # built in the builder's store, not in this machine's
    assert builder_buildah(host, "inspect", "--type", "image", image).returncode == 0
    assert subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True).returncode != 0
    assert not Path(STORE).exists()
    assert read_in_builder(host, image, "/data/nonce").strip() == nonce
    assert read_in_builder(host, image, "/app/hello.txt") == "hello from afar\n"
    assert read_in_builder(host, image, "/data/copy") == "hello from afar\n"
    assert remote_leftovers(host, nonce) == []

    again = shlax("run", str(recipe), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert statuses(again.stdout) == ["cached", "cached", "cached"]

    (tmp_path / "app" / "hello.txt").write_text("changed\n")
    changed = shlax("run", str(recipe), "--json")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert statuses(changed.stdout) == ["cached", "done", "done"]
    assert read_in_builder(host, image, "/data/copy") == "changed\n"
    assert remote_leftovers(host, nonce) == []


def test_cache_folders_are_the_builders_own(builder, tmp_path, shlax, nonce):
    """A step's download-cache folder is made and used on the builder, at the same path."""
    fleet, host = builder
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.r{nonce}]
        base = "{BUSYBOX}"
        root = "{STORE}"
        runroot = "{RUN}"
        builder = {{ host = "h1", ssh_config = "{fleet.ssh_config}" }}
        steps = [ {{ run = ["touch", "/run/shlax/pip-cache/marker-{nonce}"], caches = ["pip"] }} ]
    """))
    proc = shlax("run", str(recipe), "--json", env={"PIP_CACHE_DIR": "/srv/shlax-pip-cache"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert host.path(f"/srv/shlax-pip-cache/marker-{nonce}").exists()
    assert not Path(f"/srv/shlax-pip-cache/marker-{nonce}").exists()
    assert remote_leftovers(host, nonce) == []


def test_failing_step_leaves_nothing_on_the_builder(builder, tmp_path, shlax, nonce):
    fleet, host = builder
    recipe = write(tmp_path, fleet, nonce, third="echo doomed; exit 7")
    proc = shlax("run", str(recipe), "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["done", "done", "failed"]
    failed = [e for e in events(proc.stdout) if e["event"] == "step_end" and e.get("status") == "failed"][0]
    assert failed["error"]["returncode"] == 7 and "doomed" in failed["error"]["tail"], failed["error"]
    assert "Traceback" not in proc.stderr
    assert remote_leftovers(host, nonce) == []


def test_unreachable_builder_is_a_clear_error(builder, tmp_path, shlax, nonce):
    fleet, _ = builder
    port = free_port()  # nothing listens there
    recipe = write(tmp_path, fleet, nonce, builder=f'"root@127.0.0.1:{port}"')
    proc = shlax("run", str(recipe))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"cannot reach builder root@127.0.0.1:{port}" in out and "connection refused" in out, out
    assert "Traceback" not in out


def test_unknown_host_key_is_refused(builder, tmp_path, shlax, nonce):
    fleet, host = builder
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    spec = (f'{{ host = "127.0.0.1", port = {host.port}, user = "root", identity = "{fleet.key}", '
            f'known_hosts = "{empty}" }}')
    proc = shlax("run", str(write(tmp_path, fleet, nonce, builder=spec)))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"cannot reach builder root@127.0.0.1:{host.port}" in out and "host key unknown" in out, out
    assert "Traceback" not in out


def remote_processes(pattern: str) -> list[str]:
    """Processes whose command line has ``pattern`` (something unique to one test): the builder
    shares this machine's process table, not its /tmp."""
    out = subprocess.run(["pgrep", "-a", "-f", pattern], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def builder_processes(host: Host, pattern: str) -> list[str]:
    """Processes running on this builder (in its sshd's mount namespace: also those left to init)
    whose command line has ``pattern``: never another test's builder or this machine's own."""
    assert host.proc is not None
    ns = os.readlink(f"/proc/{host.proc.pid}/ns/mnt")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == host.proc.pid:
            continue
        try:
            if os.readlink(entry / "ns" / "mnt") != ns:
                continue
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in line:
            found.append(f"{entry.name} {line}")
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_the_remote_step_and_cleans_up_the_builder(builder, tmp_path, nonce, sig):
    """The remote ``sh -c`` wrapper, ``buildah run`` and the step's own processes are stopped
    (ssh does not stop them when its client goes), and buildah's run folder in the builder's
    TMPDIR goes with the private temporary folder."""
    fleet, host = builder
    # a loop cannot be replaced by its last command (exec): its name stays on the command line
    recipe = write(tmp_path, fleet, nonce, third="STEP")
    recipe.write_text(recipe.read_text().replace(
        '"sh", "-c", "STEP"', f'"sh", "-c", "echo started {nonce}; while :; do sleep 1; done", "step-{nonce}"'))
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "run", str(recipe), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:   # wait until the third step is really running on the builder
        if f'"line": "started {nonce}"' in line:
            break
    running = remote_processes(f"step-{nonce}")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert running, "the step was not seen running"
    assert remote_processes(f"step-{nonce}") == []      # the step, buildah run, the wrapper, ssh
    assert remote_processes(f"shlax-r{nonce}-") == []   # buildah run names the working container
    assert builder_processes(host, "buildah") == [] and builder_processes(host, "shlax-") == []
    assert remote_leftovers(host, nonce) == []
    assert glob.glob(f"{host.path('/tmp')}/buildah*") == []  # the builder's TMPDIR (sshd SetEnv)


# -- debootstrap: bases ----------------------------------------------------------------------------
def debootstrap_recipe(tmp_path: Path, fleet: Fleet, nonce: str) -> Path:
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.r{nonce}]
        base = "debootstrap:bookworm"
        image = "localhost/shlax-test-rdeb-{nonce}"
        root = "{STORE}"
        runroot = "{RUN}"
        builder = {{ host = "h1", ssh_config = "{fleet.ssh_config}" }}
        steps = [ {{ run = ["sh", "-c", "cat /etc/debian_version > /version"] }} ]
    """))
    return recipe


def base_images(host: Host) -> list[str]:
    """The debootstrap bases in the builder's store."""
    out = builder_buildah(host, "images", "--format", "{{.Name}}:{{.Tag}}").stdout.split()
    return sorted(n for n in out if n.startswith("localhost/shlax-base:"))


def builder_mounts(host: Host) -> list[str]:
    """Mount points in the builder's mount namespace (its sshd's) that shlax may have made."""
    assert host.proc is not None
    text = Path(f"/proc/{host.proc.pid}/mounts").read_text()
    return [line.split()[1] for line in text.splitlines() if "shlax-remote" in line.split()[1]]


def test_debootstrap_base_is_built_on_the_builder(builder, tmp_path, shlax, nonce):
    fleet, host = builder
    recipe = debootstrap_recipe(tmp_path, fleet, nonce)
    started = time.monotonic()
    first = shlax("run", str(recipe), "--json")
    elapsed = time.monotonic() - started
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["done"], first.stdout
    print(f"debootstrap:bookworm base + 1 step on the builder: {elapsed:.1f} s")
    built = [e["message"] for e in events(first.stdout) if e["event"] == "info" and "with debootstrap" in e["message"]]
    assert built == ["building base image debootstrap:bookworm with debootstrap on builder h1 (once)"], built

    # the base is in the builder's store; this machine's store does not hold that image
    bases = [i for i in json.loads(builder_buildah(host, "images", "--json").stdout)
             if any(n.startswith("localhost/shlax-base:debootstrap-bookworm-") for n in i.get("names") or [])]
    assert len(bases) == 1, bases
    local = subprocess.run(["buildah", "images", "--json", "--no-trunc"], capture_output=True, text=True).stdout
    assert bases[0]["id"] not in local
    image = f"localhost/shlax-test-rdeb-{nonce}:latest"
    assert read_in_builder(host, image, "/version").startswith("12.")

    # cleaned like a local base (no .debs, no apt lists), owners kept (numeric: shadow's group)
    ctr = builder_buildah(host, "from", "--pull=never", image).stdout.strip()
    try:
        mnt = Path(builder_buildah(host, "mount", ctr).stdout.strip())
        assert [p.name for p in (mnt / "var/cache/apt/archives").iterdir()] == ["partial"]
        assert not list((mnt / "var/lib/apt/lists").glob("*_*"))
        assert (mnt / "etc/shadow").stat().st_gid == 42
        assert (mnt / "bin/bash").exists()
    finally:
        builder_buildah(host, "rm", ctr)
    # the .debs stay in the builder's download cache; nothing else is left there
    debs = host.path(os.environ["SHLAX_CACHE_DIR"]) / "downloads/debootstrap/bookworm-native"
    assert list(debs.glob("*.deb")), debs
    assert remote_leftovers(host, nonce) == [] and builder_mounts(host) == []
    assert not [c for c in builder_buildah(host, "containers", "--format", "{{.ContainerName}}").stdout.split()
                if c.startswith("shlax-base-")]

    again = shlax("run", str(recipe), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert statuses(again.stdout) == ["cached"], again.stdout
    assert not [e for e in events(again.stdout) if e["event"] == "info" and "debootstrap" in e["message"]]


def test_builder_without_debootstrap_is_a_clear_error(tmp_path, shlax, nonce):
    """A builder whose ssh sessions have no /usr/sbin on their PATH (sshd's SetEnv): buildah is
    found there, debootstrap is not."""
    with private_builder("SetEnv PATH=/usr/local/bin:/usr/bin:/bin\n") as (fleet, host):
        proc = shlax("run", str(debootstrap_recipe(tmp_path, fleet, nonce)))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "needs debootstrap on builder h1, which is not installed there" in proc.stderr, proc.stderr
        assert "hint: on builder h1: apt-get install debootstrap" in proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        assert remote_temp_folders(host) == []


def test_interrupted_remote_debootstrap_leaves_nothing_on_the_builder(builder, tmp_path, nonce):
    """Ctrl-C while debootstrap configures packages there (its /proc mounted in the rootfs): the
    command is stopped, the mounts are gone, the folder is removed."""
    fleet, host = builder
    recipe = debootstrap_recipe(tmp_path, fleet, nonce)
    recipe.write_text(recipe.read_text().replace('"debootstrap:bookworm"', '"debootstrap:bookworm?include=less"'))
    bases_before = base_images(host)
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "run", str(recipe), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    mounted: list[str] = []
    for line in proc.stdout:   # the second stage: packages being configured inside the rootfs
        if "I: Configuring" in line:
            mounted = builder_mounts(host)
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    assert any(m.endswith("/rootfs/proc") for m in mounted), mounted  # what the cleanup had to undo
    assert builder_mounts(host) == []
    assert remote_leftovers(host, nonce) == []
    assert builder_processes(host, "shlax-remote-") == []  # debootstrap, and what it started there
    assert base_images(host) == bases_before  # no half-built base
