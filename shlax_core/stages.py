"""Stages: image targets that copy from other targets' images (a Containerfile's ``FROM ... AS``
and ``COPY --from``).

``{ copy = { from = "build", src = "/opt/venv", dest = "/opt/venv" } }`` names another target
of the recipe (a *stage*) or any image reference. The runner asks this module for:

- :func:`order`: the targets to run, each after the stages it copies from (those are added when
  not selected: ``shlax run app`` builds ``build`` first when it is stale, and reuses it else);
  a cycle is an error at the step's ``file:line``;
- :func:`check`: copies from images only in image targets, from image targets only;
- :func:`bind`: before a target's keys are computed, each such step learns the source image's
  ID, which goes into its key (a rebuilt stage with other content reruns the copy and what
  follows; one rebuilt to the same image does not);
- :func:`built`: a stage's image, once built (or found up to date by a plan).

Stages build in dependency order, independent ones at the same time (:func:`build_parallel`,
``--jobs`` at most); the other targets then run one after the other, as before. A target other
targets copy from (:attr:`Target.feeds`) may stay untagged, its image kept in the layer cache
only: the image backend decides from its own options (e.g. when it sets no image name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from shlax_core.errors import RecipeError, ShlaxError

if TYPE_CHECKING:  # pragma: no cover
    import threading

    from shlax_core.actions import Action
    from shlax_core.backends import ImageBackend
    from shlax_core.recipe import Recipe, Step, Target
    from shlax_core.resolve import Resolved
    from shlax_core.session import Session

#: the action and parameter that copy from another image
ACTION, KEY = "copy", "from"


def source_of(step: "Step") -> Optional[str]:
    """The ``from`` of a copy step, as written (None when it copies from the recipe's folder)."""
    if step.action != ACTION:
        return None
    value = step.value if isinstance(step.value, dict) else {}
    source = value.get(KEY, step.options.get(KEY))
    return source if isinstance(source, str) else None


def depends(recipe: "Recipe", target: "Target") -> list[tuple[str, "Step"]]:
    """The stages (other targets) ``target`` copies from, with the step that does."""
    return depends_on(recipe.targets, target)


def depends_on(targets: "Mapping[str, Target]", target: "Target") -> list[tuple[str, "Step"]]:
    return [(src, step) for step in target.steps
            if (src := source_of(step)) is not None and src in targets]


def order(recipe: "Recipe", names: Sequence[str]) -> list[str]:
    """The targets to run: the selected ones (all when none is) after the stages they need."""
    chosen = [t.name for t in recipe.select(list(names))]
    out: list[str] = []
    visiting: list[str] = []

    def visit(name: str, via: Optional["Step"]) -> None:
        if name in out:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name):], name])
            assert via is not None
            raise RecipeError(f"{via.path}: stages copy from each other in a cycle ({cycle})", where=via.where,
                              hint="a stage cannot copy, directly or not, from a target that copies from it")
        visiting.append(name)
        target = recipe.targets[name]
        for src, step in depends(recipe, target):
            if src == name:
                raise RecipeError(f"{step.path}: target {name!r} copies from itself", where=step.where,
                                  hint="copy from another target, or from the recipe's folder (no `from`)")
            visit(src, step)
        visiting.pop()
        out.append(name)

    for name in chosen:
        visit(name, None)
    return out


def check(recipe: "Recipe", resolved: Sequence["Resolved"]) -> None:
    """Copies from images only in image builds, and from targets that build images."""
    from shlax_core.backends import ImageBackend

    kinds = {r.target.name: issubclass(r.backend_cls, ImageBackend) for r in resolved}
    for r in resolved:
        for step in r.target.steps:
            src = source_of(step)
            if src is None:
                continue
            if not kinds[r.target.name]:
                raise RecipeError(f"{step.path}.copy.from: copying from an image works in image builds only "
                                  f"(target {r.target.name!r} uses the {r.target.backend} backend)",
                                  where=recipe.locate(f"{step.path}.copy.from") or step.where,
                                  hint="build an image target and run it, or copy from the recipe's folder")
            if src in kinds and not kinds[src]:
                raise RecipeError(f"{step.path}.copy.from: target {src!r} builds no image "
                                  f"(it uses the {recipe.targets[src].backend} backend)",
                                  where=recipe.locate(f"{step.path}.copy.from") or step.where,
                                  hint="copy from an image target (one with a `base`)")


def _images(session: "Session") -> dict[str, Optional[str]]:
    return session.__dict__.setdefault("_stage_images", {})


def built(session: "Session", name: str, image: Optional[str]) -> None:
    """Record a stage's image ID (None: not known, a plan of a stale stage or a failed build)."""
    _images(session)[name] = image


def bind(actions: Sequence["Action"], backend: "ImageBackend", session: "Session") -> None:
    """Give each copy-from step of a target its source image's ID (its key's input)."""
    for action in actions:
        src = getattr(action.params, "from_", None) if action.step.action == ACTION else None
        if src is None:
            continue
        recipe = action.recipe
        where = recipe.locate(f"{action.step.path}.copy.from") or action.step.where
        if src in recipe.targets:
            images = _images(session)
            image = images.get(src)
            if image is None and not backend.plan:
                raise ShlaxError(f"{action.step.path}: stage {src!r} was not built, so there is nothing to copy "
                                 "from", where=where, hint=f"see the errors of target {src!r} above")
            action.source = (image, f"target {src}" if image else f"stage {src!r} is rebuilt first")
        else:
            image = backend.image_of(src)
            action.source = (image, src if image else f"image {src} is not in the local store: run will pull it")


def graph(recipe: "Recipe", names: Sequence[str]) -> list[str]:
    """Lines saying which target copies from which (for ``shlax plan``), in build order."""
    lines = []
    for name in names:
        target = recipe.targets[name]
        froms = list(dict.fromkeys(s for step in target.steps if (s := source_of(step)) is not None))
        if froms:
            parts = [f"stage {s}" if s in recipe.targets else f"image {s}" for s in froms]
            lines.append(f"{name} copies from {', '.join(parts)}")
    return lines


def build_parallel(resolved: Sequence["Resolved"], build: Callable[["Resolved"], Any], abort: "threading.Event",
                   jobs: int, results: list[Any]) -> dict[str, Any]:
    """Build the stages of the run (image targets others copy from), each once the stages it
    copies from are built, independent ones at the same time; their results by target name.

    Nothing to gain with fewer than two stages: then nothing is built here (the runner builds
    every target in order). On an interrupt no other stage starts, running steps are stopped
    (:func:`shlax_core.process.stop_workers`; each stage removes its working container), and
    what finished goes to ``results`` for the recap before the interrupt goes on.
    """
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    from shlax_core.backends import ImageBackend

    todo = {r.target.name: r for r in resolved if r.target.feeds and issubclass(r.backend_cls, ImageBackend)}
    if len(todo) < 2:
        return {}
    targets = {r.target.name: r.target for r in resolved}
    needs = {name: {src for src, _ in depends_on(targets, r.target) if src in todo} for name, r in todo.items()}
    done: dict[str, Any] = {}
    running: dict[Future, str] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo))), thread_name_prefix="shlax-stage")
    try:
        while len(done) < len(todo):
            for name, r in todo.items():
                if name not in done and name not in running.values() and needs[name] <= done.keys():
                    running[pool.submit(build, r)] = name
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future.result()
    except BaseException:
        from shlax_core import process

        abort.set()
        process.stop_workers()  # their steps fail now, and each stage removes its working container
        pool.shutdown(wait=True, cancel_futures=True)
        for future, name in running.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                done[name] = future.result()
        results.extend(done[name] for name in todo if name in done)
        raise
    finally:
        pool.shutdown(wait=True)
    return done
