"""npm: the user's npm cache shared with build containers, prefer-offline, clear errors."""

from __future__ import annotations

import json

import pytest

from conftest import statuses
from fixtures_caches import Host, in_image, output, remove_image

pytestmark = [pytest.mark.buildah, pytest.mark.slow]


def npm_recipe(host: Host, nonce: str, deps: dict[str, str], image: str) -> None:
    host.write("front/package.json", json.dumps({"name": "front", "version": "1.0.0", "dependencies": deps}))
    host.recipe(f"""
        [targets.t{nonce}]
        base = "debootstrap:bookworm"
        image = "{image}"
        steps = [
          {{ apt = ["nodejs", "npm"] }},
          {{ copy = {{ src = "front/", dest = "/front" }} }},
          {{ run = ["true", "{nonce}"] }},
          {{ npm = {{ dir = "/front" }} }},
        ]
    """)


def cached_tarballs(host: Host) -> set[str]:
    index = host.npm_cache / "_cacache" / "index-v5"
    keys = set()
    for path in index.rglob("*") if index.is_dir() else []:
        if path.is_file():
            for line in path.read_text().splitlines():
                if ".tgz" in line:
                    keys.add(json.loads(line.split("\t", 1)[1])["key"].rsplit("/", 1)[-1])
    return keys


def test_adding_a_dependency_fetches_only_it(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    image = f"localhost/shlax-test-npm-{nonce}"
    try:
        npm_recipe(host, nonce, {"is-number": "7.0.0"}, image)
        first = host.run("run", "--json")
        assert first.returncode == 0, output(first)
        assert cached_tarballs(host) == {"is-number-7.0.0.tgz"}
        npm_recipe(host, nonce, {"is-number": "7.0.0", "is-odd": "3.0.1"}, image)
        second = host.run("run", "--json")
        assert second.returncode == 0, output(second)
        assert statuses(second.stdout)[-1] == "done"
        # is-odd 3 needs is-number 6: two new tarballs, is-number 7 came from the cache
        assert cached_tarballs(host) == {"is-number-7.0.0.tgz", "is-odd-3.0.1.tgz", "is-number-6.0.0.tgz"}
        ok = in_image(image, "node", "-e", "require('/front/node_modules/is-odd')")
        assert ok.returncode == 0, ok.stderr
        assert in_image(image, "ls", "/root/.npm").returncode != 0, "npm's cache was not baked into the layer"
    finally:
        remove_image(image)


def test_missing_package_json_is_a_clear_failure(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    host.recipe(f"""
        [targets.t{nonce}]
        base = "debootstrap:bookworm"
        steps = [
          {{ run = ["true", "{nonce}"] }},
          {{ npm = {{ dir = "/nowhere" }} }},
        ]
    """)
    proc = host.run("run")
    assert proc.returncode == 1, output(proc)
    assert "no package.json in /nowhere" in output(proc)
