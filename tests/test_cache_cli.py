"""`shlax cache ls | du | prune` on real layers."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

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
