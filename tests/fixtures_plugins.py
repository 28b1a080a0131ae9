"""Installs the test plugin distributions of tests/plugins/ into the running venv, for real.

Non-editable (``pip install --no-deps``), so entry-point metadata is exercised as users get it.
Idempotent and safe when several pytest sessions share the venv: a file lock serialises the
installs, and a distribution is reinstalled only when its installed files differ from the
sources. CI needs nothing special: the first test that asks for ``test_plugins`` installs them.

The names are chosen to disturb nobody: action ``hello``/``greet``, command ``hello``, action
``broken`` (see tests/plugins/README.md). None of them adds ``shlax.hooks``, which every run loads.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

PLUGINS = Path(__file__).parent / "plugins"
DISTS = ("shlax-plugin-hello", "shlax-plugin-broken", "shlax-plugin-hello-clash")


def _up_to_date(name: str) -> bool:
    """Installed, and every source file of it is installed with the same bytes."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    src = PLUGINS / name
    for path in src.rglob("*.py"):
        installed = Path(dist.locate_file(path.relative_to(src)))
        if not installed.is_file() or installed.read_bytes() != path.read_bytes():
            return False
    meta = (src / "pyproject.toml").read_text()
    version = next(line.split("=")[1].strip().strip('"') for line in meta.splitlines()
                   if line.startswith("version"))
    return dist.version == version and len(list(dist.entry_points)) == meta.count(' = "shlax_test_')


def _can_build_offline() -> bool:
    """setuptools with bdist_wheel (built in since 70.1, or from `wheel`) is in the venv already;
    otherwise pip builds in isolation and fetches setuptools from the index."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    return (importlib.util.find_spec("wheel") is not None
            or importlib.util.find_spec("setuptools.command.bdist_wheel") is not None)


def install(names: tuple[str, ...] = DISTS) -> None:
    lock = Path(sys.prefix) / ".shlax-test-plugins.lock"
    with FileLock(str(lock)):
        stale = [n for n in names if not _up_to_date(n)]
        if not stale:
            return
        with tempfile.TemporaryDirectory(prefix="shlax-test-plugins-") as tmp:
            copies = []
            for name in stale:  # build from a copy: setuptools leaves build/ and egg-info behind
                shutil.copytree(PLUGINS / name, Path(tmp) / name)
                copies.append(str(Path(tmp) / name))
            argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall"]
            if _can_build_offline():
                argv.append("--no-build-isolation")
            subprocess.run([*argv, *copies], check=True)
        importlib.invalidate_caches()


@pytest.fixture(scope="session")
def test_plugins() -> tuple[str, ...]:
    """The test distributions, installed in this venv (the real entry-point path)."""
    install()
    return DISTS
