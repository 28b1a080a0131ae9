"""Shared fixtures: real images, an isolated shlax cache dir, and the CLI in a subprocess.

Components are real: buildah builds real images. A missing buildah or debootstrap is a test
failure (CI installs them), never a skip.

Two tiers (docs/contributing-notes.md): every test runs in CI (``./dev test``); ``pytest -m "not
slow"`` runs the in-memory ones only, in seconds and without root. A test is ``slow`` when it
uses a real component: marked by hand (``pytestmark``, ``@pytest.mark.slow``), or because it asks
for one of the fixtures in :data:`REAL_FIXTURES`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional

import pytest

import image_sweep

# A suite started in the background by a non-interactive shell (`bash .ci/run &`) inherits SIGINT
# ignored, and so would every shlax it starts (Python installs its Ctrl-C handler only where SIGINT
# is not ignored): the tests that interrupt shlax with SIGINT need it delivered.
signal.signal(signal.SIGINT, signal.default_int_handler)

#: the fixture modules, registered as pytest plugins (test modules import helpers from them, never
#: fixtures); fixtures_hosts first, since the others import it
pytest_plugins = ["fixtures_hosts", "fixtures_builders", "fixtures_plugins", "fixtures_registry", "fixtures_repos"]

#: fixtures that start or build a real component: a test asking for one is in the slow tier
REAL_FIXTURES = frozenset({
    "busybox_image", "debian_image", "nonce",  # images in the buildah store
    "ssh_fleet", "builder",  # sshd in network namespaces, a remote buildah builder
    "registry", "token_registry", "registry_busybox", "empty_store", "make_store",  # docker-registry, buildah
    "served",  # rpm/pacman repositories built with createrepo/repo-add
})

ROOT = Path(__file__).resolve().parent.parent
BUSYBOX = "localhost/shlax-test-busybox:latest"
DEBIAN = "localhost/shlax-test-debian:latest"


#: every nonce handed out this session: images named with one are swept at its end
NONCES: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def shlax_cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Each test session gets its own shlax state (stat cache, history, download caches), and
    leaves the default image store as it found it (tests/image_sweep.py): what older runs left is
    swept first, what this session made at its end. A session of the fast tier alone makes no
    image and touches no store (it runs where buildah is not even installed)."""
    path = tmp_path_factory.mktemp("shlax-cache")
    os.environ["SHLAX_CACHE_DIR"] = str(path)
    if not any(item.get_closest_marker("slow") for item in request.session.items):
        yield path
        return
    image_sweep.sweep_old(hours=2)
    started = time.time()
    try:
        yield path
    finally:
        # every cache folder of the session (tests that use one of their own too) is below basetemp
        layers: set[str] = set()
        try:
            for usage in tmp_path_factory.getbasetemp().rglob("layers.json"):
                layers |= image_sweep.session_layers(usage.parent)
        except OSError:  # a folder removed while walking: sweep what was found
            pass
        image_sweep.sweep_session(started, NONCES, layers)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that asks for a real component's fixture belongs to the slow tier."""
    for item in items:
        if REAL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, check=check)


def image_exists(ref: str) -> bool:
    return buildah("inspect", "--type", "image", ref, check=False).returncode == 0


@pytest.fixture(scope="session")
def busybox_image() -> str:
    """A 2 MB local image: busybox-static from Debian's archive with its applet links."""
    if not image_exists(BUSYBOX):
        subprocess.run(["sh", str(ROOT / "tests" / "images" / "busybox.sh"), BUSYBOX], check=True)
    return BUSYBOX


@pytest.fixture(scope="session")
def debian_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Debian bookworm base built by shlax's own ``debootstrap:bookworm`` source (once per machine),
    tagged as a plain local image for tools that need a name (podman, buildah bud)."""
    work = tmp_path_factory.mktemp("debian")
    (work / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.debian]
        base = "debootstrap:bookworm"
        image = "{DEBIAN}"
        steps = []
    """))
    proc = run_shlax("run", str(work / "shlax.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return DEBIAN


def run_shlax(*args: str, cwd: Optional[Path] = None, env: Optional[dict] = None,
              timeout: float = 1200) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("CI", None)
    return subprocess.run([sys.executable, "-m", "shlax_core", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def shlax():
    """Run the real CLI in a subprocess: ``shlax("run", "recipe.toml")`` -> CompletedProcess."""
    return run_shlax


@pytest.fixture
def nonce() -> str:
    """A unique string to put in a step so its layer is new to this machine's image store."""
    NONCES.append(uuid.uuid4().hex[:12])
    return NONCES[-1]


def events(stdout: str) -> list[dict]:
    """The JSON events of a ``--json`` run."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def statuses(stdout: str, target: Optional[str] = None) -> list[str]:
    """Per-step final status of a ``--json`` run, in step order."""
    return [e["status"] for e in events(stdout)
            if e["event"] == "step_end" and e.get("index") and (target is None or e["target"] == target)]


def working_containers(target: str = "") -> list[str]:
    """Working containers shlax made for ``target`` (named shlax-TARGET-...) that still exist."""
    out = buildah("containers", "--format", "{{.ContainerName}}", check=False).stdout
    return [line for line in out.split() if line.startswith(f"shlax-{target}")]


def leftover_mounts() -> list[str]:
    text = Path("/proc/mounts").read_text()
    return [line.split()[1] for line in text.splitlines()
            if "shlax" in line.split()[1] or "shlax-" in line.split()[0]]
