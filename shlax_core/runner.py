"""Plan a target, then execute it step by step, reporting events.

Image targets: compute every step's key, ask the backend which layers exist, restart from the
last existing one, commit each new step as a layer. Host targets: each action checks, then
applies only what is not satisfied; a fleet's hosts run in parallel.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator, Optional

from shlax_core import __version__
from shlax_core.actions import Action, StepContext
from shlax_core.backends import Backend, ImageBackend
from shlax_core.binding import Binder, become_of
from shlax_core.cache import history, incremental, keys
from shlax_core.errors import Interrupted, RecipeError, ShlaxError, StepFailed, place
from shlax_core.hostrun import HostResult, HostRuns
from shlax_core.interrupts import interruptible, shielded
from shlax_core.recipe import Recipe
from shlax_core.resolve import Resolved, resolve
from shlax_core.session import Session
from shlax_core.status import Status
from shlax_core.timeline import Phases
from shlax_core.variables import merged, parse_cli

__all__ = ["Runner", "HostResult", "shielded", "interruptible"]


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
        resolved = resolve(self.recipe, names, self.session)  # every user error surfaces here
        from shlax_core import fastpath, reexec

        if reexec.inside():
            reexec.announce()
        elif not plan:
            prefix = self._run_under(resolved)
            if prefix is not None:  # the whole run happens again under it (a rootless image store)
                self.delegated = True
                return reexec.run_under(prefix)

        opts = self.session.options
        self._cli_vars = parse_cli(opts.get("vars"))
        # a run with --var records nothing: the fast path knows only the recipe's own variables
        plain = not (plan or self.session.no_cache or self.session.pull or opts.get("push")
                     or opts.get("cache_to") or opts.get("cache_from") or not opts.get("tls_verify", True)
                     or self._cli_vars)
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
        code = 0
        try:
            with interruptible():
                for r in resolved:
                    if issubclass(r.backend_cls, ImageBackend):
                        result = self._image(r, plan)
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
        status = {0: "success", 1: "failed", 2: "failed", 130: "interrupted"}[code]
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
        target = r.target
        backend = r.backend_cls(target, r.backend_params, self.session)
        assert isinstance(backend, ImageBackend)
        where = {"target": target.name, "host": backend.label}
        result = HostResult(target.name, backend.label)
        total = len(r.actions)
        started = time.monotonic()
        self.reporter.emit("target_start", **where, backend=r.backend_cls.name, steps=total, plan=plan)
        action: Optional[Action] = None
        index = 0
        step_started = started
        wall_started = time.time()
        target_phases = Phases()  # what belongs to the target, not a step: lookup, final commit, push
        backend.plan = plan
        try:
            backend.open()
            base_id = backend.base_key()  # None: a plan that cannot see the base (run would pull it)
            phases = [Phases() for _ in r.actions]
            bodies: list[dict[str, Any]] = []
            for a, ph in zip(r.actions, phases):
                wall, t0 = time.time(), time.monotonic()
                params = a.key_params()
                become = become_of(a.step)
                if become is not None:  # who a step runs as changes its layer (absent: keys as before)
                    params = {**params, "(become)": [become.enabled, become.user]}
                bodies.append({"action": a.name, "version": a.key_version(), "params": params,
                               "inputs": dict(a.inputs(self.session))})
                ph.add("key", wall, time.monotonic() - t0)
            config = (r.backend_cls.version or __version__, backend.config_data())
            final_of = lambda last: keys.step_key(last, "image-config", config[0], config[1], {})  # noqa: E731
            previous = history.load(self.recipe.path, target.name)
            base = keys.base_key(base_id or "")
            with target_phases("lookup"):
                # plain keys, or the keys a package step was last built incrementally with (cache/incremental.py)
                resolved = incremental.resolve(r.actions, bodies, base, previous, backend.lookup, final_of,
                                               enabled=not self.session.no_cache and base_id is not None)
            parts, found, start, grown = resolved.parts, resolved.found, resolved.start, resolved.grown
            step_keys = [p["key"] for p in parts]
            final_key = final_of(step_keys[-1] if step_keys else base)
            if not plan and not self.session.no_cache and final_key not in found:
                with target_phases("pull"):
                    found.update(self.session.hook.shlax_layers_missing(
                        backend=backend, keys=[*step_keys[start + 1:], final_key]) or {})
                    start = max((i for i, k in enumerate(step_keys) if k in found), default=-1)
                if grown is not None and grown[0] <= start:
                    grown = None
            for i, a in enumerate(r.actions):
                if i <= start or final_key in found:
                    self._step_event("step_end", where, i + 1, total, a, status="cached",
                                     phases=phases[i].durations())
                    result.add("cached")
                    if not plan:
                        self.session.hook.shlax_step_finish(target=target, step=a.step, host=backend.label,
                                                            status="cached", elapsed=0.0)
                elif plan:
                    prev = previous[i] if i < len(previous) else None
                    if self.session.no_cache:
                        reason = "--no-cache"
                    elif base_id is None:
                        reason = backend.base_note or "the base image is not in the local store"
                    else:
                        reason = history.why(parts[i], prev)
                    extra = {}
                    if grown is not None and grown[0] == i:
                        reason = "incremental: on the previous layer, installs " + " ".join(grown[1])
                        extra = {"incremental": grown[1]}
                    self._step_event("step_end", where, i + 1, total, a, status="run", reason=reason,
                                     phases=phases[i].durations(), **extra)
                    result.add("run")
            if plan:
                to_run = result.counts.get("run", 0)
                summary = ("up to date" if final_key in found
                           else f"{to_run} step{'s' if to_run != 1 else ''} to run")
                self.reporter.emit("target_end", **where, summary=summary, elapsed=time.monotonic() - started,
                                   phases=target_phases.durations())
                return result
            if final_key in found:
                backend.tag(found[final_key])
                result.image = found[final_key]
            else:
                if grown is not None:  # the first step to run builds on its previous layer
                    backend.start(grown[2])
                else:
                    backend.start(found[step_keys[start]] if start >= 0 else None)
                # the final image is the last step's own commit when the backend can merge: two names
                merge = backend.merges_last_step()
                for i in range(start + 1, total):
                    action, index, ph = r.actions[i], i + 1, phases[i]
                    step_started, step_wall = time.monotonic(), time.time()
                    self._step_event("step_start", where, index, total, action)
                    self.session.hook.shlax_step_start(target=target, step=action.step, host=backend.label)
                    ctx = self.context(backend, action, {**where, "index": index})
                    wait_wall, wait_started = time.time(), time.monotonic()
                    with self.locks(ctx):  # a download cache another build holds: "wait"
                        waited = time.monotonic() - wait_started
                        if waited >= 0.005:
                            ph.add("wait", wait_wall, waited)
                        with ph("run"):
                            if grown is not None and grown[0] == i:  # on the previous layer: the added only
                                action.apply_added(ctx, grown[1])
                            else:
                                action.apply(ctx)
                    if i < total - 1 or not merge:
                        with ph("commit"):
                            layer = backend.commit(step_keys[i], {"step": action.step.path, "action": action.name,
                                                                  "target": target.name})
                        with self._hooks(ph):
                            self.session.hook.shlax_layer_committed(backend=backend, key=step_keys[i], image=layer)
                    elapsed = time.monotonic() - step_started
                    self.session.timeline.record(backend.label, action.describe(), step_wall, elapsed, ph,
                                                 status="done", index=index)
                    extra = {"incremental": grown[1]} if grown is not None and grown[0] == i else {}
                    self._step_event("step_end", where, index, total, action, status="done", elapsed=elapsed,
                                     phases=ph.durations(), **extra)
                    self.session.hook.shlax_step_finish(target=target, step=action.step, host=backend.label,
                                                        status="done", elapsed=elapsed)
                    result.add("done")
                    history.save(self.recipe.path, target.name, parts[: i + 1])
                action = None
                merged_keys = [step_keys[-1]] if merge and start < total - 1 else []
                with target_phases("commit"):
                    result.image = backend.finish(final_key, {"target": target.name}, also=merged_keys)
                with self._hooks(target_phases):
                    for key in [*merged_keys, final_key]:
                        self.session.hook.shlax_layer_committed(backend=backend, key=key, image=result.image)
            with self._hooks(target_phases, final=True):
                self.session.hook.shlax_image_built(backend=backend, image=result.image, keys=[*step_keys, final_key])
            history.save(self.recipe.path, target.name, parts)
            cached = result.counts.get("cached", 0)
            summary = f"image {', '.join(backend.names()) or result.image} ({cached} cached, {result.counts.get('done', 0)} run)"
            if self._fast is not None:
                self._fast.add(r, backend, result.image, [*step_keys, final_key], self.session,
                               self.binder.watched())
            self.session.timeline.record(backend.label, "image", wall_started, time.monotonic() - started,
                                         target_phases, target=target.name)
            self.reporter.emit("target_end", **where, summary=summary, image=result.image,
                               elapsed=time.monotonic() - started, phases=target_phases.durations())
        except (StepFailed, ShlaxError) as exc:  # a user error mid-build ends the target like a failure
            result.status = "failed"
            if action is not None:
                ph = phases[index - 1]
                self.session.timeline.record(backend.label, action.describe(), time.time() - (
                    time.monotonic() - step_started), time.monotonic() - step_started, ph, status="failed",
                    index=index)
                self._failed(where, index, total, action, exc, step_started, phases=ph.durations())
            else:
                self.reporter.emit("step_end", **where, index=0, total=total, step="prepare",
                                   status=Status.FAILED, elapsed=0, error=self._error(exc, target.path))
            self.reporter.emit("target_end", **where, summary="failed, nothing committed for the failed step",
                               elapsed=time.monotonic() - started)
        except (KeyboardInterrupt, Interrupted):
            result.status = "interrupted"
            self.reporter.emit("warning", message="interrupted: removing the working container; "
                                                  "layers committed so far are kept for the next run")
            raise
        finally:
            with shielded():
                backend.close()
        return result

    @contextlib.contextmanager
    def _hooks(self, phases: Phases, final: bool = False) -> Iterator[None]:
        """Time the commit hooks: "push" when the run pushes (--cache-to, or --push for the
        image), else "hooks", shown only when some plugin's hook took a noticeable time."""
        opts = self.session.options
        pushing = bool(opts.get("cache_to") or (final and opts.get("push")))
        wall, started = time.time(), time.monotonic()
        yield
        took = time.monotonic() - started
        if pushing or took >= 0.005:
            phases.add("push" if pushing else "hooks", wall, took)
