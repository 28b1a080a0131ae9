"""The images services run: recipe targets built in-process by the core's runner, or references.

``image = "app"`` names a target of the recipe: ``up`` runs the normal runner on it first (a
cached target costs a layer lookup), and uses the image ID it reports. Any other value is an
image reference, used as the engine's machine has it (pulled when missing).

On another machine (``--on``) a target's image is sent once: ``podman save`` here, ``podman
load`` there (same image ID), only when that machine lacks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from shlax_core.backends import ImageBackend
from shlax_core.errors import RecipeError, StepFailed
from shlax_core.recipe import Recipe
from shlax_core.session import Session

from shlax_services.engine import Engine, local_engine, save_image
from shlax_services.spec import Service


@dataclass
class Images:
    """Image ID per service; ``pending`` holds why an image is not known yet (dry run)."""

    ids: dict[str, str]
    pending: dict[str, str]
    code: int = 0


def check_targets(recipe: Recipe, services: list[Service], session: Session) -> None:
    """A service's ``image`` must name an *image* target (loads only those targets' backends)."""
    for svc in services:
        if svc.target is None:
            continue
        target = recipe.targets[svc.target]
        cls = session.plugins.load("backend", target.backend, where=recipe.locate(f"{target.path}.backend"))
        if not issubclass(cls, ImageBackend):
            raise RecipeError(f"{svc.path}.image: target {svc.target!r} provisions a host ({target.backend}); "
                              "it builds no image", where=recipe.locate(f"{svc.path}.image"),
                              hint="name a target with a `base` (an image build), or an image reference")


def _local_id(ref: str) -> Optional[str]:
    res = local_engine().podman("image", "inspect", "--format", "{{.Id}}", ref)
    return res.output.strip() if res.ok and res.output.strip() else None


def build(recipe: Recipe, services: list[Service], session: Session, *, dry_run: bool) -> Images:
    """Build (or, for a dry run, plan) the targets the services name, through the core's runner."""
    from shlax_core.resolve import resolve
    from shlax_core.runner import Runner

    targets = list(dict.fromkeys(s.target for s in services if s.target))
    ids: dict[str, str] = {}
    pending: dict[str, str] = {}
    if not targets:
        return Images(ids, pending)
    runner = Runner(recipe, session)
    code = runner.run(targets, plan=dry_run)
    if code != 0:
        return Images(ids, pending, code)
    by_target: dict[str, str] = {}
    if dry_run:
        for r in resolve(recipe, targets, session):
            planned = next(x for x in runner.results if x.target == r.target.name)
            backend = r.backend_cls(r.target, r.backend_params, session)
            assert isinstance(backend, ImageBackend)
            found = _local_id(backend.names()[0]) if backend.names() else None
            if planned.counts.get("run", 0) == 0 and found:
                by_target[r.target.name] = found
    else:
        by_target = {x.target: x.image for x in runner.results if x.image}
    for svc in services:
        if svc.target:
            if svc.target in by_target:
                ids[svc.name] = by_target[svc.target]
            else:
                pending[svc.name] = f"its image will be rebuilt (target {svc.target})"
    return Images(ids, pending)


def references(engine: Engine, services: list[Service], images: Images, *, dry_run: bool) -> None:
    """Image IDs for references, pulled on the engine's machine when missing."""
    for svc in services:
        if svc.target:
            continue
        ref = svc.params.image
        res = engine.podman("image", "inspect", "--format", "{{.Id}}", ref)
        if res.ok and res.output.strip():
            images.ids[svc.name] = res.output.strip().splitlines()[-1]
            continue
        if dry_run:
            images.pending[svc.name] = f"{ref} will be pulled"
            continue
        engine.must("pull", "--quiet", ref, what=f"cannot pull {ref} on {engine.label}")
        res = engine.must("image", "inspect", "--format", "{{.Id}}", ref, what=f"{ref} is not on {engine.label}")
        images.ids[svc.name] = res.output.strip().splitlines()[-1]


def send(engine: Engine, services: list[Service], images: Images, log: Callable[[str], None]) -> None:
    """Copy the recipe-built images the engine's machine lacks (podman save | podman load)."""
    if not engine.remote:
        return
    done: set[str] = set()
    for svc in services:
        image = images.ids.get(svc.name)
        if not svc.target or not image or image in done:
            continue
        done.add(image)
        if engine.podman("image", "exists", image).ok:
            continue
        log(f"sending image {image[:12]} (target {svc.target}) to {engine.label}")
        archive = save_image(image)
        res = engine.podman("load", "--quiet", stdin=archive)
        if not res.ok or not engine.podman("image", "exists", image).ok:
            raise StepFailed(f"loading image {image[:12]} on {engine.label} failed", argv=["podman", "load"],
                             returncode=res.returncode, tail=res.tail)
