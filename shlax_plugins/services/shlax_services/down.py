"""``shlax down``: stop and remove this recipe's containers (dependents first), then its pods and
network; its named volumes only with ``--volumes``. Objects without the recipe's label are never
touched, and containers of services since removed from the recipe go too (a full ``down``)."""

from __future__ import annotations

from typing import Any

from shlax_core.errors import StepFailed
from shlax_core.output import Reporter

from shlax_services import names as N
from shlax_services.engine import Engine
from shlax_services.observed import Container, Observed
from shlax_services.spec import Service


def down(engine: Engine, project: N.Project, observed: Observed, order: list[Service], everything: bool,
         volumes: bool, reporter: Reporter, host: str = "") -> int:
    """``order``: the selected services in start order (all of them for a full ``down``)."""
    timeouts = {s.name: s.params.stop_timeout for s in order}
    doomed: list[Container] = [*observed.extra] if everything else []
    doomed += [observed.containers[s.name] for s in reversed(order) if s.name in observed.containers]
    total = len(doomed)
    where: dict[str, Any] = {"kind": "service"}
    for i, c in enumerate(doomed, 1):
        label = c.service or c.name
        res = engine.podman("rm", "-f", "-t", str(timeouts.get(c.service, 10)), "--", c.id)
        if not res.ok and engine.podman("container", "exists", c.id).ok:
            reporter.emit("step_end", **where, target=label, host=host or label, index=i, total=total,
                          step=f"service {label}", status="failed",
                          error={"message": f"cannot remove {c.name}", "argv": res.argv,
                                 "returncode": res.returncode, "tail": res.tail})
            return 1
        reporter.emit("step_end", **where, target=label, host=host or label, index=i, total=total,
                      step=f"service {label}", status="changed", reason=f"removed {c.name}",
                      container=c.name)
    left = {c.pod for c in observed.containers.values() if c not in doomed and c.pod}
    for pod, row in observed.pods.items():
        full = row.get("Name", project.pod(pod))
        if everything or full not in left:
            _must(engine, ["pod", "rm", "-f", "-t", "10", "--", full], f"cannot remove the pod {full}")
            reporter.emit("info", message=f"removed pod {full}")
    if everything and observed.network:
        _must(engine, ["network", "rm", "--", project.network], f"cannot remove the network {project.network}")
        reporter.emit("info", message=f"removed network {project.network}")
    if volumes:
        for vol in sorted(observed.volumes):
            _must(engine, ["volume", "rm", "--", vol], f"cannot remove the volume {vol}")
            reporter.emit("info", message=f"removed volume {vol}")
    elif everything and observed.volumes:
        reporter.emit("info", message=f"kept {len(observed.volumes)} volume(s): {', '.join(sorted(observed.volumes))} "
                                      "(shlax down --volumes removes them)")
    if not doomed and not observed.pods and not (everything and observed.network):
        reporter.emit("info", message="nothing to remove")
    return 0


def _must(engine: Engine, args: list[str], what: str) -> None:
    res = engine.podman(*args)
    if not res.ok:
        raise StepFailed(what, argv=["podman", *args], returncode=res.returncode, tail=res.tail)
