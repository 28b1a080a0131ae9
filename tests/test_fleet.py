"""Fleet behaviour on real sshd hosts: parallel jobs, grouped output, recap, --fail-fast, exit codes."""

from __future__ import annotations

import textwrap

from conftest import events, run_shlax
from fixtures_hosts import free_port


def write(tmp_path, fleet, hosts: str, steps: str) -> str:
    path = tmp_path / "shlax.toml"
    path.write_text(textwrap.dedent(f"""
        [targets.fleet]
        backend = "ssh"
        ssh_config = "{fleet.ssh_config}"
        hosts = {hosts}
        steps = [ {steps} ]
    """))
    return str(path)


def test_output_is_grouped_per_host_and_recap_counts(ssh_fleet, tmp_path):
    recipe = write(tmp_path, ssh_fleet, '["h1", "h2", "h3", "h4"]',
                   '{ run = ["sh", "-c", "echo one; sleep 0.2; echo two"] }, { run = ["true"], unless = ["true"] }')
    proc = run_shlax("run", recipe, "-j", "4")
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    for host in ("h1", "h2", "h3", "h4"):
        mine = [i for i, line in enumerate(lines) if line.startswith(f"fleet@{host}")]
        # a host's lines form one block: nothing of another host in between
        block = lines[mine[0]:mine[-1] + 1]
        assert not [line for line in block if line.startswith("fleet@") and not line.startswith(f"fleet@{host}")]
    recap = proc.stdout[proc.stdout.index("recap:"):]
    assert recap.count("  success") == 4 and "4 of 4 hosts succeeded" in recap
    row = next(line for line in recap.splitlines() if line.strip().startswith("h1 "))
    assert row.split() == ["h1", "1", "1", "0", "0", "success"]  # ok, changed, failed, unreachable


def test_recap_counts_hosts_not_target_host_pairs(ssh_fleet, tmp_path):
    path = tmp_path / "shlax.toml"
    path.write_text(textwrap.dedent(f"""
        [targets.base]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        hosts = ["h1", "h2"]
        steps = [ {{ run = ["true"] }} ]

        [targets.app]
        backend = "ssh"
        ssh_config = "{ssh_fleet.ssh_config}"
        hosts = ["h1", "h2"]
        steps = [ {{ run = ["sh", "-c", "test $(hostname) != nothing && test ! -e /srv/recap-fail"] }} ]
    """))
    ssh_fleet.host("h2").path("/srv/recap-fail").write_text("")
    try:
        proc = run_shlax("run", str(path), "-j", "2")
    finally:
        ssh_fleet.host("h2").path("/srv/recap-fail").unlink()
    assert proc.returncode == 1
    recap = proc.stdout[proc.stdout.index("recap:"):]
    # two targets on two machines: two rows, each machine's counts summed over the targets
    assert recap.splitlines()[2].split() == ["h1", "0", "2", "0", "0", "success"]
    assert recap.splitlines()[3].split() == ["h2", "0", "1", "1", "0", "failed"]
    assert "1 of 2 hosts succeeded" in recap
    # the failure's cause, once, with the target and step it came from
    assert recap.count("h2: app: run sh -c") == 1 and "command exited with code 1" in recap


def test_fail_fast_skips_hosts_not_started(ssh_fleet, tmp_path):
    down = free_port()
    recipe = write(tmp_path, ssh_fleet, f'[{{ host = "127.0.0.1", port = {down}, name = "down" }}, "h1", "h2"]',
                   '{ run = ["true"] }')
    proc = run_shlax("run", recipe, "-j", "1", "--fail-fast", "--json")
    assert proc.returncode == 1
    ends = {e["host"]: e["status"] for e in events(proc.stdout) if e["event"] == "target_end"}
    assert ends == {"down": "unreachable", "h1": "skipped", "h2": "skipped"}
    # without --fail-fast the others run
    proc = run_shlax("run", recipe, "-j", "1", "--json")
    assert proc.returncode == 1
    ends = {e["host"]: e["status"] for e in events(proc.stdout) if e["event"] == "target_end"}
    assert ends == {"down": "unreachable", "h1": "success", "h2": "success"}
