"""The image store's index read directly (shlax_buildah/store.py) against ``buildah images``.

Reading ``<graphroot>/<driver>-images/images.json`` saves a buildah process on every run; it is
only right if it lists exactly what buildah lists, and if every layout it does not understand
makes it step aside (None) so the caller asks buildah. Images are made by the test, named with a
nonce; in the shared store only those are compared (other sessions change it meanwhile).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import pytest

from conftest import buildah
from fixtures_registry import Store
from shlax_buildah import store as store_index
from shlax_buildah.cli import Buildah


def listed(argv: list[str], env: Optional[dict] = None) -> dict[str, list[str]]:
    """``buildah images --all --json``: {id: sorted names}."""
    out = subprocess.run([*argv, "images", "--all", "--json", "--no-trunc"], capture_output=True, text=True,
                         check=True, env={**os.environ, **(env or {})}).stdout
    return {i["id"].removeprefix("sha256:"): sorted(i.get("names") or []) for i in json.loads(out or "[]")}


def read(index: Optional[list[dict]]) -> dict[str, list[str]]:
    assert index is not None, "the index should have been read directly"
    return {i["id"]: sorted(i["names"]) for i in index}


def make_images(run: list[str], nonce: str, env: Optional[dict] = None) -> set[str]:
    """Three images: one name, two names, and one whose only name was taken by a newer one."""
    def b(*args: str) -> str:
        return subprocess.run([*run, *args], capture_output=True, text=True, check=True,
                              env={**os.environ, **(env or {})}).stdout.strip()

    ids = set()
    for i, names in enumerate([[f"localhost/shlax-test-index-{nonce}-one"],
                               [f"localhost/shlax-test-index-{nonce}-two", f"localhost/shlax-test-index-{nonce}-deux"],
                               [f"localhost/shlax-test-index-{nonce}-moved"], [f"localhost/shlax-test-index-{nonce}-moved"]]):
        ctr = b("from", "scratch")
        b("config", "--label", f"n={nonce}-{i}", ctr)
        image = b("commit", "--quiet", "--rm", ctr, names[0])
        for extra in names[1:]:
            b("tag", image, extra)
        ids.add(image)
    return ids


@pytest.fixture
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    base = tmp_path_factory.mktemp("index-store")
    s = Store(base / "root", base / "runroot")
    try:
        yield s
    finally:
        s.destroy()


def test_default_store_index_lists_what_buildah_lists(nonce):
    ids = make_images(["buildah"], nonce)
    try:
        direct = {k: v for k, v in read(store_index.read_index()).items() if k in ids}
        assert direct == {k: v for k, v in listed(["buildah"]).items() if k in ids}
        assert len(direct) == 4
        assert sorted(len(v) for v in direct.values()) == [0, 1, 1, 2]  # the moved name left one image nameless
        # and the backend's own listing takes it
        assert {i["id"]: sorted(i["names"]) for i in Buildah().images() if i["id"] in ids} == direct
    finally:
        for image in ids:
            buildah("rmi", "--force", image, check=False)


def test_a_store_given_by_root(private, nonce):
    argv = ["buildah", "--root", str(private.root), "--runroot", str(private.runroot)]
    make_images(argv, nonce)
    usable, root = store_index.root_of(argv)
    assert usable and root == str(private.root)
    assert read(store_index.read_index(root)) == listed(argv)
    assert {i["id"]: sorted(i["names"]) for i in Buildah(str(private.root), str(private.runroot)).images()} == listed(argv)


def conf_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "storage.conf"
    path.write_text(text)
    return path


def test_a_storage_conf_is_read_as_buildah_reads_it(private, nonce, tmp_path, monkeypatch):
    """graphroot in single quotes, keys in any order and spacing: TOML, not a regular expression.
    Before, a quoting the pattern missed sent the reader to the default store."""
    conf = conf_file(tmp_path, f"[storage]\nrunroot='{private.runroot}'\ngraphroot\t=   '{private.root}'\n"
                               "driver='overlay'\n[storage.options]\nadditionalimagestores = []\n")
    make_images(["buildah"], nonce, env={"CONTAINERS_STORAGE_CONF": str(conf)})
    expected = listed(["buildah"], env={"CONTAINERS_STORAGE_CONF": str(conf)})
    assert len(expected) == 4
    monkeypatch.setattr(store_index, "CONF_FILES", (str(conf),))
    assert read(store_index.read_index()) == expected
    # the same file named by CONTAINERS_STORAGE_CONF (which buildah reads instead of the others)
    monkeypatch.setattr(store_index, "CONF_FILES", ("/nonexistent/storage.conf",))
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    assert read(store_index.read_index()) == expected
    assert {i["id"]: sorted(i["names"]) for i in Buildah().images()} == expected


def test_a_vfs_store(private, nonce, tmp_path, monkeypatch):
    conf = conf_file(tmp_path, f'[storage]\ndriver = "vfs"\ngraphroot = "{private.root}"\nrunroot = "{private.runroot}"\n')
    env = {"CONTAINERS_STORAGE_CONF": str(conf)}
    make_images(["buildah"], nonce, env=env)
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    assert (private.root / "vfs-images" / "images.json").exists()
    assert read(store_index.read_index()) == listed(["buildah"], env=env)
    subprocess.run(["buildah", "rmi", "--all", "--force"], env={**os.environ, **env}, capture_output=True)


@pytest.mark.parametrize("text", [
    '[storage]\ndriver = "overlay"\n[storage.options]\nadditionalimagestores = ["/srv/images"]\n',
    '[storage]\ndriver = ""\n',                       # buildah picks a driver itself
    '[storage]\ndriver = "overlay"\nimagestore = "/srv/images"\n',  # a layout newer buildah knows
    '[storage\ndriver = "overlay"\n',                 # not TOML: buildah will say so, not us
    '[storage]\ndriver = ["overlay"]\n',
])
def test_layouts_it_does_not_know_are_left_to_buildah(tmp_path, monkeypatch, text):
    monkeypatch.setattr(store_index, "CONF_FILES", (str(conf_file(tmp_path, text)),))
    monkeypatch.delenv("CONTAINERS_STORAGE_CONF", raising=False)
    assert store_index.read_index() is None


@pytest.mark.slow  # runs buildah
def test_not_root_or_a_missing_index_is_left_to_buildah(private, monkeypatch):
    assert store_index.read_index(str(private.root)) is None  # a store buildah never wrote to
    monkeypatch.setattr(store_index.os, "geteuid", lambda: 1000)
    assert store_index.read_index() is None


@pytest.mark.parametrize("argv,usable", [
    (["buildah"], True),
    (["buildah", "--root", "/r", "--runroot", "/rr"], True),
    (["buildah", "--storage-driver", "vfs"], False),
    (["buildah", "--root"], False),
    (["ssh", "host", "buildah"], False),
])
def test_which_argv_may_use_the_index(argv, usable):
    assert store_index.root_of(argv)[0] is usable


def test_a_listing_that_races_a_removal_is_asked_again(tmp_path, busybox_image):
    """`buildah images` fails whole ("image not known") when another process removes an image
    while it lists the store (seen here: 1 call in 40 while other sessions prune). buildah's
    full listing (what `cache ls` and `prune` read) is asked again rather than taken as empty.
    The race cannot be timed on demand, so a stand-in fails the first two calls as buildah does."""
    real = Buildah().argv0[0]
    calls = tmp_path / "calls"
    fake = tmp_path / "buildah"
    fake.write_text(f"""#!/bin/sh
echo x >> {calls}
if [ "$(wc -l < {calls})" -le 2 ]; then
    echo 'Error: locating image with ID "195fab55": image not known' >&2
    exit 125
fi
exec {real} "$@"
""")
    fake.chmod(0o755)
    b = Buildah()
    b.argv0 = [str(fake)]
    images = b.images(details=True)
    assert len(calls.read_text().splitlines()) == 3
    assert any(busybox_image in (image.get("names") or []) for image in images)
