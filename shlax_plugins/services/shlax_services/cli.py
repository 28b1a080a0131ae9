"""``shlax up``, ``down``, ``ps`` and ``logs``: added to the CLI through ``shlax_register_commands``.

``shlax --help`` lists them from their entry-point names; this module is imported only when one
of them runs. Every user mistake (recipe, service names, ``--on``) is found before anything is
created or started, and exits with code 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import click

from shlax_core.backends import ImageBackend
from shlax_core.errors import Interrupted, RecipeError, ShlaxError, StepFailed
from shlax_core.hookspecs import hookimpl
from shlax_core.recipe import DEFAULT_FILE, Recipe
from shlax_core.resolve import target_params

from shlax_services import names as N
from shlax_services.engine import Engine, host_engine, local_engine
from shlax_services.spec import Services

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _split(args: tuple[str, ...]) -> tuple[Optional[str], tuple[str, ...]]:
    """``[RECIPE] [NAME...]``: the first word is the recipe when it is a file or folder, or ends in .toml."""
    if args and (args[0].endswith(".toml") or Path(args[0]).is_file()
                 or (Path(args[0]).is_dir() and (Path(args[0]) / DEFAULT_FILE).is_file())):
        return args[0], args[1:]
    return None, args


def _load(recipe_file: Optional[str]) -> tuple[Recipe, Services]:
    from shlax_core import recipe as recipe_mod
    from shlax_services.spec import load

    recipe = recipe_mod.load(recipe_file)
    services = load(recipe)
    if not services.services:
        raise RecipeError("the recipe has no services", where=recipe.shown,
                          hint='add a [services.NAME] table with an `image` (docs/services.md)')
    return recipe, services


def _session(recipe: Recipe, json_mode: bool) -> Any:
    from shlax_core.output import make_reporter
    from shlax_core.plugins import Plugins
    from shlax_core.session import Session

    return Session(Plugins(), make_reporter(json_mode), recipe_dir=recipe.dir)


def _check_on(recipe: Recipe, services: Services, session: Any, on: Optional[str]) -> None:
    """``--on``: a host target of the recipe, and no host folder given relative to the recipe."""
    if on is None:
        return
    target = recipe.select([on])[0]
    cls = session.plugins.load("backend", target.backend, where=recipe.locate(f"{target.path}.backend"))
    if issubclass(cls, ImageBackend):
        raise RecipeError(f"--on {on}: target {on!r} builds an image; services run on a host target "
                          "(backend = \"ssh\" or \"local\")", where=target.where)
    for svc in services.services.values():
        for i, vol in enumerate(svc.volumes):
            if not vol.named and not vol.source.startswith("/"):
                raise RecipeError(f"{svc.path}.volumes: {vol.source!r} is a folder of this machine; with --on "
                                  "the services run elsewhere", where=recipe.locate(f"{svc.path}.volumes[{i}]"),
                                  hint="use a named volume, or an absolute path on that machine")


@contextlib.contextmanager
def _engines(recipe: Recipe, session: Any, on: Optional[str]) -> Iterator[list[Engine]]:
    """podman here, or on every machine of the host target ``on`` (through its backend's run())."""
    if on is None:
        yield [local_engine()]
        return
    _check_on(recipe, Services(recipe, {}), session, on)
    target = recipe.select([on])[0]
    cls = session.plugins.load("backend", target.backend)
    params = target_params(target, cls, session.plugins, recipe)
    backends = [cls(target, p, session, label=label or target.name)
                for label, p in cls.expand(params, recipe.dir)]
    opened = []
    try:
        for b in backends:
            b.open()
            opened.append(b)
        yield [host_engine(b) for b in backends]
    finally:
        from shlax_core.interrupts import shielded

        with shielded():
            for b in opened:
                b.close()


@contextlib.contextmanager
def _lock(project: N.Project, engine: Engine) -> Iterator[None]:
    """One ``up``/``down`` at a time per recipe and machine."""
    from filelock import FileLock

    from shlax_core import dirs

    key = hashlib.sha256(f"{project.recipe_id}\0{engine.label if engine.remote else ''}".encode()).hexdigest()[:16]
    with FileLock(str(dirs.state(f"services/{key}.lock"))):
        yield


def _finish(session: Any, code: int, started: float, end: bool = True) -> None:
    """Report the end (unless the runner's own report of a failed build already did) and exit."""
    status = {0: "success", 1: "failed", 130: "interrupted"}.get(code, "failed")
    if end:
        session.reporter.emit("run_end", status=status, elapsed=time.monotonic() - started, recap=[], recap_lines=[])
    session.reporter.close()
    sys.exit(code)


def _guarded(session: Any, work: Callable[[], int]) -> int:
    """Run ``work`` with SIGTERM unwinding like Ctrl-C; a failing podman call is exit 1, a user's
    mistake (ShlaxError) goes to the CLI's handler (exit 2) once the reporter is closed."""
    from shlax_core.interrupts import interruptible

    try:
        with interruptible():
            return work()
    except (KeyboardInterrupt, Interrupted):
        session.reporter.warning("interrupted: what was made carries this recipe's labels; "
                                 "the next `shlax up` takes it from there")
        return 130
    except ShlaxError:  # a user's mistake found on the machine (a name taken, no podman): exit 2
        session.reporter.close()
        raise
    except StepFailed as exc:
        session.reporter.emit("step_end", kind="service", target="services", host="services", index=0, total=0,
                              step="podman", status="failed",
                              error={"message": exc.message, "argv": exc.argv, "returncode": exc.returncode,
                                     "tail": exc.tail})
        return 1


_on = click.option("--on", "on", metavar="TARGET",
                   help="Run the services on the machine(s) of this host target of the recipe (e.g. an "
                        "ssh target) instead of this machine; recipe-built images are sent there.")
_json = click.option("--json", "json_mode", is_flag=True, help="One JSON event per line.")


@click.command("up", context_settings=CONTEXT)
@click.argument("args", nargs=-1, metavar="[RECIPE] [SERVICE]...")
@click.option("--dry-run", is_flag=True, help="Show what up would do (build plan, then per service), change nothing.")
@_on
@_json
def up(args: tuple[str, ...], dry_run: bool, on: Optional[str], json_mode: bool) -> None:
    """Build stale targets, then create or start what is missing or changed (SERVICEs and what
    they depend on; all services when none is named)."""
    from shlax_services import images as I
    from shlax_services.desired import container_spec, pod_spec
    from shlax_services.observed import observe, refuse_taken
    from shlax_services.up import Up, decide

    recipe_file, wanted = _split(args)
    recipe, services = _load(recipe_file)
    selected = services.select(wanted)
    session = _session(recipe, json_mode)
    project = N.Project.of(recipe.path)
    started = time.monotonic()
    I.check_targets(recipe, selected, session)
    _check_on(recipe, services, session, on)

    announced = []

    def work() -> int:
        built = I.build(recipe, selected, session, dry_run=dry_run)
        if built.code:
            return built.code
        announced.append(True)
        session.reporter.emit("run_start", recipe=str(recipe.path), plan=dry_run, targets=[s.name for s in selected])
        with _engines(recipe, session, on) as engines:
            for engine in engines:
                code = _up_one(engine, built)
                if code:
                    return code
        return 0

    def _up_one(engine: Engine, built: Any) -> int:
        host = engine.label if engine.remote else None
        engine.prepare()
        images = I.Images(dict(built.ids), dict(built.pending))
        with _lock(project, engine):
            observed = observe(engine, project, set(services.services))
            pods_all = {name: pod_spec(project, name, members) for name, members in services.pods().items()}
            pods = {n: p for n, p in pods_all.items() if any(s.params.pod == n for s in selected)}
            refuse_taken(observed, {
                "container": [project.container(s.name) for s in selected],
                "pod": [p.full for p in pods.values()],
                "volume": [project.volume(v.source) for s in selected for v in s.volumes if v.named],
                "network": [project.network]}, recipe.shown)
            for extra in observed.extra:
                session.reporter.warning(f"container {extra.name} belongs to this recipe but to no service of it "
                                         "any more: `shlax down` removes it")
            I.references(engine, selected, images, dry_run=dry_run)
            if not dry_run:
                I.send(engine, selected, images, lambda m: session.reporter.emit("info", message=m))
            specs = {s.name: container_spec(project, s, images.ids.get(s.name, "(pending)"), pods,
                                            recipe.dir, engine.compat) for s in selected}
            plan = decide(project, selected, specs, pods, observed, images.pending)
            runner = Up(services, project, engine, session.reporter, pods, host)
            if dry_run:
                runner.show(plan)
                return 0
            return runner.apply(plan)

    code = _guarded(session, work)
    _finish(session, code, started, end=bool(announced) or code != 1)


@click.command("down", context_settings=CONTEXT)
@click.argument("args", nargs=-1, metavar="[RECIPE] [SERVICE]...")
@click.option("--volumes", is_flag=True, help="Also remove the recipe's named volumes (their data is lost).")
@_on
@_json
def down(args: tuple[str, ...], volumes: bool, on: Optional[str], json_mode: bool) -> None:
    """Stop and remove the recipe's containers (SERVICEs only, when named), its pods and network.
    Named volumes are kept unless --volumes."""
    from shlax_services.down import down as do_down
    from shlax_services.observed import observe

    recipe_file, wanted = _split(args)
    recipe, services = _load(recipe_file)
    if wanted and volumes:
        raise ShlaxError("--volumes removes every volume of the recipe: use it without SERVICE names",
                         hint="shlax down --volumes")
    order = services.order() if not wanted else [s for s in services.order() if s.name in wanted]
    services.select(wanted)  # unknown names are an error
    session = _session(recipe, json_mode)
    project = N.Project.of(recipe.path)
    started = time.monotonic()

    def work() -> int:
        with _engines(recipe, session, on) as engines:
            for engine in engines:
                with _lock(project, engine):
                    observed = observe(engine, project, set(services.services))
                    code = do_down(engine, project, observed, order, not wanted, volumes, session.reporter,
                                   engine.label if engine.remote else "")
                    if code:
                        return code
        return 0

    _finish(session, _guarded(session, work), started)


@click.command("ps", context_settings=CONTEXT)
@click.argument("recipe_file", required=False, metavar="[RECIPE]")
@_on
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable output.")
def ps(recipe_file: Optional[str], on: Optional[str], json_mode: bool) -> None:
    """The recipe's services: container, image, state, health, ports."""
    from shlax_services.observed import observe

    recipe, services = _load(recipe_file)
    session = _session(recipe, True)
    project = N.Project.of(recipe.path)
    rows = []
    with _engines(recipe, session, on) as engines:
        for engine in engines:
            observed = observe(engine, project, set(services.services))
            for svc in services.order():
                c = observed.containers.get(svc.name)
                rows.append({"host": engine.label, "service": svc.name, "container": c.name if c else "",
                             "id": c.id[:12] if c else "", "image": svc.params.image,
                             "image_id": c.image_id[:12] if c else "", "state": c.state if c else "missing",
                             "health": (c.health or ("-" if svc.health is None else "")) if c else "",
                             "ports": c.ports if c else []})
            for c in observed.extra:
                rows.append({"host": engine.label, "service": f"({c.service or '?'})", "container": c.name,
                             "id": c.id[:12], "image": "", "image_id": c.image_id[:12], "state": c.state,
                             "health": c.health, "ports": c.ports})
    if json_mode:
        click.echo(json.dumps(rows, indent=2))
        return
    multi = len({r["host"] for r in rows}) > 1 or on is not None
    head = (["HOST"] if multi else []) + ["SERVICE", "CONTAINER", "IMAGE", "STATE", "HEALTH", "PORTS"]
    table = [head]
    for r in rows:
        image = f"{r['image']} ({r['image_id']})" if r["image_id"] else r["image"]
        table.append(([r["host"]] if multi else []) + [r["service"], r["container"] or "-", image, r["state"],
                                                        r["health"] or "-", ", ".join(r["ports"]) or "-"])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@click.command("logs", context_settings=CONTEXT)
@click.argument("args", nargs=-1, required=True, metavar="[RECIPE] SERVICE")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("-n", "--tail", type=int, default=None, help="Only the last N lines.")
@_on
def logs(args: tuple[str, ...], follow: bool, tail: Optional[int], on: Optional[str]) -> None:
    """A service's log (its container's output)."""
    recipe_file, wanted = _split(args)
    if len(wanted) != 1:
        raise ShlaxError("name one service", hint="shlax logs [RECIPE] SERVICE")
    recipe, services = _load(recipe_file)
    services.select(wanted)
    session = _session(recipe, True)
    project = N.Project.of(recipe.path)
    argv = ["logs", *(["--follow"] if follow else []), *([f"--tail={tail}"] if tail is not None else []),
            "--", project.container(wanted[0])]
    code = 0
    with _engines(recipe, session, on) as engines:
        for engine in engines:
            if not engine.podman("container", "exists", project.container(wanted[0])).ok:
                raise ShlaxError(f"service {wanted[0]!r} has no container on {engine.label}",
                                 hint="start it: shlax up")
            try:
                res = engine.stream(argv, lambda line: click.echo(line))
            except KeyboardInterrupt:
                sys.exit(130)
            code = code or (0 if res.ok else 1)
    sys.exit(code)


@hookimpl
def shlax_register_commands(register: Callable[[Any], None]) -> None:
    for command in (up, down, ps, logs):
        register(command)
