#!/usr/bin/env python3
"""The same recipe built by root and by an ordinary user (rootless), side by side.

root builds in the machine's store (overlay under /var/lib/containers). The rootless user
(``shlax-rootless``, made by .ci/setup.d/50-rootless-user.sh) builds in a fresh HOME of its own
under /var/tmp, once with each storage driver asked for (``--drivers vfs,overlay``: its
~/.config/containers/storage.conf; vfs is what buildah picks by itself on a machine where
/dev/fuse is root's only; overlay is the kernel's own, unprivileged since Linux 5.13). Both get
their base image from root's store (exported as a docker archive), so every build starts from the
same image ID.

Each round uses a fresh nonce, so every step runs: ``build`` is a build of 4 steps (a command, a
copy of a small tree with an owner, 8 MB written, a command with the pip cache mounted), the
download caches warm; ``unchanged`` is the same command again (the fast path: all cached). With
``--debian``, a second recipe on root's ``debootstrap:bookworm`` base installs one apt package
(``hello``) with the apt cache (the first round fills each user's apt cache and is not counted
when there are several rounds).

Prints the median seconds of the rounds, the rootless/root ratios, versions and load.
Usage: python bench/bench_rootless.py [--rounds 3] [--drivers vfs,overlay] [--debian]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import fixtures_rootless  # noqa: E402
import image_sweep  # noqa: E402

BUSYBOX = "localhost/shlax-test-busybox:latest"

BUSYBOX_RECIPE = """
[targets.bench]
base = "{base}"
image = "localhost/bench-rootless-{nonce}"
steps = [
  {{ run = ["sh", "-c", "echo {nonce} > /nonce"] }},
  {{ copy = {{ src = "tree/", dest = "/srv/tree/", owner = "1000:1000" }} }},
  {{ run = ["sh", "-c", "dd if=/dev/urandom of=/blob bs=1M count=8 2>/dev/null"] }},
  {{ run = ["sh", "-c", "ls $PIP_CACHE_DIR > /dev/null; cat /nonce > /done"], caches = ["pip"] }},
]
"""

DEBIAN_RECIPE = """
[targets.bench]
base = "debootstrap:bookworm"
image = "localhost/bench-rootless-deb-{nonce}"
steps = [
  {{ run = ["sh", "-c", "echo {nonce} > /nonce"] }},
  {{ apt = ["hello"] }},
]
"""


def write(folder: Path, text: str, nonce: str, base: str = BUSYBOX) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tree = folder / "tree"
    tree.mkdir(exist_ok=True)
    for i in range(50):
        (tree / f"f{i}.txt").write_text(f"file {i}\n" * 20)
    path = folder / "shlax.toml"
    path.write_text(text.format(base=base, nonce=nonce))
    return path


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv[-4:])}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return elapsed


def versions() -> list[str]:
    out = []
    for argv in (["buildah", "--version"], [sys.executable, "--version"], ["uname", "-r"]):
        out.append(subprocess.run(argv, capture_output=True, text=True).stdout.strip())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--drivers", default="vfs,overlay", help="rootless storage drivers to measure")
    ap.add_argument("--debian", action="store_true", help="also a Debian recipe with an apt step")
    args = ap.parse_args()

    recipes = [("busybox, 4 steps", BUSYBOX_RECIPE, BUSYBOX)]
    if args.debian:
        recipes.append(("debian, apt hello", DEBIAN_RECIPE, "debootstrap:bookworm"))
    started = time.time()
    loads = [("start", os.getloadavg())]
    print("versions:", "; ".join(versions()))
    work = Path(tempfile.mkdtemp(prefix="bench-rootless-"))
    root_cache = work / "root-cache"
    root_env = {**os.environ, "SHLAX_CACHE_DIR": str(root_cache), "NO_COLOR": "1"}
    users = {d: fixtures_rootless.make(driver=d) for d in args.drivers.split(",") if d}
    nonces: list[str] = []
    results: dict[tuple[str, str, str], list[float]] = {}
    try:
        deb_base = None
        if args.debian:  # root's base, built once with shlax (the name hashes debootstrap's inputs)
            probe = write(work / "probe", DEBIAN_RECIPE, "probe")
            timed([sys.executable, "-m", "shlax_core", "run", str(probe)], env=root_env, cwd=ROOT)
            deb_base = next(n for i in json.loads(subprocess.run(["buildah", "images", "--json"], capture_output=True,
                                                                 text=True).stdout)
                            for n in i.get("names") or [] if n.startswith("localhost/shlax-base:debootstrap-bookworm-"))
        for user in users.values():
            user.give_image(BUSYBOX)
            if deb_base:
                user.give_image(deb_base)
        for label, text, _base in recipes:
            warmup = 1 if (text is DEBIAN_RECIPE and args.rounds > 1) else 0
            for rnd in range(args.rounds + warmup):
                nonce = uuid.uuid4().hex[:12]
                nonces.append(nonce)
                recipe = write(work / f"root-{nonce}", text, nonce)
                who = "root"
                build = timed([sys.executable, "-m", "shlax_core", "run", str(recipe)], env=root_env, cwd=ROOT)
                again = timed([sys.executable, "-m", "shlax_core", "run", str(recipe)], env=root_env, cwd=ROOT)
                if rnd >= warmup:
                    results.setdefault((label, who, "build"), []).append(build)
                    results.setdefault((label, who, "unchanged"), []).append(again)
                for driver, user in users.items():
                    folder = user.workdir(f"{label[:6]}-{nonce}")
                    recipe = write(folder, text, nonce)
                    user.own(folder)
                    who = f"rootless {driver}"
                    argv = user.argv(*user.python, "-m", "shlax_core", "run", str(recipe))
                    build = timed(argv, cwd=user.base)
                    again = timed(argv, cwd=user.base)
                    if rnd >= warmup:
                        results.setdefault((label, who, "build"), []).append(build)
                        results.setdefault((label, who, "unchanged"), []).append(again)
                loads.append((f"{label} round {rnd + 1}", os.getloadavg()))
    finally:
        for user in users.values():
            user.destroy()
        image_sweep.sweep_session(started, nonces, image_sweep.session_layers(root_cache) if root_cache.exists() else set())
        subprocess.run(["rm", "-rf", str(work)])
    print(f"\nmedian seconds of {args.rounds} round(s); every step runs in 'build' (a new nonce), "
          "'unchanged' is the same command again")
    print(f"{'recipe':<20} {'who':<18} {'build':>8} {'x root':>7} {'unchanged':>10} {'x root':>7}")
    for label, _text, _base in recipes:
        root_build = statistics.median(results[(label, "root", "build")])
        root_again = statistics.median(results[(label, "root", "unchanged")])
        for who in ["root", *(f"rootless {d}" for d in users)]:
            b = statistics.median(results[(label, who, "build")])
            a = statistics.median(results[(label, who, "unchanged")])
            print(f"{label:<20} {who:<18} {b:8.2f} {b / root_build:6.2f}x {a:10.2f} {a / root_again:6.2f}x")
    print("\nall rounds:", {f"{k[0]} / {k[1]} / {k[2]}": [round(x, 2) for x in v] for k, v in results.items()})
    print("load (1/5/15 min):", "; ".join(f"{name}: {' '.join(f'{x:.2f}' for x in load)}" for name, load in loads),
          f"; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
