"""pip: wheelhouse-first installs in image builds, the user's pip cache shared, clear errors."""

from __future__ import annotations

import pytest

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
