"""Plan a target, then execute it step by step, reporting events.

Image targets: compute every step's key, ask the backend which layers exist, restart from the
last existing one, commit each new step as a layer. Host targets: each action checks, then
applies only what is not satisfied; a fleet's hosts run in parallel.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
import threading
import time
from typing import Any, Iterator, Optional

from shlax_core import stages
from shlax_core.actions import Action, StepContext
from shlax_core.backends import Backend, ImageBackend
from shlax_core.binding import Binder, become_of
from shlax_core.cache import history
from shlax_core.events import Outcome
from shlax_core.errors import Interrupted, RecipeError, ShlaxError, StepFailed, place
from shlax_core.hostrun import HostResult, HostRuns
from shlax_core.imageplan import ImagePlan, plan_image
from shlax_core.interrupts import interruptible, shielded
from shlax_core.recipe import Recipe
from shlax_core.resolve import Resolved, resolve
from shlax_core.session import Session
from shlax_core.status import Status
from shlax_core.timeline import Phases
from shlax_core.variables import merged, parse_cli

__all__ = ["Runner", "HostResult", "shielded", "interruptible"]


@dataclass
class _Current:
    """The image step being built, for the report of its failure."""

    action: Optional[Action] = None
    index: int = 0
    phases: Optional[Phases] = None
    started: float = 0.0
    wall: float = 0.0

    def step(self, action: Optional[Action], index: int, phases: Optional[Phases]) -> None:
        self.action, self.index, self.phases = action, index, phases
        self.started, self.wall = time.monotonic(), time.time()


class Runner(HostRuns):
    def __init__(self, recipe: Recipe, session: Session):
        self.recipe = recipe
        self.session = session
        self.reporter = session.reporter
        self.results: list[HostResult] = []
        self._instances: dict[int, list[tuple[str, Any]]] = {}
        self._bound: dict[tuple[int, int], Any] = {}
        self._abort = threading.Event()
        #: user errors only running could reveal (a base missing offline, a host's own problem):
        #: each failed its step like a command would, and the run exits 2
        self.user_errors: list[ShlaxError] = []
        self.binder = Binder(recipe, session)
        self._cli_vars: dict[str, Any] = {}
        #: the run happened in another process started under a backend's command (see
        #: :mod:`shlax_core.reexec`): it reported everything, timings and trace included
        self.delegated = False

    # -- entry ---------------------------------------------------------------------------------
    def run(self, names: tuple[str, ...] | list[str] = (), *, plan: bool = False, jobs: int = 10,
            fail_fast: bool = False) -> int:
        """Returns the exit code: 0 all succeeded, 1 a step or host failed, 2 a user error surfaced
        while running (see ``user_errors``), 130 interrupted."""
        # every user error surfaces here; stages (targets others copy from) come first
        resolved = resolve(self.recipe, stages.order(self.recipe, names), self.session)
        stages.check(self.recipe, resolved)
        from shlax_core import fastpath, reexec

        if reexec.inside():
            reexec.announce()
        elif not plan:
            prefix = self._run_under(resolved)
            if prefix is not None:  # the whole run happens again under it (a rootless image store)
                self.delegated = True
                return reexec.run_under(prefix)

        opts = self.session.options
        self._cli_vars = parse_cli(list(opts.vars))
        # a run with --var records nothing: the fast path knows only the recipe's own variables;
        # nor one with a plugin's option (registry work on every run)
        plain = not (plan or self.session.no_cache or self.session.pull or opts.given or self._cli_vars)
        self._fast = fastpath.Recording() if plain and fastpath.enabled() else None
        if not plan:  # a plan changes nothing, the record included
            fastpath.forget(self.recipe.path, list(names))
        # fleets expand now, so a bad inventory is an error before anything runs
        self._instances = {id(r): self._expand(r) for r in resolved if not issubclass(r.backend_cls, ImageBackend)}
        # every template is rendered now too: an undefined variable runs nothing
        for r in resolved:
            if issubclass(r.backend_cls, ImageBackend):
                self._bind_image(r)
            else:
                self.prebind(r)
        if self._fast is not None:  # every action object exists now, its module imported
            self._fast.sign_code(resolved)
        for error in self.session.plugins.load_hooks():
            self.reporter.warning(f"{error.message} (skipped)")
        started = time.monotonic()
        self.reporter.emit("run_start", recipe=str(self.recipe.path), plan=plan,
                           targets=[r.target.name for r in resolved])
        for line in stages.graph(self.recipe, [r.target.name for r in resolved]):
            self.reporter.emit("info", message=line)
        code = 0
        try:
            with interruptible():
                # independent stages (targets others copy from) build at the same time, first
                early = {} if plan else stages.build_parallel(resolved, lambda r: self._image(r, plan),
                                                               self._abort, jobs, self.results)
                for r in resolved:
                    if issubclass(r.backend_cls, ImageBackend):
                        result = early[r.target.name] if r.target.name in early else self._image(r, plan)
                        self.results.append(result)
                    else:
                        self.results.extend(self._hosts(r, plan, jobs, fail_fast))
                    if any(x.status != "success" for x in self.results) and fail_fast:
                        break
        except (KeyboardInterrupt, Interrupted):
            code = 130
        finally:
            self.session.save()
        if code == 0 and any(x.status != "success" for x in self.results):
            code = 2 if self.user_errors else 1
        if code == 0 and self._fast is not None and all(issubclass(r.backend_cls, ImageBackend) for r in resolved):
            self._fast.save(self.recipe, list(names), resolved, self.session.plugins)
        status = {0: Outcome.SUCCESS, 1: Outcome.FAILED, 2: Outcome.FAILED, 130: Outcome.INTERRUPTED}[code]
        self.reporter.emit("run_end", status=status, elapsed=time.monotonic() - started,
                           recap=[vars(x) for x in self.results], recap_lines=self._recap_lines())
        return code

    def _run_under(self, resolved: list[Resolved]) -> Optional[list[str]]:
        """The command an image backend needs the whole run under (the first that asks)."""
        for r in resolved:
            if issubclass(r.backend_cls, ImageBackend):
                try:
                    prefix = r.backend_cls.run_under(r.backend_params)
                except ShlaxError as exc:
                    raise place(exc, self.recipe.locate, f"targets.{r.target.name}") from None
                if prefix is not None:
                    return prefix
        return None

    def _expand(self, r: Resolved) -> list[tuple[str, Any]]:
        """A host target's machines; an inventory mistake names its file:line (see ``place``)."""
        try:
            return r.backend_cls.expand(r.backend_params, self.recipe.dir)
        except ShlaxError as exc:
            raise place(exc, self.recipe.locate, r.target.path) from None

    def _bind_image(self, r: Resolved) -> None:
        """Image targets get the recipe's and the target's variables (no host, no facts)."""
        if all(p.action is not None for p in r.plans):
            return
        from shlax_core.templating import UndefinedVariable

        variables = {**merged(self.recipe.vars, r.target.vars, self._cli_vars), "target": r.target.name}
        try:
            r.actions = [self.binder.bind(p, variables) for p in r.plans]
        except UndefinedVariable as exc:
            if "'host'" in exc.message or "'facts'" in exc.message:
                exc.hint = ("`host` and `facts` describe a machine: they exist on host targets (ssh, podman, "
                            "local), not in image builds")
            raise
        for a in r.actions:
            for cache in a.cache_names():
                if not self.session.plugins.has("cache", cache):
                    raise RecipeError(f"{a.step.path}: unknown cache {cache!r}", where=a.step.where)

    # -- shared step machinery ------------------------------------------------------------------
    def context(self, backend: Backend, action: Action, where: dict[str, Any]) -> StepContext:
        ctx = StepContext(backend=backend, step=action.step, recipe=self.recipe, session=self.session,
                          action=action, log=lambda line: self.reporter.output(line, **where),
                          become=become_of(action.step))
        for name in action.cache_names():
            cache = self.session.cache(name, where=action.step.where)
            ctx.mounts.extend(cache.mounts(ctx))
            ctx.env.update(cache.env(ctx))
        for extra in self.session.hook.shlax_step_mounts(ctx=ctx):
            ctx.mounts.extend(extra or [])
        for extra in self.session.hook.shlax_step_env(ctx=ctx):
            ctx.env.update(extra or {})
        return ctx

    @contextlib.contextmanager
    def locks(self, ctx: StepContext) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for name in ctx.action.cache_names():
                stack.enter_context(self.session.cache(name).lock(ctx))
            yield

    def _step_event(self, event: str, where: dict[str, Any], index: int, total: int, action: Action,
                    **extra: Any) -> None:
        self.reporter.emit(event, **where, index=index, total=total, step=action.describe(),
                           path=action.step.path, **extra)

    def _failed(self, where: dict[str, Any], index: int, total: int, action: Action, exc: BaseException,
                started: float, status: str = Status.FAILED, **extra: Any) -> None:
        self._step_event("step_end", where, index, total, action, status=status,
                         elapsed=time.monotonic() - started, error=self._error(exc, action.step.path), **extra)
        self.session.hook.shlax_step_finish(target=self.recipe.targets[where["target"]], step=action.step,
                                            host=where["host"],
                                            status=status, elapsed=time.monotonic() - started)

    def _error(self, exc: BaseException, path: str) -> dict[str, Any]:
        """A step_end's ``error``: a failed command's argv, exit code and tail; a user error's
        location (its key under ``path``, the step or target it came from) and hint (and the run
        will exit 2)."""
        error: dict[str, Any] = {"message": getattr(exc, "message", str(exc))}
        if isinstance(exc, StepFailed):
            error.update(argv=exc.argv, returncode=exc.returncode, tail=exc.tail)
        elif isinstance(exc, ShlaxError):
            place(exc, self.recipe.locate, path)
            with self.reporter.lock:
                self.user_errors.append(exc)
            if exc.where:
                error["message"] = f"{exc.where}: {exc.message}"
            if exc.hint:
                error["hint"] = exc.hint
        return error

    # -- image targets -------------------------------------------------------------------------
    def _image(self, r: Resolved, plan: bool) -> HostResult:
        """Plan the target (:func:`~shlax_core.imageplan.plan_image`), report its cached steps (and
        in a plan, why each other step would run), then build what is missing. A failed step or a
        user error only building could reveal ends the target ``failed``; an interrupt removes the
        working container and keeps the layers committed so far."""
        target = r.target
        backend = r.backend_cls(target, r.backend_params, self.session)
        assert isinstance(backend, ImageBackend)
        where = {"target": target.name, "host": backend.label}
        result = HostResult(target.name, backend.label)
        started, wall_started = time.monotonic(), time.time()
        self.reporter.emit("target_start", **where, backend=r.backend_cls.name, steps=len(r.actions), plan=plan)
        target_phases = Phases()  # what belongs to the target, not a step: lookup, final commit, push
        current = _Current()
        backend.plan = plan
        try:
            backend.open()
            p = plan_image(r, backend, self.session, self.recipe.path, target_phases)
            if not plan and not self.session.no_cache and not p.whole:
                with target_phases("pull"):  # a plugin may fetch layers (shlax-plugin-registry)
                    p.add_found(self.session.hook.shlax_layers_missing(backend=backend, keys=p.missing()) or {})
            self._report_plan(r, backend, p, where, result, plan)
            if plan:
                stages.built(self.session, target.name, p.found.get(p.final_key))
                to_run = result.counts.get(Status.RUN, 0)
                summary = "up to date" if p.whole else f"{to_run} step{'s' if to_run != 1 else ''} to run"
                self.reporter.emit("target_end", **where, summary=summary, elapsed=time.monotonic() - started,
                                   phases=target_phases.durations())
                return result
            if p.whole:
                backend.tag(p.found[p.final_key])
                result.image = p.found[p.final_key]
            else:
                result.image = self._build(r, backend, p, where, result, target_phases, current)
            with self._hooks(target_phases):
                self.session.hook.shlax_image_built(backend=backend, image=result.image, keys=p.all_keys)
            history.save(self.recipe.path, target.name, p.parts)
            stages.built(self.session, target.name, result.image)
            cached, done = result.counts.get(Status.CACHED, 0), result.counts.get(Status.DONE, 0)
            summary = f"image {', '.join(backend.names()) or result.image} ({cached} cached, {done} run)"
            if self._fast is not None:
                self._fast.add(r, backend, result.image, p.all_keys, self.session, self.binder.watched())
            self.session.timeline.record(backend.label, "image", wall_started, time.monotonic() - started,
                                         target_phases, target=target.name)
            self.reporter.emit("target_end", **where, summary=summary, image=result.image,
                               elapsed=time.monotonic() - started, phases=target_phases.durations())
        except (StepFailed, ShlaxError) as exc:  # a user error mid-build ends the target like a failure
            result.status = Outcome.FAILED
            if current.action is not None:
                elapsed = time.monotonic() - current.started
                self.session.timeline.record(backend.label, current.action.describe(), time.time() - elapsed,
                                             elapsed, current.phases, status="failed", index=current.index)
                self._failed(where, current.index, len(r.actions), current.action, exc, current.started,
                             phases=current.phases.durations() if current.phases else {})
            else:
                self.reporter.emit("step_end", **where, index=0, total=len(r.actions), step="prepare",
                                   status=Status.FAILED, elapsed=0, error=self._error(exc, target.path))
            self.reporter.emit("target_end", **where, summary="failed, nothing committed for the failed step",
                               elapsed=time.monotonic() - started)
        except (KeyboardInterrupt, Interrupted):
            result.status = Outcome.INTERRUPTED
            self.reporter.emit("warning", message="interrupted: removing the working container; "
                                                  "layers committed so far are kept for the next run")
            raise
        finally:
            with shielded():
                backend.close()
        return result

    def _report_plan(self, r: Resolved, backend: ImageBackend, p: ImagePlan, where: dict[str, Any],
                     result: HostResult, plan: bool) -> None:
        """A ``step_end`` for every cached step; in a plan, also for every other one, with why it
        would run."""
        total = len(r.actions)
        for i, a in enumerate(r.actions):
            if p.cached(i):
                self._step_event("step_end", where, i + 1, total, a, status=Status.CACHED,
                                 phases=p.phases[i].durations())
                result.add(Status.CACHED)
                if not plan:
                    self.session.hook.shlax_step_finish(target=r.target, step=a.step, host=backend.label,
                                                        status=Status.CACHED, elapsed=0.0)
            elif plan:
                added = p.grows(i)
                extra = {"incremental": added} if added is not None else {}
                self._step_event("step_end", where, i + 1, total, a, status=Status.RUN,
                                 reason=p.reason(i, self.session.no_cache, backend.base_note),
                                 phases=p.phases[i].durations(), **extra)
                result.add(Status.RUN)

    def _build(self, r: Resolved, backend: ImageBackend, p: ImagePlan, where: dict[str, Any],
               result: HostResult, target_phases: Phases, current: "_Current") -> str:
        """Run and commit every step after the last cached one, then the final image; its ID."""
        target, total = r.target, len(r.actions)
        backend.start(p.restart_image())
        # the final image is the last step's own commit when the backend can merge: two names
        merge = backend.merges_last_step()
        step_keys = p.step_keys
        for i in range(p.start + 1, total):
            if self._abort.is_set():  # an interrupt reached the main thread while this built beside
                raise Interrupted("SIGINT")
            action, ph = r.actions[i], p.phases[i]
            current.step(action, i + 1, ph)
            self._step_event("step_start", where, i + 1, total, action)
            self.session.hook.shlax_step_start(target=target, step=action.step, host=backend.label)
            ctx = self.context(backend, action, {**where, "index": i + 1})
            wait_wall, wait_started = time.time(), time.monotonic()
            with self.locks(ctx):  # a download cache another build holds: "wait"
                waited = time.monotonic() - wait_started
                if waited >= 0.005:
                    ph.add("wait", wait_wall, waited)
                added = p.grows(i)
                with ph("run"):
                    if added is not None:  # on the previous layer: the added items only
                        action.apply_added(ctx, added)
                    else:
                        action.apply(ctx)
            if i < total - 1 or not merge:
                with ph("commit"):
                    layer = backend.commit(step_keys[i], {"step": action.step.path, "action": action.name,
                                                          "target": target.name})
                with self._hooks(ph):
                    self.session.hook.shlax_layer_committed(backend=backend, key=step_keys[i], image=layer)
            elapsed = time.monotonic() - current.started
            self.session.timeline.record(backend.label, action.describe(), current.wall, elapsed, ph,
                                         status=Status.DONE, index=i + 1)
            extra = {"incremental": added} if added is not None else {}
            self._step_event("step_end", where, i + 1, total, action, status=Status.DONE, elapsed=elapsed,
                             phases=ph.durations(), **extra)
            self.session.hook.shlax_step_finish(target=target, step=action.step, host=backend.label,
                                                status=Status.DONE, elapsed=elapsed)
            result.add(Status.DONE)
            history.save(self.recipe.path, target.name, p.parts[: i + 1])
        current.step(None, 0, None)
        merged_keys = [step_keys[-1]] if merge and p.start < total - 1 else []
        with target_phases("commit"):
            image = backend.finish(p.final_key, {"target": target.name}, also=merged_keys)
        with self._hooks(target_phases):
            for key in [*merged_keys, p.final_key]:
                self.session.hook.shlax_layer_committed(backend=backend, key=key, image=image)
        return image

    @contextlib.contextmanager
    def _hooks(self, phases: Phases) -> Iterator[None]:
        """Time the commit hooks: under the phase a plugin whose options the user gave names
        (the registry's "push"), else "hooks", shown only when some plugin's hook took a
        noticeable time."""
        opts = self.session.options
        named = [opts.phases.get(owner, "hooks") for owner in sorted(opts.given)]
        phase = next((n for n in named if n != "hooks"), None)
        wall, started = time.time(), time.monotonic()
        yield
        took = time.monotonic() - started
        if phase is not None or took >= 0.005:
            phases.add(phase or "hooks", wall, took)
