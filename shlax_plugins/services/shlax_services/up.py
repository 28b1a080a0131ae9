"""``shlax up``: decide per service (ok, create, recreate, start), then do it in dependency order.

A service is ``ok`` when its container runs and carries the fingerprint the recipe asks for
(:mod:`shlax_services.desired`): nothing is touched, its container ID stays. Otherwise it is
``changed``: created, recreated (the reason names the settings that changed: image, env, ...),
or started again. Dependents of a recreated service are *not* recreated: they reach it by name
on the recipe's network, which follows the new container. The exception is a pod: a pod whose
ports or members changed is recreated with every container in it.

Before a service is started, every service it depends on that has a healthcheck must be
healthy; a service that was (re)started and has a healthcheck must be healthy before ``up``
ends. podman's own healthcheck timers need systemd, so ``up`` runs the check itself
(``podman healthcheck run``), which also records the result podman shows in ``ps``.

A failure (a container that cannot be created, exits at once, or never becomes healthy) stops
``up`` there: the failed container is kept for ``shlax logs``, the others are left as they are,
and the report shows the last lines of its log; exit code 1.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from shlax_core.errors import StepFailed
from shlax_core.output import Reporter

from shlax_services import names as N
from shlax_services.desired import ContainerSpec, PodSpec, changes
from shlax_services.engine import Engine
from shlax_services.observed import Container, Observed
from shlax_services.spec import Service, Services

LOG_TAIL = 15


@dataclass
class Decision:
    spec: ContainerSpec
    action: str                 # ok | create | recreate | start
    reason: str = ""            # why, without the verb: "env changed", "was exited"
    current: Optional[Container] = None

    def why(self, done: bool) -> str:
        """``recreate: env changed`` (dry run) or ``recreated: env changed`` (done)."""
        if self.action == "ok":
            return ""
        verb = self.action + ("d" if self.action.endswith("e") else "ed") if done else self.action
        return f"{verb}: {self.reason}" if self.reason else verb


@dataclass
class Plan:
    pods: dict[str, str] = field(default_factory=dict)     # pod -> ok | create | recreate
    pod_reasons: dict[str, str] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    network: bool = False                                   # to create
    volumes: list[str] = field(default_factory=list)        # to create


def decide(project: N.Project, services: list[Service], specs: dict[str, ContainerSpec],
           pods: dict[str, PodSpec], observed: Observed, pending: dict[str, str]) -> Plan:
    plan = Plan(network=not observed.network)
    for svc in services:
        for vol in svc.volumes:
            full = project.volume(vol.source)
            if vol.named and full not in observed.volumes and full not in plan.volumes:
                plan.volumes.append(full)
    for name, pod in pods.items():
        row = observed.pods.get(name)
        if row is None:
            plan.pods[name] = "create"
        else:
            diff = changes((row.get("Labels") or {}).get(N.CONFIG), pod.config)
            plan.pods[name] = "recreate" if diff else "ok"
            plan.pod_reasons[name] = f"pod {name}: {', '.join(diff)} changed" if diff else ""
    for svc in services:
        spec = specs[svc.name]
        cur = observed.containers.get(svc.name)
        if cur is None:
            plan.decisions.append(Decision(spec, "create", "", None))
            continue
        pod = svc.params.pod
        if pod and plan.pods.get(pod) != "ok":
            plan.decisions.append(Decision(spec, "recreate", plan.pod_reasons.get(pod) or "its pod is new", cur))
            continue
        diff = changes(cur.config, spec.config)
        reasons = [f"{x} changed" for x in diff if not (x == "image" and svc.name in pending)]
        if svc.name in pending:
            reasons.append(pending[svc.name])
        if reasons:
            plan.decisions.append(Decision(spec, "recreate", ", ".join(reasons), cur))
        elif cur.state != "running":
            plan.decisions.append(Decision(spec, "start", f"was {cur.state}", cur))
        else:
            plan.decisions.append(Decision(spec, "ok", "", cur))
    return plan


class Up:
    """Carries a plan out (or only reports it, for ``--dry-run``)."""

    def __init__(self, services: Services, project: N.Project, engine: Engine, reporter: Reporter,
                 pods: dict[str, PodSpec], host: Optional[str] = None):
        self.services = services
        self.project = project
        self.engine = engine
        self.reporter = reporter
        self.pods = pods
        self.host = host
        self.healthy: set[str] = set()

    # -- reporting -----------------------------------------------------------------------------
    def _where(self, service: str) -> dict[str, Any]:
        return {"kind": "service", "target": service, "host": self.host or service}

    def report(self, index: int, total: int, d: Decision, status: str, reason: str = "",
               elapsed: float = 0.0, error: Optional[dict[str, Any]] = None) -> None:
        step = f"service {d.spec.service.name} ({d.spec.service.params.image})"
        extra: dict[str, Any] = {"container": d.spec.name}
        if error:
            extra["error"] = error
        self.reporter.emit("step_end", **self._where(d.spec.service.name), index=index, total=total, step=step,
                           status=status, reason=reason, elapsed=elapsed, **extra)

    def info(self, message: str) -> None:
        self.reporter.emit("info", message=message)

    # -- dry run -------------------------------------------------------------------------------
    def show(self, plan: Plan) -> None:
        if plan.network:
            self.info(f"would create network {self.project.network}")
        for vol in plan.volumes:
            self.info(f"would create volume {vol}")
        for pod, action in plan.pods.items():
            if action != "ok":
                self.info(f"would {action} pod {self.pods[pod].full}"
                          + (f" ({plan.pod_reasons[pod]})" if plan.pod_reasons.get(pod) else ""))
        total = len(plan.decisions)
        for i, d in enumerate(plan.decisions, 1):
            self.report(i, total, d, "ok" if d.action == "ok" else "change", d.why(False))

    # -- doing ---------------------------------------------------------------------------------
    def apply(self, plan: Plan) -> int:
        """0 when every service is up (and healthy where it has a check); 1 at the first failure."""
        self._network(plan)
        for vol in plan.volumes:
            source = vol[len(self.project.name) + 1:]
            self.engine.must("volume", "create", *self.project.labels({N.VOLUME: source}), "--", vol,
                             what=f"cannot create the volume {vol}")
            self.info(f"created volume {vol}")
        total = len(plan.decisions)
        started: list[Decision] = []
        for i, d in enumerate(plan.decisions, 1):
            began = time.monotonic()
            svc = d.spec.service
            if d.action == "ok":
                self.report(i, total, d, "ok")
                continue
            try:
                for dep in svc.params.depends_on:
                    self._wait_healthy(self.services.services[dep])
                self._pod(plan, svc)
                if d.action == "recreate":
                    self._remove(d)
                if d.action in ("create", "recreate"):
                    self._create(d)
                self._start(d)
                if d.spec.service.health is None:
                    self._running(d)
            except _ServiceFailed as exc:
                failed = next(x for x in plan.decisions if x.spec.service.name == exc.service.name)
                self.report(plan.decisions.index(failed) + 1, total, failed, "failed",
                            "" if failed is not d else d.why(False), time.monotonic() - began, exc.error)
                return 1
            except StepFailed as exc:
                self.report(i, total, d, "failed", d.why(False), time.monotonic() - began,
                            {"message": exc.message, "argv": exc.argv, "returncode": exc.returncode,
                             "tail": exc.tail})
                return 1
            started.append(d)
            self.report(i, total, d, "changed", d.why(True), time.monotonic() - began)
        for d in started:  # `up` succeeded = everything it started is healthy
            try:
                self._wait_healthy(d.spec.service)
            except _ServiceFailed as exc:
                index = plan.decisions.index(d) + 1
                self.report(index, total, d, "failed", "not healthy", 0.0, exc.error)
                return 1
        return 0

    def _network(self, plan: Plan) -> None:
        if plan.network:
            self.engine.must("network", "create", *self.project.labels(), "--", self.project.network,
                             what=f"cannot create the network {self.project.network}")
            self.info(f"created network {self.project.network}")

    def _pod(self, plan: Plan, svc: Service) -> None:
        pod = svc.params.pod
        if not pod or plan.pods.get(pod) == "ok":
            return
        spec = self.pods[pod]
        if plan.pods[pod] == "recreate":
            timeout = max((m.params.stop_timeout for m in spec.members), default=10)
            self.engine.must("pod", "rm", "-f", "-t", str(timeout), "--", spec.full,
                             what=f"cannot remove the pod {spec.full}")
        self.engine.must(*spec.create_args(self.project), what=f"cannot create the pod {spec.full}")
        self.info(f"{'re' if plan.pods[pod] == 'recreate' else ''}created pod {spec.full}")
        plan.pods[pod] = "ok"

    def _remove(self, d: Decision) -> None:
        assert d.current is not None
        res = self.engine.podman("rm", "-f", "-t", str(d.spec.service.params.stop_timeout), "--", d.current.id)
        if not res.ok and self.engine.podman("container", "exists", d.current.id).ok:
            raise StepFailed(f"cannot remove the container {d.current.name}", argv=res.argv,
                             returncode=res.returncode, tail=res.tail)

    def _create(self, d: Decision) -> None:
        res = self.engine.podman(*d.spec.create_args())
        if not res.ok:
            raise StepFailed(f"cannot create the container {d.spec.name}", argv=["podman", *d.spec.create_args()],
                             returncode=res.returncode, tail=res.tail)

    def _start(self, d: Decision) -> None:
        res = self.engine.podman("start", "--", d.spec.name)
        if not res.ok:
            raise _ServiceFailed(d.spec.service, self._failure(
                d.spec.service, f"the container {d.spec.name} did not start "
                f"(podman start exited with code {res.returncode})", res.tail))

    def _state(self, name: str) -> tuple[str, str]:
        res = self.engine.podman("container", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                                 "--", name)
        parts = res.output.strip().split() if res.ok else []
        return (parts[0], parts[1]) if len(parts) == 2 else ("missing", "")

    def _running(self, d: Decision) -> None:
        state, code = self._state(d.spec.name)
        if state not in ("running",):
            raise _ServiceFailed(d.spec.service, self._failure(
                d.spec.service, f"the container {d.spec.name} is {state}"
                + (f" (exit code {code})" if state == "exited" else ""), []))

    def _wait_healthy(self, svc: Service) -> None:
        health = svc.health
        name = self.project.container(svc.name)
        if health is None or svc.name in self.healthy:
            return
        deadline = time.monotonic() + health.wait
        tries = 0
        while True:
            state, code = self._state(name)
            if state != "running":
                raise _ServiceFailed(svc, self._failure(
                    svc, f"{svc.name} is {state}" + (f" (exit code {code})" if state == "exited" else "")
                    + " while waiting for its healthcheck", []))
            res = self.engine.podman("healthcheck", "run", "--", name)
            tries += 1
            if res.ok:
                self.healthy.add(svc.name)
                return
            if time.monotonic() >= deadline:
                raise _ServiceFailed(svc, self._failure(
                    svc, f"{svc.name} is not healthy after {health.wait:g}s ({tries} checks failed; "
                    f"the check: {' '.join(health.test)})", [], self._check_output(name)))
            time.sleep(health.interval)

    def _check_output(self, name: str) -> list[str]:
        """What the last healthcheck printed (podman keeps it in the container's state)."""
        res = self.engine.podman("container", "inspect", "--format", "{{json .State.Health.Log}}", "--", name)
        try:
            log = json.loads(res.output.strip().splitlines()[-1]) if res.ok and res.output.strip() else None
        except ValueError:
            log = None
        if not log:
            return []
        out = str(log[-1].get("Output", "")).splitlines()
        return [f"healthcheck (exit code {log[-1].get('ExitCode')}): {out[0] if out else ''}",
                *(f"healthcheck: {line}" for line in out[1:5])]

    def _failure(self, svc: Service, message: str, tail: list[str], check: Sequence[str] = ()) -> dict[str, Any]:
        """The error of a failed service: the last lines of its log (and of its healthcheck)."""
        name = self.project.container(svc.name)
        lines: list[str] = []
        self.engine.stream(["logs", "--tail", str(LOG_TAIL), "--", name], lines.append)
        lines = [ln for ln in lines if ln.strip()] or ["(the container wrote no log)"]
        engine_lines = [ln for ln in tail if ln.strip() and "level=" not in ln][-5:]
        return {"message": message + f"; the last lines of its log follow (shlax logs {svc.name})",
                "tail": [*engine_lines, *check, *lines[-LOG_TAIL:]]}


class _ServiceFailed(Exception):
    def __init__(self, service: Service, error: dict[str, Any]):
        super().__init__(error["message"])
        self.service = service
        self.error = error

