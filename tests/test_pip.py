"""pip: wheelhouse-first installs in image builds, the user's pip cache shared, clear errors."""

from __future__ import annotations

import os

import pytest
from shlax_pip import action as pip_action

from conftest import events, statuses
from fixtures_caches import Host, in_image, output, remove_image

pytestmark = [pytest.mark.buildah, pytest.mark.slow]

APP = """
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "shlaxdemo"
    version = "0.1.0"
    dependencies = ["six"]
"""


def pip_recipe(host: Host, nonce: str, packages: list[str], image: str) -> None:
    listed = ", ".join(f'"{p}"' for p in packages)
    host.recipe(f"""
        [targets.t{nonce}]
        base = "debootstrap:bookworm"
        image = "{image}"
        steps = [
          {{ run = ["true", "{nonce}"] }},
          {{ apt = ["python3", "python3-venv"] }},
          {{ copy = {{ src = "app/", dest = "/app" }} }},
          {{ pip = {{ packages = [{listed}], venv = "/app/.venv" }} }},
        ]
    """)


def downloads(proc) -> list[str]:
    return [e["line"] for e in events(proc.stdout) if e["event"] == "output" and "Downloading" in e.get("line", "")]


def test_adding_a_package_fetches_only_it_and_fills_the_users_pip_cache(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    host.write("app/pyproject.toml", APP)
    host.write("app/shlaxdemo/__init__.py", "X = 1\n")
    image = f"localhost/shlax-test-pip-{nonce}"
    try:
        pip_recipe(host, nonce, ["/app", "idna"], image)
        first = host.run("run", "--json")
        assert first.returncode == 0, output(first)
        assert {w.split("-")[0] for w in host.wheels()} >= {"six", "idna", "setuptools"}
        assert not any(w.startswith("shlaxdemo") for w in host.wheels()), "the recipe's own project is not kept"

        # docopt is an sdist only: the container builds its wheel, which lands in the user's pip cache
        pip_recipe(host, nonce, ["/app", "idna", "docopt"], image)
        second = host.run("run", "--json")
        assert second.returncode == 0, output(second)
        assert statuses(second.stdout) == ["cached", "cached", "cached", "done"]
        fetched = downloads(second)
        assert fetched and all("docopt" in line for line in fetched), fetched
        assert any(w.startswith("docopt-") for w in host.wheels())
        assert list(host.pip_cache.glob("wheels/**/docopt-*.whl")), "the host user's pip cache gained the wheel"
        check = in_image(image, "/app/.venv/bin/python", "-c", "import docopt, idna, six, shlaxdemo")
        assert check.returncode == 0, check.stderr
        # no cache of any kind was baked into the layer
        assert in_image(image, "sh", "-c", "ls /run/shlax/wheelhouse /run/shlax/pip-cache 2>/dev/null | "
                                           "grep -c whl").stdout.strip() in ("", "0")

        # offline, a requirement never seen is named in the error
        pip_recipe(host, nonce, ["/app", "idna", "docopt", "attrs"], image)
        offline = host.run("run", "--offline", offline_net=True)
        assert offline.returncode == 1, output(offline)
        assert "offline: attrs is not in the pip wheelhouse" in output(offline)
    finally:
        remove_image(image)


def test_system_python_needs_an_explicit_choice(tmp_path):
    host = Host(tmp_path)
    host.recipe("""
        [targets.app]
        base = "debootstrap:bookworm"
        steps = [ { pip = ["six"] } ]
    """)
    proc = host.run("run")
    assert proc.returncode == 2, output(proc)
    assert "system = true" in output(proc) and "venv" in output(proc) and "shlax.toml:4" in output(proc)


@pytest.mark.skipif(pip_action.host_uv() is None and not os.environ.get("CI"), reason="uv is not installed")
def test_uv_and_pip_install_the_same_packages_and_leave_a_working_pip(tmp_path, nonce, debian_image):
    """The host's uv installs image steps' wheels when it runs in the image; pip is the fallback
    (SHLAX_PIP_INSTALLER=pip here). Both give the same distributions, and a venv whose pip works."""
    assert pip_action.host_uv() is not None, "CI installs uv (the test extra)"
    host = Host(tmp_path)
    host.write("app/pyproject.toml", APP)
    host.write("app/shlaxdemo/__init__.py", "X = 1\n")
    frozen = {}
    for installer in ("auto", "pip"):
        image = f"localhost/shlax-test-pip-{installer}-{nonce}"
        host.recipe(f"""
            [targets.t{nonce}]
            base = "debootstrap:bookworm"
            image = "{image}"
            steps = [
              {{ run = ["true", "{nonce}"] }},
              {{ apt = ["python3", "python3-venv"] }},
              {{ copy = {{ src = "app/", dest = "/app" }} }},
              {{ run = ["true", "{installer}"] }},
              {{ pip = {{ packages = ["/app", "idna"], venv = "/app/.venv" }} }},
            ]
        """)
        try:
            proc = host.run("run", "--json", env={"SHLAX_PIP_INSTALLER": installer})
            assert proc.returncode == 0, output(proc)
            argv_lines = " ".join(e.get("line", "") for e in events(proc.stdout) if e["event"] == "output")
            if installer == "auto":
                assert "Installed" in argv_lines, "uv's own summary: uv installed them"
            frozen[installer] = in_image(image, "/app/.venv/bin/pip", "list", "--format=freeze").stdout.split()
            assert in_image(image, "/app/.venv/bin/python", "-c", "import idna, six, shlaxdemo").returncode == 0
            # nothing of uv (binary, cache) in the image
            leftovers = in_image(image, "sh", "-c", "ls -A /run/shlax 2>/dev/null; true").stdout.strip()
            assert leftovers == "", leftovers
        finally:
            remove_image(image)
    assert frozen["auto"] == frozen["pip"]
    assert {line.split("==")[0] for line in frozen["pip"]} >= {"pip", "setuptools", "six", "idna", "shlaxdemo"}
