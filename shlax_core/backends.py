"""The backend contract: where steps apply.

Two kinds. A *host* backend (local, ssh, podman container) applies steps in place and actions
check before they act, reporting ``ok`` or ``changed``. An *image* backend (buildah) runs steps in a
working container and commits each as a layer keyed by content; the runner asks it which keys
already exist and restarts from the first missing one.

A backend only moves bytes and runs argv lists; it knows no package manager.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Optional, Sequence, TypedDict

from shlax_core.errors import Unsupported
from shlax_core.process import Exec

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.recipe import Target
    from shlax_core.session import Session


@dataclass(frozen=True)
class Mount:
    """A host folder (or file) lent to one step at ``target``; never part of a layer."""

    source: str
    target: str
    readonly: bool = False


@dataclass(frozen=True)
class Become:
    """Who one call runs as, chosen per step (``become`` / ``become_user`` step options).

    Backends receive it with every ``run``, ``put_archive``, ``stat`` and ``stat_many`` call of
    a step that sets it; ``None`` there means "the backend's own default" (e.g. the ssh host's
    ``become``). ``enabled=False`` forces the login user even where the default is to become.
    Each backend says how it switches (sudo on ssh, ``--user`` on containers); one that cannot
    keeps ``supports_become = False`` and recipes asking for it are refused before anything runs.
    """

    enabled: bool = True
    #: None: the backend's default (root, or the host's ``become_user``)
    user: Optional[str] = None


@dataclass
class NoParams:
    """A backend or action that takes no options."""


@dataclass
class Stat:
    """What host-backend checks need to know about a remote path."""

    exists: bool
    mode: int = 0
    digest: Optional[str] = None
    is_dir: bool = False
    owner: Optional[str] = None  # "user:group"


#: prints variable "$1" (a checked name) and exits 0, or exits 1 when it is unset
START_ENV_SCRIPT = 'eval "isset=\\${$1+x} value=\\${$1-}"; [ -n "$isset" ] || exit 1; printf "%s" "$value"'


class Layer(TypedDict, total=False):
    """One cache layer as :meth:`ImageBackend.list_layers` lists it (``shlax cache ls --json``)."""

    #: the step key the layer was committed under (required)
    key: str
    #: the image ID (required)
    image: str
    #: the name :meth:`ImageBackend.remove_layers` takes (required)
    name: str
    #: the layer's own bytes (its step's changes, never its parents')
    size: int
    #: what identifies the storage layer: two names of one layer count once
    layer: str
    #: when it was made (seconds since the epoch), if the store says
    created: Optional[float]
    #: the storage layers (ID -> bytes) removing this layer could free, when the backend can tell
    parts: dict[str, int]


@dataclass(frozen=True)
class Login:
    """Credentials for one registry, as the plugin that found them hands them to a backend."""

    user: str
    secret: str = field(repr=False)
    #: ``secret`` is an OAuth2 refresh token (Docker's identity token), not a password
    identity_token: bool = False
    #: they may be sent to another machine (a remote builder): true only for credentials given
    #: for that (the environment's); a machine's own files and helpers stay on it
    portable: bool = False


@dataclass(frozen=True)
class Transfer:
    """How a layer or an image reaches a registry: what the plugin that asked knows about it."""

    #: verify the registry's TLS certificate
    tls_verify: bool = True
    #: the credentials to log in with, kept off command lines; None: those the backend's own
    #: tools read (e.g. ``buildah login``), on the machine that builds
    credentials: Optional[Login] = None


class TransferFailed(Exception):
    """A pull or push the registry refused or could not serve: what the tool said.

    ``login`` is how to log in where the backend's store is (e.g. ``buildah login HOST on
    builder1``), for the caller's hint when the registry asked for credentials.
    """

    def __init__(self, message: str, *, argv: Sequence[str] = (), returncode: Optional[int] = None,
                 tail: Sequence[str] = (), login: str = ""):
        super().__init__(message)
        self.message = message
        self.argv = list(argv)
        self.returncode = returncode
        self.tail = list(tail)
        self.login = login


class Backend:
    """Base class of every backend. Subclasses set ``kind`` and ``Params``.

    The runner calls :meth:`open` before the first step and :meth:`close` always, even after a
    failure or Ctrl-C; ``close`` must leave nothing behind.
    """

    kind: ClassVar[str] = "host"
    Params: ClassVar[type] = NoParams
    #: honours the ``become`` argument of run/put_archive/stat/stat_many (see :class:`Become`)
    supports_become: ClassVar[bool] = False
    #: set by the plugin loader from the entry point
    name: ClassVar[str] = ""
    version: ClassVar[str] = ""

    def __init__(self, target: "Target", params: Any, session: "Session", label: Optional[str] = None):
        self.target = target
        self.params = params
        self.session = session
        self.label = label or target.name

    #: set by the runner before :meth:`open`: ``shlax plan`` runs only checks, so a host backend
    #: must change nothing (e.g. podman checks a throw-away container instead of creating its own)
    plan: bool = False

    @classmethod
    def expand(cls, params: Any, base_dir: Optional[Path] = None) -> list[tuple[str, Any]]:
        """One (label, params) per machine this target reaches: fleets return several.

        Called before anything runs, so a bad inventory raises RecipeError early; ``base_dir``
        is the recipe's directory (relative inventory files).
        """
        return [("", params)]

    @classmethod
    def variables(cls, params: Any) -> dict[str, Any]:
        """Template variables of the machine these params reach (an inventory's host and group
        ``vars``); they win over the recipe's and the target's ``vars``."""
        return {}

    @classmethod
    def host_info(cls, params: Any) -> dict[str, Any]:
        """More of ``{{ host }}`` than its ``name`` (the label): address, user, port, groups..."""
        return {}

    def complete(self) -> Optional[str]:
        """Host backends: every step succeeded (never called by ``plan``). Return an image ID if
        one was made (podman's ``commit``), else None."""
        return None

    def open(self) -> None:
        """Connect, create the working container, ... Raise StepFailed/Unreachable on failure."""

    @classmethod
    def clean_orphans(cls, dry_run: bool = False) -> list[str]:
        """Remove what killed shlax processes left (working containers, temporary folders), never
        what a live one holds; one line per process cleaned. ``shlax cache prune`` calls it on
        every installed backend; ``dry_run``: only say what would go."""
        return []

    def close(self) -> None:
        """Release everything :meth:`open` and the steps created. Called even after failures."""

    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None,
            mounts: Sequence[Mount] = (), stdin: Optional[bytes] = None,
            check: bool = True, capture: bool = False,
            output: Optional[Callable[[str], None]] = None, become: Optional[Become] = None) -> Exec:
        """Run one argv list on the target, streaming output lines to ``output``.

        ``become`` is passed only by steps that set it (and only to backends with
        ``supports_become``); None means the backend's default.
        """
        raise NotImplementedError

    def put_archive(self, archive: Path, dest: str, *, owner: Optional[str] = None,
                    paths: Sequence[str] = (), become: Optional[Become] = None) -> None:
        """Extract a tar archive (made by the core) at ``dest``, keeping its modes.

        With ``owner`` ("user" or "user:group", names resolved in the target), the extracted
        ``paths`` are then owned by it.
        """
        raise NotImplementedError

    def stat(self, path: str, become: Optional[Become] = None) -> Stat:
        """Existence, mode and sha256 of a file on the target (used by checks on host backends)."""
        raise NotImplementedError

    def stat_many(self, paths: Sequence[str], become: Optional[Become] = None) -> list[Stat]:
        """:meth:`stat` of several paths; backends that reach a machine answer in one round trip."""
        if become is None:
            return [self.stat(p) for p in paths]
        return [self.stat(p, become=become) for p in paths]

    def start_env(self, name: str) -> Optional[str]:
        """The starting value of environment variable ``name`` for the steps' commands, or None
        when unset: what a build-wide ``${NAME}`` expands to when no earlier ``env`` sets it
        (:mod:`shlax_core.buildenv`). Asked once per name and machine. The default runs a fixed
        ``sh`` script on the target (busybox has no ``printenv``), the name as its argument and
        checked first; image backends answer from the image's configuration."""
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            return None
        res = self.run(["sh", "-c", START_ENV_SCRIPT, "sh", name], check=False, capture=True)
        return res.output if res.ok else None

    def host_facts(self) -> dict[str, str]:
        """``hostname``, ``distribution``, ``release``, ``codename``, ``architecture`` of the
        target, for templates (``{{ facts.hostname }}``); gathered once, only when a template
        uses them. Backends that learn them while connecting override this for free."""
        cached = getattr(self, "_host_facts", None)
        if cached is None:
            res = self.run(["uname", "-n", "-m"], check=False, capture=True)
            name, _, arch = (res.output.strip() if res.ok else "").partition(" ")
            cached = facts_from(self.facts(), name, arch)
            self._host_facts = cached
        return cached

    def facts(self) -> dict[str, str]:
        """Key/values from the target's /etc/os-release (cached per backend): ID, VERSION_CODENAME..."""
        cached = getattr(self, "_facts", None)
        if cached is None:
            result = self.run(["cat", "/etc/os-release"], check=False, capture=True)
            cached = parse_os_release(result.output if result.ok else "")
            self._facts = cached
        return cached


class ImageBackend(Backend):
    """A backend that builds an image: steps run in a working container, each committed as a layer."""

    kind: ClassVar[str] = "image"

    #: set by :meth:`base_key` in a plan when the base is not there yet: what run would do about
    #: it ("base image X is not in the local store: run will pull it"), shown as each step's reason
    base_note: Optional[str] = None

    def base_key(self) -> Optional[str]:
        """Resolve the base image and return its identity (image ID): the parent of the first step.

        In a plan (:attr:`plan` is true) it changes nothing: no pull, no build. A base not in the
        store then gives None, with :attr:`base_note` saying what run would do.
        """
        raise NotImplementedError

    def image_of(self, ref: str) -> Optional[str]:
        """The ID of image ``ref`` (a reference: ``debian:bookworm``, ``localhost/tools``) for a
        step that copies from it (``copy`` with ``from``), pulled when missing unless offline or
        in a plan; None when a plan cannot see it. Called after :meth:`base_key`."""
        raise Unsupported(f"the {self.name or 'selected'} backend cannot copy from another image",
                          hint="copy from an image in an image build")

    def copy_from(self, image: str, sources: Sequence[str], dest: str, *, owner: Optional[str] = None,
                  mode: Optional[str] = None) -> None:
        """Copy ``sources`` (absolute paths, globs allowed) of image ``image`` (an ID) into the
        working container at ``dest``, as a Containerfile's ``COPY --from`` does: a directory's
        contents, a file into ``dest/`` or as ``dest``; owned by root unless ``owner``."""
        raise Unsupported(f"the {self.name or 'selected'} backend cannot copy from another image")

    def lookup(self, keys: Sequence[str], *, fresh: bool = False) -> dict[str, str]:
        """Which of these step keys already have a layer: key -> image ID. One call, not one per key.

        A backend may answer from a listing it read once per build; ``fresh`` asks for the store
        as it is now, with the layers this build committed or pulled (hooks after a build)."""
        raise NotImplementedError

    def start(self, image: Optional[str]) -> None:
        """Create the working container from a layer image ID, or from the base when None."""
        raise NotImplementedError

    def commit(self, key: str, meta: Mapping[str, str]) -> str:
        """Commit the working container as the layer for ``key``; return its image ID."""
        raise NotImplementedError

    def finish(self, key: str, meta: Mapping[str, str], also: Sequence[str] = ()) -> str:
        """Apply image configuration and commit the final image under ``key`` and the target's names.

        ``also`` lists more layer keys the same commit stands for: when :meth:`merges_last_step`
        is true the runner does not commit the last step separately, and passes its key here.
        """
        raise NotImplementedError

    def fastpath_info(self, image: str, keys: Sequence[str]) -> Optional[dict[str, Any]]:
        """What the no-op fast path must check, next time, to answer "all cached" for this target
        without building anything: JSON data handed back to :meth:`fastpath_check`.

        Called after a successful build (or a wholly cached one) whose final image is ``image``;
        ``keys`` are the step keys, the final image's key last. The core already checks the recipe
        text, the installed plugins and every host input; the backend adds what only it knows:
        that the base still resolves to the image the first key was made from, and that the
        final image is still there under its names. Return None when that cannot be checked
        cheaply (a remote store, registry work on every run): the fast path is then off.
        """
        return None

    @classmethod
    def fastpath_check(cls, records: Sequence[dict[str, Any]]) -> bool:
        """True when every record (what :meth:`fastpath_info` returned, one per target of this
        backend in the run) still holds: the full path would find every step cached and have
        nothing to tag. It runs in a fresh process where only this backend's entry point was
        loaded (no hooks, no session), must be cheap (it is most of an unchanged rebuild's time:
        no network, at most a command or two) and must answer False, never raise, on anything
        unexpected."""
        return False

    @classmethod
    def run_under(cls, params: Any) -> Optional[list[str]]:
        """A command the whole run must happen under for this target to build here, or None.

        Asked before anything runs (not by a plan). A rootless image store can only be mounted
        and written inside the user namespace its tool sets up (``buildah unshare``): rather than
        a second, slower way of building for non-root users, the run starts again under that
        command (see :mod:`shlax_core.reexec`) and builds exactly as root does. The prefix gets
        ``python -m shlax_core ARGS`` appended. Raise a :class:`~shlax_core.errors.ShlaxError`
        when the host cannot give what the backend needs (it says what to set up)."""
        return None

    def merges_last_step(self) -> bool:
        """True when the final image can be the last step's own commit (the image configuration
        set on it before committing): the runner then commits once instead of twice. A backend
        saying so must keep a configured layer from leaking its configuration into later steps."""
        return False

    def tag(self, image: str) -> None:
        """Point the target's image names at an existing image (everything was cached)."""
        raise NotImplementedError

    def config_data(self) -> Any:
        """The image configuration as canonical data: part of the final image's key."""
        return None

    # -- the layer cache outside a build (``shlax cache ls | du | prune``) -------------------------
    #: the backend keeps its layers in a store ``shlax cache`` can list and prune
    keeps_layers: ClassVar[bool] = False

    @classmethod
    def list_layers(cls) -> list[Layer]:
        """Every layer this backend committed under a key, in its store, made under any
        ``SHLAX_CACHE_DIR``; how they are named in the store is the backend's own business."""
        return []

    @classmethod
    def remove_layers(cls, names: Sequence[str]) -> None:
        """Remove these layers (their :class:`Layer` ``name``); an image that is also a user's
        image keeps its other names."""

    # -- moving layers and images through a registry (used by shlax-plugin-registry) -------------
    #: the backend implements :meth:`pull_layer`, :meth:`push_layer` and :meth:`push_image`
    transfers_layers: ClassVar[bool] = False

    def pull_layer(self, key: str, ref: str, transfer: Transfer) -> str:
        """Pull the image ``ref`` (``host[:port]/repo:tag``, a layer another machine pushed) into
        the store and take it as the layer for ``key``: :meth:`lookup` and :meth:`start` know it
        from now on, and it is kept as a cache layer even if the build stops. Return its image
        ID; raise :class:`TransferFailed`."""
        raise NotImplementedError

    def push_layer(self, key: str, image: str, ref: str, transfer: Transfer) -> None:
        """Push the layer ``image`` (committed under ``key``) to ``ref``; raise :class:`TransferFailed`."""
        raise NotImplementedError

    def push_image(self, name: str, ref: str, transfer: Transfer) -> str:
        """Push the final image, known in the store as ``name``, to ``ref``, its progress shown as
        the target's output. Return the pushed manifest's digest ("" when the tool does not
        say); raise :class:`TransferFailed`."""
        raise NotImplementedError

    def names(self) -> list[str]:
        """The names the final image is committed under."""
        return []


def parse_os_release(text: str) -> dict[str, str]:
    facts = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            facts[k.strip()] = v.strip().strip('"').strip("'")
    return facts


def facts_from(os_release: Mapping[str, str], hostname: str, architecture: str) -> dict[str, str]:
    """The template facts from a target's /etc/os-release and uname."""
    return {"hostname": hostname, "architecture": architecture,
            "distribution": os_release.get("ID", ""), "release": os_release.get("VERSION_ID", ""),
            "codename": os_release.get("VERSION_CODENAME", "")}


def replace(params: Any, **changes: Any) -> Any:
    return dataclasses.replace(params, **changes)
