#!/usr/bin/env python3
"""Layer cache: shlax vs `buildah bud --layers`, side by side, on the same builds.

Rounds (each with a fresh nonce so the cold build is really cold for both):
  cold       first build of a 3-step recipe / Containerfile
  unchanged  the same build again
  changed    one copied file's content changes (same size), then rebuild
  20 steps   first build of 20 small steps (10 `run`, 10 `copy` of one small file each): the
             per-step overhead of each tool, printed per step too

Both tools run steps with chroot isolation (BUILDAH_ISOLATION=chroot, as this machine needs) and
keep their temporary files in the round's folder. With --private-store both use an image store of
their own (buildah --root/--runroot, the recipe's root/runroot), holding only the base: other
sessions sharing the machine's store then neither make the index bigger nor hold its lock. Prints the machine's load, the tools'
versions, the median of each case over --rounds and the ratio shlax/bud (lower is better).
Usage: python bench/bench_layers.py [--rounds 3] [--base IMAGE] [--only 3step|20steps] [--private-store]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import image_sweep  # noqa: E402  (what the rounds build is removed at the end)

BUSYBOX = "localhost/shlax-test-busybox:latest"

CONTAINERFILE = """FROM {base}
RUN sh -c "mkdir -p /data && echo {nonce} > /data/nonce"
COPY app/ /app/
RUN sh -c "ls /app > /data/listing"
"""

RECIPE = """[targets.bench]
base = "{base}"{store}
image = "localhost/bench-shlax-{nonce}"
steps = [
  {{ run = ["sh", "-c", "mkdir -p /data && echo {nonce} > /data/nonce"] }},
  {{ copy = {{ src = "app/", dest = "/app/" }} }},
  {{ run = ["sh", "-c", "ls /app > /data/listing"] }},
]
"""


STEPS = 20

CONTAINERFILE_20 = "FROM {base}\n" + "".join(
    f'RUN sh -c "echo {{nonce}}-{i} > /step{i}"\nCOPY small{i}.txt /copied/small{i}.txt\n' for i in range(STEPS // 2))

RECIPE_20 = """[targets.bench]
base = "{base}"{store}
image = "localhost/bench-shlax20-{nonce}"
steps = [
""" + "".join(
    f'  {{{{ run = ["sh", "-c", "echo {{nonce}}-{i} > /step{i}"] }}}},\n'
    f'  {{{{ copy = {{{{ src = "small{i}.txt", dest = "/copied/small{i}.txt" }}}} }}}},\n' for i in range(STEPS // 2)) + "]\n"

#: the private store (root, runroot) when --private-store is given
STORE: list[str] = []

TARGETS = {"cold": 0.9, "unchanged": 1.0, "changed file": 0.7, f"{STEPS} steps cold": 0.8}


#: what a tool says when another process sharing the image store removed an image or layer while
#: it looked at it (other test sessions sweep their own images): the run is repeated
STORE_RACES = ("layer not known", "image not known", "identifier is not an image")


def timed(argv: list[str], cwd: Path, env: dict) -> float:
    for attempt in range(3):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode == 0:
            return elapsed
        if not any(race in proc.stdout + proc.stderr for race in STORE_RACES):
            break
        print(f"retrying after a race on the shared image store: {' '.join(argv[:3])}", file=sys.stderr)
    sys.exit(f"failed: {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")


def make_context(work: Path, base: str, nonce: str) -> None:
    app = work / "app"
    app.mkdir(parents=True)
    for i in range(200):
        (app / f"file{i:03d}.txt").write_text(f"content {i}\n" * 20)
    (work / "Containerfile").write_text(CONTAINERFILE.format(base=base, nonce=nonce))
    (work / "shlax.toml").write_text(RECIPE.format(base=base, nonce=nonce, store=store_keys()))


def make_context_20(work: Path, base: str, nonce: str) -> None:
    work.mkdir(parents=True, exist_ok=True)
    for i in range(STEPS // 2):
        (work / f"small{i}.txt").write_text(f"small file {i} of {nonce}\n")
    (work / "Containerfile").write_text(CONTAINERFILE_20.format(base=base, nonce=nonce))
    (work / "shlax.toml").write_text(RECIPE_20.format(base=base, nonce=nonce, store=store_keys()))


def store_keys() -> str:
    return f'\nroot = "{STORE[0]}"\nrunroot = "{STORE[1]}"' if STORE else ""


def private_store(base: str) -> None:
    """A store of our own under /var/tmp holding only ``base``."""
    top = tempfile.mkdtemp(prefix="shlax-bench-store-", dir="/var/tmp")
    STORE[:] = [f"{top}/root", f"{top}/run"]
    subprocess.run(["buildah", "push", "--quiet", base, f"containers-storage:[overlay@{STORE[0]}+{STORE[1]}]{base}"],
                   check=True, capture_output=True)


def drop_private_store() -> None:
    if not STORE:
        return
    top = os.path.dirname(STORE[0])
    for mount in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        point = mount.split()[1]
        if point.startswith(top + "/"):
            subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(top, ignore_errors=True)


def ensure_base(base: str) -> None:
    if subprocess.run(["buildah", "inspect", "--type", "image", base], capture_output=True).returncode:
        subprocess.run(["sh", str(ROOT / "tests/images/busybox.sh"), base], check=True)


def commands(work: Path, cache_dir: Path, nonce: str) -> tuple[list[str], list[str], dict[str, str]]:
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot", "TMPDIR": str(work), "NO_COLOR": "1",
           "SHLAX_CACHE_DIR": str(cache_dir)}
    bud = ["buildah", *(["--root", STORE[0], "--runroot", STORE[1]] if STORE else []), "bud", "--layers", "-q", "-t", f"localhost/bench-bud-{nonce}", "-f", "Containerfile", "."]
    shlax = [sys.executable, "-m", "shlax_core", "run", "shlax.toml"]
    return shlax, bud, env


def round_20(base: str, cache_dir: Path, nonces: list[str]) -> dict[str, tuple[float, float]]:
    nonce = uuid.uuid4().hex[:12]
    nonces.append(nonce)
    work = Path(tempfile.mkdtemp(prefix="shlax-bench-"))
    try:
        make_context_20(work, base, nonce)
        shlax, bud, env = commands(work, cache_dir, nonce)
        return {f"{STEPS} steps cold": (timed(shlax, work, env), timed(bud, work, env))}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def one_round(base: str, cache_dir: Path, nonces: list[str]) -> dict[str, tuple[float, float]]:
    nonce = uuid.uuid4().hex[:12]
    nonces.append(nonce)
    work = Path(tempfile.mkdtemp(prefix="shlax-bench-"))
    try:
        make_context(work, base, nonce)
        shlax, bud, env = commands(work, cache_dir, nonce)
        results = {}
        results["cold"] = (timed(shlax, work, env), timed(bud, work, env))
        results["unchanged"] = (timed(shlax, work, env), timed(bud, work, env))
        changed = work / "app" / "file007.txt"
        changed.write_text(changed.read_text().upper())
        results["changed file"] = (timed(shlax, work, env), timed(bud, work, env))
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default=BUSYBOX)
    parser.add_argument("--only", choices=["3step", "20steps"], help="run one scenario only")
    parser.add_argument("--private-store", action="store_true", help="both tools use a store of their own")
    args = parser.parse_args()
    ensure_base(args.base)
    if args.private_store:
        private_store(args.base)
    cache_dir = Path(tempfile.mkdtemp(prefix="shlax-bench-cache-"))
    started, nonces = time.time(), []
    load_before = os.getloadavg()
    try:
        rounds = []
        for _ in range(args.rounds):  # the scenarios interleaved: both see the same load drift
            results: dict[str, tuple[float, float]] = {}
            if args.only in (None, "3step"):
                results.update(one_round(args.base, cache_dir, nonces))
            if args.only in (None, "20steps"):
                results.update(round_20(args.base, cache_dir, nonces))
            rounds.append(results)
    finally:
        if STORE:
            drop_private_store()
        else:
            image_sweep.sweep_session(started, nonces, image_sweep.session_layers(cache_dir))
    shlax_version = subprocess.run([sys.executable, "-m", "shlax_core", "--version"], capture_output=True,
                                   text=True).stdout.strip()
    bud_version = subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"layer cache on {args.base}, median of {args.rounds} rounds; {shlax_version or 'shlax'}; {bud_version}; "
          f"{'a private image store' if args.private_store else 'the shared image store'}")
    for i, r in enumerate(rounds):
        print(f"  round {i + 1}: " + ", ".join(f"{case} {a:.2f}s/{b:.2f}s" for case, (a, b) in r.items()))
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")
    print(f"{'case':<16}{'shlax':>10}{'buildah bud':>14}{'shlax/bud':>12}{'target':>9}")
    for case in rounds[0]:
        s = statistics.median(r[case][0] for r in rounds)
        b = statistics.median(r[case][1] for r in rounds)
        print(f"{case:<16}{s:>9.2f}s{b:>13.2f}s{s / b:>11.2f}x{'<= ' + str(TARGETS[case]):>9}")
        if case.startswith(f"{STEPS} steps"):
            print(f"{'  per step':<16}{s / STEPS:>9.3f}s{b / STEPS:>13.3f}s")
    shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
