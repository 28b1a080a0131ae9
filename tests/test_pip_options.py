"""pip's options as step parameters (upgrade_deps, index_url, extra_index_url, constraints) on an
image build and on the local machine, and a quiet wheelhouse-only first try.

The extra index is real: a PEP 503 folder of one wheel made here, served over HTTP on loopback
(steps of a chroot-isolated build share the host's network), next to the real PyPI.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import re
import subprocess
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import events, statuses
from fixtures_caches import Host, in_image, output, remove_image

SYSTEM_PYTHON = "/usr/bin/python3"


class Index:
    """A simple index on 127.0.0.1 holding one pure-Python wheel, and the paths it was asked for."""

    def __init__(self, root: Path, name: str):
        self.name = name
        folder = root / "simple" / name
        folder.mkdir(parents=True)
        make_wheel(folder / f"{name}-1.0-py3-none-any.whl", name)
        self.asked: list[str] = []
        index = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args) -> None:
                index.asked.append(self.path)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"


def make_wheel(path: Path, name: str) -> None:
    files = {f"{name}/__init__.py": b"WHERE = 'the extra index'\n",
             f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             f"{name}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: shlax-tests\nRoot-Is-Purelib: true\n"
                                           b"Tag: py3-none-any\n"}
    record = "".join(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
                     for p, d in files.items()) + f"{name}-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
        z.writestr(f"{name}-1.0.dist-info/RECORD", record)


@pytest.fixture
def index(tmp_path: Path, nonce: str) -> Iterator[Index]:
    idx = Index(tmp_path / "index", f"shlaxidx{nonce}")
    yield idx
    idx.server.shutdown()


def lines(proc) -> list[str]:
    return [e.get("line", "") for e in events(proc.stdout) if e["event"] == "output"]


def version(freeze: str, name: str) -> str:
    found = re.search(rf"^{name}==(\S+)$", freeze, re.M | re.I)
    return found.group(1) if found else ""


SEEDED_PIP = "23.0.1"  # the pip Debian bookworm's ensurepip (python3-pip-whl) puts in a new venv


@pytest.mark.buildah
@pytest.mark.slow
def test_image_step_with_every_option(tmp_path, nonce, index, debian_image):
    """One pip step into a new venv: pip upgraded past the seeded one, six held back by a
    constraints file, a package only the extra index has. Another with index_url alone. A third
    with a requirements file the wheelhouse cannot satisfy yet: its wheelhouse-only try fails,
    and its "ERROR: Could not find a version" is not shown."""
    host = Host(tmp_path)
    host.write("app/requirements.txt", "six\n")
    host.write("app/constraints.txt", "six==1.16.0\n")
    host.write("app/more.txt", "idna\n")  # a requirements file hides idna from the host's check
    image = f"localhost/shlax-test-pip-options-{nonce}"
    host.recipe(f"""
        [targets.t{nonce}]
        base = "debootstrap:bookworm"
        image = "{image}"
        steps = [
          {{ run = ["true", "{nonce}"] }},
          {{ apt = ["python3", "python3-venv"] }},
          {{ copy = {{ src = "app/", dest = "/app" }} }},
          {{ pip = {{ packages = ["{index.name}"], requirements = ["/app/requirements.txt"], venv = "/venv",
                     constraints = ["/app/constraints.txt"], extra_index_url = ["{index.url}"],
                     upgrade_deps = true }} }},
          {{ pip = {{ packages = ["{index.name}"], venv = "/only", index_url = "{index.url}",
                     prefer_offline = false }} }},
          {{ pip = {{ requirements = ["/app/more.txt"], venv = "/more" }} }},
        ]
    """)
    try:
        proc = host.run("run", "--json")
        assert proc.returncode == 0, output(proc)
        assert statuses(proc.stdout)[-3:] == ["done", "done", "done"]
        assert not [line for line in lines(proc) if line.startswith("ERROR:")], lines(proc)
        assert any("resolving against the index" in line for line in lines(proc))  # the third step tried
        assert in_image(image, "/more/bin/python", "-c", "import idna").returncode == 0
        freeze = in_image(image, "/venv/bin/pip", "list", "--format=freeze").stdout
        assert version(freeze, "six") == "1.16.0", freeze
        assert version(freeze, index.name) == "1.0", freeze
        assert version(freeze, "pip") not in ("", SEEDED_PIP), freeze
        assert any(p.startswith(f"/simple/{index.name}") for p in index.asked), index.asked
        # index_url alone: the package came from it, and the venv has the seeded pip (no upgrade_deps)
        only = in_image(image, "/only/bin/pip", "list", "--format=freeze").stdout
        assert version(only, index.name) == "1.0" and version(only, "pip") == SEEDED_PIP, only
        # the wheels of both indexes joined the wheelhouse: an offline rebuild of the step works
        assert any(w.startswith(index.name) for w in host.wheels())
    finally:
        remove_image(image)


def test_index_url_replaces_pypi_on_the_local_machine(tmp_path, index):
    """six is on PyPI, not on our index: with index_url, pip asks ours and fails clearly."""
    host = Host(tmp_path)
    venv = tmp_path / "venv"
    host.recipe(f"""
        [targets.here]
        backend = "local"
        steps = [ {{ pip = {{ packages = ["six"], venv = "{venv}", python = "{SYSTEM_PYTHON}",
                              index_url = "{index.url}" }} }} ]
    """)
    proc = host.run("run", env={"PIP_CONFIG_FILE": "/dev/null", "PIP_FIND_LINKS": str(tmp_path / "none")})
    assert proc.returncode == 1, output(proc)
    assert "pip found no distribution for six" in output(proc)
    assert any(p.startswith("/simple/six") for p in index.asked), index.asked


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="needs Debian's python3")
def test_local_step_with_every_option(tmp_path, index):
    host = Host(tmp_path)
    host.write("constraints.txt", "six==1.16.0\n")
    venv = tmp_path / "venv"
    host.recipe(f"""
        [targets.here]
        backend = "local"
        steps = [ {{ pip = {{ packages = ["six", "{index.name}"], venv = "{venv}", python = "{SYSTEM_PYTHON}",
                              constraints = ["{host.project / 'constraints.txt'}"],
                              extra_index_url = ["{index.url}"], upgrade_deps = true }} }} ]
    """)
    first = host.run("run", "--json")
    assert first.returncode == 0, output(first)
    assert statuses(first.stdout) == ["changed"]
    freeze = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True,
                            text=True).stdout
    assert version(freeze, "six") == "1.16.0", freeze
    assert version(freeze, index.name) == "1.0", freeze
    assert version(freeze, "pip") not in ("", SEEDED_PIP), freeze
    again = host.run("run", "--json")
    assert again.returncode == 0 and statuses(again.stdout) == ["ok"], output(again)


@pytest.mark.parametrize("param, value, fragment", [
    ("index_url", '"--index-url=x"', "is not an index URL"),
    ("extra_index_url", '["pypi.org/simple"]', "is not an index URL"),
    ("constraints", '["-c"]', "options are not requirements"),
    ("upgrade_deps", '"yes"', "must be a boolean"),
])
def test_bad_option_values_are_recipe_errors(tmp_path, param, value, fragment):
    host = Host(tmp_path)
    host.recipe(f"""
        [targets.here]
        backend = "local"
        steps = [
          {{ run = ["touch", "ran"] }},
          {{ pip = {{ packages = ["six"], venv = "/tmp/v", {param} = {value} }} }},
        ]
    """)
    proc = host.run("run")
    assert proc.returncode == 2, output(proc)
    assert fragment in output(proc) and "shlax.toml:6" in output(proc), output(proc)
    assert not (host.project / "ran").exists()


def test_options_left_at_their_defaults_keep_the_steps_key():
    """Recipes written before these parameters keep their layers."""
    from shlax_core.params import build
    from shlax_pip.action import Pip, PipParams

    step = Pip.__new__(Pip)
    step.params = build(PipParams, {"packages": ["six"], "venv": "/v"}, path="p")
    assert set(step.key_params()) == {"packages", "requirements", "editable", "venv", "system", "python",
                                      "prefer_offline"}
    step.params = build(PipParams, {"packages": ["six"], "venv": "/v", "constraints": ["/c"]}, path="p")
    assert step.key_params()["constraints"] == ["/c"]
