"""The no-op fast path: an unchanged rebuild answered without loading any plugin.

After a successful ``shlax run`` of image targets, the runner records what the result depended
on: the recipe's bytes, the installed packages (``sys.path`` directory signatures), the signature
of every host file and directory the steps read (taken *before* they were read), and each
target's base and final image IDs. The next ``shlax run`` with the same recipe and targets (and
no option but ``--json``) checks those, plus one ``buildah images`` call, and replays the
all-``CACHED`` report, the way ``make`` or ``ninja`` answer "nothing to do".

Any difference, or anything it cannot check, falls through to the normal path, which decides
for real. ``SHLAX_NO_FASTPATH=1`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

VERSION = 1


def _record_path(recipe: Path, targets: list[str]) -> Path:
    from shlax_core import dirs

    name = hashlib.sha256(f"{recipe}\0{','.join(targets)}".encode()).hexdigest()[:24]
    return dirs.cache_root() / "fastpath" / f"{name}.json"


def _signature(path: str) -> Optional[list[int]]:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _environment() -> list[Any]:
    """What says the installed shlax and plugins are the ones that made the record."""
    from shlax_core import __version__

    # site-packages directories change when a distribution is installed, upgraded or removed;
    # sys.path[0] (the script's or the current directory) differs between `shlax` and `python -m`
    sites = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    return [__version__, sys.prefix, sys.version, [[p, _signature(p)] for p in sites]]


def forget(recipe: Path, targets: list[str]) -> None:
    try:
        _record_path(recipe, targets).unlink()
    except OSError:
        pass


def save(recipe: Path, recipe_bytes: bytes, targets: list[str], images: list[dict[str, Any]],
         guards: dict[str, Any]) -> None:
    """Called by the runner after a successful run whose every target can be checked cheaply."""
    record = {
        "v": VERSION, "env": _environment(), "recipe": str(recipe),
        "recipe_sha": hashlib.sha256(recipe_bytes).hexdigest(), "targets": targets,
        "guards": guards, "images": images,
    }
    path = _record_path(recipe, targets)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def _images(argv0: list[str]) -> Optional[dict[str, set]]:
    if os.path.basename(argv0[0]) == "buildah":
        from shlax_buildah import store  # the recipe names buildah: its plugin may be imported

        usable, root = store.root_of(argv0)
        index = store.read_index(root) if usable else None
        if index is not None:
            return {i["id"]: set(i["names"]) for i in index}
    try:
        out = subprocess.run([*argv0, "images", "--json", "--no-trunc"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    by_id: dict[str, set] = {}
    for image in json.loads(out.stdout or b"[]"):
        by_id[image["id"].removeprefix("sha256:")] = set(image.get("names") or [])
    return by_id


def check(recipe: Path, targets: list[str]) -> Optional[dict[str, Any]]:
    """The record, when everything it depends on is unchanged; None otherwise."""
    try:
        record = json.loads(_record_path(recipe, targets).read_text())
        data = recipe.read_bytes()
    except (OSError, ValueError):
        return None
    if record.get("v") != VERSION or record.get("recipe_sha") != hashlib.sha256(data).hexdigest():
        return None
    if record.get("env") != json.loads(json.dumps(_environment())):
        return None
    for path, sig in record["guards"].items():
        if _signature(path) != sig:
            return None
    stores: dict[tuple, Optional[dict[str, set]]] = {}
    for image in record["images"]:
        key = tuple(image["buildah"])
        if key not in stores:
            stores[key] = _images(image["buildah"])
        store = stores[key]
        if store is None:
            return None
        names = store.get(image["image"])
        if names is None or not set(image["names"]) <= names:
            return None
        if image.get("base_id") and not (set(image["base_names"]) & store.get(image["base_id"], set())):
            return None
    return record


def replay(record: dict[str, Any], json_mode: bool, started: float) -> None:
    """Report the run exactly as an all-cached run reports it."""
    from shlax_core.output import JsonReporter, PlainReporter

    reporter = JsonReporter() if json_mode else PlainReporter()
    reporter.emit("run_start", recipe=record["recipe"], plan=False,
                  targets=[i["target"] for i in record["images"]], fast=True)
    for image in record["images"]:
        where = {"target": image["target"], "host": image["label"]}
        total = len(image["steps"])
        reporter.emit("target_start", **where, backend=image["backend"], steps=total, plan=False)
        for index, (step, path) in enumerate(zip(image["steps"], image["paths"]), 1):
            reporter.emit("step_end", **where, index=index, total=total, step=step, path=path, status="cached")
        reporter.emit("target_end", **where, summary=image["summary"], image=image["image"],
                      elapsed=time.monotonic() - started)
    reporter.emit("run_end", status="success", elapsed=time.monotonic() - started, recap=[], recap_lines=[])


def main() -> None:
    """Console entry point: try the fast path for a plain ``shlax run``, else the full CLI."""
    try:
        _main()
    except KeyboardInterrupt:  # before the CLI took over (while importing): nothing to clean up
        sys.stderr.write("shlax: interrupted\n")
        sys.exit(130)


def _main() -> None:
    started = time.monotonic()
    args = sys.argv[1:]
    if args[:1] == ["run"] and not os.environ.get("SHLAX_NO_FASTPATH"):
        rest = [a for a in args[1:] if a != "--json"]
        if not any(a.startswith("-") for a in rest):
            recipe = Path(rest[0]) if rest else Path("shlax.toml")
            if recipe.is_dir():
                recipe = recipe / "shlax.toml"
            try:
                record = check(recipe.resolve(), rest[1:])
            except Exception:  # the fast path never fails a run: the full path decides
                record = None
            if record is not None:
                try:
                    replay(record, "--json" in args, started)
                except BrokenPipeError:  # `shlax run | head`: the reader left, nothing is wrong
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                from shlax_core.cache import usage

                usage.touch([k for image in record["images"] for k in image["keys"]])
                sys.exit(0)
    from shlax_core.cli import main as cli_main

    cli_main()
