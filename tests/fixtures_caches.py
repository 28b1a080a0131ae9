"""Helpers for the apt/pip/npm cache tests: isolated host caches and recipe files.

Every test gets its own shlax download cache and its own HOME/XDG_CACHE_HOME, so the pip and npm
caches the steps see are the test's (never the developer's) and "what was downloaded" is
measured from an empty start. Layers still live in the machine's image store: a nonce in the
first step makes them new to it.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path
from typing import Optional

from conftest import run_shlax


class Host:
    """One test's host caches plus a recipe folder, and the CLI run against them."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.xdg = root / "xdg"
        self.shlax_cache = root / "shlax-cache"
        self.project = root / "project"
        for path in (self.home, self.xdg, self.shlax_cache, self.project):
            path.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        env = {"HOME": str(self.home), "XDG_CACHE_HOME": str(self.xdg),
               "SHLAX_CACHE_DIR": str(self.shlax_cache)}
        return env

    def recipe(self, text: str, name: str = "shlax.toml") -> Path:
        path = self.project / name
        path.write_text(textwrap.dedent(text))
        return path

    def write(self, relative: str, text: str) -> Path:
        path = self.project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def run(self, *args: str, offline_net: bool = False, timeout: float = 1500,
            env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
        if offline_net:
            import sys

            full = {**os.environ, "NO_COLOR": "1", **self.env, **(env or {})}
            full.pop("CI", None)
            return subprocess.run(["unshare", "-n", "--", sys.executable, "-m", "shlax_core", *args],
                                  cwd=self.project, env=full, capture_output=True, text=True, timeout=timeout)
        return run_shlax(*args, cwd=self.project, env={**self.env, **(env or {})}, timeout=timeout)

    # what the host caches hold
    @property
    def apt_archives(self) -> Path:
        return self.shlax_cache / "downloads" / "apt" / "debian-bookworm" / "archives"

    def debs(self) -> set[str]:
        return {p.name for p in self.apt_archives.glob("*.deb")} if self.apt_archives.is_dir() else set()

    @property
    def wheelhouse(self) -> Path:
        return self.shlax_cache / "downloads" / "pip" / "wheelhouse"

    def wheels(self) -> set[str]:
        return {p.name for p in self.wheelhouse.glob("*.whl")} if self.wheelhouse.is_dir() else set()

    @property
    def pip_cache(self) -> Path:
        return self.xdg / "pip"

    @property
    def npm_cache(self) -> Path:
        return self.home / ".npm"


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def image_files(image: str, *paths: str) -> dict[str, list[str]]:
    """The entries of folders inside an image (mounted read-only for a moment)."""
    ctr = subprocess.run(["buildah", "from", "--pull-never", image], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        mnt = subprocess.run(["buildah", "mount", ctr], capture_output=True, text=True, check=True).stdout.strip()
        out = {}
        for path in paths:
            full = Path(mnt) / path.lstrip("/")
            out[path] = sorted(os.listdir(full)) if full.is_dir() else []
        return out
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


def in_image(image: str, *argv: str) -> subprocess.CompletedProcess:
    ctr = subprocess.run(["buildah", "from", "--pull-never", image], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        return subprocess.run(["buildah", "run", "--isolation", "chroot", ctr, "--", *argv],
                              capture_output=True, text=True)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


def remove_image(image: Optional[str]) -> None:
    if image:
        subprocess.run(["buildah", "rmi", "-f", image], capture_output=True)
