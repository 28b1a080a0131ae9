"""Registries with a remote builder: the layer cache, pushes and credentials when buildah runs on
another machine over SSH.

The builder is the sshd of tests/test_remote_builder.py (its own mount namespace, a private
``/srv`` holding its image stores, a private ``/tmp``: a file made here is not there). It shares this machine's network namespace, so the loopback
registry answers under the same ``127.0.0.1:PORT`` name on both sides, as the docs require: the
registry HTTP calls (``tags/list``) are made here, ``buildah pull``/``push`` there.
"""

from __future__ import annotations

import base64
import glob
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Iterator

import pytest

from conftest import BUSYBOX, events, statuses
from fixtures_hosts import Fleet, Host, free_port
from fixtures_registry import REGISTRY_BIN, LocalRegistry
from fixtures_registry import stop_registry
from fixtures_builders import RUN, STORE, remote_temp_folders

with warnings.catch_warnings():  # bcrypt for the registry's htpasswd file, through libxcrypt
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

RECIPE = """
[targets.r{nonce}]
base = "{base}"
image = "{image}"
root = "{root}"
runroot = "{runroot}"
builder = {{ host = "h1", ssh_config = "{ssh_config}" }}
{extra}
steps = [
  {{ run = ["sh", "-c", "echo {nonce} > /one"] }},
  {{ run = ["sh", "-c", "echo two > /two"] }},
  {{ run = ["sh", "-c", "{last}"] }},
]
"""


def recipe(tmp_path: Path, fleet: Fleet, base: str, nonce: str, *, root: str = STORE, runroot: str = RUN,
           extra: str = "", last: str = "cat /one /two > /three", image: str = "",
           name: str = "shlax.toml") -> Path:
    path = tmp_path / name
    path.write_text(RECIPE.format(nonce=nonce, base=base, image=image or f"localhost/shlax-test-rreg-{nonce}",
                                  root=root, runroot=runroot, ssh_config=fleet.ssh_config, extra=extra,
                                  last=last))
    return path


def store_buildah(host: Host, root: str, runroot: str, *args: str) -> subprocess.CompletedProcess:
    """buildah on one of the builder's stores (under its private /srv), seen from this machine."""
    return subprocess.run(["buildah", "--root", str(host.path(root)), "--runroot", str(host.path(runroot)), *args],
                          capture_output=True, text=True)


def cache_names(host: Host, root: str, runroot: str) -> set[str]:
    out = store_buildah(host, root, runroot, "images", "--json").stdout
    return {n.split(":", 1)[1] for i in (json.loads(out) if out.strip() else [])
            for n in i.get("names") or [] if n.startswith("localhost/shlax-cache:")}


def read_in(host: Host, root: str, runroot: str, image: str, path: str) -> str:
    ctr = store_buildah(host, root, runroot, "from", "--pull=never", image).stdout.strip()
    assert ctr, f"{image} is not in the builder's store {root}"
    try:
        mnt = store_buildah(host, root, runroot, "mount", ctr).stdout.strip()
        return Path(mnt, path.lstrip("/")).read_text()
    finally:
        store_buildah(host, root, runroot, "rm", ctr)


def leftovers(host: Host, nonce: str, *stores: tuple[str, str]) -> list[str]:
    """Working containers of this test's target in the builder's stores, remote temp folders,
    local auth/digest temp folders."""
    found = []
    for root, runroot in stores:
        names = store_buildah(host, root, runroot, "containers", "--format", "{{.ContainerName}}").stdout.split()
        found += [n for n in names if n.startswith(f"shlax-r{nonce}")]
    return found + remote_temp_folders(host) + glob.glob("/tmp/shlax-auth-*") + glob.glob("/tmp/shlax-push-*")


def infos(stdout: str) -> list[str]:
    return [e["message"] for e in events(stdout) if e["event"] == "info"]


def warnings(stdout: str) -> list[str]:
    return [e["message"] for e in events(stdout) if e["event"] == "warning"]


def test_cache_to_then_cache_from_on_an_empty_builder_store(builder, tmp_path, shlax, nonce, registry,
                                                           registry_busybox):
    fleet, host = builder
    repo = f"shlax-test/rcache-{nonce}"
    cache = f"{registry.host}/{repo}"
    first = shlax("run", str(recipe(tmp_path, fleet, registry_busybox, nonce)), "--json",
                  "--cache-to", cache, "--no-tls-verify")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["done", "done", "done"], first.stdout
    assert not warnings(first.stdout)
    tags = registry.tags(repo)
    # three step layers + the final image key (the last step's commit under two keys)
    assert len(tags) == 4 and all(len(t) == 64 for t in tags), tags
    assert tags <= cache_names(host, STORE, RUN)  # the builder's layers, pushed from there

    # the same recipe on the builder with an empty store: every layer comes from the registry
    root, runroot = f"/srv/shlax-store-{nonce}", f"/srv/shlax-run-{nonce}"
    second = recipe(tmp_path, fleet, registry_busybox, nonce, root=root, runroot=runroot, name="second.toml")
    proc = shlax("run", str(second), "--json", "--cache-from", cache, "--no-tls-verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "cached", "cached"], proc.stdout
    assert not [e for e in events(proc.stdout) if e["event"] == "step_start"]
    assert not warnings(proc.stdout)
    assert any("pulling layer" in m for m in infos(proc.stdout)), infos(proc.stdout)
    image = f"localhost/shlax-test-rreg-{nonce}:latest"
    assert read_in(host, root, runroot, image, "/three") == f"{nonce}\ntwo\n"
    # the pulled layer got its cache name in the builder's store: a later run needs no registry
    assert cache_names(host, root, runroot) & tags
    assert subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True).returncode != 0

    # change the last step (cache_from from the target this time): only it runs
    extra = f'cache_from = "{cache}"\ntls_verify = false\n'
    changed = recipe(tmp_path, fleet, registry_busybox, nonce, root=root, runroot=runroot, name="second.toml",
                     extra=extra, last="cat /two /one > /three")
    proc = shlax("run", str(changed), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "cached", "done"], proc.stdout
    assert read_in(host, root, runroot, image, "/three") == f"two\n{nonce}\n"
    assert leftovers(host, nonce, (STORE, RUN), (root, runroot)) == []


def registry_digest(reg: LocalRegistry, repo: str, tag: str) -> str:
    req = urllib.request.Request(f"http://{reg.host}/v2/{repo}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"]


def test_push_from_the_builder_then_pull_here_and_run(builder, tmp_path, shlax, nonce, registry, registry_busybox,
                                                      empty_store):
    fleet, host = builder
    repo = f"shlax-test/rpush-{nonce}"
    image = f"{registry.host}/{repo}"
    path = recipe(tmp_path, fleet, registry_busybox, nonce, image=image, extra='tags = ["v1"]\n')
    proc = shlax("run", str(path), "--json", "--push", "--no-tls-verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert registry.tags(repo) == {"latest", "v1"}
    # the digest buildah wrote on the builder was read back, and is the registry's
    pushed = [m for m in infos(proc.stdout) if m.startswith(f"pushed {image}:latest@")]
    assert pushed == [f"pushed {image}:latest@{registry_digest(registry, repo, 'latest')}"], infos(proc.stdout)
    # built on the builder: this machine's store never had it
    assert subprocess.run(["buildah", "inspect", "--type", "image", f"{image}:latest"],
                          capture_output=True).returncode != 0
    assert leftovers(host, nonce, (STORE, RUN)) == []

    empty_store.pull(f"{image}:v1")
    ctr = empty_store.buildah("from", "--pull=never", f"{image}:v1").stdout.strip()
    out = empty_store.buildah("run", "--isolation", "chroot", ctr, "--", "cat", "/three").stdout
    empty_store.buildah("rm", ctr)
    assert out == f"{nonce}\ntwo\n"


# -- credentials -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, str, str]]:
    """A registry on loopback that refuses anonymous access (htpasswd, bcrypt): (registry, user, password)."""
    assert Path(REGISTRY_BIN).exists(), "docker-registry is missing (.ci/setup.d/40-registry.sh)"
    base = tmp_path_factory.mktemp("auth-registry")
    user, password = "ci", "s3cr3t-" + base64.b32encode(Path("/dev/urandom").open("rb").read(10)).decode().lower()
    (base / "htpasswd").write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    port = free_port()
    (base / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
        f"auth:\n  htpasswd:\n    realm: shlax-test\n    path: {base / 'htpasswd'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log = (base / "registry.log").open("wb")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(base / "config.yml")], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    reg = LocalRegistry(f"127.0.0.1:{port}", base / "data", proc)
    try:
        deadline = time.monotonic() + 20
        while reg_status(reg, "/v2/") != 401:
            assert proc.poll() is None and time.monotonic() < deadline, (base / "registry.log").read_text()
            time.sleep(0.1)
        yield reg, user, password
    finally:
        stop_registry(reg)


def reg_status(reg: LocalRegistry, path: str, creds: str = "") -> int:
    req = urllib.request.Request(f"http://{reg.host}{path}")
    if creds:
        req.add_header("Authorization", "Basic " + base64.b64encode(creds.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def authed_tags(reg: LocalRegistry, repo: str, user: str, password: str) -> set[str]:
    req = urllib.request.Request(f"http://{reg.host}/v2/{repo}/tags/list", headers={
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return set(json.loads(resp.read()).get("tags") or [])
    except urllib.error.HTTPError:
        return set()


class CommandLineWatch:
    """Reads every process's command line while a run goes on, looking for secrets."""

    def __init__(self, *secrets: str):
        self.secrets = secrets
        self.seen: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for path in glob.glob("/proc/[0-9]*/cmdline"):
                try:
                    line = Path(path).read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                except OSError:
                    continue
                if any(s in line for s in self.secrets):
                    self.seen.append(line)
            self.samples += 1
            time.sleep(0.01)

    def __enter__(self) -> "CommandLineWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_environment_credentials_reach_the_builder_as_a_file_and_nowhere_else(builder, tmp_path, shlax, nonce,
                                                                              auth_registry):
    fleet, host = builder
    reg, user, password = auth_registry
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    repo, cache_repo = f"shlax-test/rauth-{nonce}", f"shlax-test/rauth-cache-{nonce}"
    image = f"{reg.host}/{repo}"
    path = recipe(tmp_path, fleet, BUSYBOX, nonce, image=image)

    # the builder has no login of its own for this registry: without credentials the push fails,
    # and the hint says where to log in
    anonymous = shlax("run", str(path), "--json", "--push", "--no-tls-verify")
    assert anonymous.returncode == 1, anonymous.stdout + anonymous.stderr
    assert f"buildah login {reg.host} on builder h1" in anonymous.stdout, anonymous.stdout
    assert not authed_tags(reg, repo, user, password)

    env = {"SHLAX_REGISTRY_USER": user, "SHLAX_REGISTRY_PASSWORD": password}
    with CommandLineWatch(password, token) as watch:
        proc = shlax("run", str(path), "--json", "--push", "--no-tls-verify", "--cache-to", f"{reg.host}/{cache_repo}",
                     env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not warnings(proc.stdout), proc.stdout
    assert authed_tags(reg, repo, user, password) == {"latest"}
    assert len(authed_tags(reg, cache_repo, user, password)) == 4  # layers pushed with the same file
    assert password not in proc.stdout + proc.stderr and token not in proc.stdout + proc.stderr
    assert watch.samples > 10 and watch.seen == []
    # the auth file lived in the builder's private temporary folder, which is gone; nothing local either
    assert leftovers(host, nonce, (STORE, RUN)) == []
