"""Host targets (local, ssh, podman): each machine checks then applies its steps, a fleet's machines
in parallel; handlers at the end of each machine's run; the recap by host.

Mixed into :class:`shlax_core.runner.Runner`, which owns the image side and the shared step
machinery (``context``, ``locks``, events).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from shlax_core.actions import Action
from shlax_core.binding import Binder, StepPlan
from shlax_core.errors import Interrupted, RecipeError, ShlaxError, StepFailed, Unreachable
from shlax_core.events import Outcome
from shlax_core.interrupts import shielded
from shlax_core.status import Status
from shlax_core.timeline import Phases
from shlax_core.variables import PendingFacts, merged

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.resolve import Resolved


@dataclass
class HostResult:
    target: str
    host: str
    counts: dict[str, int] = field(default_factory=dict)
    status: str = "success"   # success | failed | unreachable | interrupted | skipped
    image: Optional[str] = None
    fleet: bool = False       # a host-backend machine (listed in the recap)
    #: why the host failed: "STEP: message" (shown once, in the recap)
    cause: Optional[str] = None

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1


@dataclass
class Bound:
    """One machine's steps, bound before anything runs; None marks a step whose templates read
    ``facts``, bound again once the machine's facts are known."""

    variables: dict[str, Any]
    steps: list[Optional[Action]]
    handlers: dict[str, list[Optional[Action]]]


_ORDER = {"success": 0, "skipped": 1, "interrupted": 2, "failed": 3, "unreachable": 4}


class HostRuns:
    """The host side of the runner (see the module docstring)."""

    recipe: Any
    session: Any
    reporter: Any
    results: list[HostResult]
    binder: Binder
    _abort: threading.Event
    _instances: dict[int, list[tuple[str, Any]]]
    _bound: dict[tuple[int, int], Bound]
    _cli_vars: dict[str, Any]
    context: Callable[..., Any]
    locks: Callable[..., Any]
    _step_event: Callable[..., None]
    _failed: Callable[..., None]
    _error: Callable[..., dict[str, Any]]

    # -- variables and binding, before anything runs -------------------------------------------
    def host_variables(self, r: "Resolved", label: str, params: Any) -> dict[str, Any]:
        cls = r.backend_cls
        return {**merged(self.recipe.vars, r.target.vars, cls.variables(params), self._cli_vars),
                "target": r.target.name, "host": {"name": label, **cls.host_info(params)}}

    def prebind(self, r: "Resolved") -> None:
        """Render every template of every machine now, so an undefined variable stops the run
        before anything runs (exit 2); steps reading facts are checked with placeholder facts."""
        for n, (label, params) in enumerate(self._instances[id(r)]):
            variables = self.host_variables(r, label or r.target.name, params)
            facts = PendingFacts()
            trial = {**variables, "facts": facts}
            steps = [self._try_bind(p, trial, facts) for p in r.plans]
            handlers = {name: [self._try_bind(p, trial, facts) for p in plans] for name, plans in r.handlers.items()}
            self._bound[(id(r), n)] = Bound(variables, steps, handlers)

    def _try_bind(self, plan: StepPlan, variables: dict[str, Any], facts: PendingFacts) -> Optional[Action]:
        if plan.action is not None:
            return plan.action
        from shlax_core.templating import UndefinedVariable

        facts.used = False
        try:
            action = self.binder.bind(plan, variables)
        except UndefinedVariable:
            raise
        except RecipeError:
            if facts.used:  # perhaps only the placeholder is wrong there: decide with real facts
                return None
            raise
        return None if facts.used else action

    # -- a fleet ---------------------------------------------------------------------------------
    def _hosts(self, r: "Resolved", plan: bool, jobs: int, fail_fast: bool) -> list[HostResult]:
        """A host target's machines, ``jobs`` at a time. A failing or unreachable host never stops
        the others, unless ``fail_fast``: then hosts not yet started are skipped. On Ctrl-C no
        other host starts, running ones stop after their current step, and every host's result
        so far goes to the recap before the interrupt goes on."""
        instances = self._instances[id(r)]
        stop = threading.Event() if fail_fast else None
        slots: list[Optional[HostResult]] = [None] * len(instances)

        def one(n: int) -> HostResult:
            label, params = instances[n]
            return self._host(r, n, label or r.target.name, params, plan, stop, slots)

        if len(instances) == 1:
            try:
                return [one(0)]
            except (KeyboardInterrupt, Interrupted):
                self.results.extend(s for s in slots if s is not None)
                raise
        pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(instances))), thread_name_prefix="shlax-host")
        futures: list[Future] = []
        try:
            futures = [pool.submit(one, n) for n in range(len(instances))]
            return [f.result() for f in futures]
        except BaseException:  # Ctrl-C: start no other host; running ones stop after their step
            self._abort.set()
            pool.shutdown(wait=True, cancel_futures=True)
            for n, slot in enumerate(slots):
                if slot is None:
                    label = instances[n][0] or r.target.name
                    slots[n] = HostResult(r.target.name, label, status="skipped", fleet=True, cause="not started")
            self.results.extend(s for s in slots if s is not None)
            raise
        finally:
            pool.shutdown(wait=True)

    # -- one machine ----------------------------------------------------------------------------
    def _host(self, r: "Resolved", n: int, label: str, params: Any, plan: bool,
              stop: Optional[threading.Event], slots: list[Optional[HostResult]]) -> HostResult:
        target = r.target
        where = {"target": target.name, "host": label}
        result = HostResult(target.name, label, fleet=True)
        slots[n] = result
        total = len(r.plans)
        started = time.monotonic()
        # a fleet's machines run in parallel: their plain lines are grouped per machine (see output)
        fleet = len(self._instances[id(r)]) > 1
        self.reporter.emit("target_start", **where, backend=r.backend_cls.name, steps=total, plan=plan,
                           fleet=fleet)
        if stop is not None and stop.is_set():
            result.status, result.cause = "skipped", "another host failed (--fail-fast)"
            self.reporter.emit("target_end", **where, summary="skipped (--fail-fast: another host failed)",
                               status="skipped", elapsed=0.0)
            return result
        backend = r.backend_cls(target, params, self.session, label=label)
        backend.plan = plan
        try:
            backend.open()
        except (StepFailed, ShlaxError) as exc:
            result.status = "unreachable" if isinstance(exc, Unreachable) else "failed"
            result.cause = f"connect: {exc.message}"
            self.reporter.emit("step_end", **where, index=0, total=total, step="connect", status=result.status,
                               elapsed=time.monotonic() - started, error=self._error(exc, target.path))
            self.reporter.emit("target_end", **where, summary=result.status, status=result.status,
                               elapsed=time.monotonic() - started)
            with shielded():
                backend.close()
            if stop is not None:
                stop.set()
            return result
        bound = self._bound[(id(r), n)]
        late = _Late(self.binder, backend, bound.variables)
        notified: list[str] = []
        try:
            for i, step_plan in enumerate(r.plans):
                status = self._one_step(backend, step_plan, bound.steps[i], late, where, i + 1, total, plan, result)
                if status is None:
                    break
                if status in ("changed", "change"):
                    notified.extend(n for n in step_plan.step.notify if n not in notified)
            if result.status == "success" and notified:
                self._handlers(r, backend, bound, late, notified, where, total, plan, result)
            if result.status == "success" and not plan:
                result.image = backend.complete()
        except (StepFailed, ShlaxError) as exc:  # complete() failed (e.g. podman commit)
            result.status = "failed"
            result.cause = f"complete: {exc.message}"
            self.reporter.emit("step_end", **where, index=total, total=total, step="complete", status="failed",
                               elapsed=time.monotonic() - started, error=self._error(exc, target.path))
        except (KeyboardInterrupt, Interrupted):
            result.status = "interrupted"
            self._end(where, result, plan, started)
            raise
        finally:
            with shielded():
                backend.close()
        if stop is not None and result.status not in ("success", "interrupted"):
            stop.set()
        self._end(where, result, plan, started)
        return result

    def _end(self, where: dict[str, Any], result: HostResult, plan: bool, started: float) -> None:
        c = result.counts
        change = "change" if plan else "changed"
        summary = f"ok={c.get('ok', 0)} {change}={c.get(change, 0)} failed={c.get('failed', 0)}"
        if result.status == "interrupted":
            summary = f"interrupted after {sum(c.values())} steps ({summary})"
        if result.image:
            summary += f", committed {result.image[:12]}"
        self.reporter.emit("target_end", **where, summary=summary, status=result.status,
                           elapsed=time.monotonic() - started)

    def _one_step(self, backend: Any, step_plan: StepPlan, action: Optional[Action], late: "_Late",
                  where: dict[str, Any], index: int, total: int, plan: bool, result: HostResult,
                  handler: Optional[str] = None) -> Optional[str]:
        """Check, then apply, one step; its status, or None when the host stops here."""
        if self._abort.is_set():
            result.status = "interrupted"
            raise Interrupted("SIGINT")
        extra = {"handler": handler} if handler else {}
        step_started = time.monotonic()
        target = self.recipe.targets[where["target"]]
        try:
            if action is None:
                action = late.bind(step_plan)
        except ShlaxError as exc:  # a template only this host's facts reveal as wrong
            self.reporter.emit("step_end", **where, index=index, total=total, step=step_plan.describe(),
                               path=step_plan.step.path, status=Status.FAILED, elapsed=0.0,
                               error=self._error(exc, step_plan.step.path), **extra)
            result.status, result.cause = Outcome.FAILED, f"{step_plan.step.path}: {exc.message}"
            result.add(Status.FAILED)
            return None
        self._step_event("step_start", where, index, total, action, **extra)
        self.session.hook.shlax_step_start(target=target, step=action.step, host=where["host"])
        ph, wall = Phases(), time.time()
        track = f"{where['target']}@{where['host']}"
        try:
            ctx = self.context(backend, action, {**where, "index": index})
            with self.locks(ctx):
                with ph("check"):
                    satisfied = action.check(ctx)
                if satisfied:
                    status = Status.OK
                elif plan:
                    status = Status.CHANGE
                else:
                    with ph("apply"):
                        status = Status.OK if action.apply(ctx) is False else Status.CHANGED
        except (StepFailed, ShlaxError) as exc:  # a failed command, or a user error only this host
            # reveals (it fails its step like a command would; the run exits 2): the others go on
            down = isinstance(exc, Unreachable)
            result.status = Outcome.UNREACHABLE if down else Outcome.FAILED
            result.cause = f"{action.describe()}: {exc.message}"
            result.add(Status.FAILED)
            step_status = Status.UNREACHABLE if down else Status.FAILED
            self.session.timeline.record(track, action.describe(), wall, time.monotonic() - step_started, ph,
                                         status=step_status, index=index)
            self._failed(where, index, total, action, exc, step_started, status=step_status,
                         phases=ph.durations(), **extra)
            return None
        elapsed = time.monotonic() - step_started
        result.add(status)
        self.session.timeline.record(track, action.describe(), wall, elapsed, ph, status=status, index=index)
        self._step_event("step_end", where, index, total, action, status=status, elapsed=elapsed,
                         phases=ph.durations(), **extra)
        self.session.hook.shlax_step_finish(target=target, step=action.step, host=where["host"],
                                            status=status, elapsed=elapsed)
        return status

    def _handlers(self, r: "Resolved", backend: Any, bound: Bound, late: "_Late", notified: list[str],
                  where: dict[str, Any], total: int, plan: bool, result: HostResult) -> None:
        """Each notified handler once, in [handlers] order, after the host's steps."""
        for name, plans in r.handlers.items():
            if name not in notified:
                continue
            for step_plan, action in zip(plans, bound.handlers[name]):
                if self._one_step(backend, step_plan, action, late, where, total, total, plan, result,
                                  handler=name) is None:
                    return

    # -- the recap -------------------------------------------------------------------------------
    def _recap_lines(self) -> list[str]:
        """One row per machine, whatever the number of targets that reached it; a failed host's
        cause once. Shown when a run reached several hosts or one did not succeed."""
        hosts: dict[str, HostResult] = {}
        for r in self.results:
            if not r.fleet:
                continue
            row = hosts.get(r.host)
            if row is None:
                row = hosts[r.host] = HostResult("", r.host, fleet=True)
            for k, v in r.counts.items():
                row.counts[k] = row.counts.get(k, 0) + v
            if _ORDER.get(r.status, 0) > _ORDER.get(row.status, 0):
                row.status, row.cause = r.status, (f"{r.target}: {r.cause}" if r.cause else None)
        rows = list(hosts.values())
        if not rows or (len(rows) < 2 and all(r.status == "success" for r in rows)):
            return []
        width = max(len(n) for n in [*hosts, "host"])
        change = "change" if any("change" in r.counts for r in rows) else "changed"
        lines = ["", "recap:", f"  {'host':<{width}}  {'ok':>4} {change:>7} {'failed':>6} {'unreachable':>11}  status"]
        for r in rows:
            c = r.counts
            failed = c.get("failed", 0) if r.status != "unreachable" else 0
            lines.append(f"  {r.host:<{width}}  {c.get('ok', 0):>4} {c.get(change, 0):>7} {failed:>6} "
                         f"{1 if r.status == 'unreachable' else 0:>11}  {r.status}")
        causes = [(r.host, r.cause) for r in rows if r.status != "success" and r.cause]
        if causes:
            lines.append("")
            lines.extend(f"  {host}: {cause}" for host, cause in causes)
        good = sum(r.status == "success" for r in rows)
        lines.append(f"  {good} of {len(rows)} hosts succeeded")
        return lines


class _Late:
    """Binds the steps that read facts, once the machine is connected (facts gathered once)."""

    def __init__(self, binder: Binder, backend: Any, variables: dict[str, Any]):
        self.binder = binder
        self.backend = backend
        self.variables = variables
        self._facts: Optional[dict[str, Any]] = None

    def bind(self, plan: StepPlan) -> Action:
        if self._facts is None:
            self._facts = self.backend.host_facts()
        return self.binder.bind(plan, {**self.variables, "facts": self._facts})
