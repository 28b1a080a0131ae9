"""A real OCI registry on loopback (Debian's ``docker-registry``), and empty buildah stores that
play the part of other machines.

The registry speaks plain HTTP on 127.0.0.1 (tests pass ``--no-tls-verify``); it is started once
per session with a config of its own and stopped at the end. A missing ``docker-registry`` is a
failure (CI installs it: .ci/setup.d/40-registry.sh), never a skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from conftest import buildah
from fixtures_hosts import free_port

REGISTRY_BIN = "/usr/bin/docker-registry"


@dataclass
class LocalRegistry:
    host: str          # "127.0.0.1:PORT"
    root: Path         # its storage
    proc: subprocess.Popen

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.host}{path}", timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def tags(self, repo: str) -> set[str]:
        status, body = self.get(f"/v2/{repo}/tags/list")
        return set(json.loads(body).get("tags") or []) if status == 200 else set()

    def manifest(self, repo: str, tag: str) -> dict:
        req = urllib.request.Request(f"http://{self.host}/v2/{repo}/manifests/{tag}", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
                      "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def has_blob(self, repo: str, digest: str) -> bool:
        req = urllib.request.Request(f"http://{self.host}/v2/{repo}/blobs/{digest}", method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status == 200
        except urllib.error.HTTPError:
            return False


def start_registry(base: Path) -> LocalRegistry:
    assert Path(REGISTRY_BIN).exists(), "docker-registry is missing (.ci/setup.d/40-registry.sh)"
    port = free_port()
    (base / "data").mkdir(parents=True, exist_ok=True)
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log = (base / "registry.log").open("wb")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    reg = LocalRegistry(f"127.0.0.1:{port}", base / "data", proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if reg.get("/v2/")[0] == 200:
                return reg
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"docker-registry did not start: {(base / 'registry.log').read_text()[-2000:]}")


def stop_registry(reg: LocalRegistry) -> None:
    if reg.proc.poll() is None:
        reg.proc.terminate()
        try:
            reg.proc.wait(10)
        except subprocess.TimeoutExpired:
            reg.proc.kill()
            reg.proc.wait()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A real registry on 127.0.0.1:<free port> (plain HTTP), for the whole session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        stop_registry(reg)


@pytest.fixture(scope="session")
def registry_busybox(registry: LocalRegistry, busybox_image: str) -> str:
    """The busybox test image, pushed to the registry: a base every store can pull with the same
    image ID (a registry base, as real teams use), so step keys agree across "machines"."""
    ref = f"{registry.host}/shlax-test/busybox:latest"
    buildah("push", "--tls-verify=false", busybox_image, f"docker://{ref}")
    return ref


@dataclass
class Store:
    """Another machine's image store: ``buildah --root ROOT --runroot RUNROOT``."""

    root: Path
    runroot: Path

    def buildah(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["buildah", "--root", str(self.root), "--runroot", str(self.runroot), *args],
                              capture_output=True, text=True, check=check)

    def toml(self) -> str:
        """Target options that point a buildah target at this store."""
        return f'root = "{self.root}"\nrunroot = "{self.runroot}"\n'

    def pull(self, ref: str) -> str:
        return self.buildah("pull", "--quiet", "--tls-verify=false", f"docker://{ref}").stdout.strip()

    def images(self) -> list[dict]:
        out = self.buildah("images", "--json", check=False).stdout
        return json.loads(out) if out.strip() else []

    def destroy(self) -> None:
        self.buildah("rm", "--all", check=False)
        self.buildah("rmi", "--all", "--force", check=False)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(self.root))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


@pytest.fixture
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A fresh, empty image store (a second machine); removed after the test."""
    base = tmp_path_factory.mktemp("store")
    store = Store(base / "root", base / "runroot")
    try:
        yield store
    finally:
        store.destroy()


@pytest.fixture
def make_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Factory of fresh stores (several machines in one test); all removed after the test."""
    made: list[Store] = []

    def make() -> Store:
        base = tmp_path_factory.mktemp("store")
        store = Store(base / "root", base / "runroot")
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            store.destroy()
