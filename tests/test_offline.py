"""Offline rebuilds: a warm recipe rebuilds from scratch with the network cut; builds share caches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import events, working_containers
from fixtures_caches import Host, in_image, output, remove_image

pytestmark = [pytest.mark.buildah, pytest.mark.slow]


def test_warm_recipe_rebuilds_everything_with_the_network_cut(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    host.write("app/pyproject.toml", """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "offlineapp"
        version = "0.1.0"
        dependencies = ["idna"]
    """)
    host.write("app/offlineapp/__init__.py", "")
    host.write("front/package.json", json.dumps({"name": "front", "version": "1.0.0",
                                                 "dependencies": {"is-number": "7.0.0"}}))
    image = f"localhost/shlax-test-offline-{nonce}"
    host.recipe(f"""
        [targets.t{nonce}]
        base = "debootstrap:bookworm"
        image = "{image}"
        steps = [
          {{ run = ["true", "{nonce}"] }},
          {{ apt = ["python3", "python3-venv", "nodejs", "npm"] }},
          {{ copy = {{ src = "app", dest = "/src/app" }} }},
          {{ copy = {{ src = "front", dest = "/src/front" }} }},
          {{ pip = {{ packages = ["/src/app", "six"], venv = "/opt/venv" }} }},
          {{ npm = {{ dir = "/src/front" }} }},
        ]
    """)
    try:
        warm = host.run("run")
        assert warm.returncode == 0, output(warm)
        debs, wheels = host.debs(), host.wheels()
        cold = host.run("run", "--offline", "--no-cache", "--json", offline_net=True)
        assert cold.returncode == 0, output(cold)
        lines = [e.get("line", "") for e in events(cold.stdout) if e["event"] == "output"]
        # nothing was fetched: no apt download, no pip download, no new file in any cache
        assert not [line for line in lines if line.startswith("Get:") or "Downloading" in line]
        assert host.debs() == debs and host.wheels() == wheels
        check = in_image(image, "sh", "-c", "/opt/venv/bin/python -c 'import offlineapp, idna, six' && "
                                            "node -e \"require('/src/front/node_modules/is-number')\"")
        assert check.returncode == 0, check.stderr
    finally:
        remove_image(image)


def test_three_builds_at_once_share_the_caches(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    procs = []
    for i in range(3):
        recipe = host.recipe(f"""
            [targets.t{nonce}{i}]
            base = "debootstrap:bookworm"
            steps = [
              {{ run = ["true", "{nonce}-{i}"] }},
              {{ apt = ["jq", "python3"] }},
              {{ run = ["python3", "-c", "import json"], caches = ["apt", "pip"] }},
            ]
        """, name=f"r{i}.toml")
        env = {**os.environ, "NO_COLOR": "1", **host.env}
        procs.append(subprocess.Popen([sys.executable, "-m", "shlax_core", "run", str(recipe)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = [(p.wait(timeout=1200), p.stdout.read()) for p in procs]
    for code, out in results:
        assert code == 0, out
    assert any(n.startswith("jq_") for n in host.debs())
    assert not working_containers(f"t{nonce}")
