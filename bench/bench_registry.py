#!/usr/bin/env python3
"""Second-machine rebuild through a registry: shlax vs `buildah bud --layers`, side by side.

A first machine (the default store) builds a 4-step image and shares its layer cache through a
registry on loopback (shlax --cache-to, bud --cache-to). A second machine -- an empty buildah
store holding only the base image -- then builds the same thing:

  shlax scratch     shlax, no cache: every step runs
  shlax cache-from  shlax --cache-from: one tags/list call, one pull of the last layer
  bud cache-from    buildah bud --layers --cache-from on the equivalent Containerfile

Each round uses a fresh nonce and fresh stores, so nothing is warm. Prints the median seconds
and the ratios (the target: shlax cache-from <= 0.5 x bud cache-from). ``--steps N`` (N >= 4)
adds N - 4 small steps (one file each) after the four above, as a longer recipe would have.
``--rtt MS`` puts the registry MS milliseconds away from the second machine (a loopback proxy
that delays traffic, bench/latency_proxy.py), as a CI runner's registry is; 0, the default, is
plain loopback.
Usage: python bench/bench_registry.py [--rounds 3] [--steps 4] [--rtt 0]
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

from fixtures_registry import start_registry, stop_registry  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402

import image_sweep  # noqa: E402  (what the rounds build is removed at the end)

BUSYBOX = "localhost/shlax-test-busybox:latest"
NONCES: list[str] = []

STEPS = [
    "echo {nonce} > /nonce",
    "dd if=/dev/urandom of=/blob1 bs=1M count=8 2>/dev/null",
    "dd if=/dev/urandom of=/blob2 bs=1M count=8 2>/dev/null && md5sum /blob1 /blob2 > /sums",
    "sleep 1 && cat /nonce /sums > /report",
]


def recipe(base: str, nonce: str, extra: str) -> str:
    steps = ",\n".join(f'  {{ run = ["sh", "-c", "{s.format(nonce=nonce)}"] }}' for s in STEPS)
    return f'[targets.bench]\nbase = "{base}"\nimage = "localhost/bench-reg-{nonce}"\n{extra}steps = [\n{steps}\n]\n'


def containerfile(base: str, nonce: str) -> str:
    return f"FROM {base}\n" + "".join(f'RUN sh -c "{s.format(nonce=nonce)}"\n' for s in STEPS)


def run(argv: list[str], env: dict, cwd: Path, expect: str = "", count: int = 1) -> float:
    """Seconds ``argv`` took; the bench stops when it fails, or when its output has ``expect``
    fewer than ``count`` times (a cache-from build that quietly ran its steps, or fell back to a
    local build, would measure the wrong thing)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 or text.count(expect) < count:
        sys.exit(f"failed{f' ({expect!r} not {count} times in its output)' if proc.returncode == 0 else ''}: "
                 f"{' '.join(argv)}\n{text[-3000:]}")
    return elapsed


class Store:
    def __init__(self, base: Path):
        self.root, self.runroot = base / "root", base / "runroot"

    @property
    def args(self) -> list[str]:
        return ["--root", str(self.root), "--runroot", str(self.runroot)]

    def destroy(self) -> None:
        subprocess.run(["buildah", *self.args, "rm", "--all"], capture_output=True)
        subprocess.run(["buildah", *self.args, "rmi", "--all", "--force"], capture_output=True)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(self.root))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root.parent, ignore_errors=True)


def one_round(reg: str, far: str, base: str, work: Path, env: dict) -> dict[str, float]:
    """``reg``: the registry as the first machine reaches it; ``far``: as the second one does."""
    nonce = uuid.uuid4().hex[:12]
    NONCES.append(nonce)
    shlax = [sys.executable, "-m", "shlax_core"]
    cache = f"{reg}/bench/shlax-{nonce}"
    budcache = f"{reg}/bench/bud-{nonce}"
    d = work / nonce
    d.mkdir()
    (d / "Containerfile").write_text(containerfile(base, nonce))
    # first machine: build and share
    (d / "first.toml").write_text(recipe(base, nonce, ""))
    run([*shlax, "run", str(d / "first.toml"), "--cache-to", cache, "--no-tls-verify"], env, d)
    run(["buildah", "bud", "--layers", "--tls-verify=false", "--cache-to", budcache, "-t",
         f"localhost/bench-bud-{nonce}", "."], env, d)
    cache, budcache = cache.replace(reg, far, 1), budcache.replace(reg, far, 1)
    times = {}
    for name in ("shlax scratch", "shlax cache-from", "bud cache-from"):
        store = Store(Path(tempfile.mkdtemp(prefix="bench-store-", dir=work)))
        try:
            subprocess.run(["buildah", *store.args, "pull", "-q", "--tls-verify=false", f"docker://{base}"],
                           check=True, capture_output=True)
            extra = f'root = "{store.root}"\nrunroot = "{store.runroot}"\n'
            (d / "second.toml").write_text(recipe(base, nonce, extra))
            if name == "shlax scratch":
                times[name] = run([*shlax, "run", str(d / "second.toml"), "--no-tls-verify"], env, d)
            elif name == "shlax cache-from":
                times[name] = run([*shlax, "run", str(d / "second.toml"), "--cache-from", cache,
                                   "--no-tls-verify"], env, d, expect=f"({len(STEPS)} cached, 0 run)")
            else:
                times[name] = run(["buildah", *store.args, "bud", "--layers", "--tls-verify=false",
                                   "--cache-from", budcache, "-t", f"localhost/bench-bud-{nonce}", "."], env, d,
                                  expect="--> Using cache", count=len(STEPS))
        finally:
            store.destroy()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=len(STEPS), help="steps in the recipe (at least 4)")
    ap.add_argument("--rtt", type=float, default=0.0, help="milliseconds between the second machine and the registry")
    args = ap.parse_args()
    STEPS.extend(f"echo {{nonce}}-{i} > /extra{i}" for i in range(len(STEPS), args.steps))
    if subprocess.run(["buildah", "inspect", "--type", "image", BUSYBOX], capture_output=True).returncode:
        subprocess.run(["sh", str(ROOT / "tests" / "images" / "busybox.sh"), BUSYBOX], check=True)
    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    reg = start_registry(work / "registry")
    proxy = LatencyProxy(reg.host, args.rtt).start() if args.rtt > 0 else None
    # a user's install has compiled bytecode; PYTHONDONTWRITEBYTECODE (set in some shells) would
    # make every shlax start recompile its modules and measure that instead
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env = {**environ, "BUILDAH_ISOLATION": "chroot", "NO_COLOR": "1", "TMPDIR": str(work),
           "SHLAX_CACHE_DIR": str(work / "shlax-cache")}
    started = time.time()
    base = f"{reg.host}/bench/busybox:latest"
    try:
        subprocess.run(["buildah", "push", "-q", "--tls-verify=false", BUSYBOX, f"docker://{base}"], check=True)
        subprocess.run(["buildah", "pull", "-q", "--tls-verify=false", f"docker://{base}"], check=True,
                       capture_output=True)
        far = proxy.host if proxy else reg.host
        rounds = [one_round(reg.host, far, base, work, env) for _ in range(args.rounds)]
    finally:
        if proxy:
            proxy.stop()
        image_sweep.sweep_session(started, NONCES, image_sweep.session_layers(work / "shlax-cache"))
        subprocess.run(["buildah", "rmi", base], capture_output=True)  # the pulled name, not the image
        stop_registry(reg)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    where = f"registry {args.rtt:g} ms away" if args.rtt > 0 else "registry on loopback"
    print(f"second machine (empty store), {len(STEPS)} steps, {where}, median of {args.rounds} rounds")
    print(f"{'build':<18} {'seconds':>8}")
    for k, v in med.items():
        print(f"{k:<18} {v:>8.2f}")
    print()
    print(f"shlax cache-from / shlax scratch   {med['shlax cache-from'] / med['shlax scratch']:.2f}x")
    print(f"shlax cache-from / bud cache-from  {med['shlax cache-from'] / med['bud cache-from']:.2f}x  (target <= 0.50)")


if __name__ == "__main__":
    main()
