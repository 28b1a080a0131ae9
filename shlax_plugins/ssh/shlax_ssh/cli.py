"""``shlax hosts list`` and ``shlax hosts close``: the ssh master connections shlax keeps
between runs (see :mod:`shlax_ssh.control`)."""

from __future__ import annotations

import click

from shlax_core.hookspecs import hookimpl

from shlax_ssh import control


@click.group("hosts", context_settings={"help_option_names": ["-h", "--help"]})
def hosts() -> None:
    """SSH master connections kept between runs (ControlPersist): list them, close them."""


@hosts.command("list")
def list_() -> None:
    """Masters shlax started that are still open: host, age, persist time, socket."""
    found = control.masters()
    if not found:
        click.echo("no open ssh master connection")
        return
    width = max(len(str(m.get("label", "?"))) for m in found)
    for m in found:
        click.echo(f"{m.get('label', '?'):<{width}}  {m.get('destination', m.get('host', '?'))}  "
                   f"open {control.age(m):.0f}s, closes after {m.get('persist', '?')}s idle  {m['socket']}")


@hosts.command("close")
@click.argument("names", nargs=-1)
def close(names: tuple[str, ...]) -> None:
    """Close the masters of the hosts NAMES (labels or host names), or all of them."""
    found = control.select(control.masters(), names)
    for m in found:
        closed = control.close(m["socket"])
        click.echo(f"{'closed' if closed else 'already gone'}: {m.get('label', '?')} "
                   f"({m.get('destination', m.get('host', '?'))})")
    if names and not found:
        click.echo("no open master for " + ", ".join(names), err=True)


@hookimpl
def shlax_register_commands(register) -> None:  # type: ignore[no-untyped-def]
    register(hosts)
