"""The package-action and download-cache bases, and apk, table-driven against the recording fakes.

apk-tools is not in Debian, so apk is checked here only: the commands it is given, the folder its
cache lives in, and how its output is read (real apk output, copied from Alpine 3.20). dnf and
pacman run for real in test_dnf_pacman.py; apt in test_apt.py.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from shlax_apk import Apk, ApkCache
from shlax_core.downloads import DownloadCache, flock, release_of
from shlax_core.units import parse_age
from shlax_dnf import Dnf, DnfCache
from shlax_packages import Packages

ALPINE = {"ID": "alpine", "VERSION_ID": "3.20.1", "NAME": "Alpine Linux"}
APK_ADD_OUT = """\
(1/2) Installing libcurl (8.9.1-r0)
(2/2) Installing curl (8.9.1-r0)
OK: 13 MiB in 21 packages"""
APK_NOTHING = "OK: 13 MiB in 21 packages"
APK_NOT_FOUND = """\
ERROR: unable to select packages:
  nope (no such package):
    required by: world[nope]"""
APK_INFO = "musl-1.2.5-r0\nbusybox-1.36.1-r29\ncurl-8.9.1-r0\njq-1.7.1-r0\n"


def apk_project(shlax_recipe, step: str, backend: str = "fake-image"):
    project = shlax_recipe(f"""
        [targets.t]
        backend = "{backend}"
        steps = [ {step} ]
    """, actions={"apk": Apk, "dnf": Dnf, "packages": Packages}, caches={"apk": ApkCache, "dnf": DnfCache})
    project.recorder.facts = dict(ALPINE)
    return project


def apk_cmds(result) -> list[list[str]]:
    return [c for c in result.commands if c[0] == "apk"]


# (name, step, offline, index cached before, replies, expected apk commands, status, error part)
IMAGE_CASES = [
    ("cold", '{ apk = ["curl", "jq=1.7.1-r0"] }', False, False, [(["apk", "add"], 0, APK_ADD_OUT)],
     [["apk", "update"], ["apk", "add", "curl", "jq=1.7.1-r0"]], "done", None),
    ("offline", '{ apk = ["curl"] }', True, True, [],
     [["apk", "add", "--no-network", "curl"]], "done", None),
    ("offline-no-index", '{ apk = ["curl"] }', True, False, [],
     [], "failed", "offline, and the apk cache has no package lists for alpine 3.20.1"),
    ("offline-not-cached", '{ apk = ["curl"] }', True, True,
     [(["apk", "add"], 1, "ERROR: curl-8.9.1-r0: network unavailable")],
     [["apk", "add", "--no-network", "curl"]], "failed", "offline: some packages are not in the apk cache"),
    ("not-found", '{ apk = ["nope"] }', False, False, [(["apk", "add"], 1, APK_NOT_FOUND)],
     [["apk", "update"], ["apk", "add", "nope"]], "failed", "apk: no package named nope in alpine 3.20.1"),
    ("upgrade", '{ apk = { upgrade = true } }', False, False, [],
     [["apk", "update"], ["apk", "upgrade"]], "done", None),
]


@pytest.mark.parametrize("name,step,offline,indexed,replies,expected,status,error", IMAGE_CASES,
                         ids=[c[0] for c in IMAGE_CASES])
def test_apk_image_steps(shlax_recipe, name, step, offline, indexed, replies, expected, status, error):
    project = apk_project(shlax_recipe, step)
    root = Path(os.environ["SHLAX_CACHE_DIR"]) / "downloads" / "apk" / "alpine-3.20.1" / "cache"
    if indexed:
        root.mkdir(parents=True)
        (root / "APKINDEX.4f6a9c2e.tar.gz").write_bytes(b"index")
    for prefix, code, out in replies:
        project.reply(prefix, code, out)
    result = project.run(offline=offline)
    assert apk_cmds(result) == expected
    assert result.statuses[-1] == status
    if error:
        assert error in result.steps[-1]["error"]["message"]
    # the host cache is lent at apk's own cache folder, for the step only
    for cmd, mounts in zip(result.commands, result.mounts):
        if cmd[0] == "apk":
            assert any(m.target == "/etc/apk/cache" and m.source == str(root) for m in mounts), mounts


def test_apk_lists_are_not_refreshed_while_fresh(shlax_recipe):
    project = apk_project(shlax_recipe, '{ apk = ["curl"] }')
    assert apk_cmds(project.run())[0] == ["apk", "update"]
    project.write("shlax.toml", """
        [targets.t]
        backend = "fake-image"
        steps = [ { apk = ["curl", "jq"] } ]
    """)
    # (the list only grew: jq alone is added on the previous layer, see test_incremental.py)
    assert apk_cmds(project.run()) == [["apk", "add", "jq"]]


@pytest.mark.parametrize("installed,status,expected", [
    (APK_INFO, "ok", [["apk", "info", "-v"]]),
    ("musl-1.2.5-r0\ncurl-8.9.1-r0\n", "changed", [["apk", "info", "-v"], ["apk", "update"],
                                                   ["apk", "add", "curl", "jq=1.7.1-r0"]]),
    (APK_INFO.replace("jq-1.7.1-r0", "jq-1.6-r4"), "changed", None),  # another version: install the pin
])
def test_apk_host_backend_checks_first(shlax_recipe, installed, status, expected):
    project = apk_project(shlax_recipe, '{ apk = ["curl", "jq=1.7.1-r0"] }', backend="fake")
    project.reply(["apk", "info", "-v"], 0, installed)
    project.reply(["apk", "add"], 0, APK_ADD_OUT)
    result = project.run()
    assert result.statuses == [status]
    if expected is not None:
        assert [c for c in result.commands if c[0] == "apk"] == expected
    # hosts use their own cache folder: nothing mounted
    assert not any(result.mounts)


def test_apk_reads_what_changed():
    action = Apk.__new__(Apk)
    assert action.changed(APK_ADD_OUT) and not action.changed(APK_NOTHING)
    assert action.parse_installed(APK_INFO)["jq"] == {"1.7.1-r0", "1.7.1"}


def test_dnf_pins_and_options(shlax_recipe):
    project = apk_project(shlax_recipe, '{ dnf = ["jq=1.7.1", "curl"] }')
    project.recorder.facts = {"ID": "fedora", "VERSION_ID": "40"}
    result = project.run(offline=False)
    install = [c for c in result.commands if c[:2] == ["dnf", "install"]][0]
    assert install[-2:] == ["jq-1.7.1", "curl"]
    assert "--setopt=keepcache=True" in install and "--setopt=metadata_expire=-1" in install
    assert any(m.target == "/var/cache/dnf" and m.source.endswith("downloads/dnf/fedora-40/cache")
               for m in result.mounts[-1])


def test_packages_names_the_plugin_to_install(shlax_recipe):
    project = shlax_recipe("""
        [targets.t]
        backend = "fake-image"
        steps = [ { packages = ["curl"] } ]
    """, actions={"packages": Packages})
    project.recorder.facts = {"ID": "gentoo"}
    result = project.run()
    assert result.code == 2 and "no package manager known" in result.error.message
    project.recorder.facts = dict(ALPINE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHLAX_DISABLE_PLUGINS", "shlax-plugin-apk,apk")
        result = project.run()
    assert result.code == 2 and "needs the `apk` action" in result.error.message
    assert "pip install shlax-plugin-apk" in (result.error.hint or "")


def test_packages_follows_id_like(shlax_recipe):
    project = shlax_recipe("""
        [targets.t]
        backend = "fake-image"
        steps = [ { packages = ["curl"] } ]
    """, actions={"packages": Packages, "apk": Apk}, caches={"apk": ApkCache})
    project.recorder.facts = {"ID": "postmarketos", "ID_LIKE": "alpine", "VERSION_ID": "v24.06"}
    result = project.run()
    assert result.code == 0 and ["apk", "add", "curl"] in result.commands


def test_release_folder_and_ages():
    assert release_of({"ID": "debian", "VERSION_CODENAME": "bookworm", "VERSION_ID": "12"}) == "debian-bookworm"
    assert release_of({"ID": "rocky", "VERSION_ID": "9.4"}) == "rocky-9.4"
    assert release_of({"ID": "arch", "BUILD_ID": "rolling"}) == "arch-rolling"
    assert release_of({}) == "unknown-unknown"
    assert parse_age("30m") == 1800 and parse_age("2d") == 172800 and parse_age("soon") is None


class Held(DownloadCache):
    name = "held"
    paths = {"/var/cache/held": "files"}
    partial = ("*.part",)


def test_prune_skips_a_folder_a_build_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("SHLAX_CACHE_DIR", str(tmp_path))
    cache = Held()
    files = cache.root() / "files"
    files.mkdir(parents=True)
    (files / "a.part").write_bytes(b"x" * 10)
    with flock(cache.root() / "held.lock", shared=True):  # a build using the cache
        assert cache.prune() == 0 and (files / "a.part").exists()
    assert cache.prune() == 10 and not (files / "a.part").exists()


def test_a_locked_cache_says_it_waits(tmp_path):
    lock = tmp_path / "x.lock"
    said: list[str] = []

    def second() -> None:
        with flock(lock, shared=False, waiting=lambda: said.append("waiting")):
            said.append("got it")

    with flock(lock, shared=False):
        t = threading.Thread(target=second)
        t.start()
        while not said:
            time.sleep(0.01)
    t.join()
    assert said == ["waiting", "got it"]


@pytest.mark.parametrize("backend,tuned", [("fake-image", True), ("fake", False)])
def test_apt_tunes_dpkg_and_update_for_build_containers_only(shlax_recipe, backend, tuned):
    """dpkg without fsync and no translations, for image steps only, and only for the step: as
    options and a config file mounted at APT_CONFIG, never a file written into the image."""
    from shlax_apt.action import Apt, AptCache

    project = shlax_recipe(f"""
        [targets.t]
        backend = "{backend}"
        steps = [ {{ apt = ["jq"] }} ]
    """, actions={"apt": Apt}, caches={"apt": AptCache})
    project.recorder.facts = {"ID": "debian", "VERSION_CODENAME": "bookworm"}
    project.reply(["dpkg-query"], 0, "")
    result = project.run()
    apt = [c for c in result.commands if c[0] == "apt-get"]
    assert [c[1] for c in apt] == ["update", "install"]
    for argv in apt:
        pairs = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-o"}
        assert ("Dpkg::Options::=--force-unsafe-io" in pairs) is tuned, argv
        assert ("Acquire::Languages=none" in pairs) is tuned, argv
    if tuned:
        conf = [m for m in result.mounts[-1] if m.target == "/run/shlax/apt.conf"]
        text = Path(conf[0].source).read_text()
        assert 'Dpkg::Options:: "--force-unsafe-io";' in text and 'Acquire::Languages "none";' in text
    # nothing but package installs ran in the target: no config was written into it
    assert not [c for c in result.commands if c[0] not in ("apt-get", "dpkg-query", "find", "sh")]
