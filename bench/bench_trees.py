#!/usr/bin/env python3
"""Big copied trees: re-hashing an unchanged tree, memory of a big copy, one changed file.

For each tree size (10,000 and 50,000 small files by default, 100 a directory, a .shlaxignore
of two patterns), with an empty cache folder of its own:

  re-hash    ``shlax plan`` with an empty stat cache (the first hash: every file read), then
             again on the unchanged tree; the ratio second/first is the stat cache's worth (the
             target is <= 0.1). ``plan floor`` is the same command on a one-file copy: start-up,
             recipe, base-image lookup, what no tree size changes.
  copy cold  ``shlax run`` of a one-step copy recipe vs ``buildah bud --layers`` with ``COPY`` of
             the same tree; the peak RSS of the shlax process itself (its children excluded:
             buildah is measured by nobody's target) is reported (target <= 60 MB at 50,000).
  1 changed  one file's content changes, both tools rebuild. Not at its target (<= 0.3x bud) by
             design yet: shlax re-sends the whole tree (one tar of every file, one `buildah add`,
             one commit of a layer holding every file), so this row is bounded by the cold copy
             row; only a layer built on the previous copy layer with just the changed files
             (incremental copy layers, issue 11 item 7) can go under it.

Prints versions and machine load, then the table with ratios (lower is better).
Usage: python bench/bench_trees.py [--sizes 10000,50000] [--base IMAGE] [--rehash-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
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
PER_DIR = 100
#: CPU seconds (user + system, children included) of the last command :func:`run` ran: on a
#: machine shared with other work, a steadier measure than wall time
CPU = [0.0]
HEADER = f"{'case':<28}{'shlax':>9}{'peer':>9}{'ratio':>8}  {'target':<20}shlax peak RSS; CPU"

CONTAINERFILE = """FROM {base}
COPY app/ /app/
"""

RECIPE = """[targets.bench]
base = "{base}"
image = "localhost/bench-trees-{nonce}"
steps = [
  {{ copy = {{ src = "{src}", dest = "/app/" }} }},
]
"""

IGNORE = "*.log\n__pycache__/\n"

#: runs shlax in this interpreter and writes the process's own peak RSS (KiB) where asked
RSS_WRAPPER = """
import atexit, os, resource, sys
def _peak():
    with open(os.environ["BENCH_RSS_FILE"], "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(_peak)
sys.argv = ["shlax", *sys.argv[1:]]
from shlax_core.console import main
main()
"""


def run(argv: list[str], cwd: Path, env: dict, tries: int = 1) -> float:
    """Seconds the command took; ``tries`` > 1 for bud, which a store shared with other builds
    sometimes fails ("layer not known") through no fault of its own."""
    for attempt in range(tries):
        start = time.perf_counter()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - start
            out.seek(0)
            text = out.read().decode(errors="replace")
        if os.waitstatus_to_exitcode(status) == 0:
            CPU[0] = usage.ru_utime + usage.ru_stime
            return elapsed
    sys.exit(f"failed: {' '.join(argv)}\n{text}")


def shlax(*args: str) -> list[str]:
    return [sys.executable, "-c", RSS_WRAPPER, *args]


def peak_mb(env: dict) -> float:
    return int(Path(env["BENCH_RSS_FILE"]).read_text()) / 1024


def make_tree(app: Path, files: int) -> None:
    for i in range(files):
        d = app / f"d{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            d.mkdir(parents=True)
        (d / f"f{i:06d}.txt").write_text(f"file {i}\n" * 8)


def versions() -> list[str]:
    from importlib.metadata import version

    bud = subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout.strip()
    return [f"shlax {version('shlax')}", bud, f"python {platform.python_version()}",
            f"pathspec {version('pathspec')}", f"{os.cpu_count()} cpus, {platform.release()}"]


def ensure_base(base: str) -> None:
    if subprocess.run(["buildah", "inspect", "--type", "image", base], capture_output=True).returncode:
        subprocess.run(["sh", str(ROOT / "tests/images/busybox.sh"), base], check=True)


def print_row(case: str, s: float, peer: float | None, target: str | None, rss: str) -> None:
    peer_s = f"{peer:>8.2f}s" if peer is not None else f"{'':>9}"
    ratio = f"{s / peer:>7.2f}x" if peer else f"{'':>8}"
    print(f"{case:<28}{s:>8.2f}s{peer_s}{ratio}  {target or '':<20}{rss}", flush=True)


class Rows(list):
    def append(self, row: tuple) -> None:
        super().append(row)
        print_row(*row)


def one_size(files: int, base: str, nonces: list[str], caches: list[Path], rehash_only: bool) -> list[tuple]:
    nonce = uuid.uuid4().hex[:12]
    nonces.append(nonce)
    work = Path(tempfile.mkdtemp(prefix="shlax-bench-trees-"))
    cache = Path(tempfile.mkdtemp(prefix="shlax-bench-cache-"))
    caches.append(cache)
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot", "TMPDIR": str(work), "NO_COLOR": "1",
           "SHLAX_CACHE_DIR": str(cache), "BENCH_RSS_FILE": str(work / "rss")}
    rows = Rows()
    try:
        make_tree(work / "app", files)
        # a tree of this run's own: no layer of an earlier run (or another helper's) has its key
        (work / "app" / "nonce.txt").write_text(nonce)
        (work / "one").mkdir()
        (work / "one" / "f.txt").write_text("one\n")
        (work / ".shlaxignore").write_text(IGNORE)
        (work / "Containerfile").write_text(CONTAINERFILE.format(base=base))
        (work / "shlax.toml").write_text(RECIPE.format(base=base, nonce=nonce, src="app/"))
        (work / "floor.toml").write_text(RECIPE.format(base=base, nonce=nonce + "f", src="one/"))
        time.sleep(2.5)  # past the stat cache's racy window: the first hash may keep its digests
        n = f"{files:,}"
        run(shlax("plan", "floor.toml"), work, env)
        floor = run(shlax("plan", "floor.toml"), work, env)
        floor_cpu, floor_mb = CPU[0], peak_mb(env)
        first = run(shlax("plan", "shlax.toml"), work, env)
        first_cpu, first_mb = CPU[0], peak_mb(env)
        second = run(shlax("plan", "shlax.toml"), work, env)
        second_cpu, second_mb = CPU[0], peak_mb(env)
        rows.append(("plan floor (1 file)", floor, None, None, f"{floor_mb:.0f} MB; cpu {floor_cpu:.2f}s"))
        rows.append((f"re-hash {n}: first", first, None, None, f"{first_mb:.0f} MB; cpu {first_cpu:.2f}s"))
        rows.append((f"re-hash {n}: second", second, first, "<= 0.1 (vs first)",
                     f"{second_mb:.0f} MB; cpu {second_cpu:.2f}s = {second_cpu / first_cpu:.2f}x first,"
                     f" {(second_cpu - floor_cpu) / (first_cpu - floor_cpu):.2f}x above the floor"))
        if rehash_only:
            return rows

        bud = ["buildah", "bud", "--layers", "-q", "-t", f"localhost/bench-bud-{nonce}", "-f", "Containerfile", "."]
        s_cold = run(shlax("run", "shlax.toml"), work, env)
        cold_mb = peak_mb(env)
        b_cold = run(bud, work, env, tries=2)
        rows.append((f"copy {n}: cold", s_cold, b_cold, "", f"{cold_mb:.0f} MB, {cold_mb * 1024 / files:.2f} KB/file"))
        changed = work / "app" / "d0007" / "f000700.txt"
        changed.write_text(changed.read_text().upper())
        s_one = run(shlax("run", "shlax.toml"), work, env)
        one_mb = peak_mb(env)
        b_one = run(bud, work, env, tries=2)
        rows.append((f"copy {n}: 1 changed", s_one, b_one, "<= 0.3 (vs bud)", f"{one_mb:.0f} MB"))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--base", default=BUSYBOX)
    parser.add_argument("--rehash-only", action="store_true", help="only the re-hash rows (no image is built)")
    args = parser.parse_args()
    ensure_base(args.base)
    print("; ".join(versions()))
    print("load before: %.2f %.2f %.2f" % os.getloadavg())
    print(HEADER, flush=True)
    started, nonces, caches, rows = time.time(), [], [], []
    try:
        for files in (int(s) for s in args.sizes.split(",")):
            rows.extend(one_size(files, args.base, nonces, caches, args.rehash_only))
    finally:
        layers = set()
        for cache in caches:
            layers |= image_sweep.session_layers(cache)
        image_sweep.sweep_session(started, nonces, layers)
        for cache in caches:
            shutil.rmtree(cache, ignore_errors=True)
    print("load after:  %.2f %.2f %.2f" % os.getloadavg())
    print(HEADER)
    for row in rows:
        print_row(*row)
    print("peer: buildah bud --layers with COPY of the same tree; for the re-hash, shlax's own first hash")
    print("times are wall seconds; cpu is user+system of the shlax process and its children")


if __name__ == "__main__":
    main()
