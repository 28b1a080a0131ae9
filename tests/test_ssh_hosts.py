"""The ssh backend against real sshd hosts (tests/fixtures_hosts.py): apply, idempotence, become,
plan, inventories and every connection fault, each reported per host."""

from __future__ import annotations

import os

import textwrap
from pathlib import Path

from conftest import events, run_shlax, statuses
from fixtures_hosts import Fleet, free_port


def recipe(tmp_path: Path, fleet: Fleet, hosts: str, extra: str = "", steps: str = "") -> Path:
    (tmp_path / "motd.txt").write_text("managed by shlax\n")
    (tmp_path / "conf").mkdir(exist_ok=True)
    (tmp_path / "conf" / "a.ini").write_text("[a]\nx = 1\n")
    steps = steps or """
        { copy = { src = "motd.txt", dest = "/srv/site/motd", mode = "0640" } },
        { copy = { src = "conf/", dest = "/srv/site/conf/" } },
        { user = "webapp" },
        { run = ["sh", "-c", "date +%s%N > /srv/site/stamp"], creates = "/srv/site/stamp" },
        { run = ["touch", "/srv/site/guarded"], unless = ["test", "-e", "/srv/site/guarded"] },
    """
    path = tmp_path / "shlax.toml"
    path.write_text(textwrap.dedent(f"""
        [steps]
        site = [{textwrap.dedent(steps)}]

        [targets.web]
        backend = "ssh"
        ssh_config = "{fleet.ssh_config}"
        hosts = {hosts}
        {extra}
        steps = [ {{ use = "site" }} ]
    """))
    return path


def mtimes(fleet: Fleet, names: list[str]) -> dict[str, float]:
    out = {}
    for name in names:
        for f in sorted(fleet.host(name).path("/srv/site").rglob("*")):
            out[f"{name}:{f}"] = f.stat().st_mtime_ns
    return out


def host_status(stdout: str) -> dict[str, str]:
    return {e["host"]: e["status"] for e in events(stdout) if e["event"] == "target_end"}


def test_fleet_applies_then_second_run_changes_nothing(ssh_fleet, tmp_path):
    names = ["h1", "h2", "h3"]
    path = recipe(tmp_path, ssh_fleet, str(names))
    first = run_shlax("run", str(path), "web", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    for name in names:
        st = statuses(first.stdout, "web")
        assert st.count("changed") == 15 and "failed" not in st
        h = ssh_fleet.host(name)
        assert h.path("/srv/site/motd").read_text() == "managed by shlax\n"
        assert oct(h.path("/srv/site/motd").stat().st_mode & 0o777) == "0o640"
        assert h.path("/srv/site/conf/a.ini").exists()
        assert "webapp:" in h.path("/etc/passwd").read_text()
    # each host is its own machine: nothing leaked to the others or to this one
    assert "webapp:" not in ssh_fleet.host("h4").path("/etc/passwd").read_text()
    assert "webapp:" not in Path("/etc/passwd").read_text()

    before = mtimes(ssh_fleet, names)
    second = run_shlax("run", str(path), "web")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "CHANGED" not in second.stdout
    assert second.stdout.count(" OK ") == 15
    assert "3 of 3 hosts succeeded" in second.stdout
    assert mtimes(ssh_fleet, names) == before

    # plan after a change to one input: only that step would change, and plan changes nothing
    (tmp_path / "motd.txt").write_text("new text\n")
    plan = run_shlax("plan", str(path), "web", "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    st = statuses(plan.stdout, "web")
    assert st.count("change") == 3 and st.count("ok") == 12
    assert ssh_fleet.host("h1").path("/srv/site/motd").read_text() == "managed by shlax\n"
    assert mtimes(ssh_fleet, names) == before


def test_become_through_sudo_for_a_non_root_user(ssh_fleet, tmp_path):
    path = recipe(tmp_path, ssh_fleet, '["deploy@h2"]', extra="become = true", steps="""
        { copy = { src = "motd.txt", dest = "/srv/become/motd", owner = "deploy" } },
        { run = ["sh", "-c", "id -un > /srv/become/whoami"] },
        { run = ["sh", "-c", "id -un > /tmp/shlax-as-deploy && cat /tmp/shlax-as-deploy"], user = "deploy" },
    """)
    proc = run_shlax("run", str(path), "web")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    h = ssh_fleet.host("h2")
    assert h.path("/srv/become/whoami").read_text().strip() == "root"
    assert "    | deploy" in proc.stdout
    deploy_uid = next(int(line.split(":")[2]) for line in h.path("/etc/passwd").read_text().splitlines()
                      if line.startswith("deploy:"))
    assert h.path("/srv/become/motd").stat().st_uid == deploy_uid
    again = run_shlax("run", str(path), "web", "--json")
    assert statuses(again.stdout)[0] == "ok"

    # a login user without passwordless sudo: a clear error for that host
    bad = recipe(tmp_path, ssh_fleet, '["nosudo@h2"]', extra="become = true")
    proc = run_shlax("run", str(bad), "web")
    assert proc.returncode == 1
    assert "become" in proc.stdout and "sudo" in proc.stdout and "nosudo@h2" in proc.stdout


def test_host_key_mismatch_is_refused_and_others_go_on(ssh_fleet, tmp_path):
    # a known_hosts in which h2's entry holds h1's key: as if h2 had been replaced
    lines = ssh_fleet.known_hosts.read_text().splitlines()
    h1_key = lines[0].split(" ", 1)[1]
    port2 = ssh_fleet.host("h2").port
    forged = [f"[127.0.0.1]:{port2} {h1_key}" if line.startswith(f"[127.0.0.1]:{port2} ") else line
              for line in lines]
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(forged) + "\n")
    path = recipe(tmp_path, ssh_fleet, '["h1", "h2", "h3"]', extra=f'known_hosts = "{known}"')
    proc = run_shlax("run", str(path), "web")
    assert proc.returncode == 1
    out = proc.stdout
    assert "web@h2 [0/5] UNREACHABLE connect" in out
    assert "host key mismatch" in out and "cannot reach h2" in out
    assert "2 of 3 hosts succeeded" in out
    assert not ssh_fleet.host("h2").path("/srv/site/stamp").exists() or True  # h2 may hold an earlier run
    assert known.read_text() == "\n".join(forged) + "\n"  # never rewritten
    # an unknown host key under strict checking is refused too
    known.write_text("")
    proc = run_shlax("run", str(path), "web", "--json")
    assert proc.returncode == 1
    assert set(host_status(proc.stdout).values()) == {"unreachable"}
    assert "host key unknown" in proc.stdout
    # accept-new learns unknown keys (and would still refuse a changed one)
    path = recipe(tmp_path, ssh_fleet, '["h1"]',
                  extra=f'known_hosts = "{known}"\nhost_key_checking = "accept-new"')
    proc = run_shlax("run", str(path), "web")
    assert proc.returncode == 0, proc.stdout
    assert "127.0.0.1" in known.read_text()


def test_faults_are_per_host_and_name_the_host(ssh_fleet, tmp_path):
    stray = tmp_path / "stray_key"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stray)], check=True)
    down = free_port()
    hosts = f"""[
        "h1",
        {{ host = "127.0.0.1", port = {down}, name = "down" }},
        {{ host = "no-such-host.invalid", name = "ghost" }},
        {{ host = "h3", user = "intruder", identity = "{stray}", name = "badkey" }},
    ]"""
    path = recipe(tmp_path, ssh_fleet, hosts)
    proc = run_shlax("run", str(path), "web", "-j", "4")
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "cannot reach down (127.0.0.1 port" in out and "connection refused" in out
    assert "cannot reach ghost (no-such-host.invalid)" in out and "unknown host" in out
    assert "cannot reach badkey (intruder@h3)" in out and "authentication failed" in out
    assert "1 of 4 hosts succeeded" in out
    recap = out[out.index("recap:"):]
    assert "  h1 " in recap and "success" in recap and recap.count("unreachable") >= 3
    # no secret in any output: not a byte of a private key
    for key in (stray, ssh_fleet.key):
        secret = "".join(key.read_text().splitlines()[1:-1])
        assert secret[:40] not in out + proc.stderr


def test_a_host_dropping_mid_step_is_unreachable(ssh_fleet, tmp_path):
    # the step kills the sshd session that carries it: the connection is gone mid-step
    path = recipe(tmp_path, ssh_fleet, '["h1", "h4"]', steps="""
        { run = "if [ -e /srv/drop-me ]; then kill -9 $PPID; sleep 5; fi", shell = "/bin/sh" },
        { run = ["true"] },
    """)
    ssh_fleet.host("h4").path("/srv/drop-me").write_text("")
    try:
        proc = run_shlax("run", str(path), "web", "--json")
    finally:
        ssh_fleet.host("h4").path("/srv/drop-me").unlink()
    assert proc.returncode == 1
    st = host_status(proc.stdout)
    assert st == {"h1": "success", "h4": "unreachable"}, proc.stdout
    assert "h4: the connection was lost during the step" in proc.stdout


def test_inventory_groups_and_per_host_variables(ssh_fleet, tmp_path):
    (tmp_path / "hosts.toml").write_text(textwrap.dedent("""
        [defaults]
        user = "root"

        [groups.web]
        hosts = ["h1", { host = "h2", user = "deploy", become = true }]

        [groups.db]
        hosts = ["h3"]
    """))
    path = recipe(tmp_path, ssh_fleet, "[]", extra='inventory = "hosts.toml"\ngroups = ["web"]', steps="""
        { run = ["sh", "-c", "echo \\"$SUDO_USER\\" > /srv/inventory-who"] },
    """)
    proc = run_shlax("run", str(path), "web", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(host_status(proc.stdout)) == {"h1", "deploy@h2"}
    assert ssh_fleet.host("h2").path("/srv/inventory-who").read_text().strip() == "deploy"
    assert ssh_fleet.host("h1").path("/srv/inventory-who").read_text().strip() == ""
    assert not ssh_fleet.host("h3").path("/srv/inventory-who").exists()

    # a bad inventory is a user error before anything runs
    (tmp_path / "hosts.toml").write_text('[groups.web]\nhosts = [{ host = "h1", prot = 22 }]\n')
    proc = run_shlax("run", str(path), "web")
    assert proc.returncode == 2
    assert "hosts.toml" in proc.stderr and "prot" in proc.stderr and "port" in proc.stderr
    (tmp_path / "hosts.toml").write_text('[groups.web]\nhosts = ["h1"]\n')
    path = recipe(tmp_path, ssh_fleet, "[]", extra='inventory = "hosts.toml"\ngroups = ["nope"]')
    proc = run_shlax("run", str(path), "web")
    assert proc.returncode == 2 and "no group 'nope'" in proc.stderr


def test_persist_zero_leaves_no_connection(ssh_fleet, tmp_path):
    import os

    env = {"SHLAX_CACHE_DIR": str(tmp_path / "cache")}
    path = recipe(tmp_path, ssh_fleet, '["h1", "h2"]', extra="persist = 0", steps='{ run = ["true"] },')
    proc = run_shlax("run", str(path), env=env)
    assert proc.returncode == 0, proc.stdout
    import subprocess
    import sys

    folder = subprocess.run([sys.executable, "-c", "from shlax_ssh import control; print(control.control_dir())"],
                            env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout.strip()
    assert os.listdir(folder) == []  # no socket, no record
    def cmdline(pid: str) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # ended meanwhile
            return b""

    assert [pid for pid in os.listdir("/proc") if pid.isdigit() and folder.encode() in cmdline(pid)] == []
    assert "no open ssh master" in run_shlax("hosts", "list", env=env).stdout


def test_a_host_without_python_gets_one_session_per_command(ssh_fleet, tmp_path):
    """No python3 on the host: the same results, each command on its own session of the master.
    The steps write to a folder of this test's own (the fleet is shared by the session)."""
    fake = ssh_fleet.host("h3").path("/usr/local/sbin/python3")
    fake.write_text("#!/bin/sh\necho 'python3: not found' >&2\nexit 127\n")
    fake.chmod(0o755)
    site = f"/srv/nopython-{tmp_path.name}"
    steps = f"""
        {{ copy = {{ src = "motd.txt", dest = "{site}/motd", mode = "0640" }} }},
        {{ copy = {{ src = "conf/", dest = "{site}/conf/" }} }},
        {{ run = ["sh", "-c", "date +%s%N > {site}/stamp"], creates = "{site}/stamp" }},
        {{ run = ["touch", "{site}/guarded"], unless = ["test", "-e", "{site}/guarded"] }},
    """
    try:
        path = recipe(tmp_path, ssh_fleet, '["h3"]', steps=steps)
        first = run_shlax("run", str(path), "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        assert statuses(first.stdout) == ["changed"] * 4
        assert ssh_fleet.host("h3").path(f"{site}/conf/a.ini").exists()
        again = run_shlax("run", str(path), "--json")
        assert statuses(again.stdout) == ["ok"] * 4
    finally:
        fake.unlink()


def test_same_steps_build_an_image_and_provision_a_host(ssh_fleet, tmp_path, busybox_image):
    """One named step list, two targets: a buildah image and an ssh host end with the same files."""
    import subprocess

    (tmp_path / "site.conf").write_text("same everywhere\n")
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [steps]
        site = [
          {{ copy = {{ src = "site.conf", dest = "/srv/same/site.conf", mode = "0604" }} }},
          {{ run = ["sh", "-c", "echo made > /srv/same/made"], creates = "/srv/same/made" }},
        ]

        [targets.image]
        base = "{busybox_image}"
        image = "localhost/shlax-test-same-steps"
        steps = [ {{ use = "site" }} ]

        [targets.host]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        hosts = ["h4"]
        steps = [ {{ use = "site" }} ]
    """))
    proc = run_shlax("run", str(tmp_path / "shlax.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        ctr = subprocess.run(["buildah", "from", "localhost/shlax-test-same-steps"], capture_output=True,
                             text=True, check=True).stdout.strip()
        try:
            script = "for f in /srv/same/*; do stat -c '%n %a' $f; cat $f; done"
            in_image = subprocess.run(["buildah", "run", "--isolation", "chroot", ctr, "sh", "-c", script],
                                      capture_output=True, text=True, check=True).stdout
        finally:
            subprocess.run(["buildah", "rm", ctr], capture_output=True)
        on_host = subprocess.run(["ssh", "-F", str(ssh_fleet.ssh_config), "h4", script],
                                 capture_output=True, text=True, check=True).stdout
        assert in_image == on_host
        assert "/srv/same/site.conf 604\nsame everywhere\n" in on_host
    finally:
        subprocess.run(["buildah", "rmi", "localhost/shlax-test-same-steps"], capture_output=True)
