"""Reproducible images (docs/reproducible.md): one recipe, two empty image stores, one digest.

Each build runs in a store of its own (buildah --root/--runroot, the recipe's root/runroot keys),
holding only the busybox base copied in, with a shlax cache folder of its own: nothing is shared
but the recipe and its files. The files are written at different times between the builds, so
copied files' own mtimes differ, and the second build starts a few seconds later.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import events, run_shlax


def store_buildah(store: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"), *args],
                          capture_output=True, text=True, check=check)


@pytest.fixture
def stores(busybox_image: str) -> Iterator[list[Path]]:
    """Two empty image stores holding only the busybox base (same image ID in both)."""
    made = [Path(tempfile.mkdtemp(prefix="shlax-repro-store-", dir="/var/tmp")) for _ in range(2)]
    for store in made:
        subprocess.run(["buildah", "push", "--quiet", busybox_image,
                        f"containers-storage:[overlay@{store}/root+{store}/run]{busybox_image}"],
                       check=True, capture_output=True)
    try:
        yield made
    finally:
        for store in made:
            for c in store_buildah(store, "containers", "-q", check=False).stdout.split():
                store_buildah(store, "rm", c, check=False)
            subprocess.run(["umount", "-R", str(store / "root" / "overlay")], capture_output=True)
            store_buildah(store, "rmi", "--all", "--force", check=False)  # a store of our own
            shutil.rmtree(store, ignore_errors=True)


RECIPE = """
[targets.app]
base = "{base}"
image = "localhost/shlax-repro-app"
root = "{store}/root"
runroot = "{store}/run"
steps = [
  {{ copy = {{ src = "app/", dest = "/app/" }} }},
  {{ run = ["sh", "-c", "mkdir -p /data && ls -l /app > /data/listing && echo made > /data/made"] }},
  {{ run = ["sh", "-c", "touch /data/touched"] }},
]
[targets.app.config]
cmd = ["/bin/sh"]
labels = {{ "org.example.team" = "core" }}
"""


def write_project(where: Path, store: Path, base: str) -> Path:
    app = where / "app"
    app.mkdir(parents=True)
    for i in range(20):
        (app / f"f{i:02d}.txt").write_text(f"file {i}\n")
    os.symlink("f00.txt", app / "link")
    (where / "shlax.toml").write_text(RECIPE.format(base=base, store=store))
    return where / "shlax.toml"


def image_digests(store: Path, name: str) -> dict:
    info = json.loads(store_buildah(store, "inspect", "--type", "image", name).stdout)
    return {"id": info["FromImageID"], "digest": info["FromImageDigest"],
            "layers": [layer["digest"] for layer in json.loads(info["Manifest"])["layers"]],
            "config": info["OCIv1"]}


def test_same_recipe_two_stores_same_digest(stores: list[Path], busybox_image: str, tmp_path: Path) -> None:
    results = []
    for n, store in enumerate(stores):
        recipe = write_project(tmp_path / f"project{n}", store, busybox_image)
        env = {"SHLAX_CACHE_DIR": str(tmp_path / f"cache{n}"), "SOURCE_DATE_EPOCH": "1700000000"}
        proc = run_shlax("run", "--json", str(recipe), cwd=recipe.parent, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [e["status"] for e in events(proc.stdout) if e["event"] == "step_end"] == ["done"] * 3
        results.append(image_digests(store, "localhost/shlax-repro-app"))
        time.sleep(1.1)  # the second build happens at another second: nothing may depend on it
    first, second = results
    assert first["layers"] == second["layers"]
    assert first["id"] == second["id"], (first["config"], second["config"])
    assert first["digest"] == second["digest"]
    config = first["config"]
    assert config["created"] == "2023-11-14T22:13:20Z"
    # not in a git repository and no CI: no revision, source or version label
    assert not any(k in config["config"]["Labels"] for k in ("org.opencontainers.image.revision",
                                                             "org.opencontainers.image.source"))
    assert config["config"]["Labels"]["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    # every file of the step layers is dated 1970: the date changes no layer
    print("reproducible image:", first["digest"], first["id"])


def test_epoch_only_reaches_the_final_commit(stores: list[Path], busybox_image: str, tmp_path: Path) -> None:
    """Another SOURCE_DATE_EPOCH: every step layer stays cached and identical; only the final
    configuration commit runs again, and gives what a build from scratch gives."""
    store, scratch = stores
    recipe = write_project(tmp_path / "p", store, busybox_image)
    env = {"SHLAX_CACHE_DIR": str(tmp_path / "cache"), "SOURCE_DATE_EPOCH": "1700000000"}
    assert run_shlax("run", str(recipe), env=env).returncode == 0
    before = image_digests(store, "localhost/shlax-repro-app")
    env["SOURCE_DATE_EPOCH"] = "1800000000"
    proc = run_shlax("run", "--json", str(recipe), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [e["status"] for e in events(proc.stdout) if e["event"] == "step_end"] == ["cached"] * 3
    after = image_digests(store, "localhost/shlax-repro-app")
    assert after["layers"] == before["layers"] and after["id"] != before["id"]
    assert after["config"]["created"] == "2027-01-15T08:00:00Z"
    # the same recipe from scratch in another store, at the new epoch: the same image
    other = write_project(tmp_path / "q", scratch, busybox_image)
    env["SHLAX_CACHE_DIR"] = str(tmp_path / "cache2")
    assert run_shlax("run", "--no-cache", str(other), env=env).returncode == 0
    assert image_digests(scratch, "localhost/shlax-repro-app")["id"] == after["id"]


def test_shlax_repro_names_the_first_layer_that_differs(busybox_image: str, tmp_path: Path, nonce: str) -> None:
    """``shlax repro``: two builds from scratch in stores of its own; a step that writes a random
    number is named, with its file:line; the stores are removed afterwards."""
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""\
        [targets.r{nonce}]
        base = "{busybox_image}"
        image = "localhost/shlax-repro-{nonce}"
        steps = [
          {{ run = ["sh", "-c", "echo {nonce} > /fixed"] }},
          {{ run = ["sh", "-c", "echo $RANDOM$RANDOM > /random"] }},
        ]
    """))
    before = set(Path("/var/tmp").glob("shlax-repro-*"))
    env = {"SHLAX_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_shlax("repro", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"r{nonce}: two builds from scratch: DIFFERENT from targets.r{nonce}.steps[1] (shlax.toml:6), step 2" \
        in proc.stdout
    assert set(Path("/var/tmp").glob("shlax-repro-*")) == before

    # without the random number: reproducible, and the user's own image (built first) is the same
    (tmp_path / "shlax.toml").write_text((tmp_path / "shlax.toml").read_text().replace("$RANDOM$RANDOM", "same"))
    assert run_shlax("run", cwd=tmp_path, env=env).returncode == 0
    proc = run_shlax("repro", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    digest = proc.stdout.split(f"r{nonce}: reproducible: ")[1].split()[0]
    assert digest.startswith("sha256:")
    assert f"your image localhost/shlax-repro-{nonce}:latest: same image" in proc.stdout
    assert set(Path("/var/tmp").glob("shlax-repro-*")) == before
