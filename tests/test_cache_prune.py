"""``shlax cache prune --max-size`` / ``--all`` / ``--dry-run`` on real layers, in an image store of
the test's own.

``--all`` removes every shlax cache layer of the store it is pointed at, so these tests never
point it at the shared one (other sessions' layers live there): buildah and shlax are pointed at a
private store by ``CONTAINERS_STORAGE_CONF``, and the busybox base is copied into it. Each step
writes a megabyte of random bytes, so the layers' own weights are known (a megabyte is past the
working container's carry limit, shlax_buildah.upper: each step's layer holds its own megabyte).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import buildah
from fixtures_registry import Store

MB = 1 << 20


class OwnStore:
    """A private image store, shlax's own cache folder, and the environment pointing at both."""

    def __init__(self, base: Path):
        self.store = Store(base / "root", base / "runroot")
        self.conf = base / "storage.conf"
        self.conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{self.store.root}"\n'
                             f'runroot = "{self.store.runroot}"\n')
        self.cache = base / "shlax-cache"
        self.env = {"CONTAINERS_STORAGE_CONF": str(self.conf), "SHLAX_CACHE_DIR": str(self.cache)}

    def buildah(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["buildah", *args], capture_output=True, text=True, check=check,
                              env={**os.environ, **self.env})

    def names(self) -> set[str]:
        out = self.buildah("images", "--json", "--all").stdout
        return {n for i in json.loads(out or "[]") for n in i.get("names") or []}

    def images(self) -> list[tuple[str, tuple[str, ...]]]:
        out = self.buildah("images", "--json", "--all", "--no-trunc").stdout
        return sorted((i["id"], tuple(sorted(i.get("names") or []))) for i in json.loads(out or "[]"))

    def held(self) -> int:
        """Bytes of the storage layers that only cache images use: what the cache holds on disk."""
        layers = {x["id"]: x for x in json.loads((self.store.root / "overlay-layers" / "layers.json").read_text())}
        images = json.loads((self.store.root / "overlay-images" / "images.json").read_text())

        def chain(top: str) -> set[str]:
            out = set()
            while top:
                out.add(top)
                top = layers[top].get("parent", "")
            return out

        pinned: set[str] = set()
        cache: set[str] = set()
        for image in images:
            names = image.get("names") or []
            target = cache if names and all(n.startswith("localhost/shlax-cache:") for n in names) else pinned
            target |= chain(image["layer"])
        return sum(layers[i].get("diff-size", 0) for i in cache - pinned)


@pytest.fixture
def own(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Iterator[OwnStore]:
    own = OwnStore(tmp_path_factory.mktemp("prune-store"))
    buildah("push", "--quiet", busybox_image,
            f"containers-storage:[overlay@{own.store.root}+{own.store.runroot}]{busybox_image}")
    try:
        yield own
    finally:
        own.store.destroy()


def build(shlax, own: OwnStore, tmp_path: Path, base: str, name: str, nonce: str, *, env: Any = None) -> None:
    """Target ``name``: two steps of a megabyte each, and a final image of its own name."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
[targets.{name}]
base = "{base}"
image = "localhost/shlax-test-prune-{nonce}-{name}"
steps = [
  {{ run = ["sh", "-c", "head -c {MB} /dev/urandom > /one; echo {nonce} {name} >> /one"] }},
  {{ run = ["sh", "-c", "head -c {MB} /dev/urandom > /two"] }},
]
""")
    proc = shlax("run", str(path), env=env or own.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def ls(shlax, own: OwnStore) -> list[dict[str, Any]]:
    proc = shlax("cache", "ls", "--json", env=own.env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["layers"]


def age(own: OwnStore, rows: list[dict[str, Any]], order: list[str]) -> dict[str, float]:
    """Set the layers' last use: targets in ``order`` from coldest to warmest, steps in build
    order within a target; returns each key's time."""
    path = own.cache / "layers.json"
    data = json.loads(path.read_text())
    now = time.time()
    used = {}
    for t, target in enumerate(order):
        mine = [r for r in rows if r["target"] == target]
        for s, row in enumerate(sorted(mine, key=lambda r: (r["step"] or "~", r["key"]))):
            used[row["key"]] = now - (len(order) - t) * 86400 + s
            data[row["key"]]["used"] = used[row["key"]]
    path.write_text(json.dumps(data))
    return used


def test_max_size_drops_the_least_recently_used_until_the_cache_fits(shlax, own, busybox_image, nonce, tmp_path):
    for name in ("a", "b", "c"):
        build(shlax, own, tmp_path, busybox_image, name, nonce)
        # the user moved on (a variant built since, an image deleted): the layers are the cache's alone
        own.buildah("rmi", f"localhost/shlax-test-prune-{nonce}-{name}:latest")
    rows = ls(shlax, own)
    assert sorted(r["target"] for r in rows) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3  # 2 steps + the final key
    used = age(own, rows, ["a", "b", "c"])
    assert 6 * MB <= own.held() < 7 * MB  # six one-megabyte steps; the base is not the cache's
    coldest_first = sorted(rows, key=lambda r: used[r["key"]])

    budget = "4.5M"  # room for two targets' layers, not three
    everything = own.images()
    dry = shlax("cache", "prune", "--max-size", budget, "--dry-run", env=own.env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert own.images() == everything  # a dry run removes nothing
    said = [line.split()[2] for line in dry.stdout.splitlines() if line.startswith("would remove")]

    proc = shlax("cache", "prune", "--max-size", budget, env=own.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = own.names()
    gone = [r for r in coldest_first if r["name"] not in names]
    # the coldest target's layers went, least recently used first, and nothing more: the
    # other two fit in the budget
    assert gone == coldest_first[:3] and {r["target"] for r in gone} == {"a"}, (gone, proc.stdout)
    assert 4 * MB <= own.held() <= 4.5 * MB
    assert sorted(said) == sorted(r["key"][:16] for r in gone)  # the dry run said what the real one did
    assert re.search(r"freed 2\.\d MB \(3 layers\)", proc.stdout), proc.stdout  # what left the disk, not image sizes
    assert busybox_image in names  # the base is no cache layer


def test_all_removes_every_cache_layer_of_the_store_and_nothing_else(shlax, own, busybox_image, nonce, tmp_path):
    build(shlax, own, tmp_path, busybox_image, "a", nonce)
    # a second user of the same store, with a cache folder of their own
    other = {**own.env, "SHLAX_CACHE_DIR": str(tmp_path / "other-cache")}
    build(shlax, own, tmp_path, busybox_image, "b", nonce, env=other)
    # an image that is no cache layer
    ctr = own.buildah("from", "--pull=never", busybox_image).stdout.strip()
    own.buildah("commit", "--quiet", "--rm", ctr, f"localhost/shlax-test-mine-{nonce}")
    cache_names = {n for n in own.names() if n.startswith("localhost/shlax-cache:")}
    assert len(cache_names) == 6

    everything = own.images()
    dry = shlax("cache", "prune", "--all", "--dry-run", env=own.env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert own.images() == everything
    assert len([line for line in dry.stdout.splitlines() if line.startswith("would remove")]) == 6

    proc = shlax("cache", "prune", "--all", env=own.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(6 layers)" in proc.stdout
    left = own.names()
    assert not [n for n in left if n.startswith("localhost/shlax-cache:")]
    assert left == {busybox_image, f"localhost/shlax-test-mine-{nonce}:latest",
                    f"localhost/shlax-test-prune-{nonce}-a:latest", f"localhost/shlax-test-prune-{nonce}-b:latest"}
    assert own.held() == 0
    # the cache's record forgets what went: the next build runs every step again
    assert ls(shlax, own) == []
