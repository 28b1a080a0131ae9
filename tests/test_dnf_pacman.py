"""dnf and pacman against real repositories made here and served on loopback.

The bases are the Debian test image with Debian's own ``dnf`` or ``pacman-package-manager``
installed, pointed at a repository of two tiny packages built in the test (see
fixtures_repos.py). What is checked is what a user relies on: a second build downloads only the
package that was added (the server's log says so), a ``--no-cache --offline`` rebuild with the
network cut succeeds, no package or metadata is left in the image, and a host backend (the local
backend in a chroot of the same base) checks before it installs. The distro-agnostic
``packages`` step is checked on the same chroots, made to look like Fedora and Arch.
"""

from __future__ import annotations

import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import run_shlax, statuses
from fixtures_caches import Host, image_files, in_image, output, remove_image
from fixtures_repos import pacman_repository, rpm_repository

pytestmark = [pytest.mark.buildah, pytest.mark.slow]


@dataclass
class Manager:
    name: str
    debian_package: str
    config: str                                   # the file pointing the manager at the test repository
    config_text: Callable[[str], str]             # repository URL -> its text
    repository: Callable[[Path, dict], Path]
    package_suffix: str
    metadata: str                                 # a file every refresh of the lists fetches
    image_caches: tuple[str, ...]                 # folders that must be empty in the image
    os_id: str                                    # an os-release ID this manager fits

    @property
    def base(self) -> str:
        return f"localhost/shlax-test-debian-{self.name}:latest"


MANAGERS = {
    "dnf": Manager(
        "dnf", "dnf", "/etc/yum.repos.d/shlaxtest.repo",
        lambda url: f"[shlaxtest]\nname=shlax test\nbaseurl={url}\ngpgcheck=0\n",
        rpm_repository, ".rpm", "repomd.xml", ("/var/cache/dnf",), "fedora"),
    "pacman": Manager(
        "pacman", "pacman-package-manager", "/etc/pacman.conf",
        lambda url: f"[options]\nArchitecture = auto\nSigLevel = Never\n[shlaxtest]\nServer = {url}\n",
        pacman_repository, ".pkg.tar.zst", "shlaxtest.db", ("/var/cache/pacman/pkg", "/var/lib/pacman/sync"),
        "arch"),
}
PACKAGES = {"shlax-hello": "1.0", "shlax-extra": "2.0"}


@pytest.fixture(scope="module", params=sorted(MANAGERS))
def manager(request, debian_image, tmp_path_factory) -> Manager:
    """The manager's base image, built once per machine by shlax itself (kept like the Debian base)."""
    m = MANAGERS[request.param]
    work = tmp_path_factory.mktemp(f"base-{m.name}")
    (work / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.base]
        base = "{debian_image}"
        image = "{m.base}"
        steps = [ {{ apt = ["{m.debian_package}"] }} ]
    """))
    proc = run_shlax("run", str(work / "shlax.toml"))  # the session's download cache: apt is shared
    assert proc.returncode == 0, output(proc)
    return m


def pkgname(path: str) -> str:
    return "-".join(Path(path).name.split("-")[:2])


def recipe(host: Host, m: Manager, nonce: str, url: str, packages: list[str], image: str) -> None:
    host.write("repo.conf", m.config_text(url))
    host.recipe(f"""
        [targets.t{nonce}]
        base = "{m.base}"
        image = "{image}"
        steps = [
          {{ run = ["true", "{nonce}"] }},
          {{ copy = {{ src = "repo.conf", dest = "{m.config}" }} }},
          {{ {m.name} = {packages!r} }},
        ]
    """.replace("'", '"'))


def test_image_builds_download_once_rebuild_offline_and_keep_no_cache(tmp_path, nonce, manager, served):
    m = manager
    repo = served(m.repository(tmp_path / "repo", PACKAGES))
    host = Host(tmp_path / "host")
    image = f"localhost/shlax-test-{m.name}-{nonce}"
    try:
        recipe(host, m, nonce, repo.url, ["shlax-hello"], image)
        first = host.run("run", "--json")
        assert first.returncode == 0, output(first)
        assert [pkgname(p) for p in repo.fetched(m.package_suffix)] == ["shlax-hello"]
        assert repo.fetched(m.metadata)

        seen = list(repo.requests)
        recipe(host, m, nonce, repo.url, ["shlax-hello", "shlax-extra"], image)
        second = host.run("run", "--json")
        assert second.returncode == 0, output(second)
        assert statuses(second.stdout) == ["cached", "cached", "done"]
        new = repo.requests[len(seen):]
        # the lists are fresh (no refresh) and shlax-hello came from the host cache
        assert [pkgname(p) for p in new if p.endswith(m.package_suffix)] == ["shlax-extra"], new
        assert not [p for p in new if m.metadata in p], new

        seen = list(repo.requests)
        offline = host.run("run", "--offline", "--no-cache", "--json", offline_net=True)
        assert offline.returncode == 0, output(offline)
        assert statuses(offline.stdout) == ["done", "done", "done"]
        assert repo.requests == seen

        check = in_image(image, "cat", "/usr/share/shlax-hello/hello.txt", "/usr/share/shlax-extra/hello.txt")
        assert check.stdout.split() == ["shlax-hello", "1.0", "shlax-extra", "2.0"], check.stderr
        files = image_files(image, *m.image_caches)
        assert not [f for folder in m.image_caches for f in files[folder]], files
        cached = list((host.shlax_cache / "downloads" / m.name / "debian-bookworm").rglob(f"*{m.package_suffix}"))
        assert sorted(pkgname(str(p)) for p in cached) == ["shlax-extra", "shlax-hello"]
    finally:
        remove_image(image)


def test_offline_without_the_package_in_the_cache_says_so(tmp_path, nonce, manager, served):
    m = manager
    repo = served(m.repository(tmp_path / "repo", PACKAGES))
    host = Host(tmp_path / "host")
    image = f"localhost/shlax-test-{m.name}-off-{nonce}"
    try:
        recipe(host, m, nonce, repo.url, ["shlax-hello"], image)
        assert host.run("run").returncode == 0
        recipe(host, m, nonce, repo.url, ["shlax-hello", "shlax-extra"], image)
        proc = host.run("run", "--offline", offline_net=True)
        assert proc.returncode == 1, output(proc)
        assert f"offline: some packages are not in the {m.name} cache" in output(proc)
    finally:
        remove_image(image)


@pytest.fixture
def chroot(tmp_path, manager) -> Path:
    """A copy of the manager's base as a directory, for the local backend (``root = DIR``)."""
    root = tmp_path / "root"
    ctr = subprocess.run(["buildah", "from", "--pull-never", manager.base], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        mnt = subprocess.run(["buildah", "mount", ctr], capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["cp", "-a", mnt, str(root)], check=True)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
    return root


def test_host_backend_checks_before_installing(tmp_path, manager, chroot, served):
    m = manager
    repo = served(m.repository(tmp_path / "repo", PACKAGES))
    (chroot / m.config.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (chroot / m.config.lstrip("/")).write_text(m.config_text(repo.url))
    host = Host(tmp_path / "host")
    host.recipe(f"""
        [targets.box]
        backend = "local"
        root = "{chroot}"
        steps = [ {{ {m.name} = ["shlax-hello", "shlax-extra=2.0"] }} ]
    """)
    first = host.run("run", "--json")
    assert first.returncode == 0, output(first)
    assert statuses(first.stdout) == ["changed"]
    assert (chroot / "usr/share/shlax-extra/hello.txt").read_text() == "shlax-extra 2.0\n"
    seen = list(repo.requests)
    second = host.run("run", "--json")
    assert second.returncode == 0, output(second)
    assert statuses(second.stdout) == ["ok"]
    assert repo.requests == seen, "the check alone decided: nothing was asked of the repository"
    # host backends use the target's own folders: nothing went to shlax's download cache
    assert not (host.shlax_cache / "downloads" / m.name).exists()


def test_packages_step_uses_the_manager_the_target_has(tmp_path, manager, chroot, served):
    m = manager
    repo = served(m.repository(tmp_path / "repo", PACKAGES))
    (chroot / m.config.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (chroot / m.config.lstrip("/")).write_text(m.config_text(repo.url))
    os_release = chroot / "etc" / "os-release"
    os_release.unlink()  # a link into /usr/lib on Debian
    os_release.write_text(textwrap.dedent(f"""\
        ID={m.os_id}
        VERSION_ID=1
    """))
    host = Host(tmp_path / "host")
    host.recipe(f"""
        [targets.box]
        backend = "local"
        root = "{chroot}"
        steps = [ {{ packages = ["shlax-extra"] }} ]
    """)
    first = host.run("run", "--json")
    assert first.returncode == 0, output(first)
    assert statuses(first.stdout) == ["changed"]
    assert (chroot / "usr/share/shlax-extra/hello.txt").exists()
    second = host.run("run", "--json")
    assert statuses(second.stdout) == ["ok"], output(second)
