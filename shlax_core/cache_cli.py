"""``shlax cache ls | du | prune``: the layer cache and the download caches, listed and pruned.

Builds never delete anything; pruning is explicit and bounded by age and/or a size budget.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import click

from shlax_core.errors import ShlaxError
from shlax_core.lazygroup import EntryPointGroup
from shlax_core.units import AGE_HINT, SIZE_HINT, human, parse_age, parse_size

def _age(text: str) -> float:
    seconds = parse_age(text)
    if seconds is None:
        raise ShlaxError(f"age {text!r} is not like 12h, 7d or 2w", hint=AGE_HINT)
    return seconds


def _size(text: str) -> int:
    size = parse_size(text)
    if size is None:
        raise ShlaxError(f"size {text!r} is not like 500M or 10G", hint=SIZE_HINT)
    return size


def du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _layer_backends() -> list[Any]:
    """Installed image backends that keep layers (guarded: a broken one is skipped with a note)."""
    from shlax_core.backends import ImageBackend
    from shlax_core.plugins import Plugins

    plugins = Plugins()
    found = []
    for name in plugins.names("backend"):
        try:
            cls = plugins.load("backend", name)
        except ShlaxError as exc:
            click.echo(f"note: {exc.message}", err=True)
            continue
        if isinstance(cls, type) and issubclass(cls, ImageBackend) and cls.keeps_layers:
            found.append(cls)
    return found


def _download_caches() -> list[Any]:
    from shlax_core.plugins import Plugins

    plugins = Plugins()
    out = []
    for name in plugins.names("cache"):
        try:
            out.append(plugins.load("cache", name)())
        except ShlaxError as exc:
            click.echo(f"note: {exc.message}", err=True)
    return out


def _layer_id(row: dict[str, Any]) -> tuple[Any, str]:
    """What one storage layer is: several cache names (the last step's and the final image's)
    can name one image, and so one layer."""
    return row.get("backend"), str(row.get("layer") or row["image"])


def held(rows: list[dict[str, Any]]) -> int:
    """Bytes the cache layers hold (``cache du``): each layer's own size (what it adds to its
    parent layers, never their bytes), each storage layer once, whoever else also uses it."""
    return sum({_layer_id(r): r.get("size") or 0 for r in rows}.values())


def freeable(rows: list[dict[str, Any]]) -> int:
    """Bytes that removing all of ``rows`` could free (what ``--max-size`` weighs). With ``parts``
    (the storage layers each one is made of that no image outside the cache keeps): each such
    layer once. Without (a backend that cannot tell): as :func:`held`."""
    if rows and all("parts" in r for r in rows):
        parts: dict[str, int] = {}
        for r in rows:
            parts.update(r["parts"])
        return sum(parts.values())
    return held(rows)


def _over_budget(kept: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The coldest of ``kept`` (sorted coldest first) to remove until the rest fit in ``budget``,
    weighed as :func:`freeable` weighs them: with ``parts`` a removal frees only the storage layers no
    kept layer still uses (a step's parent goes when its last child goes); without, a layer goes
    with its last name."""
    exact = bool(kept) and all("parts" in r for r in kept)
    users: dict[Any, int] = {}
    sizes: dict[Any, int] = {}
    for r in kept:
        for part, size in (r["parts"].items() if exact else [(_layer_id(r), r.get("size") or 0)]):
            users[part] = users.get(part, 0) + 1
            sizes[part] = size
    total = sum(sizes.values())
    out = []
    for r in kept:
        if total <= budget:
            break
        out.append(r)
        for part in (r["parts"] if exact else [_layer_id(r)]):
            users[part] -= 1
            if users[part] == 0:
                total -= sizes[part]
    return out


def _layers(backends: Optional[list[Any]] = None) -> list[dict[str, Any]]:
    from shlax_core.cache import usage

    used = usage.load()
    rows = []
    for backend in _layer_backends() if backends is None else backends:
        for layer in backend.list_layers():
            info = used.get(layer["key"], {})
            layer.setdefault("created", info.get("created"))
            # a layer of unknown age counts as used now: pruning by age never guesses
            layer["used"] = info.get("used") or layer.get("created") or time.time()
            layer["target"] = info.get("target", "")
            layer["step"] = info.get("step", "")
            layer["backend"] = backend
            rows.append(layer)
    return rows


class _CacheGroup(EntryPointGroup):
    """Plugins add ``shlax cache`` subcommands through ``shlax.cache_commands`` entry points
    (name = subcommand, value = a click command), imported only when invoked."""

    kind = "cache-command"

    def load_command(self, name: str) -> Optional[click.Command]:
        from shlax_core.plugins import Plugins

        return Plugins().load("cache-command", name)


@click.group(cls=_CacheGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cache() -> None:
    """The layer cache and the download caches."""


@cache.command("ls")
@click.option("--json", "json_mode", is_flag=True)
def ls(json_mode: bool) -> None:
    """Every shlax cache layer in the image store (newest use first), and the download cache folders."""
    import json

    layers = sorted(_layers(), key=lambda r: -(r["used"] or 0))
    caches = [{"name": c.name, "folders": [str(f) for f in c.folders()]} for c in _download_caches()]
    if json_mode:
        click.echo(json.dumps({"layers": [{k: v for k, v in r.items() if k != "backend"} for r in layers],
                               "downloads": caches}, indent=2, default=str))
        return
    click.echo(f"{len(layers)} layers")
    now = time.time()
    for r in layers:
        age = f"{(now - r['used']) / 3600:.1f}h ago" if r.get("used") else "?"
        click.echo(f"  {r['key'][:16]}  {r['image'][:12]}  {human(r.get('size') or 0):>9}  used {age:<10}"
                   f"  {r['target']} {r['step']}")
    click.echo("download caches")
    for c in caches:
        for folder in c["folders"]:
            click.echo(f"  {c['name']:<6} {folder}")


@cache.command("du")
def du_cmd() -> None:
    """Disk held by the layer cache (each layer once, without base images) and by each download cache."""
    layers = _layers()
    count = len({_layer_id(r) for r in layers})
    click.echo(f"layers    {human(held(layers)):>10}  ({count} layer{'s' if count != 1 else ''})")
    for c in _download_caches():
        size = sum(du(Path(f)) for f in c.folders() if Path(f).exists())
        click.echo(f"{c.name:<9} {human(size):>10}  {', '.join(str(f) for f in c.folders())}")


@cache.command()
@click.option("--older-than", metavar="AGE", help="Remove layers not used for AGE (12h, 7d, 2w).")
@click.option("--max-size", metavar="SIZE", help="Remove least recently used layers until they fit in SIZE.")
@click.option("--all", "everything", is_flag=True, help="Remove every layer shlax made.")
@click.option("--downloads", is_flag=True, help="Also let download caches drop stale files.")
@click.option("--dry-run", is_flag=True, help="Say what would go, remove nothing.")
def prune(older_than: Optional[str], max_size: Optional[str], everything: bool, downloads: bool,
          dry_run: bool) -> None:
    """Remove cold layers, bounded by age and/or a size budget (never during a build)."""
    from shlax_core.cache import usage

    if not (older_than or max_size or everything or downloads):
        raise ShlaxError("say what to prune: --older-than AGE, --max-size SIZE, --all or --downloads",
                         hint="e.g. shlax cache prune --older-than 7d --max-size 10G")
    backends = _layer_backends()
    for backend in backends:  # what killed builds left behind (never a live build's)
        for line in backend.clean_orphans(dry_run=dry_run):
            click.echo(f"warning: {line}")
    layers = sorted(_layers(backends), key=lambda r: r["used"] or 0)  # coldest first
    doomed: list[dict[str, Any]] = []
    if everything:
        doomed = list(layers)
    else:
        if older_than:
            limit = time.time() - _age(older_than)
            doomed += [r for r in layers if (r["used"] or 0) < limit]
        if max_size:
            budget = _size(max_size)
            doomed += _over_budget([r for r in layers if r not in doomed], budget)
    freed = freeable(layers) - freeable([r for r in layers if r not in doomed])
    for r in doomed:
        click.echo(f"{'would remove' if dry_run else 'remove'} {r['key'][:16]} {r['target']} {r['step']}")
    if not dry_run and doomed:
        by_backend: dict[Any, list[str]] = {}
        for r in doomed:
            by_backend.setdefault(r["backend"], []).append(r.get("name") or r["image"])
        for backend, images in by_backend.items():
            backend.remove_layers(images)
        usage.forget(r["key"] for r in doomed)
    if downloads:
        for c in _download_caches():
            freed += c.prune(dry_run=dry_run)
    click.echo(f"{'would free' if dry_run else 'freed'} {human(freed)} ({len(doomed)} layers)")
