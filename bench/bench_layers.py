#!/usr/bin/env python3
"""Layer cache: shlax vs `buildah bud --layers`, side by side, on the same 3-step build.

Rounds (each with a fresh nonce so the cold build is really cold for both):
  cold       first build of the recipe / Containerfile
  unchanged  the same build again
  changed    one copied file's content changes (same size), then rebuild

Prints the median of each over --rounds and the ratio shlax/bud (lower is better; the targets
are <= 1.0). Usage: python bench/bench_layers.py [--rounds 3] [--base IMAGE]
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
base = "{base}"
image = "localhost/bench-shlax-{nonce}"
steps = [
  {{ run = ["sh", "-c", "mkdir -p /data && echo {nonce} > /data/nonce"] }},
  {{ copy = {{ src = "app/", dest = "/app/" }} }},
  {{ run = ["sh", "-c", "ls /app > /data/listing"] }},
]
"""


def timed(argv: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def make_context(work: Path, base: str, nonce: str) -> None:
    app = work / "app"
    app.mkdir(parents=True)
    for i in range(200):
        (app / f"file{i:03d}.txt").write_text(f"content {i}\n" * 20)
    (work / "Containerfile").write_text(CONTAINERFILE.format(base=base, nonce=nonce))
    (work / "shlax.toml").write_text(RECIPE.format(base=base, nonce=nonce))


def ensure_base(base: str) -> None:
    if subprocess.run(["buildah", "inspect", "--type", "image", base], capture_output=True).returncode:
        subprocess.run(["sh", str(ROOT / "tests/images/busybox.sh"), base], check=True)


def one_round(base: str, cache_dir: Path, nonces: list[str]) -> dict[str, tuple[float, float]]:
    nonce = uuid.uuid4().hex[:12]
    nonces.append(nonce)
    work = Path(tempfile.mkdtemp(prefix="shlax-bench-"))
    try:
        make_context(work, base, nonce)
        env = {**os.environ, "BUILDAH_ISOLATION": "chroot", "TMPDIR": str(work), "NO_COLOR": "1",
               "SHLAX_CACHE_DIR": str(cache_dir)}
        bud = ["buildah", "bud", "--layers", "-q", "-t", f"localhost/bench-bud-{nonce}", "-f", "Containerfile", "."]
        shlax = [sys.executable, "-m", "shlax_core", "run", "shlax.toml"]
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
    args = parser.parse_args()
    ensure_base(args.base)
    cache_dir = Path(tempfile.mkdtemp(prefix="shlax-bench-cache-"))
    started, nonces = time.time(), []
    try:
        rounds = [one_round(args.base, cache_dir, nonces) for _ in range(args.rounds)]
    finally:
        image_sweep.sweep_session(started, nonces, image_sweep.session_layers(cache_dir))
    print(f"layer cache, 3-step build on {args.base}, median of {args.rounds} rounds")
    print(f"{'case':<14}{'shlax':>10}{'buildah bud':>14}{'shlax/bud':>12}{'target':>9}")
    for case in rounds[0]:
        s = statistics.median(r[case][0] for r in rounds)
        b = statistics.median(r[case][1] for r in rounds)
        print(f"{case:<14}{s:>9.2f}s{b:>13.2f}s{s / b:>11.2f}x{'<= 1.0':>9}")
    shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
