"""``shlax cache export --to WHERE`` and ``shlax cache import --from WHERE`` (WHERE: a registry
reference or a tarball path), registered as ``shlax.cache_commands`` entry points."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import click

from shlax_core.units import human
from shlax_core.errors import ShlaxError

from shlax_registry.client import RegistryError


def _caches(only: tuple[str, ...]) -> dict[str, list[Path]]:
    """Folders of every installed download cache (or of the ones named), by cache name."""
    from shlax_core.plugins import Plugins

    plugins = Plugins()
    names = plugins.names("cache")
    for name in only:
        if name not in names:
            raise ShlaxError(f"no download cache named {name!r}", hint=f"installed: {', '.join(names) or 'none'}")
    out = {}
    for name in (only or names):
        try:
            out[name] = [Path(f) for f in plugins.load("cache", name)().folders()]
        except ShlaxError as exc:
            click.echo(f"note: {exc.message}", err=True)
    return out


class RegistryFailed(ShlaxError):
    """The registry failed or misbehaved (down, too slow, cut off, a server error, an answer no
    registry sends): not the user's mistake, so exit 1 like a failed step, and trying again later
    may work. What the user can fix (TLS mode, credentials, the reference, the tarball) stays a
    ShlaxError, exit 2."""

    exit_code = 1


def _with_store(where: str, tls_verify: bool, reading: bool, work: Callable[[Any], Any]) -> Any:
    from shlax_registry.stores import open_store

    store = open_store(where, tls_verify=tls_verify, reading=reading)
    ok = False
    try:
        result = work(store)
        ok = True
        return result
    except RegistryError as exc:
        if not store.remote:
            raise ShlaxError(exc.message, hint="this tarball is damaged or was not made by shlax cache export: "
                                               "export it again") from None
        if tls_verify and exc.tls:
            raise ShlaxError(exc.message, hint="a plain-HTTP or self-signed registry? pass --no-tls-verify") from None
        if exc.status in (401, 403):
            raise ShlaxError(exc.message, hint="log in (buildah login HOST) or set SHLAX_REGISTRY_USER and "
                                               "SHLAX_REGISTRY_PASSWORD") from None
        raise RegistryFailed(exc.message, hint="the registry failed or answered something no registry sends: "
                                               "try again later, or look at the registry's logs") from None
    finally:
        store.close(ok)


_cache_opt = click.option("--cache", "only", multiple=True, metavar="NAME",
                          help="Only this download cache (apt, pip, npm...); repeat for several. Default: all.")
_tls_opt = click.option("--tls-verify/--no-tls-verify", default=True, help="Verify registry TLS (default: on).")


@click.command("export")
@click.option("--to", "where", required=True, metavar="REGISTRY/REPO[:TAG]|FILE.tar",
              help="A registry repository (tag default: latest) or a tarball path.")
@_cache_opt
@_tls_opt
@click.option("--replace", is_flag=True, help="Publish exactly the local caches (default: merge with what is there).")
def export(where: str, only: tuple[str, ...], tls_verify: bool, replace: bool) -> None:
    """Upload the download caches (apt/pip/npm), sending only what the destination lacks."""
    from shlax_registry import downloads

    caches = _caches(only)
    started = time.monotonic()
    report = _with_store(where, tls_verify, False,
                         lambda store: downloads.export(caches, store, replace=replace,
                                                        log=lambda m: click.echo(m, err=True)))
    click.echo(f"exported {report.files} files ({human(report.bytes)}) of {', '.join(sorted(caches)) or 'no cache'} "
               f"to {where}: {report.uploaded} blobs uploaded ({human(report.uploaded_bytes)}), "
               f"{report.skipped} already there, in {time.monotonic() - started:.1f}s")


@click.command("import")
@click.option("--from", "where", required=True, metavar="REGISTRY/REPO[:TAG]|FILE.tar",
              help="A registry repository (tag default: latest) or a tarball path.")
@_cache_opt
@_tls_opt
def import_(where: str, only: tuple[str, ...], tls_verify: bool) -> None:
    """Download the download caches (apt/pip/npm) into this machine's cache folders."""
    from shlax_registry import downloads

    caches = _caches(only)
    started = time.monotonic()
    report = _with_store(where, tls_verify, True, lambda store: downloads.import_(caches, store))
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"imported {report.files} files ({human(report.bytes)}) from {where}: {report.uploaded} written "
               f"({human(report.uploaded_bytes)} downloaded), {report.skipped} already up to date, "
               f"in {time.monotonic() - started:.1f}s")
