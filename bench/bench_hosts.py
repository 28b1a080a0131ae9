"""Fleet benchmark: shlax vs pyinfra vs ansible-core on N real SSH hosts, first run and no-change run.

Every tool applies the same state to every host, into its own paths (so each first run is a real
first run): three apt packages present, a per-host directory holding a per-host file rendered
from a template (the host's name and a variable), and one pip package present in a virtualenv.
Hosts are real sshd processes on loopback ports, each in its own mount namespace with private
/etc, /home, /root and /srv (tests/fixtures_hosts.py). pyinfra and ansible-core are installed from
PyPI into their own virtualenvs under --tools (reused on later runs).

Each tool is set up the way its experts run it:

- shlax: `-j N`; its ssh masters are kept between runs (ControlPersist, the default).
- pyinfra: `--parallel N`; one paramiko connection per host for the whole run (pyinfra has no
  connection reuse across runs).
- ansible: forks = N, `strategy: free`, pipelining on, ssh multiplexing with ControlPersist=60s
  (ansible's own default ssh_args), no fact gathering (the job needs no facts).

For every run the table gives the wall time, the controller's CPU time (user + system of the
tool and all its children, plus what long-lived ssh masters spent during the run, read from
/proc), per host, and the controller's peak memory (largest RSS among the tool's processes).

    python bench/bench_hosts.py [--hosts 20] [--repeat 2] [--tools DIR] [--no-peers]

Targets (issue 12): no-change run <= 0.5x pyinfra at 20 and 100 hosts, first run <= 0.7x
pyinfra at 20 hosts, controller CPU per host <= pyinfra's, controller peak memory <= 60 MB.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_hosts import Fleet, make_fleet, stop_fleet  # noqa: E402

PACKAGES = ["coreutils", "tar", "gzip"]
PIP_PACKAGE = "six"
TEMPLATE = "# managed for {{ NAME }}\nname = {{ NAME }}\nport = {{ port }}\n"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Measure:
    wall: float
    cpu: float            # seconds, the tool's process tree + ssh masters' CPU during the run
    rss_mb: float         # peak RSS of the largest process of the tool's tree
    out: str = ""
    err: str = ""
    code: int = 0


@dataclass
class Row:
    first: Measure
    again: list[Measure] = field(default_factory=list)
    note: str = ""


#: only ssh processes whose command line names this folder count (the bench's own fleet, control
#: sockets and known_hosts live there): other users of the machine run ssh too
MINE = [""]


def ssh_cpu() -> dict[int, float]:
    """CPU seconds of this bench's ssh client processes now (masters outlive the run that started
    them, so their CPU is read from /proc rather than from the tool's rusage)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            if name != "ssh":
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if MINE[0].encode() not in f.read():
                    continue
        except (OSError, ValueError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(pid)] = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return out


def run_measured(argv: list[str], cwd: Path, env: dict | None = None) -> Measure:
    """Run the tool; wait4 gives the rusage of its whole process tree (every child it waited for)."""
    before_ssh = ssh_cpu()
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    after_ssh = ssh_cpu()
    masters = sum(cpu - before_ssh.get(pid, 0.0) for pid, cpu in after_ssh.items())
    cpu = usage.ru_utime + usage.ru_stime + masters
    return Measure(wall, cpu, usage.ru_maxrss / 1024, text, errors, proc.returncode)


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
    (d / "host.conf.j2").write_text(TEMPLATE.replace("NAME", "host.name"))
    (d / "shlax.toml").write_text(textwrap.dedent(f"""
        [vars]
        port = 8080

        [targets.fleet]
        backend = "ssh"
        ssh_config = "{fleet.ssh_config}"
        hosts = {fleet.names(n)}
        steps = [
          {{ apt = {PACKAGES} }},
          {{ template = {{ src = "host.conf.j2", dest = "/srv/bench-shlax/{{{{ host.name }}}}/host.conf" }} }},
          {{ pip = {{ packages = ["{PIP_PACKAGE}"], venv = "/srv/bench-shlax/venv" }} }},
        ]
    """))
    return [sys.executable, "-m", "shlax_core", "run", str(d / "shlax.toml"), "-j", str(n)]


def pyinfra_files(work: Path, fleet: Fleet, n: int, exe: Path) -> list[str]:
    d = work / "pyinfra"
    d.mkdir()
    (d / "host.conf.j2").write_text(TEMPLATE.replace("NAME", "host.name"))
    hosts = ",\n    ".join(
        f'("{h.name}", {{"ssh_hostname": "127.0.0.1", "ssh_port": {h.port}, "ssh_user": "root", '
        f'"ssh_key": "{fleet.key}", "ssh_known_hosts_file": "{fleet.known_hosts}", '
        f'"ssh_strict_host_key_checking": "yes"}})' for h in fleet.hosts[:n])
    (d / "inventory.py").write_text(f"hosts = [\n    {hosts},\n]\n")
    (d / "deploy.py").write_text(textwrap.dedent(f"""
        from pyinfra import host
        from pyinfra.operations import apt, files, pip
        apt.packages(packages={PACKAGES})
        files.directory(path=f"/srv/bench-pyinfra/{{host.name}}")
        files.template(src="host.conf.j2", dest=f"/srv/bench-pyinfra/{{host.name}}/host.conf", mode="644",
                       port=8080)
        pip.virtualenv(path="/srv/bench-pyinfra/venv", python="python3", venv=True)
        pip.packages(packages=["{PIP_PACKAGE}"], virtualenv="/srv/bench-pyinfra/venv")
    """))
    return [str(exe), "-y", "--parallel", str(n), "inventory.py", "deploy.py"]


def ansible_files(work: Path, fleet: Fleet, n: int, exe: Path) -> list[str]:
    d = work / "ansible"
    d.mkdir()
    (d / "host.conf.j2").write_text(TEMPLATE.replace("NAME", "inventory_hostname"))
    lines = [f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port}" for h in fleet.hosts[:n]]
    (d / "inventory.ini").write_text("\n".join(lines) + textwrap.dedent(f"""

        [all:vars]
        ansible_user=root
        ansible_ssh_private_key_file={fleet.key}
        ansible_ssh_common_args='-o UserKnownHostsFile={fleet.known_hosts} -o IdentitiesOnly=yes'
        ansible_python_interpreter=/usr/bin/python3
    """))
    (d / "ansible.cfg").write_text(textwrap.dedent(f"""
        [defaults]
        forks = {n}
        strategy = free
        gathering = explicit
        host_key_checking = True
        nocolor = True

        [ssh_connection]
        pipelining = True
        ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s
        control_path_dir = {d}/cp
    """))
    (d / "play.yml").write_text(textwrap.dedent(f"""
        - hosts: all
          gather_facts: false
          vars:
            port: 8080
          tasks:
            - apt: {{ name: {PACKAGES}, state: present }}
            - file: {{ path: "/srv/bench-ansible/{{{{ inventory_hostname }}}}", state: directory }}
            - template: {{ src: host.conf.j2, dest: "/srv/bench-ansible/{{{{ inventory_hostname }}}}/host.conf", mode: "0644" }}
            - pip: {{ name: {PIP_PACKAGE}, virtualenv: /srv/bench-ansible/venv, virtualenv_command: "python3 -m venv" }}
    """))
    return [str(exe), "-i", "inventory.ini", "play.yml"]


def check_no_change(tool: str, m: Measure, n: int) -> str:
    if tool == "shlax":
        return "no change" if "CHANGED" not in m.out and m.out.count(" OK ") == 3 * n else "CHANGED SOMETHING"
    if tool == "ansible":
        return "no change" if "changed=0" in m.out and "changed=1" not in m.out else "CHANGED SOMETHING"
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=2, help="no-change runs per tool (median shown)")
    ap.add_argument("--tools", default=os.path.join(tempfile.gettempdir(), "shlax-bench-tools"),
                    help="where pyinfra and ansible-core virtualenvs live (created when missing)")
    ap.add_argument("--no-peers", action="store_true", help="measure shlax alone")
    ap.add_argument("--only", help="comma-separated tools to run (shlax,pyinfra,ansible)")
    args = ap.parse_args()
    n = args.hosts
    tools = Path(args.tools)
    tools.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shlax-bench-hosts-"))
    MINE[0] = str(work)
    wanted = set((args.only or "shlax,pyinfra,ansible").split(","))
    if args.no_peers:
        wanted = {"shlax"}
    peers = {}
    if "pyinfra" in wanted:
        peers["pyinfra"] = ensure_tool(tools, "pyinfra", "pyinfra", "pyinfra")
    if "ansible" in wanted:
        peers["ansible"] = ensure_tool(tools, "ansible", "ansible-core", "ansible-playbook")
    # shlax's own state (ssh masters, caches) apart from the user's, removed at the end
    cache = work / "shlax-cache"
    print(f"starting {n} sshd hosts ...", file=sys.stderr)
    fleet = make_fleet(work / "fleet", n)
    rows: dict[str, Row] = {}
    loads: list[tuple[str, tuple[float, float, float]]] = []
    try:
        runs = {}
        if "shlax" in wanted:
            runs["shlax"] = (shlax_files(work, fleet, n), work / "shlax",
                             {"NO_COLOR": "1", "SHLAX_CACHE_DIR": str(cache)})
        if "pyinfra" in peers:
            runs["pyinfra"] = (pyinfra_files(work, fleet, n, peers["pyinfra"]), work / "pyinfra", {})
        if "ansible" in peers:
            runs["ansible"] = (ansible_files(work, fleet, n, peers["ansible"]), work / "ansible",
                               {"ANSIBLE_CONFIG": str(work / "ansible" / "ansible.cfg")})
        for tool, (argv, cwd, env) in runs.items():
            loads.append((f"{tool} first", os.getloadavg()))
            print(f"{tool}: first run ...", file=sys.stderr)
            first = run_measured(argv, cwd, env)
            row = rows[tool] = Row(first)
            if first.code != 0:  # reported in the table; the other tools still run
                print(first.out[-1500:], first.err[-1500:], file=sys.stderr)
                row.note = f"FIRST RUN FAILED (exit {first.code})"
                continue
            for i in range(args.repeat):
                loads.append((f"{tool} no-change {i + 1}", os.getloadavg()))
                print(f"{tool}: no-change run {i + 1} ...", file=sys.stderr)
                again = run_measured(argv, cwd, env)
                if again.code != 0:
                    print(again.out[-1500:], again.err[-1500:], file=sys.stderr)
                    row.note = f"NO-CHANGE RUN FAILED (exit {again.code})"
                    break
                row.again.append(again)
                note = check_no_change(tool, again, n)
                row.note = note if not row.note or note != "no change" else row.note
            if tool == "shlax" and row.again:  # now, while the masters of its runs are still open
                ssh_per_host = _ssh_processes_per_host(runs["shlax"], n)
    finally:
        if "shlax" in wanted:  # close the masters shlax kept for this fleet
            subprocess.run([sys.executable, "-m", "shlax_core", "hosts", "close"],
                           env={**os.environ, "SHLAX_CACHE_DIR": str(cache)}, capture_output=True)
        stop_fleet(fleet)
    try:
        report(rows, loads, peers, n, locals().get("ssh_per_host"))
    finally:  # hundreds of venvs and /etc copies: slow to remove, so after the table
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(rows: dict[str, Row], loads: list, peers: dict, n: int, ssh_per_host: object) -> None:

    print(f"\n{n} hosts, steps: apt {' '.join(PACKAGES)} present; a per-host directory and templated file; "
          f"pip {PIP_PACKAGE} in a venv")
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("load average (1, 5, 15 min) before each run: "
          + "; ".join(f"{what} {a:.1f} {b:.1f} {c:.1f}" for what, (a, b, c) in loads))
    if peers:
        print("versions: " + ", ".join(f"{t}: {version(e)}" for t, e in peers.items()))
    print(f"\n{'tool':<9} {'first':>8} {'no-change (median; runs)':>30} {'CPU/host first':>15} "
          f"{'CPU/host no-chg':>16} {'peak RSS':>9}  notes")
    for tool, row in rows.items():
        if not row.again:
            print(f"{tool:<9} {row.first.wall:>7.2f}s {'-':>30} {row.first.cpu / n:>14.3f}s {'-':>16} "
                  f"{row.first.rss_mb:>7.0f}MB  {row.note}")
            continue
        med = statistics.median(m.wall for m in row.again) if row.again else float("nan")
        cpu = statistics.median(m.cpu for m in row.again) / n if row.again else float("nan")
        runs_text = ", ".join(f"{m.wall:.2f}" for m in row.again)
        rss = max([row.first.rss_mb, *(m.rss_mb for m in row.again)])
        print(f"{tool:<9} {row.first.wall:>7.2f}s {med:>7.2f}s ({runs_text:>19}) {row.first.cpu / n:>14.3f}s "
              f"{cpu:>15.3f}s {rss:>7.0f}MB  {row.note}")
    if "shlax" in rows and ssh_per_host:
        print(f"\nshlax ssh client processes per host per run: {ssh_per_host}")
    if "shlax" in rows and rows["shlax"].again and len(rows) > 1:
        s = rows["shlax"]
        s_again = statistics.median(m.wall for m in s.again)
        s_cpu = statistics.median(m.cpu for m in s.again) / n
        print("\nratios shlax / peer   first run   no-change   CPU/host no-change")
        for tool, row in rows.items():
            if tool == "shlax" or not row.again:
                continue
            again = statistics.median(m.wall for m in row.again)
            cpu = statistics.median(m.cpu for m in row.again) / n
            print(f"  vs {tool:<16} {s.first.wall / row.first.wall:>9.2f}x {s_again / again:>10.2f}x "
                  f"{s_cpu / cpu:>12.2f}x")
        if "pyinfra" in rows:
            print("  targets vs pyinfra: first <= 0.7x, no-change <= 0.5x, CPU/host <= 1.0x; peak RSS <= 60 MB")
    sys.stdout.flush()


def _ssh_processes_per_host(run: tuple, n: int) -> str:
    """The ssh processes one more no-change run starts (this bench's only), sampled from /proc."""
    argv, cwd, env = run
    seen: set[int] = set(ssh_cpu())
    before = set(seen)
    proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        seen |= set(ssh_cpu())
        time.sleep(0.005)
    new = len(seen - before)
    return f"{new / n:.2f} (sampled every 5 ms: {new} new ssh processes for {n} hosts; masters reused)"


if __name__ == "__main__":
    sys.exit(main())
