"""`shlax cache ls | du | prune` on real layers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from conftest import buildah, statuses


def recipe(tmp_path: Path, base: str, nonce: str) -> Path:
    path = tmp_path / "shlax.toml"
    path.write_text(textwrap.dedent(f"""
        [targets.c{nonce}]
        base = "{base}"
        steps = [
          {{ run = ["sh", "-c", "echo {nonce} > /one"] }},
          {{ run = ["sh", "-c", "echo {nonce} > /two"] }},
        ]
    """))
    return path


def test_ls_prune_and_rebuild(tmp_path, shlax, busybox_image, nonce):
    path = recipe(tmp_path, busybox_image, nonce)
    assert shlax("run", str(path)).returncode == 0
    # a layer another user's cache dir knows about (not ours): pruning by age must not guess its age
    (tmp_path / "other").mkdir()
    other = recipe(tmp_path / "other", busybox_image, f"o{nonce}")
    other_env = {"SHLAX_CACHE_DIR": str(tmp_path / "other-cache")}
    assert shlax("run", str(other), env=other_env).returncode == 0
    other_layers = [layer["name"] for layer in json.loads(shlax("cache", "ls", "--json", env=other_env).stdout)["layers"]
                    if layer["target"] == f"co{nonce}"]
    assert len(other_layers) == 3

    listing = json.loads(shlax("cache", "ls", "--json").stdout)
    ours = [layer for layer in listing["layers"] if layer["target"] == f"c{nonce}"]
    assert len(ours) == 3  # step 1, and one commit named as both step 2 and the image (no config)
    assert all(len(layer["key"]) == 64 for layer in ours)
    assert "layers" in shlax("cache", "du").stdout

    # nothing of ours is older than an hour: a dry run keeps everything
    dry = shlax("cache", "prune", "--older-than", "1h", "--dry-run")
    assert dry.returncode == 0
    assert not any(layer["key"][:16] in dry.stdout for layer in ours)

    # age our layers by two days in the usage record, then prune what is older than a day
    usage_file = Path(os.environ["SHLAX_CACHE_DIR"]) / "layers.json"
    data = json.loads(usage_file.read_text())
    for layer in ours:
        data[layer["key"]]["used"] = time.time() - 2 * 86400
    usage_file.write_text(json.dumps(data))
    pruned = shlax("cache", "prune", "--older-than", "1d")
    assert pruned.returncode == 0, pruned.stderr
    for layer in ours:
        name = f"localhost/shlax-cache:{layer['key']}"
        assert buildah("inspect", "--type", "image", name, check=False).returncode != 0
    # layers this cache dir never recorded (another user's, or made before) are still there
    for name in other_layers:
        assert buildah("inspect", "--type", "image", name, check=False).returncode == 0, name
    # the user's final image is never deleted by a prune: only the cache's own tags go
    assert buildah("inspect", "--type", "image", f"localhost/c{nonce}:latest", check=False).returncode == 0

    # the next build runs every step again
    again = shlax("run", str(path), "--json")
    assert statuses(again.stdout) == ["done", "done"]


def test_prune_needs_a_bound(shlax):
    proc = shlax("cache", "prune")
    assert proc.returncode == 2
    assert "--older-than" in proc.stderr and "Traceback" not in proc.stderr


def test_prune_bad_age(shlax):
    proc = shlax("cache", "prune", "--older-than", "soon")
    assert proc.returncode == 2
    assert "is not like 12h" in proc.stderr


BIG = 8_000_000  # bytes of random data (incompressible) in the first step


def variants(tmp_path: Path, base: str, nonce: str) -> Path:
    """A big first step shared by two variants of a small second step: three cache layers, the
    big one the parent of the two others."""
    path = tmp_path / "shlax.toml"
    path.write_text(textwrap.dedent(f"""
        [targets.d{nonce}]
        base = "{base}"
        steps = [
          {{ run = ["sh", "-c", "head -c {BIG} /dev/urandom > /big-{nonce}"] }},
          {{ run = ["sh", "-c", "echo VARIANT > /small"] }},
        ]
    """))
    return path


def build_variants(shlax, path: Path, env: dict) -> None:
    text = path.read_text()
    for variant in ("a", "b"):
        path.write_text(text.replace("VARIANT", variant))
        proc = shlax("run", str(path), env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ls_gives_each_layer_its_own_size(tmp_path, shlax, busybox_image, nonce):
    build_variants(shlax, variants(tmp_path, busybox_image, nonce), {})
    from shlax_core.cache_cli import held

    ours = [r for r in json.loads(shlax("cache", "ls", "--json").stdout)["layers"] if r["target"] == f"d{nonce}"]
    big = [r for r in ours if r["step"].endswith("steps[0]")]
    small = [r for r in ours if not r["step"].endswith("steps[0]")]
    assert len(big) == 1 and len(small) == 4  # each variant: its step's layer and its image's configuration layer
    assert BIG <= big[0]["size"] < BIG + 200_000
    assert all(r["size"] < 100_000 for r in small), small
    assert len({r["layer"] for r in small}) == 4
    assert BIG <= held(ours) < BIG + 200_000  # not once per child, nor with the base's bytes


@pytest.fixture
def private_store(busybox_image: str):
    """An image store of its own (CONTAINERS_STORAGE_CONF), holding only the busybox base: what
    `cache du` reports there is this test's alone. Its layers are read through buildah, not the
    default store's index (the other way the backend sizes layers)."""
    base = Path(tempfile.mkdtemp(prefix="shlax-test-store-", dir="/var/tmp"))
    root, run = base / "root", base / "run"
    conf = base / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}"\nrunroot = "{run}"\n')
    try:
        subprocess.run(["buildah", "push", "--quiet", busybox_image, f"containers-storage:[overlay@{root}+{run}]"
                        f"{busybox_image}"], check=True, capture_output=True)
        yield {"CONTAINERS_STORAGE_CONF": str(conf)}
    finally:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(f"{base}/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_du_counts_a_shared_parent_once(tmp_path, shlax, busybox_image, nonce, private_store):
    build_variants(shlax, variants(tmp_path, busybox_image, nonce), private_store)
    proc = shlax("cache", "du", env=private_store)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("layers"))
    number, unit = line.split()[1:3]
    assert unit == "MB" and BIG / 2**20 - 0.05 <= float(number) < (BIG + 300_000) / 2**20, line  # one decimal
    assert "(5 layers)" in line  # the big step, and two per variant (its step, and its image's configuration)
