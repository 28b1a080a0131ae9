"""The action contract: what one step does, what it reads from the host, how it checks itself.

An action class declares its parameters as a dataclass (``Params``) and implements
:meth:`Action.apply`. Actions never print: they call ``ctx.run`` (whose output goes to the one
reporter) and ``ctx.log``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Optional, Sequence

from shlax_core.backends import Become, Mount, NoParams, Stat
from shlax_core.params import canonical
from shlax_core.process import Exec

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.backends import Backend
    from shlax_core.recipe import Recipe, Step
    from shlax_core.session import Session


class Action:
    """Base class of every action.

    Class attributes:

    - ``Params``: a dataclass of the parameters (see :mod:`shlax_core.params`).
    - ``primary``: the parameter a non-table value fills: ``{ apt = ["curl"] }`` is
      ``{ apt = { packages = ["curl"] } }`` when ``primary = "packages"``.
    - ``caches``: names of download caches (``shlax.caches`` entry points) the action mounts.
    - ``cache_version``: what goes into the step key instead of the distribution's version. A
      step's key holds the version of the code that made the layer, so a new release of the
      plugin rebuilds every step using it; an author who sets ``cache_version = "1"`` and bumps
      it only when the action's *results* change (another command, another file layout) lets
      users upgrade without rebuilding, and can develop without bumping anything (use
      ``--no-cache`` while results change). Left None, the distribution's version is used.
    """

    Params: ClassVar[type] = NoParams
    primary: ClassVar[Optional[str]] = None
    caches: ClassVar[Sequence[str]] = ()
    cache_version: ClassVar[Optional[str]] = None
    #: set by the plugin loader from the entry point
    name: ClassVar[str] = ""
    version: ClassVar[str] = ""
    #: True for actions that read the template variables themselves (``template``): they are
    #: made once per host with :attr:`variables` set before :meth:`prepare`
    uses_variables: ClassVar[bool] = False
    #: False for actions that run no command in the target (``copy``, ``template``): the
    #: build-wide env and workdir are then not part of their key (docs/recipes.md)
    runs_commands: ClassVar[bool] = True

    @classmethod
    def key_version(cls) -> str:
        """The version that goes into this action's step keys (see ``cache_version``)."""
        return cls.version if cls.cache_version is None else f"cache_version {cls.cache_version}"

    def __init__(self, params: Any, step: "Step", recipe: "Recipe"):
        self.params = params
        self.step = step
        self.recipe = recipe
        #: the template variables of the machine this instance is for (see uses_variables)
        self.variables: Mapping[str, Any] = {}
        #: the run's template environment (:class:`shlax_core.templating.Templates`), when set
        self.templates: Any = None

    def prepare(self) -> None:
        """Check host-side inputs before anything runs (missing files...): raise RecipeError."""

    def key_params(self) -> Any:
        """The parameters as they go into the step's key: all of them (canonical form), except
        those that change how a layer is made but not what it holds (``incremental``)."""
        params = canonical(self.params)
        if isinstance(params, dict):
            params.pop("incremental", None)
        return params

    def grown_from(self, previous: Mapping[str, Any]) -> Optional[list[str]]:
        """Given :meth:`key_params` of this step's last build, the items only added since (its
        package list grew, nothing else changed): the step may then build on that build's layer
        with :meth:`apply_added` (docs/layers.md). None (the default): build from scratch."""
        return None

    def grown_list(self, previous: Mapping[str, Any], name: str = "packages") -> Optional[list[str]]:
        """For :meth:`grown_from`: the items added to the list parameter ``name`` when it only
        grew (every earlier item, pins included, still there), nothing else changed and the step
        allows it (``incremental``)."""
        current = self.key_params()
        if not getattr(self.params, "incremental", False) or not isinstance(previous.get(name), list):
            return None
        if {k: v for k, v in previous.items() if k != name} != {k: v for k, v in current.items() if k != name}:
            return None
        old = set(previous[name])
        if not old <= set(current[name]):
            return None
        return [p for p in current[name] if p not in old] or None

    def apply_added(self, ctx: "StepContext", added: Sequence[str]) -> Optional[bool]:
        """Install ``added`` on top of the layer of this step's last build (see :meth:`grown_from`)."""
        raise NotImplementedError

    def inputs(self, session: "Session") -> Mapping[str, str]:
        """Digests of everything this step reads from the host; part of the cache key."""
        return {}

    def guards(self, session: "Session") -> Optional[Mapping[str, Optional[list]]]:
        """Signatures (size, mtimes, inode) of every host path :meth:`inputs` read, taken before
        reading: the no-op fast path compares them instead of hashing again.

        Actions without host inputs need nothing. An action that overrides :meth:`inputs`
        must override this too, or return None: the fast path is then off for its targets.
        """
        return {} if type(self).inputs is Action.inputs else None

    def cache_names(self) -> Sequence[str]:
        """Download caches to mount for this step (the class's ``caches`` by default)."""
        return self.caches

    def describe(self) -> str:
        """A one-line summary of the step for the reporter."""
        return self.name

    def check(self, ctx: "StepContext") -> Optional[bool]:
        """On host backends: True when already satisfied (reported ``ok``); None = cannot tell."""
        return None

    def apply(self, ctx: "StepContext") -> Optional[bool]:
        """Do the work. Return False when nothing had to change (host backends report ``ok``)."""
        raise NotImplementedError


@dataclass
class StepContext:
    """Everything an action needs while it runs; created by the runner per step and backend."""

    backend: "Backend"
    step: "Step"
    recipe: "Recipe"
    session: "Session"
    action: Action
    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log: Callable[[str], None] = lambda line: None
    #: the step's ``become`` / ``become_user`` options; None: the backend's default
    become: Optional[Become] = None
    #: the build-wide env and workdir (:mod:`shlax_core.buildenv`), expanded at the first command
    _build: Optional[tuple[dict[str, str], Optional[str]]] = field(default=None, repr=False)

    def build_settings(self) -> tuple[dict[str, str], Optional[str]]:
        """The step's build-wide environment and working folder, ``${NAME}`` expanded (once)."""
        if self._build is None:
            settings = getattr(self.step, "settings", None)
            if settings:
                from shlax_core import buildenv

                self._build = buildenv.resolve(settings, self.backend)
            else:
                self._build = ({}, None)
        return self._build

    @property
    def offline(self) -> bool:
        return self.session.offline

    @property
    def is_image(self) -> bool:
        return self.backend.kind == "image"

    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None, check: bool = True,
            capture: bool = False, stdin: Optional[bytes] = None,
            mounts: Sequence[Mount] = (), quiet: bool = False) -> Exec:
        """Run argv on the backend with this step's mounts and environment.

        ``quiet`` keeps the output out of the live view (checks that only probe state).
        """
        build_env, build_workdir = self.build_settings()
        merged = {**build_env, **self.env}  # a step's own env (and a cache's) over the build-wide one
        if env:
            merged.update(env)
        return self.backend.run(list(argv), env=merged, workdir=workdir or build_workdir, user=user,
                                mounts=[*self.mounts, *mounts], stdin=stdin, check=check,
                                capture=capture, output=None if quiet else self.log, **self._become())

    def _become(self) -> dict[str, Any]:
        # only steps that set become pass it: backends without become support never see it
        return {"become": self.become} if self.become is not None else {}

    def stat(self, path: str) -> Stat:
        """The backend's :meth:`~shlax_core.backends.Backend.stat`, as this step's user."""
        return self.backend.stat(path, **self._become())

    def stat_many(self, paths: Sequence[str]) -> list[Stat]:
        """Several paths in one call (one round trip on backends that reach a machine)."""
        return self.backend.stat_many(list(paths), **self._become())

    def put_archive(self, archive: Path, dest: str, *, owner: Optional[str] = None,
                    paths: Sequence[str] = ()) -> None:
        """The backend's :meth:`~shlax_core.backends.Backend.put_archive`, as this step's user."""
        self.backend.put_archive(archive, dest, owner=owner, paths=paths, **self._become())

    def facts(self) -> dict[str, str]:
        return self.backend.facts()

    def cache(self, name: str) -> Any:
        return self.session.cache(name)

    def host_path(self, relative: str) -> Path:
        return Path(os.path.normpath(self.recipe.dir / relative))
