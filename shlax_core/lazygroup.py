"""click groups whose plugin subcommands are entry points, imported only when invoked.

``shlax --help`` (and ``shlax cache --help``) list them by entry-point name alone, so help never
imports a plugin; a plugin whose command fails to load breaks only that command.
"""

from __future__ import annotations

from typing import Any, Optional

import click

from shlax_core.errors import ShlaxError


class EntryPointGroup(click.Group):
    """Subclasses name the entry-point ``group`` and say how to turn an entry into a command."""

    group = ""
    _listing = False

    def _entry_points(self) -> dict[str, Any]:
        from importlib.metadata import entry_points

        try:
            return {ep.name: ep for ep in entry_points(group=self.group)}
        except Exception:
            return {}

    def load_command(self, name: str, ep: Any) -> Optional[click.Command]:
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
        ep = self._entry_points().get(name)
        if ep is None:
            return None
        if ctx.resilient_parsing or self._listing:  # help lists, imports nothing
            return click.Command(name, help="(plugin command)")
        try:
            return self.load_command(name, ep)
        except ShlaxError as exc:
            return broken(name, exc)
        except Exception as exc:  # guarded: a broken plugin breaks only its own command
            return broken(name, ShlaxError(f"plugin command {name!r} ({ep.value}) failed to load: "
                                           f"{type(exc).__name__}: {exc}"))


def broken(name: str, error: ShlaxError) -> click.Command:
    def fail() -> None:
        raise error

    return click.Command(name, callback=fail, help=f"(broken plugin) {error}")
