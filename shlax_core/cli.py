"""The ``shlax`` command line: run, plan, plugins, actions, cache.

Start-up stays lean: this module imports click and nothing of any plugin; plugin commands are
listed from entry-point names and imported only when invoked.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, Optional

import click

from shlax_core import __version__
from shlax_core.errors import ShlaxError
from shlax_core.lazygroup import EntryPointGroup

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(EntryPointGroup):
    """Built-in commands plus ``shlax.commands`` entry points: the plugin module is registered
    with pluggy and asked, through ``shlax_register_commands``, for its click commands."""

    kind = "command"

    def load_command(self, name: str) -> Optional[click.Command]:
        from shlax_core.plugins import Plugins

        plugins = Plugins()
        plugins.load("command", name)
        found: dict[str, click.Command] = {}
        plugins.pm.hook.shlax_register_commands(register=lambda c: found.setdefault(c.name, c))
        return found.get(name)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="shlax")
def cli() -> None:
    """Build container images and provision hosts from one TOML recipe.

    Every image step is a layer keyed by its content; downloads are cached on the host.
    Recipe reference: docs/recipes.md.
    """


class PluginOptionsCommand(click.Command):
    """``run`` and ``plan``: the core's options plus those plugins declare (``shlax_plugin_options``),
    added only when this command is parsed or shows its help, so ``shlax --help`` (which lists
    commands by their short help) imports no plugin."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        plugins = _plugins(ctx)
        core = super().get_params(ctx)
        taken = {p.name for p in core}
        extra = []
        for declared in plugins.plugin_options():
            for option in declared.cli:
                if option.name in taken:
                    raise ShlaxError(f"plugin option {option.opts[0]} of {declared.owner!r} clashes with "
                                     "another option of the same name", hint="uninstall one of the two plugins")
                taken.add(option.name)
                extra.append(option)
        help_option = self.get_help_option(ctx)
        return [*(p for p in core if p is not help_option), *extra, *([help_option] if help_option else [])]


def _plugins(ctx: click.Context) -> Any:
    """The run's plugins, made once per command line (the options' hooks and the run share them)."""
    root = ctx.find_root()
    if "shlax.plugins" not in root.meta:
        from shlax_core.plugins import Plugins

        root.meta["shlax.plugins"] = Plugins()
    return root.meta["shlax.plugins"]


def _run_options(vars: tuple[str, ...], values: dict[str, Any]) -> Any:
    """The typed :class:`~shlax_core.options.RunOptions`: each plugin's values made into its own
    type, and which plugins' options the user gave."""
    from click.core import ParameterSource

    from shlax_core.options import RunOptions, make_values

    ctx = click.get_current_context()
    plugins, given, phases = {}, set(), {}
    for declared in _plugins(ctx).plugin_options():
        plugins[declared.owner] = make_values(declared, values)
        phases[declared.owner] = declared.phase
        for option in declared.cli:
            values.pop(option.name, None)
            if ctx.get_parameter_source(option.name) not in (ParameterSource.DEFAULT, None):
                given.add(declared.owner)
    return RunOptions(vars=tuple(vars or ()), plugins=plugins, given=frozenset(given), phases=phases)


def _session(json_mode: bool, offline: bool = False, no_cache: bool = False, pull: bool = False,
             recipe_dir: Any = None, buffer_hosts: bool = False, vars: tuple[str, ...] = (), **values: Any):
    from shlax_core.output import make_reporter
    from shlax_core.session import Session

    options = _run_options(vars, values)
    if values:
        raise TypeError(f"unexpected options: {', '.join(values)}")
    reporter = make_reporter(json_mode, buffer_hosts=buffer_hosts)
    return Session(_plugins(click.get_current_context()), reporter, offline=offline, no_cache=no_cache,
                   pull=pull, recipe_dir=recipe_dir, options=options)


def _run(recipe_file: Optional[str], targets: tuple[str, ...], plan: bool, json_mode: bool,
         jobs: int, fail_fast: bool, timings: bool = False, trace: Optional[str] = None, **options: Any) -> None:
    from shlax_core import recipe as recipe_mod
    from shlax_core.runner import Runner

    recipe = recipe_mod.load(recipe_file)
    session = _session(json_mode, recipe_dir=recipe.dir, buffer_hosts=jobs > 1, **options)
    session.timeline.enabled = trace is not None
    runner = Runner(recipe, session)
    try:
        code = runner.run(targets, plan=plan, jobs=jobs, fail_fast=fail_fast)
    finally:
        session.reporter.close()
        if not runner.delegated:  # else the inner run wrote them
            _timeline_out(session, recipe, timings, trace, json_mode, plan)
    if code == ShlaxError.exit_code and runner.user_errors:  # exit 2 always says why on stderr
        click.echo(f"shlax: error: {runner.user_errors[0]}", err=True)
    sys.exit(code)


def _trace_file(value: Optional[str]) -> Optional[str]:
    """A trace file's folder must exist and be writable: said before anything runs."""
    if value is None:
        return None
    import os

    folder = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise click.BadParameter(f"cannot write {value}: {folder} is not a writable folder "
                                 "(make it, or name a file elsewhere)", param_hint="'--trace'")
    return value


def _timeline_out(session: Any, recipe: Any, timings: bool, trace: Optional[str], json_mode: bool,
                  plan: bool) -> None:
    """``--timings``' table (on stderr beside JSON events) and ``--trace``'s file: written after an
    interrupted or failed run too, since that is when one asks where the time went."""
    if timings:
        from shlax_core.timeline import timings_table

        for line in timings_table(session.reporter.ends):
            click.echo(line, err=json_mode)
    if trace is not None:
        from pathlib import Path

        try:
            session.timeline.write(Path(trace), f"shlax {'plan' if plan else 'run'} {recipe.path}")
        except OSError as exc:
            click.echo(f"shlax: warning: cannot write the trace to {trace}: {exc.strerror}", err=True)


#: the options of `run`, and of `plan` (which accepts exactly the same, so any `run` command line
#: can be checked first by changing its verb; options that only matter to a build are ignored)
_common = [
    click.argument("recipe_file", required=False, metavar="[RECIPE]"),
    click.argument("targets", nargs=-1),
    click.option("--json", "json_mode", is_flag=True, help="One JSON event per line."),
    click.option("-j", "--jobs", default=10, show_default=True, type=click.IntRange(min=1),
                 help="Hosts of a fleet handled at once (1 or more)."),
    click.option("--fail-fast", is_flag=True, help="Stop at the first failing host or target."),
    click.option("--offline", is_flag=True, help="Use only cached downloads; never touch the network."),
    click.option("--no-cache", is_flag=True, help="Rebuild every layer (download caches still used)."),
    click.option("--pull", is_flag=True, help="Pull registry base images again to notice new upstream versions."),
    click.option("--var", "vars", multiple=True, metavar="NAME=VALUE",
                 help="A template variable, over the recipe's and the inventory's (repeatable)."),
    click.option("--timings", is_flag=True, help="At the end, each step's time by phase, slowest first."),
    click.option("--trace", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
                 callback=lambda ctx, param, value: _trace_file(value),
                 help="Write the run as a Chrome trace (open it in ui.perfetto.dev)."),
    # then the options plugins add (PluginOptionsCommand), e.g. --push, --cache-to, --cache-from
]


def _options(f: Any) -> Any:
    for deco in reversed(_common):
        f = deco(f)
    return f


@cli.command(cls=PluginOptionsCommand, context_settings=CONTEXT)
@_options
def run(recipe_file: Optional[str], targets: tuple[str, ...], **kw: Any) -> None:
    """Build or apply the targets of RECIPE (default ./shlax.toml); all targets when none is named."""
    _run(recipe_file, targets, False, **kw)


@cli.command(cls=PluginOptionsCommand, context_settings=CONTEXT)
@_options
def plan(recipe_file: Optional[str], targets: tuple[str, ...], **kw: Any) -> None:
    """Show, per step, whether it is cached or will run and why; on hosts, what would change.

    Takes the options of `run` (those that only matter to a build are ignored) and changes
    nothing: no pull, no build, no registry, no layer, no record a later run depends on.
    """
    _run(recipe_file, targets, True, **kw)


@cli.command(context_settings=CONTEXT)
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable output.")
def plugins(json_mode: bool) -> None:
    """Installed plugins: distribution, version, every entry point (actions, backends, caches,
    commands, cache commands, hooks, recipe sections), the hooks each one's module implements,
    and load errors."""
    import json

    from shlax_core.plugins import Plugins

    rows = Plugins().inventory()
    if json_mode:
        click.echo(json.dumps(rows, indent=2))
        return
    by_dist: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_dist.setdefault(f"{row['distribution']} {row['version']}", []).append(row)
    for dist, items in sorted(by_dist.items()):
        click.echo(dist)
        for row in items:
            status = f"BROKEN: {row['error']}" if row["error"] else row.get("summary", "")
            click.echo(f"  {row['kind']:<13} {row['name']:<12} {status}")
            if row.get("hooks"):
                click.echo(f"  {'':<13} {'':<12} hooks: {', '.join(row['hooks'])}")
    broken = [r for r in rows if r["error"]]
    if broken:
        click.echo(f"\n{len(broken)} broken plugin entr{'y' if len(broken) == 1 else 'ies'}", err=True)


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
def actions(name: Optional[str]) -> None:
    """List actions, or show one action's parameters and example (from its own docs)."""
    import inspect

    from shlax_core import params as P
    from shlax_core.plugins import Plugins

    plugins_ = Plugins()
    if not name:
        for action in plugins_.names("action"):
            try:
                cls = plugins_.load("action", action)
                summary = (inspect.getdoc(cls) or "").splitlines()[0]
            except ShlaxError as exc:
                summary = f"BROKEN: {exc.message}"
            click.echo(f"{action:<10} {summary}")
        return
    cls = plugins_.load("action", name)
    click.echo(f"{name} ({cls.version})\n")
    click.echo(inspect.getdoc(cls) or "")
    click.echo("\nParameters:")
    for pname, ptype, default, pdoc in P.describe(cls.Params):
        primary = "  (the step's value)" if pname == cls.primary else ""
        click.echo(f"  {pname:<10} {ptype}, {default}{primary}\n      {pdoc}")


from shlax_core.cache_cli import cache  # noqa: E402  (a small module of click commands)

cli.add_command(cache)


def _plugin_of(tb: Any) -> str:
    """The distribution whose code raised, walking the traceback from the innermost frame."""
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    for frame, _ in reversed(list(traceback.walk_tb(tb))):
        top = frame.f_globals.get("__name__", "").split(".")[0]
        if top.startswith("shlax_") and top != "shlax_core" and top in dists:
            return dists[top][0]
    return "shlax"


def main(argv: Optional[list[str]] = None) -> None:
    try:
        cli.main(args=argv, prog_name="shlax", standalone_mode=False)
    except ShlaxError as exc:
        click.echo(f"shlax: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("shlax: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("shlax: interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        plugin = _plugin_of(exc.__traceback__)
        traceback.print_exc()
        click.echo(f"shlax: internal error in {plugin}: {type(exc).__name__}: {exc}\n"
                   f"  this is a bug in {plugin}, not in your recipe: please report it", err=True)
        sys.exit(70)
    sys.exit(0)
