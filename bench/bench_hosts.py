"""Fleet benchmark: shlax vs pyinfra vs ansible-core on N real SSH hosts, first run and no-change run.

Every tool applies the same state to every host, into its own paths (so each first run is a real
first run): three apt packages present, one file copied, one pip package present in a virtualenv.
Hosts are real sshd processes on loopback ports, each in its own mount namespace with private
/etc, /home, /root and /srv (tests/fixtures_hosts.py). pyinfra and ansible-core are installed from
PyPI into their own virtualenvs under --tools (reused on later runs).

    python bench/bench_hosts.py [--hosts 20] [--tools DIR] [--no-peers]

Prints a table (seconds) and the ratios shlax/peer for the no-change run.
Targets: shlax <= 0.5x pyinfra and <= 0.25x ansible (forks = hosts) on the no-change run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_hosts import Fleet, make_fleet, stop_fleet  # noqa: E402

PACKAGES = ["coreutils", "tar", "gzip"]
PIP_PACKAGE = "six"


def sh(argv: list[str], cwd: Path, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return time.monotonic() - started, proc


def ensure_tool(tools: Path, name: str, requirement: str, exe: str) -> Path:
    venv = tools / name
    if not (venv / "bin" / exe).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", requirement], check=True)
    return venv / "bin" / exe


def version(exe: Path) -> str:
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.strip()
    return out.splitlines()[0] if out else "?"


# -- the three tools ------------------------------------------------------------------------
def shlax_files(work: Path, fleet: Fleet, n: int) -> list[str]:
    d = work / "shlax"
    d.mkdir()
    (d / "app.conf").write_text("listen = 8080\n")
    (d / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.fleet]
        backend = "ssh"
        ssh_config = "{fleet.ssh_config}"
        hosts = {fleet.names(n)}
        steps = [
          {{ apt = {PACKAGES} }},
          {{ copy = {{ src = "app.conf", dest = "/srv/bench-shlax/app.conf", mode = "0644" }} }},
          {{ pip = {{ packages = ["{PIP_PACKAGE}"], venv = "/srv/bench-shlax/venv" }} }},
        ]
    """))
    return [sys.executable, "-m", "shlax_core", "run", str(d / "shlax.toml"), "-j", str(n)]


def pyinfra_files(work: Path, fleet: Fleet, n: int, exe: Path) -> list[str]:
    d = work / "pyinfra"
    d.mkdir()
    (d / "app.conf").write_text("listen = 8080\n")
    hosts = ",\n    ".join(
        f'("{h.name}", {{"ssh_hostname": "127.0.0.1", "ssh_port": {h.port}, "ssh_user": "root", '
        f'"ssh_key": "{fleet.key}", "ssh_known_hosts_file": "{fleet.known_hosts}", '
        f'"ssh_strict_host_key_checking": "yes"}})' for h in fleet.hosts[:n])
    (d / "inventory.py").write_text(f"hosts = [\n    {hosts},\n]\n")
    (d / "deploy.py").write_text(textwrap.dedent(f"""
        from pyinfra.operations import apt, files, pip
        apt.packages(packages={PACKAGES})
        files.put(src="app.conf", dest="/srv/bench-pyinfra/app.conf", mode="644")
        pip.virtualenv(path="/srv/bench-pyinfra/venv", python="python3", venv=True)
        pip.packages(packages=["{PIP_PACKAGE}"], virtualenv="/srv/bench-pyinfra/venv")
    """))
    return [str(exe), "-y", "--parallel", str(n), "inventory.py", "deploy.py"]


def ansible_files(work: Path, fleet: Fleet, n: int, exe: Path) -> list[str]:
    d = work / "ansible"
    d.mkdir()
    (d / "app.conf").write_text("listen = 8080\n")
    lines = [f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port}" for h in fleet.hosts[:n]]
    (d / "inventory.ini").write_text("\n".join(lines) + textwrap.dedent(f"""

        [all:vars]
        ansible_user=root
        ansible_ssh_private_key_file={fleet.key}
        ansible_ssh_common_args='-o UserKnownHostsFile={fleet.known_hosts} -o IdentitiesOnly=yes'
        ansible_python_interpreter=/usr/bin/python3
    """))
    (d / "play.yml").write_text(textwrap.dedent(f"""
        - hosts: all
          gather_facts: false
          tasks:
            - apt: {{ name: {PACKAGES}, state: present }}
            - file: {{ path: /srv/bench-ansible, state: directory }}
            - copy: {{ src: app.conf, dest: /srv/bench-ansible/app.conf, mode: "0644" }}
            - pip: {{ name: {PIP_PACKAGE}, virtualenv: /srv/bench-ansible/venv, virtualenv_command: "python3 -m venv" }}
    """))
    return [str(exe), "-f", str(n), "-i", "inventory.ini", "play.yml"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--tools", default=os.path.join(tempfile.gettempdir(), "shlax-bench-tools"),
                    help="where pyinfra and ansible-core virtualenvs live (created when missing)")
    ap.add_argument("--no-peers", action="store_true", help="measure shlax alone")
    args = ap.parse_args()
    n = args.hosts
    tools = Path(args.tools)
    tools.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shlax-bench-hosts-"))
    peers = {}
    if not args.no_peers:
        peers["pyinfra"] = ensure_tool(tools, "pyinfra", "pyinfra", "pyinfra")
        peers["ansible"] = ensure_tool(tools, "ansible", "ansible-core", "ansible-playbook")
    print(f"starting {n} sshd hosts ...", file=sys.stderr)
    fleet = make_fleet(work / "fleet", n)
    rows: dict[str, tuple[float, float, str]] = {}
    try:
        runs = {"shlax": (shlax_files(work, fleet, n), work / "shlax", {"NO_COLOR": "1"})}
        if "pyinfra" in peers:
            runs["pyinfra"] = (pyinfra_files(work, fleet, n, peers["pyinfra"]), work / "pyinfra", {})
        if "ansible" in peers:
            runs["ansible"] = (ansible_files(work, fleet, n, peers["ansible"]), work / "ansible",
                               {"ANSIBLE_PIPELINING": "True", "ANSIBLE_HOST_KEY_CHECKING": "True",
                                "ANSIBLE_NOCOLOR": "1"})
        for tool, (argv, cwd, env) in runs.items():
            print(f"{tool}: first run ...", file=sys.stderr)
            first, p1 = sh(argv, cwd, env)
            if p1.returncode != 0:
                print(p1.stdout[-3000:], p1.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{tool}: first run failed")
            print(f"{tool}: no-change run ...", file=sys.stderr)
            again, p2 = sh(argv, cwd, env)
            if p2.returncode != 0:
                print(p2.stdout[-3000:], p2.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{tool}: no-change run failed")
            note = ""
            if tool == "shlax":
                note = "no change" if "CHANGED" not in p2.stdout and p2.stdout.count(" OK ") == 3 * n \
                    else "CHANGED SOMETHING"
            elif tool == "ansible":
                note = "no change" if "changed=0" in p2.stdout and "changed=1" not in p2.stdout \
                    else "CHANGED SOMETHING"
            rows[tool] = (first, again, note)
    finally:
        stop_fleet(fleet)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{n} hosts, steps: apt {' '.join(PACKAGES)} present; copy 1 file; pip {PIP_PACKAGE} in a venv")
    print(f"{'tool':<10} {'first run':>10} {'no-change':>10}  notes")
    for tool, (first, again, note) in rows.items():
        label = tool if tool == "shlax" else f"{tool}"
        print(f"{label:<10} {first:>9.2f}s {again:>9.2f}s  {note}")
    if len(rows) > 1:
        s = rows["shlax"][1]
        print("\nno-change ratio (shlax / peer):")
        targets = {"pyinfra": 0.5, "ansible": 0.25}
        for tool in rows:
            if tool != "shlax":
                ratio = s / rows[tool][1]
                verdict = "meets" if ratio <= targets[tool] else "MISSES"
                print(f"  vs {tool:<8} {ratio:.2f}x  (target <= {targets[tool]}x: {verdict})")
        print("\nversions: " + ", ".join(f"{t}: {version(e)}" for t, e in peers.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
