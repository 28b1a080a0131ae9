"""A pytest plugin for plugin authors: run a recipe against a recording fake backend, in memory.

Installed with shlax (the ``pytest11`` entry point ``shlax``), so any test suite in a venv with
shlax gets the ``shlax_recipe`` fixture, the way tox ships ``tox_project``. Testing an action
takes a few lines::

    def test_hello(shlax_recipe):
        project = shlax_recipe('''
            [targets.t]
            backend = "fake"
            steps = [ { hello = "world" } ]
        ''', actions={"hello": Hello})
        result = project.run()
        assert result.code == 0
        assert result.commands == [["echo", "hello", "world"]]

Nothing runs: the two fake backends record every command, archive and mount instead.

- ``fake``: a host backend (like ``local`` or ``ssh``): actions check, then apply. It keeps an
  in-memory file table, so a ``copy`` applied once is ``ok`` the second time. Like the real host
  backends it refuses mounts (``Unsupported``).
- ``fake-image``: an image backend (like ``buildah``): steps are keyed and "committed" as
  layers kept by the project, so a second ``run()`` reports them ``cached``.

Both pass the backend conformance suite (:mod:`shlax_core.conformance`, re-exported here as
``BackendContract`` and ``started``): they answer its probe scripts from what they were handed,
so a fake that stopped passing stdin, env or an argument through would fail it.

Each ``run()`` builds a clean plugin manager (:func:`shlax_core.plugins.get_plugin_manager`)
and injects the given actions, backends and caches in memory (``Plugins(extra=...)``); hook
implementations passed as ``hooks`` are registered on it, and no installed ``shlax.hooks`` plugin
is (``installed_hooks=False``): an installed hook-only plugin never runs in these tests. ``SHLAX_CACHE_DIR`` points into the
test's tmp dir, so plan history and the stat cache never leak between tests. A fake may only be
used in unit tests: test a plugin against the real thing too.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import pytest

pytest.register_assert_rewrite("shlax_core.conformance")

from shlax_core.backends import Backend, Become, ImageBackend, Layer, Mount, Stat, Transfer, TransferFailed  # noqa: E402
from shlax_core.conformance import BackendContract, FakeFS, emulate, started  # noqa: E402
from shlax_core.errors import ShlaxError, StepFailed, Unsupported  # noqa: E402
from shlax_core.imageconfig import ImageConfig  # noqa: E402
from shlax_core.params import canonical, doc  # noqa: E402
from shlax_core.process import Exec  # noqa: E402

__all__ = ["Recorder", "RecordingHost", "RecordingImage", "Project", "Result", "shlax_recipe", "recording",
           "BackendContract", "started"]


@dataclass
class Recorder:
    """What the fake backends did, and the state they keep between runs of one project.

    ``calls`` holds one dict per backend call, with a ``call`` key (``run``, ``put_archive``,
    ``stat``, ``open``, ``close``, ``start``, ``commit``, ``finish``, ``tag``) and its arguments.
    """

    calls: list[dict[str, Any]] = field(default_factory=list)
    #: host backend: path -> Stat, filled by put_archive (and by tests)
    files: dict[str, Stat] = field(default_factory=dict)
    #: image backend: step key -> image ID
    layers: dict[str, str] = field(default_factory=dict)
    #: image backend: a registry, reference (``host/repo:tag``) -> image ID (the transfer protocol)
    registry: dict[str, str] = field(default_factory=dict)
    #: what facts() returns (keys of /etc/os-release)
    facts: dict[str, str] = field(default_factory=lambda: {"ID": "debian", "VERSION_CODENAME": "bookworm"})
    replies: list[tuple[tuple[str, ...], int, str]] = field(default_factory=list)
    #: the fakes' files: put_archive's and what the conformance probes wrote (see FakeFS)
    fs: FakeFS = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fs = FakeFS(self.files, lambda: self.facts)

    def reply(self, prefix: Sequence[str], returncode: int = 0, output: str = "") -> None:
        """Commands starting with ``prefix`` exit with ``returncode`` after printing ``output``.

        The most recent matching reply wins; unmatched commands succeed silently, except the
        conformance suite's probes, which the fakes answer as a real target would.
        """
        self.replies.insert(0, (tuple(prefix), returncode, output))

    def match(self, argv: Sequence[str]) -> Optional[tuple[int, str]]:
        """The reply for ``argv``, or None when no reply matches."""
        for prefix, code, output in self.replies:
            if tuple(argv[:len(prefix)]) == prefix:
                return code, output
        return None

    def answer(self, argv: Sequence[str]) -> tuple[int, str]:
        return self.match(argv) or (0, "")


class _Recording:
    """Shared by both fakes: record calls, answer commands from the recorder's replies."""

    supports_become = True

    recorder: Recorder  # set on the per-project subclass

    def _record(self, call: str, **data: Any) -> None:
        self.recorder.calls.append({"call": call, "host": self.label, **data})  # type: ignore[attr-defined]

    def open(self) -> None:
        self._record("open")

    def close(self) -> None:
        self._record("close")

    #: False: run() refuses mounts with Unsupported, as the real host backends do
    supports_mounts = True

    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None,
            mounts: Sequence[Mount] = (), stdin: Optional[bytes] = None,
            check: bool = True, capture: bool = False,
            output: Optional[Callable[[str], None]] = None, become: Optional[Become] = None) -> Exec:
        argv = [str(a) for a in argv]
        if mounts and not self.supports_mounts:
            raise Unsupported(f"the {self.name} backend cannot lend host folders to a step (asked to mount "  # type: ignore[attr-defined]
                              f"{', '.join(m.target for m in mounts)})", hint="mounts are for image builds")
        self._record("run", argv=argv, env=dict(env or {}), workdir=workdir, user=user,
                     mounts=list(mounts), stdin=stdin, become=become)
        replied = self.recorder.match(argv)
        code: int
        produced: Iterable[str]
        if replied is not None:
            code, produced = replied[0], replied[1].splitlines()
        else:
            emulated = emulate(argv, env=dict(env or {}), workdir=workdir, user=user, stdin=stdin, mounts=mounts,
                               fs=self.recorder.fs, become=become)
            code, produced = emulated if emulated is not None else (0, [])
        lines: list[str] = []
        for line in produced:  # one at a time: the output callback sees each line as it comes
            lines.append(line)
            if output is not None:
                output(line)
        if check and code != 0:
            raise StepFailed(f"command exited with code {code}", argv=argv, returncode=code, tail=lines[-20:])
        return Exec(argv, code, "\n".join(lines) if capture else "", lines[-20:])

    def put_archive(self, archive: Path, dest: str, *, owner: Optional[str] = None,
                    paths: Sequence[str] = (), become: Optional[Become] = None) -> None:
        files: dict[str, Optional[bytes]] = {}
        modes: dict[str, int] = {}
        fs = self.recorder.fs
        fs.mkdir("/" + dest.strip("/"))
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                path = posixpath.normpath("/" + "/".join(p for p in (dest.strip("/"), member.name.strip("/")) if p))
                modes[path] = member.mode
                fs.mkdir(posixpath.dirname(path))
                fs.links.pop(path, None)
                if member.isfile():
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    files[path] = data
                    fs.contents[path] = data
                    self.recorder.files[path] = Stat(True, member.mode, hashlib.sha256(data).hexdigest(),
                                                     owner=_owner(owner))
                elif member.isdir():
                    files[path] = None
                    self.recorder.files[path] = Stat(True, member.mode, is_dir=True, owner=_owner(owner))
                elif member.issym():
                    files[path] = None
                    fs.links[path] = member.linkname
                    self.recorder.files.pop(path, None)
                else:
                    files[path] = None
        self._record("put_archive", dest=dest, owner=owner, paths=list(paths), files=files, modes=modes,
                     become=become)

    def stat(self, path: str, become: Optional[Become] = None) -> Stat:
        self._record("stat", path=path, become=become)
        return self.recorder.fs.stat(path)

    def facts(self) -> dict[str, str]:
        return dict(self.recorder.facts)


def _owner(owner: Optional[str]) -> Optional[str]:
    if not owner:
        return None
    return owner if ":" in owner else f"{owner}:{owner}"


@dataclass
class FakeHostParams:
    hosts: list[str] = doc("labels of the hosts of a fleet; one host (the target's name) when empty",
                           default_factory=list)


class RecordingHost(_Recording, Backend):
    """A fake host backend: records every call, runs nothing (``backend = "fake"``). Like the
    real host backends it refuses mounts."""

    name = "fake"
    Params = FakeHostParams
    supports_mounts = False

    @classmethod
    def expand(cls, params: Any, base_dir: Optional[Path] = None) -> list[tuple[str, Any]]:
        return [(h, params) for h in params.hosts] or [("", params)]


@dataclass
class FakeImageParams:
    base: str = doc("the base image; its text is its identity (the first step's parent)", "scratch")
    image: Optional[str] = doc("the name the final image is committed under", None)
    config: ImageConfig = doc("image configuration", default_factory=ImageConfig)


class RecordingImage(_Recording, ImageBackend):
    """A fake image backend: layers are entries in the recorder (``backend = "fake-image"``)."""

    name = "fake-image"
    Params = FakeImageParams
    keeps_layers = True
    transfers_layers = True

    def base_key(self) -> str:
        # like a real image backend, let shlax_base_image plugins provide the base
        ref = self.session.hook.shlax_base_image(spec=self.params.base, backend=self)
        # and, as a backend that pulls would, asks how to reach registries
        self._record("base", spec=self.params.base, ref=ref, transfer=self.session.hook.shlax_transfer(backend=self))
        return "base:" + (ref or self.params.base)

    def lookup(self, keys: Sequence[str], *, fresh: bool = False) -> dict[str, str]:
        self._record("lookup", keys=list(keys), fresh=fresh)
        return {k: self.recorder.layers[k] for k in keys if k in self.recorder.layers}

    def start(self, image: Optional[str]) -> None:
        self._record("start", image=image)

    def commit(self, key: str, meta: Mapping[str, str]) -> str:
        image = "img-" + key[:12]
        self.recorder.layers[key] = image
        self._record("commit", key=key, image=image, meta=dict(meta))
        return image

    def finish(self, key: str, meta: Mapping[str, str], also: Sequence[str] = ()) -> str:
        image = "img-" + key[:12]
        for k in (key, *also):
            self.recorder.layers[k] = image
        self._record("finish", key=key, image=image, names=self.names())
        return image

    def tag(self, image: str) -> None:
        self._record("tag", image=image, names=self.names())

    # the layer cache: the recorder's layers, by key
    @classmethod
    def list_layers(cls) -> list[Layer]:
        layers: dict[str, str] = cls.recorder.layers  # type: ignore[attr-defined]
        return [Layer(key=k, image=i, name=k, size=0, layer=i) for k, i in layers.items()]

    @classmethod
    def remove_layers(cls, names: Sequence[str]) -> None:
        for name in names:
            cls.recorder.layers.pop(name, None)  # type: ignore[attr-defined]

    # the transfer protocol: the recorder's registry; a reference on host "down.invalid" fails
    def _reach(self, ref: str, transfer: Transfer) -> None:
        if ref.startswith("down.invalid/"):
            raise TransferFailed(f"{ref}: connection refused", argv=["push", ref], returncode=1,
                                 tail=["connection refused"], login="fake login")

    def pull_layer(self, key: str, ref: str, transfer: Transfer) -> str:
        self._record("pull_layer", key=key, ref=ref, tls_verify=transfer.tls_verify)
        self._reach(ref, transfer)
        if ref not in self.recorder.registry:
            raise TransferFailed(f"{ref}: manifest unknown", argv=["pull", ref], returncode=1,
                                 tail=["manifest unknown"])
        self.recorder.layers[key] = self.recorder.registry[ref]
        return self.recorder.registry[ref]

    def push_layer(self, key: str, image: str, ref: str, transfer: Transfer) -> None:
        self._record("push_layer", key=key, image=image, ref=ref, tls_verify=transfer.tls_verify)
        self._reach(ref, transfer)
        self.recorder.registry[ref] = image

    def push_image(self, name: str, ref: str, transfer: Transfer) -> str:
        self._record("push", name=name, ref=ref, tls_verify=transfer.tls_verify)
        self._reach(ref, transfer)
        self.recorder.registry[ref] = name
        return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()

    def config_data(self) -> Any:
        return canonical(self.params.config)

    def merges_last_step(self) -> bool:
        """Like buildah: with no image configuration the last step's commit is the image."""
        return self.params.config == ImageConfig()

    def names(self) -> list[str]:
        return [self.params.image] if self.params.image else []


def recording(cls: type, recorder: Optional[Recorder] = None) -> type:
    """A fake backend class (:class:`RecordingHost` or :class:`RecordingImage`) bound to its own
    :class:`Recorder` (``.recorder``), for using it outside a :class:`Project`, e.g. with
    :func:`~shlax_core.conformance.started`."""
    return type(cls.__name__, (cls,), {"recorder": recorder if recorder is not None else Recorder()})


@dataclass
class Result:
    """One run or plan: exit code, reporter events, backend calls, and the user error if any."""

    code: int
    events: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    error: Optional[ShlaxError] = None

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The ``step_end`` events: ``path``, ``status``, ``reason``, ``error``..."""
        return [e for e in self.events if e["event"] == "step_end"]

    @property
    def statuses(self) -> list[str]:
        return [e["status"] for e in self.steps]

    @property
    def commands(self) -> list[list[str]]:
        """Every argv the backends were asked to run, in order."""
        return [c["argv"] for c in self.calls if c["call"] == "run"]

    @property
    def archives(self) -> list[dict[str, Any]]:
        """Every ``put_archive`` call: ``dest``, ``owner``, ``files`` (path -> bytes, None for dirs), ``modes``."""
        return [c for c in self.calls if c["call"] == "put_archive"]

    @property
    def mounts(self) -> list[list[Mount]]:
        """The mounts of every command run, in order."""
        return [c["mounts"] for c in self.calls if c["call"] == "run"]

    @property
    def output(self) -> str:
        """The events rendered as ``shlax`` prints them off a terminal."""
        from shlax_core.output import PlainReporter

        stream = io.StringIO()
        reporter = PlainReporter(stream)
        for event in self.events:
            reporter.handle(event)
        return stream.getvalue()


class Project:
    """A recipe in a tmp dir, with in-memory plugins; run it or plan it as often as needed."""

    def __init__(self, path: Path, *, actions: Optional[Mapping[str, Any]] = None,
                 backends: Optional[Mapping[str, Any]] = None, caches: Optional[Mapping[str, Any]] = None,
                 hooks: Iterable[Any] = ()):
        self.path = path
        self.recorder = Recorder()
        self.hooks = list(hooks)
        fakes = {name: type(cls.__name__, (cls,), {"recorder": self.recorder, "name": name})
                 for name, cls in (("fake", RecordingHost), ("fake-image", RecordingImage))}
        self.extra: dict[str, dict[str, Any]] = {
            "action": dict(actions or {}),
            "backend": {**fakes, **(backends or {})},
            "cache": dict(caches or {}),
        }

    @property
    def dir(self) -> Path:
        return self.path.parent

    def write(self, relative: str, content: str | bytes, mode: Optional[int] = None) -> Path:
        """Write a file next to the recipe (a copy source, a new recipe text...)."""
        target = self.dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(textwrap.dedent(content) if relative == self.path.name else content)
        if mode is not None:
            target.chmod(mode)
        return target

    def reply(self, prefix: Sequence[str], returncode: int = 0, output: str = "") -> None:
        """See :meth:`Recorder.reply`."""
        self.recorder.reply(prefix, returncode, output)

    def plugins(self) -> Any:
        """A fresh :class:`~shlax_core.plugins.Plugins` on a clean plugin manager: the hooks given
        to this project, and no installed ``shlax.hooks`` plugin (somebody else's hooks never run
        in a plugin author's unit tests). What the recipe names by name (an installed action or
        backend) still loads, with its own module's hooks."""
        from shlax_core.plugins import Plugins, get_plugin_manager

        return Plugins(get_plugin_manager(register=self.hooks), extra=self.extra, installed_hooks=False)

    def run(self, *targets: str, plan: bool = False, offline: bool = False, no_cache: bool = False,
            options: Optional[Any] = None, vars: Sequence[str] = ()) -> Result:
        """Load the recipe and run (or plan) it; a user error becomes ``Result.error`` with code 2.

        ``options``: a :class:`~shlax_core.options.RunOptions` (plugins' values); ``vars``: ``--var``s."""
        from shlax_core.options import RunOptions

        from shlax_core import recipe as recipe_mod
        from shlax_core.output import Reporter
        from shlax_core.runner import Runner
        from shlax_core.session import Session

        reporter = Reporter()
        first = len(self.recorder.calls)
        try:
            recipe = recipe_mod.load(str(self.path))
            session = Session(self.plugins(), reporter, offline=offline, no_cache=no_cache,
                              recipe_dir=recipe.dir, options=options or RunOptions(vars=tuple(vars)))
            runner = Runner(recipe, session)
            code = runner.run(targets, plan=plan)
            error = runner.user_errors[0] if code == ShlaxError.exit_code and runner.user_errors else None
        except ShlaxError as exc:
            code, error = exc.exit_code, exc
        return Result(code, reporter.events, self.recorder.calls[first:], error)

    def plan(self, *targets: str, **kw: Any) -> Result:
        return self.run(*targets, plan=True, **kw)


@pytest.fixture
def shlax_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Project]:
    """Factory: ``shlax_recipe(text, files={...}, actions={...}, backends={...}, caches={...},
    hooks=[...])`` writes the recipe (dedented) and its files to a tmp dir and returns a
    :class:`Project`. ``SHLAX_CACHE_DIR`` is set to a tmp folder for the test."""
    monkeypatch.setenv("SHLAX_CACHE_DIR", str(tmp_path / "shlax-cache"))
    root = tmp_path / "recipe"
    root.mkdir()

    def make(text: str, *, files: Optional[Mapping[str, str | bytes]] = None, name: str = "shlax.toml",
             **plugins: Any) -> Project:
        path = root / name
        path.write_text(textwrap.dedent(text))
        project = Project(path, **plugins)
        for rel, content in (files or {}).items():
            project.write(rel, content)
        return project

    return make
