"""pip on host backends: the venv a step creates is the one `python -m venv` makes, pip included.

shlax seeds pip and setuptools into a new venv with the system's byte-compiled pip instead of
ensurepip's pip-inside-a-wheel (half the CPU, see docs/caches.md): these tests hold it to giving
the user the same venv, with a pip that works, and to falling back to `-m venv` where it cannot.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import events, run_shlax, statuses

#: real venvs, pip and the package index
pytestmark = pytest.mark.slow

SYSTEM_PYTHON = "/usr/bin/python3"


def tree(venv: Path) -> set[str]:
    """Every path of a venv but byte-code (whose embedded mtimes differ run to run) and the
    scripts' and activators' own path."""
    return {str(p.relative_to(venv)) for p in venv.rglob("*") if "__pycache__" not in p.parts}


def local_recipe(path: Path, venv: Path, python: str = SYSTEM_PYTHON) -> Path:
    path.write_text(textwrap.dedent(f"""
        [targets.here]
        backend = "local"
        steps = [ {{ pip = {{ packages = ["six"], venv = "{venv}", python = "{python}" }} }} ]
    """))
    return path


def freeze(venv: Path) -> list[str]:
    out = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.split())


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="needs Debian's python3")
def test_a_new_venv_is_what_python_m_venv_makes_with_a_working_pip(tmp_path):
    probe = subprocess.run([SYSTEM_PYTHON, "-m", "pip", "--version"], capture_output=True, text=True)
    assert probe.returncode == 0, "the test bed has python3-pip (./dev setup installs it)"
    venv = tmp_path / "venv"
    recipe = local_recipe(tmp_path / "shlax.toml", venv)
    first = run_shlax("run", str(recipe), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["changed"]
    lines = [e.get("line", "") for e in events(first.stdout) if e["event"] == "output"]
    assert any(line.startswith("Successfully installed pip-") for line in lines), "the system's pip seeded it"
    reference = tmp_path / "reference"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(reference)], check=True)
    subprocess.run([str(reference / "bin" / "pip"), "install", "-q", "six"], check=True, capture_output=True)
    assert freeze(venv) == freeze(reference)
    assert tree(venv) == tree(reference)
    cfg = {line.split(" = ")[0]: line for line in (venv / "pyvenv.cfg").read_text().splitlines()}
    ref = {line.split(" = ")[0]: line for line in (reference / "pyvenv.cfg").read_text().splitlines()}
    assert cfg["command"] == ref["command"].replace(str(reference), str(venv))  # no --without-pip in it
    assert (venv / "bin" / "pip").read_text().splitlines()[0] == f"#!{venv}/bin/python3"
    # the user's pip works in it
    use = subprocess.run([str(venv / "bin" / "pip"), "show", "six"], capture_output=True, text=True)
    assert use.returncode == 0 and "Name: six" in use.stdout, use.stderr
    again = run_shlax("run", str(recipe))
    assert again.returncode == 0 and " OK " in again.stdout, again.stdout


def test_without_a_system_pip_the_venv_comes_from_ensurepip(tmp_path):
    """A Python with no pip of its own (this venv's, made --without-pip) still gets a venv with pip."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    venv = tmp_path / "venv"
    recipe = local_recipe(tmp_path / "shlax.toml", venv, python=str(bare / "bin" / "python"))
    proc = run_shlax("run", str(recipe), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any(line.startswith("six==") for line in freeze(venv))
    assert any(line.startswith("pip==") for line in freeze(venv))
