"""shlax up/down/ps/logs with real podman: an app image built by the recipe and a database from a
local image, on the recipe's own network, with a named volume and a healthcheck.

Every object a test makes is named after a fresh folder (its nonce) and removed at the end by
its recipe label, whatever happened.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import events, run_shlax

from shlax_services.names import Project  # installed by ./dev setup, like every plugin

# a tiny HTTP "database": answers every connection on 8080 with its name and a counter kept in
# its volume, so a test can tell that the volume outlived the container
DB_CMD = ["sh", "-c", "mkdir -p /data; echo $$ >> /data/starts; "
          "while true; do printf 'HTTP/1.0 200 OK\\r\\n\\r\\ndb here, starts=%s\\n' $(wc -l < /data/starts) "
          "| nc -l -p 8080; done"]
APP_CMD = ["sh", "-c", "echo app $MODE started; while true; do sleep 1; done"]


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True)


def recipe_text(busybox: str, nonce: str, mode: str = "one", health: str = "") -> str:
    health = health or '["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]'
    return textwrap.dedent(f"""
        [targets.app]
        base = "{busybox}"
        image = "localhost/shlax-test-svc-{nonce}"
        steps = [ {{ run = ["sh", "-c", "mkdir -p /srv && echo {nonce} > /srv/version"] }} ]

        [services.db]
        image = "{busybox}"
        command = {json.dumps(DB_CMD)}
        volumes = ["data:/data"]
        healthcheck = {{ test = {health}, interval = 0.5, wait = 20 }}
        stop_timeout = 0

        [services.app]
        image = "app"
        command = {json.dumps(APP_CMD)}
        env = {{ MODE = "{mode}" }}
        depends_on = ["db"]
        stop_timeout = 0
    """)


class Stack:
    """A recipe folder named with the nonce, and everything podman holds for it."""

    def __init__(self, tmp_path: Path, nonce: str):
        self.dir = tmp_path / f"svc-{nonce}"
        self.dir.mkdir()
        self.recipe = self.dir / "shlax.toml"
        self.project = Project.of(self.recipe)

    def write(self, text: str) -> None:
        self.recipe.write_text(text)

    def shlax(self, *args: str) -> subprocess.CompletedProcess:
        return run_shlax(*args[:1], str(self.recipe), *args[1:])

    def ids(self) -> dict[str, str]:
        """service -> container ID, for this recipe's containers."""
        out = podman("ps", "-a", "--filter", f"label=shlax.recipe={self.project.recipe_id}", "--format", "json")
        return {row["Labels"]["shlax.service"]: row["Id"] for row in json.loads(out.stdout or "[]")
                if not row.get("IsInfra")}

    def states(self) -> dict[str, str]:
        """container name -> state, for this recipe's containers."""
        out = podman("ps", "-a", "--filter", f"label=shlax.recipe={self.project.recipe_id}", "--format", "json")
        return {row["Names"][0]: row["State"] for row in json.loads(out.stdout or "[]") if not row.get("IsInfra")}

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=shlax.recipe={self.project.recipe_id}"
        return {kind: podman(*cmd, "--filter", label, "--format", fmt).stdout.split()
                for kind, cmd, fmt in (("containers", ["ps", "-a"], "{{.Names}}"),
                                       ("pods", ["pod", "ps"], "{{.Name}}"),
                                       ("volumes", ["volume", "ls"], "{{.Name}}"),
                                       ("networks", ["network", "ls"], "{{.Name}}"))}

    def remove_all(self) -> None:
        left = self.leftovers()
        for name in left["containers"]:
            podman("rm", "-f", "-t", "0", name)
        for name in left["pods"]:
            podman("pod", "rm", "-f", "-t", "0", name)
        for name in left["volumes"]:
            podman("volume", "rm", "-f", name)
        for name in left["networks"]:
            podman("network", "rm", "-f", name)


@pytest.fixture
def stack(tmp_path, nonce):
    s = Stack(tmp_path, nonce)
    try:
        yield s
    finally:
        s.remove_all()


def service_events(stdout: str) -> dict[str, dict]:
    return {e["target"]: e for e in events(stdout) if e["event"] == "step_end" and e.get("kind") == "service"}


def test_up_is_idempotent_recreates_only_what_changed_and_down_keeps_volumes(busybox_image, stack, nonce):
    stack.write(recipe_text(busybox_image, nonce))
    first = stack.shlax("up", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    ev = service_events(first.stdout)
    assert {k: (v["status"], v["reason"]) for k, v in ev.items()} == {
        "db": ("changed", "created"), "app": ("changed", "created")}
    ids = stack.ids()
    assert set(ids) == {"db", "app"}
    assert set(stack.states().values()) == {"running"}

    # the app reaches the database by its service name on the recipe's network
    names = {s: stack.project.container(s) for s in ("db", "app")}
    reply = podman("exec", names["app"], "wget", "-q", "-O", "-", "http://db:8080/")
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout.startswith("db here, starts=1")
    # the app image is the recipe's target, built first
    assert podman("exec", names["app"], "cat", "/srv/version").stdout.strip() == nonce

    # a second up changes nothing: every service ok, the same containers
    second = stack.shlax("up", "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    assert {k: v["status"] for k, v in service_events(second.stdout).items()} == {"db": "ok", "app": "ok"}
    assert stack.ids() == ids

    # the dry run of a change says what would happen, and does nothing
    stack.write(recipe_text(busybox_image, nonce, mode="two"))
    dry = stack.shlax("up", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    ev = service_events(dry.stdout)
    assert (ev["db"]["status"], ev["app"]["status"], ev["app"]["reason"]) == ("ok", "change", "recreate: env changed")
    assert stack.ids() == ids

    # changed env: only the app is recreated
    third = stack.shlax("up", "--json")
    assert third.returncode == 0, third.stdout + third.stderr
    ev = service_events(third.stdout)
    assert (ev["db"]["status"], ev["app"]["status"], ev["app"]["reason"]) == ("ok", "changed", "recreated: env changed")
    after = stack.ids()
    assert after["db"] == ids["db"] and after["app"] != ids["app"]

    # ps and logs
    ps = stack.shlax("ps", "--json")
    assert ps.returncode == 0, ps.stderr
    rows = {r["service"]: r for r in json.loads(ps.stdout)}
    assert rows["db"]["state"] == "running" and rows["db"]["health"] == "healthy"
    assert rows["app"]["state"] == "running" and rows["app"]["image"] == "app"
    logs = run_shlax("logs", str(stack.recipe), "app")
    assert logs.returncode == 0 and "app two started" in logs.stdout, logs.stdout + logs.stderr

    # down removes the containers and the network, keeps the volume
    down = stack.shlax("down", "--json")
    assert down.returncode == 0, down.stdout + down.stderr
    left = stack.leftovers()
    assert left["containers"] == [] and left["networks"] == []
    assert left["volumes"] == [stack.project.volume("data")]
    # ... whose data the next up finds again
    again = stack.shlax("up", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    reply = podman("exec", names["app"], "wget", "-q", "-O", "-", "http://db:8080/")
    assert reply.stdout.startswith("db here, starts=2"), reply.stdout + reply.stderr

    # down --volumes removes it too
    gone = stack.shlax("down", "--volumes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert stack.leftovers() == {"containers": [], "pods": [], "volumes": [], "networks": []}


def test_failing_healthcheck_stops_up_with_the_logs_and_starts_no_dependent(busybox_image, stack, nonce):
    stack.write(recipe_text(busybox_image, nonce, health='["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9/"]')
                .replace("wait = 20", "wait = 2"))
    proc = stack.shlax("up")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "db [1/2] FAILED" in out
    assert "db is not healthy after 2s" in out
    assert "the check: wget -q -O /dev/null http://127.0.0.1:9/" in out
    assert "healthcheck (exit code 1)" in out                  # what the check printed
    assert "Traceback" not in out + proc.stderr
    # the unhealthy database is kept for `shlax logs`; the app that depends on it never started
    assert set(stack.states()) == {stack.project.container("db")}


def test_interrupted_up_leaves_nothing_the_next_up_does_not_handle(busybox_image, stack, nonce):
    """SIGINT after a random (seeded) number of events of a first up: the run stops with 130,
    and the next up brings every service up, with one container each."""
    seed = int(os.environ.get("SHLAX_TEST_SEED", "1312"))
    rng = random.Random(seed)
    stack.write(recipe_text(busybox_image, nonce))
    # the events of a full up, to pick a moment inside it
    probe = stack.shlax("up", "--json")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    count = len([e for e in events(probe.stdout) if e["event"] != "output"])  # a rebuild prints no output
    stack.shlax("down", "--volumes")
    stack.write(recipe_text(busybox_image, nonce, mode="int"))
    at = rng.randrange(1, count - 1)
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("CI", None)
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "up", str(stack.recipe), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        if '"event": "output"' in line:
            continue
        seen.append(line)
        if len(seen) == at:
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, f"seed {seed}, event {at}: the interrupt did not land\n{''.join(seen)}{rest}{err}"
    assert "Traceback" not in err

    then = stack.shlax("up", "--json")
    assert then.returncode == 0, f"seed {seed}, event {at}\n" + then.stdout + then.stderr
    assert set(stack.states().values()) == {"running"}
    assert sorted(stack.ids()) == ["app", "db"]
    left = stack.leftovers()
    assert sorted(left["containers"]) == sorted(stack.project.container(s) for s in ("db", "app"))
    assert left["networks"] == [stack.project.network] and left["volumes"] == [stack.project.volume("data")]
    assert stack.shlax("down", "--volumes").returncode == 0
    assert stack.leftovers() == {"containers": [], "pods": [], "volumes": [], "networks": []}


# -- on another machine through the ssh backend ------------------------------------------------
_NS_HOST = r"""
set -e
h=$1
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/sshd
mount -t tmpfs tmpfs /dev/shm
mount --bind "$h/containers" /var/lib/containers
mount --bind "$h/cni-lib" /var/lib/cni
mount --bind "$h/cni-net" /etc/cni/net.d
ip link set lo up
exec sleep infinity
"""


@pytest.fixture
def podman_host(tmp_path):
    """A machine with podman of its own, reached by a real sshd: mount, network and PID
    namespaces with a private image store (/var/lib/containers), /run, /dev/shm (podman's
    locks) and CNI state, so nothing it does reaches this machine's podman. sshd runs per
    connection (``sshd -i``) inside the namespaces, through the client's ProxyCommand."""
    h = tmp_path / "host"
    for d in ("containers", "cni-lib", "cni-net"):
        (h / d).mkdir(parents=True)
    for conf in Path("/etc/cni/net.d").glob("*.conflist"):
        (h / "cni-net" / conf.name).write_bytes(conf.read_bytes())
    holder = subprocess.Popen(["unshare", "-m", "-n", "-p", "--fork", "--mount-proc", "--", "sh", "-c", _NS_HOST,
                               "sh", str(h)], stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        init = None
        for _ in range(100):
            children = Path(f"/proc/{holder.pid}/task/{holder.pid}/children")
            found = children.read_text().split() if children.exists() else []
            if found and Path(f"/proc/{found[0]}/cmdline").read_bytes().startswith(b"sleep"):
                init = found[0]
                break
            subprocess.run(["sleep", "0.1"])
        assert init, "the namespace host did not start"
        for key in ("id", "hostkey"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "shlax-test", "-f", str(h / key)],
                           check=True)
        (h / "authorized_keys").write_text((h / "id.pub").read_text())
        (h / "sshd_config").write_text(
            f"HostKey {h}/hostkey\nAuthorizedKeysFile {h}/authorized_keys\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\n"
            "PrintMotd no\nUseDNS no\n")
        (h / "known_hosts").write_text("podhost " + " ".join((h / "hostkey.pub").read_text().split()[:2]) + "\n")
        (h / "ssh_config").write_text(
            f"Host podhost\n  User root\n"
            f"  ProxyCommand nsenter -t {init} -m -n -p -- /usr/sbin/sshd -i -f {h}/sshd_config -E {h}/sshd.log\n"
            f"  IdentityFile {h}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {h}/known_hosts\n"
            "  StrictHostKeyChecking yes\n")
        yield h
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the PID namespace's init: everything in it ends
        holder.wait()
        subprocess.run(["rm", "-rf", str(h)])


def test_up_on_an_ssh_host_sends_the_images_and_runs_there(busybox_image, stack, nonce, podman_host):
    h = podman_host
    text = recipe_text(busybox_image, nonce).replace(f'image = "{busybox_image}"\ncommand', 'image = "dbimage"\ncommand')
    text += textwrap.dedent(f"""
        [targets.dbimage]
        base = "{busybox_image}"
        image = "localhost/shlax-test-svcdb-{nonce}"
        steps = []

        [targets.box]
        backend = "ssh"
        hosts = ["podhost"]
        ssh_config = "{h}/ssh_config"
        steps = []
    """)
    stack.write(text)

    def there(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(h / "ssh_config"), "podhost", *args], capture_output=True, text=True)

    first = stack.shlax("up", "--on", "box", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    ev = service_events(first.stdout)
    assert {k: (v["status"], v["host"]) for k, v in ev.items()} == {
        "db": ("changed", "podhost"), "app": ("changed", "podhost")}
    sent = [e["message"] for e in events(first.stdout) if e["event"] == "info" and "sending image" in e["message"]]
    assert len(sent) == 2
    # the services run there, not here, and reach each other by name there
    assert stack.ids() == {}
    reply = there("podman", "exec", stack.project.container("app"), "wget", "-q", "-O", "-", "http://db:8080/")
    assert reply.stdout.startswith("db here"), reply.stdout + reply.stderr

    second = stack.shlax("up", "--on", "box", "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    assert {k: v["status"] for k, v in service_events(second.stdout).items()} == {"db": "ok", "app": "ok"}
    assert not [e for e in events(second.stdout) if e["event"] == "info" and "sending image" in e["message"]]

    ps = stack.shlax("ps", "--on", "box", "--json")
    assert {(r["host"], r["service"], r["state"]) for r in json.loads(ps.stdout)} == {
        ("podhost", "db", "running"), ("podhost", "app", "running")}

    down = stack.shlax("down", "--on", "box", "--volumes")
    assert down.returncode == 0, down.stdout + down.stderr
    label = f"label=shlax.recipe={stack.project.recipe_id}"
    for cmd in (["ps", "-a"], ["volume", "ls"], ["network", "ls"]):
        listed = there("podman", *cmd, "--filter", label, "--format", "{{.Name}}" if cmd[0] != "ps" else "{{.ID}}")
        assert listed.returncode == 0 and listed.stdout.strip() == "", listed.stdout + listed.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pods_share_localhost_publish_ports_and_a_rebuilt_image_recreates_its_service(busybox_image, stack, nonce):
    port, port2 = _free_port(), _free_port()
    server = ["sh", "-c", "while true; do printf 'HTTP/1.0 200 OK\\r\\n\\r\\napi %s\\n' \"$(cat /srv/version)\" "
                          "| nc -l -p 8080; done"]

    def text(version: str, published: int) -> str:
        return textwrap.dedent(f"""
            [targets.app]
            base = "{busybox_image}"
            image = "localhost/shlax-test-svc-{nonce}"
            steps = [ {{ run = ["sh", "-c", "mkdir -p /srv && echo {version} > /srv/version"] }} ]

            [services.api]
            image = "app"
            command = {json.dumps(server)}
            pod = "stack"
            ports = ["127.0.0.1:{published}:8080"]
            stop_timeout = 0

            [services.side]
            image = "{busybox_image}"
            command = ["sleep", "3600"]
            pod = "stack"
            stop_timeout = 0

            [services.client]
            image = "{busybox_image}"
            command = ["sleep", "3600"]
            depends_on = ["api"]
            stop_timeout = 0
        """)

    stack.write(text("v1", port))
    first = stack.shlax("up", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert stack.leftovers()["pods"] == [stack.project.pod("stack")]
    side, client = stack.project.container("side"), stack.project.container("client")
    # in the pod: localhost; outside it: the service's name; from this machine: the pod's published port
    assert podman("exec", side, "wget", "-q", "-O", "-", "http://localhost:8080/").stdout == "api v1\n"
    assert podman("exec", client, "wget", "-q", "-O", "-", "http://api:8080/").stdout == "api v1\n"
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as reply:
        assert reply.read() == b"api v1\n"
    ids = stack.ids()

    # a rebuilt image recreates the service that runs it, and only that one
    stack.write(text("v2", port))
    second = stack.shlax("up", "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    ev = service_events(second.stdout)
    assert {k: (v["status"], v["reason"]) for k, v in ev.items()} == {
        "api": ("changed", "recreated: image changed"), "side": ("ok", ""), "client": ("ok", "")}
    after = stack.ids()
    assert after["side"] == ids["side"] and after["client"] == ids["client"] and after["api"] != ids["api"]
    assert podman("exec", client, "wget", "-q", "-O", "-", "http://api:8080/").stdout == "api v2\n"

    # a pod's ports changed: the pod is made again, with every container in it
    stack.write(text("v2", port2))
    third = stack.shlax("up", "--json")
    assert third.returncode == 0, third.stdout + third.stderr
    ev = service_events(third.stdout)
    assert ev["api"]["reason"] == ev["side"]["reason"] == "recreated: pod stack: ports changed"
    assert ev["client"]["status"] == "ok"
    with urllib.request.urlopen(f"http://127.0.0.1:{port2}/", timeout=30) as reply:
        assert reply.read() == b"api v2\n"

    assert stack.shlax("down").returncode == 0
    assert stack.leftovers() == {"containers": [], "pods": [], "volumes": [], "networks": []}


def test_a_service_that_cannot_start_fails_with_its_output_and_leaves_the_others(busybox_image, stack):
    base = textwrap.dedent(f"""
        [services.db]
        image = "{busybox_image}"
        command = ["sleep", "3600"]
        stop_timeout = 0
    """)
    stack.write(base)
    assert stack.shlax("up").returncode == 0
    ids = stack.ids()
    stack.write(base + textwrap.dedent(f"""
        [services.bad]
        image = "{busybox_image}"
        command = ["/no/such/program", "--flag"]
        depends_on = ["db"]
        stop_timeout = 0
    """))
    proc = stack.shlax("up")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "db [1/2] OK" in proc.stdout
    assert "bad [2/2] FAILED" in proc.stdout
    assert "did not start" in proc.stdout and "/no/such/program" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert stack.ids()["db"] == ids["db"]
    assert stack.states()[stack.project.container("db")] == "running"


def test_up_never_takes_a_name_held_by_something_it_did_not_make(busybox_image, stack):
    stack.write(textwrap.dedent(f"""
        [services.db]
        image = "{busybox_image}"
        command = ["sleep", "3600"]
    """))
    name = stack.project.container("db")
    theirs = podman("create", "--name", name, busybox_image, "sleep", "3600")
    assert theirs.returncode == 0, theirs.stderr
    try:
        proc = stack.shlax("up")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"a container named '{name}' exists and was not made by this recipe" in proc.stderr
        assert podman("container", "inspect", "--format", "{{.Id}}", name).stdout.strip() == theirs.stdout.strip()
        assert stack.leftovers() == {"containers": [], "pods": [], "volumes": [], "networks": []}
        down = stack.shlax("down")
        assert down.returncode == 0 and podman("container", "exists", name).returncode == 0
    finally:
        podman("rm", "-f", "-t", "0", name)
