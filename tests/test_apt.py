"""apt: image steps install from the host's apt cache; host backends check with dpkg-query first."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import events, statuses, working_containers
from fixtures_caches import Host, image_files, output, remove_image

pytestmark = [pytest.mark.buildah, pytest.mark.slow]


def apt_recipe(host: Host, nonce: str, packages: list[str], image: str) -> None:
    host.recipe(f"""
        [targets.t{nonce}]
        base = "debootstrap:bookworm"
        image = "{image}"
        steps = [
          {{ run = ["true", "{nonce}"] }},
          {{ apt = {packages!r} }},
        ]
    """.replace("'", '"'))


def languages(dump: list[str]) -> list[str]:
    """The translation languages in ``apt-config dump`` lines."""
    return [line.split('"')[1] for line in dump if line.startswith('Acquire::Languages:: "')]


def test_adding_a_package_downloads_only_it_and_leaves_no_cache_in_the_image(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    image = f"localhost/shlax-test-apt-{nonce}"
    try:
        apt_recipe(host, nonce, ["jq"], image)
        first = host.run("run", "--json")
        assert first.returncode == 0, output(first)
        seen = host.debs()
        assert any(name.startswith("jq_") for name in seen), seen

        apt_recipe(host, nonce, ["jq", "file"], image)
        second = host.run("run", "--json")
        assert second.returncode == 0, output(second)
        assert statuses(second.stdout) == ["cached", "done"]
        new = host.debs() - seen
        # only `file` and its libraries were fetched
        assert {n.split("_")[0] for n in new} == {"file", "libmagic1", "libmagic-mgc"}, new
        lines = [e.get("line", "") for e in events(second.stdout) if e["event"] == "output"]
        fetched = [line for line in lines if re.search(r"Get:\d+ http", line)]
        assert fetched and not any(" jq " in line or "libjq1" in line for line in fetched), fetched
        assert not any("InRelease" in line for line in lines), "lists are fresh: no apt-get update"
        # the list only grew: `file` was installed on the [jq] layer, jq not again (docs/layers.md)
        ends = [e for e in events(second.stdout) if e["event"] == "step_end" and e.get("index") == 2]
        assert ends[0].get("incremental") == ["file"], ends

        files = image_files(image, "/var/cache/apt/archives", "/var/lib/apt/lists", "/var/cache/apt")
        assert not [f for f in files["/var/cache/apt/archives"] if f.endswith(".deb")]
        assert not [f for f in files["/var/lib/apt/lists"] if f not in ("partial", "lock")]
        assert not [f for f in files["/var/cache/apt"] if f.endswith(".bin")]

        # tuned for the throwaway container, during the step only: no translations were fetched,
        # a step using the apt cache sees dpkg's unsafe-io, the image does not
        assert not list((host.apt_archives.parent / "lists").glob("*Translation*"))
        host.recipe(f"""
            [targets.t{nonce}]
            base = "debootstrap:bookworm"
            image = "{image}"
            steps = [
              {{ run = ["true", "{nonce}"] }},
              {{ apt = ["jq", "file"] }},
              {{ run = ["apt-config", "dump"], caches = ["apt"] }},
            ]
        """)
        third = host.run("run", "--json")
        assert third.returncode == 0, output(third)
        dumped = [e.get("line", "") for e in events(third.stdout) if e["event"] == "output"]
        assert any("--force-unsafe-io" in line for line in dumped), dumped
        # apt resolves its languages into a list: its default is ["en", "none"], ours ["none"]
        assert languages(dumped) == ["none"], dumped
        from fixtures_caches import in_image
        inside = in_image(image, "apt-config", "dump").stdout
        assert "--force-unsafe-io" not in inside
        assert "en" in languages(inside.splitlines())
    finally:
        remove_image(image)


def test_unknown_package_fails_plainly_and_commits_nothing(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    image = f"localhost/shlax-test-apt-bad-{nonce}"
    apt_recipe(host, nonce, ["jq", "no-such-package-shlax"], image)
    proc = host.run("run")
    assert proc.returncode == 1, output(proc)
    assert "no package named no-such-package-shlax" in output(proc)
    assert "Unable to locate package no-such-package-shlax" in output(proc)  # apt's own words, shown
    assert subprocess.run(["buildah", "inspect", image], capture_output=True).returncode != 0
    assert working_containers(f"t{nonce}") == []


def test_bad_package_name_is_a_recipe_error(tmp_path):
    host = Host(tmp_path)
    host.recipe("""
        [targets.app]
        base = "debootstrap:bookworm"
        steps = [ { apt = ["curl; rm -rf /"] } ]
    """)
    proc = host.run("run")
    assert proc.returncode == 2, output(proc)
    assert "shlax.toml:4" in output(proc) and "not a Debian package name" in output(proc)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory, debian_image) -> Path:
    """A Debian bookworm tree to apply steps to with the local backend (``root = DIR``, chroot).

    The host's CA bundle is copied in (pip there is pointed at it, as a real host behind the proxy
    would have it configured).
    """
    root = tmp_path_factory.mktemp("chroot") / "root"
    ctr = subprocess.run(["buildah", "from", "--pull-never", debian_image], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        mnt = subprocess.run(["buildah", "mount", ctr], capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["cp", "-a", mnt, str(root)], check=True)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "etc" / "host-ca.crt")
    return root


def test_host_backend_checks_first_ok_then_changed(tmp_path, rootfs):
    host = Host(tmp_path)
    host.recipe(f"""
        [targets.box]
        backend = "local"
        root = "{rootfs}"
        steps = [
          {{ apt = ["python3", "python3-venv"] }},
          {{ pip = {{ packages = ["six"], venv = "/opt/venv" }} }},
        ]
    """)
    trust = {"PIP_CERT": "/etc/host-ca.crt", "REQUESTS_CA_BUNDLE": "/etc/host-ca.crt",
             "SSL_CERT_FILE": "/etc/host-ca.crt", "PIP_FIND_LINKS": ""}
    first = host.run("run", "--json", env=trust)
    assert first.returncode == 0, output(first)
    assert statuses(first.stdout) == ["changed", "changed"]
    assert (rootfs / "opt/venv/bin/python").exists()
    second = host.run("run", "--json", env=trust)
    assert second.returncode == 0, output(second)
    assert statuses(second.stdout) == ["ok", "ok"]
    # host backends use the host's own apt folders: nothing went to shlax's download cache
    assert not host.debs()


def test_image_configs_that_delete_downloads_are_neutralised_for_the_step(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    image = f"localhost/shlax-test-apt-clean-{nonce}"
    clean = ('DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
             '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };')
    host.write("docker-clean", clean + "\n")
    host.recipe(f"""
        [targets.t{nonce}]
        base = "debootstrap:bookworm"
        image = "{image}"
        steps = [
          {{ run = ["true", "{nonce}"] }},
          {{ copy = {{ src = "docker-clean", dest = "/etc/apt/apt.conf.d/docker-clean" }} }},
          {{ apt = ["jq"] }},
        ]
    """)
    try:
        proc = host.run("run")
        assert proc.returncode == 0, output(proc)
        assert any(n.startswith("jq_") for n in host.debs()), "the download survived docker-clean"
        # the image's own config is untouched: only hidden for the step
        ctr_files = image_files(image, "/etc/apt/apt.conf.d")["/etc/apt/apt.conf.d"]
        assert "docker-clean" in ctr_files
        from fixtures_caches import in_image
        assert "Post-Invoke" in in_image(image, "cat", "/etc/apt/apt.conf.d/docker-clean").stdout
    finally:
        remove_image(image)
