"""click groups whose plugin subcommands are entry points, imported only when invoked.

``shlax --help`` (and ``shlax cache --help``) list them by entry-point name alone (selected by the
rules of every loader: ``SHLAX_DISABLE_PLUGINS`` hides them too), so help never imports a plugin.
Invoking one loads it through :class:`~shlax_core.plugins.Plugins` like any other plugin, guarded:
a plugin whose command fails to load breaks only that command.
"""

from __future__ import annotations

from typing import Any, Optional

import click

from shlax_core.errors import ShlaxError


class EntryPointGroup(click.Group):
    """Subclasses name the plugin ``kind`` (a key of :data:`shlax_core.plugins.GROUPS`) and say
    how a loaded plugin gives its command."""

    kind = ""
    _listing = False

    def _entry_points(self) -> dict[str, Any]:
        from shlax_core.entrypoints import GROUPS, entry_points

        try:
            return entry_points(GROUPS[self.kind])
        except Exception:
            return {}

    def load_command(self, name: str) -> Optional[click.Command]:
        raise NotImplementedError

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._entry_points()))

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        if name not in self._entry_points():
            return None
        if ctx.resilient_parsing or self._listing:  # help lists, imports nothing
            return click.Command(name, help="(plugin command)")
        try:
            return self.load_command(name)
        except ShlaxError as exc:  # guarded by the loader: a broken plugin breaks only its own command
            return broken(name, exc)


def broken(name: str, error: ShlaxError) -> click.Command:
    def fail() -> None:
        raise error

    return click.Command(name, callback=fail, help=f"(broken plugin) {error}")
