"""``shlax repro``: is this recipe's image reproducible? Build it twice from scratch and compare.

Each image target is built with ``--no-cache`` in two image stores of shlax's own, made for the
check under ``$TMPDIR`` (default /var/tmp) and removed after it, holding only the base image
copied from your store. The two images are compared layer by layer, then their configurations;
the first layer that differs is named with the step that made it. When your own store has the
target's image, it is compared with the build from scratch too: a difference there comes from a
layer your cache made another way (an incremental package step, an older shlax, a step that is
not reproducible). The download caches are yours (layers are rebuilt, downloads are not); the
layer history of your targets is left as it was. See docs/reproducible.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import click

from shlax_core.errors import ShlaxError
from shlax_core.hookspecs import hookimpl


def _buildah(root: Optional[str], runroot: Optional[str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["buildah"]
    if root:
        argv += ["--root", root]
    if runroot:
        argv += ["--runroot", runroot]
    return subprocess.run([*argv, *args], capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL)


def _inspect(root: Optional[str], runroot: Optional[str], ref: str) -> Optional[dict[str, Any]]:
    proc = _buildah(root, runroot, "inspect", "--type", "image", "--", ref, check=False)
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout)
    return {"id": info.get("FromImageID"), "digest": info.get("FromImageDigest"),
            "layers": [layer["digest"] for layer in json.loads(info.get("Manifest") or "{}").get("layers", [])],
            "config": info.get("OCIv1") or {}}


def _base_ref(target: Any) -> Optional[str]:
    """The base image as your store names it (None: scratch)."""
    base = target.options.get("base", "scratch")
    if base == "scratch":
        return None
    from shlax_buildah import debootstrap

    if base.startswith(debootstrap.PREFIX):
        return debootstrap.image_name(debootstrap.parse(base, target.where_of("base")))
    return str(base)


def _driver() -> str:
    proc = subprocess.run(["buildah", "info", "--format", "{{.store.GraphDriverName}}"], capture_output=True,
                          text=True)
    return proc.stdout.strip() or "overlay"


def _seed(base: str, src: tuple[Optional[str], Optional[str]], store: Path, driver: str) -> None:
    """Copy ``base`` from your store into ``store`` under the same name (same image ID)."""
    root, runroot = src
    if _inspect(root, runroot, base) is None:
        raise ShlaxError(f"the base image {base} is not in your image store",
                         hint="run `shlax run` first (it pulls or builds the base), then check again")
    dest = f"containers-storage:[{driver}@{store}/root+{store}/run]{base}"
    proc = _buildah(root, runroot, "push", "--quiet", base, dest, check=False)
    if proc.returncode != 0:
        raise ShlaxError(f"cannot copy the base image {base} into a private store: {proc.stderr.strip()[-300:]}")


def _drop_store(store: Path) -> None:
    root, run = str(store / "root"), str(store / "run")
    for c in _buildah(root, run, "containers", "-q", check=False).stdout.split():
        _buildah(root, run, "rm", c, check=False)
    _buildah(root, run, "rmi", "--all", "--force", check=False)  # a store made for this check only
    subprocess.run(["umount", "-R", str(store / "root" / "overlay")], capture_output=True)
    shutil.rmtree(store, ignore_errors=True)


def _build(recipe_file: Optional[str], names: tuple[str, ...], store: Path,
           say: Callable[[str], None]) -> dict[str, tuple[str, list[str]]]:
    """Build the targets from scratch in ``store``: {target: (final image ID, step keys)}."""
    from shlax_core import recipe as recipe_mod
    from shlax_core.cache import history
    from shlax_core.output import make_reporter
    from shlax_core.plugins import Plugins
    from shlax_core.runner import Runner
    from shlax_core.session import Session

    recipe = recipe_mod.load(recipe_file)
    targets = [t for t in recipe.select(names) if t.backend == "buildah"]
    saved = {}
    for t in targets:
        t.options["root"], t.options["runroot"] = str(store / "root"), str(store / "run")
        path = history._file(recipe.path, t.name)
        saved[path] = path.read_bytes() if path.exists() else None
    session = Session(Plugins(), make_reporter(False), no_cache=True, recipe_dir=recipe.dir)
    runner = Runner(recipe, session)
    old = os.environ.get("SHLAX_NO_FASTPATH")
    os.environ["SHLAX_NO_FASTPATH"] = "1"  # these builds are no record of yours
    keys: dict[str, list[str]] = {}
    try:
        code = runner.run([t.name for t in targets])
        for t in targets:
            keys[t.name] = [str(part.get("key")) for part in history.load(recipe.path, t.name)]
    finally:
        session.reporter.close()
        if old is None:
            os.environ.pop("SHLAX_NO_FASTPATH", None)
        for path, data in saved.items():  # your targets' layer history stays yours
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
    if code != 0:
        sys.exit(code)
    return {r.target: (r.image, keys.get(r.target, [])) for r in runner.results if r.image}


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> Optional[tuple[str, Any]]:
    """("layer", index) of the first layer that differs, ("config", keys) when only the
    configuration does, None when the images are the same."""
    for i, (x, y) in enumerate(zip(a["layers"], b["layers"])):
        if x != y:
            return "layer", i
    if len(a["layers"]) != len(b["layers"]):
        return "layer", min(len(a["layers"]), len(b["layers"]))
    if a["id"] != b["id"]:
        keys = sorted(k for k in set(a["config"]) | set(b["config"]) if a["config"].get(k) != b["config"].get(k))
        return "config", keys
    return None


def _layer_name(index: int, base_layers: int, steps: list[Any], total: int) -> str:
    if index < base_layers:
        return f"layer {index + 1} (the base image's)"
    j = index - base_layers
    if j < len(steps):
        return f"layer {index + 1}, made by {steps[j].path} ({steps[j].where})"
    return f"layer {index + 1} (the image configuration commit)" if index == total - 1 else f"layer {index + 1}"


def _explain(what: str, a: dict[str, Any], b: dict[str, Any], base_layers: int, steps: list[Any]) -> str:
    diff = first_difference(a, b)
    if diff is None:
        return f"{what}: same image {a['id']}"
    kind, detail = diff
    if kind == "layer":
        name = _layer_name(detail, base_layers, steps, max(len(a["layers"]), len(b["layers"])))
        left = a["layers"][detail] if detail < len(a["layers"]) else "(none)"
        right = b["layers"][detail] if detail < len(b["layers"]) else "(none)"
        return f"{what}: DIFFERENT from {name}: {left} vs {right}"
    return f"{what}: same layers, DIFFERENT configuration: {', '.join(detail)}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("recipe_file", required=False, metavar="[RECIPE]")
@click.argument("targets", nargs=-1)
@click.option("--keep", is_flag=True, help="Keep the two private stores (their paths are printed).")
def repro(recipe_file: Optional[str], targets: tuple[str, ...], keep: bool) -> None:
    """Build the image targets of RECIPE twice from scratch, each in a new image store, and
    compare: the same digest, or the first layer that differs and the step that made it. Your
    own image, when your store has it, is compared too. Exit 0: all reproducible; 1: not."""
    from shlax_core import recipe as recipe_mod

    recipe = recipe_mod.load(recipe_file)
    selected = [t for t in recipe.select(targets) if t.backend == "buildah"]
    if not selected:
        raise ShlaxError(f"{recipe.shown}: no buildah image target selected", hint="name an image target")
    for t in selected:
        if t.options.get("builder") is not None:
            raise ShlaxError(f"{t.where}: target {t.name} builds on a remote builder; shlax repro checks "
                             "local builds only", hint="check it on the builder machine")
    top = Path(tempfile.mkdtemp(prefix="shlax-repro-", dir=os.environ.get("TMPDIR") or "/var/tmp"))
    stores = [top / "a", top / "b"]
    driver = _driver()
    results: list[dict[str, str]] = []
    try:
        for n, store in enumerate(stores, 1):
            for t in selected:
                base = _base_ref(t)
                if base is not None:
                    _seed(base, (t.options.get("root"), t.options.get("runroot")), store, driver)
            click.echo(f"== build {n} of 2, from scratch in {store}")
            results.append(_build(recipe_file, tuple(t.name for t in selected), store, click.echo))
        same = True
        click.echo("")
        for t in selected:
            a = _inspect(str(stores[0] / "root"), str(stores[0] / "run"), results[0][t.name][0])
            b = _inspect(str(stores[1] / "root"), str(stores[1] / "run"), results[1][t.name][0])
            assert a is not None and b is not None
            base = _base_ref(t)
            base_info = _inspect(str(stores[0] / "root"), str(stores[0] / "run"), base) if base else None
            base_layers = len(base_info["layers"]) if base_info else 0
            line = _explain(f"{t.name}: two builds from scratch", a, b, base_layers, t.steps)
            step = _first_step(stores, results[0][t.name][1], t.steps) if first_difference(a, b) else None
            if step is not None:  # each step's own layer image, by its key (the same in both stores)
                line = f"{t.name}: two builds from scratch: DIFFERENT from {step}"
            same = same and first_difference(a, b) is None
            click.echo(line if first_difference(a, b) else f"{t.name}: reproducible: {a['digest']} (image {a['id']})")
            mine = _inspect(t.options.get("root"), t.options.get("runroot"), _image_name(t))
            if mine is not None:
                click.echo("  " + _explain(f"your image {_image_name(t)}", mine, a, base_layers, t.steps))
    finally:
        if keep:
            click.echo(f"stores kept: {stores[0]} {stores[1]} (buildah --root DIR/root --runroot DIR/run)")
        else:
            for store in stores:
                _drop_store(store)
            shutil.rmtree(top, ignore_errors=True)
    sys.exit(0 if same else 1)


def _first_step(stores: list[Path], keys: list[str], steps: list[Any]) -> Optional[str]:
    """The first step whose layer image differs between the two stores (None: all the same:
    the configuration commit differs)."""
    for i, (key, step) in enumerate(zip(keys, steps)):
        ids = [_inspect(str(s / "root"), str(s / "run"), f"localhost/shlax-cache:{key}") for s in stores]
        if ids[0] is None or ids[1] is None:
            return None
        if ids[0]["id"] != ids[1]["id"]:
            return f"{step.path} ({step.where}), step {i + 1}: its layer {ids[0]['layers'][-1]} vs {ids[1]['layers'][-1]}"
    return None


def _image_name(target: Any) -> str:
    image = target.options.get("image") or f"localhost/{target.name}"
    return image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"


@hookimpl
def shlax_register_commands(register: Callable[[Any], None]) -> None:
    register(repro)
