"""The ``shlax hello`` command, added through the ``shlax_register_commands`` hook.

Also ``shlax cache hello``, a ``shlax.cache_commands`` entry point."""

import click

from shlax_core.hookspecs import hookimpl


@click.command()
@click.argument("who", default="world")
def hello(who: str) -> None:
    """Say hello (a test plugin command)."""
    click.echo(f"hello {who} from a plugin command")


@hookimpl
def shlax_register_commands(register):
    register(hello)


@click.command("hello")
def cache_hello() -> None:
    """Say hello from the cache group (a test plugin cache command)."""
    click.echo("hello from a plugin cache command")
