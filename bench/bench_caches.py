#!/usr/bin/env python3
"""Download caches: shlax vs ``buildah bud --layers`` with ``RUN --mount=type=cache`` (sharing=locked).

The original Shlax caching walkthrough (apt packages, copy the project, pip install it), built
both ways from the same local Debian base (made by shlax's ``debootstrap:bookworm`` source), in
one run, from empty caches:

  cold       first build
  unchanged  nothing changed
  add-apt    one more apt package ("most")
  add-pip    one more pip requirement ("django")
  no-cache   rebuild everything (--no-cache), online
  offline    rebuild everything (--no-cache) with the network cut (unshare -n)

For each: wall time, the ratio shlax/bud, and bytes downloaded (parsed from apt's "Fetched" and
pip's "Downloading" lines). ``--npm`` adds nodejs/npm and an npm project (slow: nodejs alone is
~200 Debian packages to unpack on every apt rebuild, for both tools).

The machine's load average before each scenario and the tools' versions are printed with the
table. ``--pip-installer pip`` makes shlax install wheels with pip even where the host has uv
(``SHLAX_PIP_INSTALLER``), to measure one against the other.

Usage: python bench/bench_caches.py [--npm] [--keep DIR] [--pip-installer auto|pip]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import image_sweep  # noqa: E402  (what the scenarios build is removed at the end)

BASE = "localhost/shlax-bench-debian:latest"
LOADS: list[tuple[str, tuple[float, float, float]]] = []
UNITS = {"B": 1, "kB": 1000, "KB": 1024, "MB": 1000 ** 2, "GB": 1000 ** 3}


def sh(argv, env=None, cwd=None, net=True):
    argv = [str(a) for a in argv]
    if not net:
        argv = ["unshare", "-n", "--", *argv]
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    return time.monotonic() - started, proc


def downloaded(text: str) -> int:
    total = 0
    for num, unit in re.findall(r"Fetched ([\d.,]+) (B|kB|MB|GB)", text):
        total += int(float(num.replace(",", "")) * UNITS[unit])
    for num, unit in re.findall(r"Downloading \S+ \(([\d.]+) (kB|MB|B)\)", text):
        total += int(float(num) * UNITS[unit])
    return total


def human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


class Bench:
    def __init__(self, work: Path, npm: bool, installer: str = "auto"):
        self.work = work
        self.npm = npm
        self.apt = ["python3", "python3-venv", "unzip", "findutils"] + (["nodejs", "npm"] if npm else [])
        self.pip = ["/app"]
        # a first step unique to this run, for both tools: "cold" means no layer of a previous run
        self.nonce = uuid.uuid4().hex[:12]
        self.env = {**os.environ, "NO_COLOR": "1", "BUILDAH_ISOLATION": "chroot",
                    "SHLAX_CACHE_DIR": str(work / "shlax-cache"), "HOME": str(work / "home"),
                    "XDG_CACHE_HOME": str(work / "xdg"), "TMPDIR": str(work / "tmp"),
                    "SHLAX_PIP_INSTALLER": installer}
        for d in ("home", "xdg", "tmp", "shlax", "bud"):
            (work / d).mkdir(parents=True, exist_ok=True)
        for root in (work / "shlax", work / "bud"):
            app = root / "app"
            (app / "benchapp").mkdir(parents=True, exist_ok=True)
            (app / "benchapp" / "__init__.py").write_text("VERSION = 1\n")
            (app / "pyproject.toml").write_text(textwrap.dedent("""
                [build-system]
                requires = ["setuptools>=61"]
                build-backend = "setuptools.build_meta"
                [project]
                name = "benchapp"
                version = "0.1.0"
                dependencies = ["six"]
            """))
            if npm:
                (root / "front").mkdir(exist_ok=True)
                (root / "front" / "package.json").write_text(json.dumps(
                    {"name": "front", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}))
        shutil.copy(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt",
                    work / "bud" / "host-ca.crt")

    def base(self) -> None:
        recipe = self.work / "base.toml"
        recipe.write_text(f'[targets.base]\nbase = "debootstrap:bookworm"\nimage = "{BASE}"\nsteps = []\n')
        _, proc = sh([sys.executable, "-m", "shlax_core", "run", recipe], env=self.env)
        if proc.returncode:
            sys.exit(f"could not build the base image:\n{proc.stdout}{proc.stderr}")

    def write(self) -> None:
        q = lambda items: ", ".join(f'"{i}"' for i in items)  # noqa: E731
        npm_copy = '  { copy = { src = "front/", dest = "/front" } },\n  { npm = { dir = "/front" } },\n' \
            if self.npm else ""
        (self.work / "shlax" / "shlax.toml").write_text(
            f'[targets.bench]\nbase = "{BASE}"\nimage = "localhost/shlax-bench-shlax"\nsteps = [\n'
            f'  {{ run = ["true", "{self.nonce}"] }},\n'
            f"  {{ apt = [{q(self.apt)}] }},\n"
            '  { copy = { src = "app/", dest = "/app" } },\n'
            f'  {{ pip = {{ packages = [{q(self.pip)}], venv = "/app/.venv" }} }},\n{npm_copy}]\n')
        apt_mounts = ("--mount=type=cache,target=/var/cache/apt,sharing=locked "
                      "--mount=type=cache,target=/var/lib/apt/lists,sharing=locked")
        npm_part = ("COPY front /front\nRUN --mount=type=cache,target=/root/.npm "
                    "--mount=type=bind,source=host-ca.crt,target=/run/host-ca.crt "
                    "cd /front && NODE_EXTRA_CA_CERTS=/run/host-ca.crt npm install --prefer-offline "
                    "--no-audit --no-fund\n") if self.npm else ""
        (self.work / "bud" / "Containerfile").write_text(
            f"FROM {BASE}\n"
            f"RUN true {self.nonce}\n"
            f"RUN {apt_mounts} apt-get update && apt-get install -y --no-install-recommends {' '.join(self.apt)}\n"
            "COPY app /app\n"
            "RUN --mount=type=cache,target=/root/.cache/pip "
            "--mount=type=bind,source=host-ca.crt,target=/run/host-ca.crt "
            "python3 -m venv /app/.venv && PIP_CERT=/run/host-ca.crt /app/.venv/bin/pip install "
            f"{' '.join(self.pip)}\n{npm_part}")

    def shlax(self, *extra: str, net: bool = True):
        return sh([sys.executable, "-m", "shlax_core", "run", *extra], env=self.env, cwd=self.work / "shlax", net=net)

    def bud(self, *extra: str, net: bool = True):
        return sh(["buildah", "bud", "--layers", "--isolation", "chroot", *extra, "-t", "localhost/shlax-bench-bud",
                   "."], env=self.env, cwd=self.work / "bud", net=net)


def run_scenarios(b: Bench, work: Path) -> list[tuple]:
    b.base()
    rows = []
    scenarios = [
        ("cold", lambda: None, (), True),
        ("unchanged", lambda: None, (), True),
        ("add-apt", lambda: b.apt.append("most"), (), True),
        ("add-pip", lambda: b.pip.append("django"), (), True),
        ("no-cache", lambda: None, ("--no-cache",), True),
        ("offline", lambda: None, ("--no-cache",), False),
    ]
    for name, change, extra, net in scenarios:
        LOADS.append((name, os.getloadavg()))
        change()
        b.write()
        s_time, s_proc = b.shlax(*extra, *(() if net else ("--offline",)), net=net)
        d_time, d_proc = b.bud(*extra, net=net)
        rows.append((name, s_time, s_proc.returncode, downloaded(s_proc.stdout + s_proc.stderr),
                     d_time, d_proc.returncode, downloaded(d_proc.stdout + d_proc.stderr)))
        for label, proc in (("shlax", s_proc), ("bud", d_proc)):
            (work / f"{name}.{label}.log").write_text(proc.stdout + proc.stderr)
    return rows


def versions(installer: str) -> str:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "none"
        return out.splitlines()[0] if out else "?"

    from shlax_core import __version__
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    pip = "pip" if installer == "pip" or not uv else first_line([uv, "--version"])
    return f"shlax {__version__} (image pip steps install with {pip}), {first_line(['buildah', '--version'])}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npm", action="store_true", help="add nodejs/npm and an npm project")
    parser.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    parser.add_argument("--pip-installer", default="auto", choices=["auto", "pip"],
                        help="SHLAX_PIP_INSTALLER for shlax: auto (uv when the host has it) or pip")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="shlax-bench-caches-"))
    b = Bench(work, args.npm, args.pip_installer)
    started = time.time()
    try:
        rows = run_scenarios(b, work)
    finally:
        subprocess.run(["buildah", "rmi", "localhost/shlax-bench-shlax", "localhost/shlax-bench-bud", BASE],
                       capture_output=True)
        image_sweep.sweep_session(started, [b.nonce], image_sweep.session_layers(work / "shlax-cache"))
    print(f"\nshlax vs buildah bud --layers (RUN --mount=type=cache), logs in {work}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores; versions: {versions(args.pip_installer)}")
    print("load average (1, 5, 15 min) before each scenario: "
          + "; ".join(f"{what} {a:.1f} {b_:.1f} {c:.1f}" for what, (a, b_, c) in LOADS) + "\n")
    print(f"{'scenario':<10} {'shlax':>8} {'ok':>3} {'downloaded':>11}   {'bud':>8} {'ok':>3} {'downloaded':>11}"
          f"   {'shlax/bud':>9}")
    for name, st, sr, sd, dt, dr, dd in rows:
        print(f"{name:<10} {st:>7.1f}s {'yes' if sr == 0 else 'NO':>3} {human(sd):>11}   {dt:>7.1f}s "
              f"{'yes' if dr == 0 else 'NO':>3} {human(dd):>11}   {st / dt if dt else 0:>8.2f}x")


if __name__ == "__main__":
    main()
