"""Variables, templates, per-step become, services and handlers, connection reuse and the recap,
on real sshd hosts (tests/fixtures_hosts.py).

These hosts run no systemd: the service tests put a fake ``systemctl`` (a shell script that keeps
unit states in files and logs every call) in each host's private /usr/local/sbin, first on
root's and sudo's PATH.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import ROOT, events, run_shlax, statuses
from fixtures_hosts import Fleet

FAKE_SYSTEMCTL = r"""#!/bin/sh
# a stand-in for systemd's systemctl: unit states are files under /srv/fake-systemd
d=/srv/fake-systemd
mkdir -p "$d/enabled" "$d/active"
echo "$*" >> "$d/calls"
verb=$1; shift
[ "$1" = "--" ] && shift
case $verb in
  show)
    prop=$1; shift; [ "$1" = "--" ] && shift; u=$1
    [ -e "$d/units/$u" ] || { echo LoadState=not-found; echo ActiveState=inactive; echo UnitFileState=; exit 0; }
    echo LoadState=loaded
    if [ -e "$d/active/$u" ]; then echo ActiveState=active; else echo ActiveState=inactive; fi
    if [ -e "$d/enabled/$u" ]; then echo UnitFileState=enabled; else echo UnitFileState=disabled; fi ;;
  enable) touch "$d/enabled/$1" ;;
  disable) rm -f "$d/enabled/$1" ;;
  start) touch "$d/active/$1" ;;
  stop) rm -f "$d/active/$1" ;;
  restart|reload) touch "$d/active/$1"; echo "$verb" >> "$d/$1.$verb" ;;
esac
"""


def install_systemctl(fleet: Fleet, names: list[str], units: list[str]) -> None:
    for name in names:
        host = fleet.host(name)
        exe = host.path("/usr/local/sbin/systemctl")
        exe.write_text(FAKE_SYSTEMCTL)
        exe.chmod(0o755)
        state = host.path("/srv/fake-systemd")
        if state.exists():
            subprocess.run(["rm", "-rf", str(state)], check=True)
        (state / "units").mkdir(parents=True)
        for unit in units:
            (state / "units" / unit).write_text("")


def remove_systemctl(fleet: Fleet, names: list[str]) -> None:
    for name in names:
        fleet.host(name).path("/usr/local/sbin/systemctl").unlink(missing_ok=True)


def accepted(fleet: Fleet, name: str) -> int:
    """How many ssh connections (key exchanges) the host's sshd accepted so far."""
    return (fleet.dir / f"{name}.sshd.log").read_text().count("Accepted publickey")


def write(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> Path:
    for rel, content in (files or {}).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content)
    path = tmp_path / "shlax.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_per_host_variables_in_paths_and_contents(ssh_fleet, tmp_path):
    (tmp_path / "hosts.toml").write_text(textwrap.dedent("""
        [vars]
        tier = "inventory"

        [groups.web]
        hosts = [{ host = "h1", vars = { port = 9001 } }, "h2"]
        vars = { port = 8001, tier = "web" }
    """))
    path = write(tmp_path, f"""
        [vars]
        port = 80
        app = "shop"

        [targets.site]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        inventory = "hosts.toml"
        steps = [
          {{ template = {{ src = "app.conf.j2", dest = "/srv/{{{{ app }}}}-{{{{ host.name }}}}/app.conf", mode = "0640" }} }},
          {{ run = ["sh", "-c", "echo {{{{ facts.distribution }}}}/{{{{ host.groups | join(',') }}}} > /srv/{{{{ app }}}}-{{{{ host.name }}}}/who"], creates = "/srv/{{{{ app }}}}-{{{{ host.name }}}}/who" }},
        ]
    """, {"app.conf.j2": "# {{ host.name }} ({{ tier }}, {{ facts.architecture }})\nport = {{ port }}\n"})
    first = run_shlax("run", str(path), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["changed"] * 4
    h1, h2 = ssh_fleet.host("h1"), ssh_fleet.host("h2")
    arch = os.uname().machine
    # the host's own vars win over its group's, which win over the inventory's and the recipe's
    assert h1.path("/srv/shop-h1/app.conf").read_text() == f"# h1 (web, {arch})\nport = 9001\n"
    assert h2.path("/srv/shop-h2/app.conf").read_text() == f"# h2 (web, {arch})\nport = 8001\n"
    assert oct(h1.path("/srv/shop-h1/app.conf").stat().st_mode & 0o777) == "0o640"
    assert h1.path("/srv/shop-h1/who").read_text() == "debian/web\n"
    assert not h1.path("/srv/shop-h2").exists()  # each host got its own path
    # unchanged: every step is ok, nothing rewritten
    stamp = h1.path("/srv/shop-h1/app.conf").stat().st_mtime_ns
    again = run_shlax("run", str(path), "--json")
    assert statuses(again.stdout) == ["ok"] * 4, again.stdout
    assert h1.path("/srv/shop-h1/app.conf").stat().st_mtime_ns == stamp
    # --var wins over everything: that host's file changes, reported as changed
    third = run_shlax("run", str(path), "--json", "--var", "tier=cli")
    assert statuses(third.stdout).count("changed") == 2
    assert "(cli, " in h2.path("/srv/shop-h2/app.conf").read_text()


def test_undefined_variable_is_an_error_before_anything_runs(ssh_fleet, tmp_path):
    path = write(tmp_path, f"""
        [vars]
        app = "x"

        [targets.site]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        hosts = ["h1", {{ host = "h2", vars = {{ port = 1 }} }}]
        steps = [
          {{ run = ["touch", "/srv/undefined-ran"] }},
          {{ run = ["echo", "{{{{ port }}}}"] }},
        ]
    """)
    before = accepted(ssh_fleet, "h1")
    proc = run_shlax("run", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "shlax.toml:11:" in proc.stderr and "undefined variable" in proc.stderr and "'port'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not ssh_fleet.host("h1").path("/srv/undefined-ran").exists()
    assert accepted(ssh_fleet, "h1") == before  # not even a connection
    # in a template file: its own file and line
    path = write(tmp_path, f"""
        [targets.site]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        hosts = ["h1"]
        steps = [ {{ template = {{ src = "t.j2", dest = "/srv/t" }} }} ]
    """, {"t.j2": "line one\n{{ nope }}\n"})
    proc = run_shlax("run", str(path))
    assert proc.returncode == 2 and "t.j2:2:" in proc.stderr and "'nope' is undefined" in proc.stderr


def test_per_step_become_over_one_connection(ssh_fleet, tmp_path):
    path = write(tmp_path, f"""
        [targets.site]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        hosts = ["deploy@h3"]
        persist = 0
        steps = [
          {{ run = ["sh", "-c", "id -un > /tmp/step1-user"] }},
          {{ copy = {{ src = "motd", dest = "/etc/shlax-motd" }}, become = true }},
          {{ run = ["sh", "-c", "id -un > /srv/step3-user"], become = true }},
          {{ run = ["sh", "-c", "id -un"], become_user = "nosudo" }},
          {{ run = ["sh", "-c", "id -un"] }},
        ]
    """, {"motd": "hello\n"})
    before = accepted(ssh_fleet, "h3")
    proc = run_shlax("run", str(path), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    h3 = ssh_fleet.host("h3")
    assert h3.path("/etc/shlax-motd").read_text() == "hello\n"
    assert h3.path("/etc/shlax-motd").stat().st_uid == 0
    assert h3.path("/srv/step3-user").read_text() == "root\n"
    lines = [e["line"] for e in events(proc.stdout) if e["event"] == "output"]
    assert lines == ["nosudo", "deploy"]
    # one connection carried every step (none when an earlier test's master to deploy@h3 still lives)
    assert accepted(ssh_fleet, "h3") - before <= 1
    again = run_shlax("run", str(path), "--json")
    assert statuses(again.stdout)[1] == "ok"  # the copy check ran as root too

    # a login user without sudo: the become step fails with a clear message, the others ran
    path = write(tmp_path, f"""
        [targets.site]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        hosts = ["nosudo@h3"]
        steps = [ {{ run = ["true"] }}, {{ run = ["true"], become = true }} ]
    """)
    proc = run_shlax("run", str(path))
    assert proc.returncode == 1
    assert "become: `sudo -n -u root` was refused" in proc.stdout and "nosudo@h3" in proc.stdout
    assert "[1/2] CHANGED" in proc.stdout


def test_service_and_handlers(ssh_fleet, tmp_path):
    names = ["h1", "h2"]
    install_systemctl(ssh_fleet, names, ["app.service"])
    try:
        path = write(tmp_path, f"""
            [handlers]
            restart-app = {{ service = "app.service", state = "restarted" }}

            [targets.site]
            backend = "ssh"
            ssh_config = "{ssh_fleet.ssh_config}"
            hosts = {names}
            steps = [
              {{ service = "app.service", state = "started", enabled = true }},
              {{ copy = {{ src = "a.conf", dest = "/srv/app/a.conf" }}, notify = "restart-app" }},
              {{ copy = {{ src = "b.conf", dest = "/srv/app/b.conf" }}, notify = ["restart-app"] }},
            ]
        """, {"a.conf": "a\n", "b.conf": "b\n"})
        proc = run_shlax("run", str(path), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for name in names:
            state = ssh_fleet.host(name).path("/srv/fake-systemd")
            calls = (state / "calls").read_text().splitlines()
            assert [c for c in calls if not c.startswith("show")] == [
                "enable -- app.service", "start -- app.service", "restart -- app.service"]
            assert (state / "app.service.restart").read_text() == "restart\n"  # once, for two changes
        ends = [e for e in events(proc.stdout) if e["event"] == "step_end"]
        assert [e["status"] for e in ends if e.get("handler")] == ["changed", "changed"]
        assert not [e for e in ends if e.get("handler") and e["host"] == "h1"][1:]

        # nothing changed: no handler, no systemctl call but the state query
        again = run_shlax("run", str(path), "--json")
        assert statuses(again.stdout) == ["ok"] * 6
        for name in names:
            state = ssh_fleet.host(name).path("/srv/fake-systemd")
            assert (state / "app.service.restart").read_text() == "restart\n"
            assert [c for c in (state / "calls").read_text().splitlines() if not c.startswith("show")] == [
                "enable -- app.service", "start -- app.service", "restart -- app.service"]

        # one notifying step changes on one host: that host's handler runs, once
        (tmp_path / "b.conf").write_text("b2\n")
        third = run_shlax("run", str(path), "--json")
        assert third.returncode == 0
        assert (ssh_fleet.host("h1").path("/srv/fake-systemd/app.service.restart").read_text()
                == "restart\nrestart\n")

        # a host without systemd (this machine's own systemctl, with no systemd running, or none
        # at all): a clear error for that step, once in the recap
        remove_systemctl(ssh_fleet, ["h2"])
        (tmp_path / "b.conf").write_text("b3\n")
        proc = run_shlax("run", str(path))
        assert proc.returncode == 1
        message = ("systemd is not running on this host" if Path("/usr/bin/systemctl").exists()
                   else "this host has no systemctl: the service action needs systemd")
        assert message in proc.stdout
        recap = proc.stdout[proc.stdout.index("recap:"):]
        assert recap.count(message) == 1 and "1 of 2 hosts succeeded" in recap
    finally:
        remove_systemctl(ssh_fleet, names)


def test_masters_are_reused_listed_and_closed(ssh_fleet, tmp_path):
    env = {"SHLAX_CACHE_DIR": str(tmp_path / "cache")}
    path = write(tmp_path, f"""
        [targets.site]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        hosts = ["h4"]
        steps = [ {{ run = ["true"] }}, {{ copy = {{ src = "f", dest = "/srv/reuse/f" }} }} ]
    """, {"f": "x\n"})
    before = accepted(ssh_fleet, "h4")
    assert run_shlax("run", str(path), env=env).returncode == 0
    assert accepted(ssh_fleet, "h4") == before + 1
    # the second run rides on the master the first one left: no new connection, no key exchange
    assert run_shlax("run", str(path), env=env).returncode == 0
    assert accepted(ssh_fleet, "h4") == before + 1
    listing = run_shlax("hosts", "list", env=env)
    assert listing.returncode == 0 and "h4" in listing.stdout and "closes after 300s idle" in listing.stdout
    socket = listing.stdout.split()[-1]
    assert oct(os.stat(os.path.dirname(socket)).st_mode & 0o777) == "0o700"
    closed = run_shlax("hosts", "close", "h4", env=env)
    assert "closed: h4" in closed.stdout
    assert "no open ssh master" in run_shlax("hosts", "list", env=env).stdout
    assert not os.path.exists(socket)
    assert run_shlax("run", str(path), env=env).returncode == 0
    assert accepted(ssh_fleet, "h4") == before + 2  # closed: the next run connects anew
    run_shlax("hosts", "close", env=env)


def test_interrupt_prints_every_hosts_finished_steps(ssh_fleet, tmp_path):
    names = ["h1", "h2"]
    for name in names:
        ssh_fleet.host(name).path("/srv/int-started").unlink(missing_ok=True)
    path = write(tmp_path, f"""
        [targets.site]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        hosts = {names}
        steps = [
          {{ run = ["true"] }},
          {{ run = ["sh", "-c", "touch /srv/int-started; sleep 3"] }},
          {{ run = ["touch", "/srv/int-third"] }},
        ]
    """)
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("CI", None)
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "run", str(path), "-j", "2"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not all(ssh_fleet.host(n).path("/srv/int-started").exists() for n in names):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    for name in names:
        assert f"site@{name} [1/3] CHANGED" in out and f"site@{name} [2/3] CHANGED" in out
        assert f"site@{name}: interrupted after 2 steps" in out
        assert not ssh_fleet.host(name).path("/srv/int-third").exists()
    recap = out[out.index("recap:"):]
    assert recap.count("  interrupted\n") == 2 and "0 of 2 hosts succeeded" in recap
