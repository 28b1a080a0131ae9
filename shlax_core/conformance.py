"""The backend conformance suite: one set of tests every backend runs against itself.

A backend that silently lacks a documented feature (stdin dropped, a mount ignored, an argument
re-split by a shell) builds the wrong thing and reports DONE. These tests drive a *started*
backend through the contract of :class:`shlax_core.backends.Backend` — ``run`` with argv, env,
workdir, user, stdin, capture, streamed output and exit codes; ``put_archive``; ``stat``;
``facts``; mounts — and check what the program in the target really saw. A feature a backend
cannot offer must be refused with :class:`~shlax_core.errors.Unsupported`, never dropped: only
mounts may be refused (host backends keep their own caches).

A plugin author enables it in a few lines (the ``shlax`` pytest plugin is active wherever shlax
is installed)::

    import pytest
    from shlax_core.conformance import BackendContract, started
    from shlax_mybox import MyBox

    class TestMyBoxContract(BackendContract):
        mounts = False                      # MyBox refuses mounts (True: must support them)

        @pytest.fixture(scope="class")
        @classmethod
        def backend(cls):
            with started(MyBox, {"host": "box.test"}) as backend:
                yield backend

The target needs a POSIX ``sh`` with ``printf``, ``cat``, ``pwd``, ``id``, ``mkdir``, ``wc``,
``sha256sum``, ``readlink`` and ``sleep`` (busybox has them all), a writable ``/tmp``, and a user
and group other than root (``contract_user`` / ``contract_group``, default nobody / nogroup).
Every probe is a fixed ``sh -c`` script whose data travel as positional arguments, so the
recording fakes of :mod:`shlax_core.testing` can answer them too (:func:`emulate`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import pytest

from shlax_core.backends import Backend, Become, ImageBackend, Mount, Stat, START_ENV_SCRIPT, parse_os_release
from shlax_core.errors import StepFailed, Unsupported

if TYPE_CHECKING:  # pragma: no cover
    from shlax_core.plugins import Plugins

__all__ = ["BackendContract", "ImageLayerContract", "started", "emulate", "PROBES"]

# -- probes: fixed scripts, data in "$@" ----------------------------------------------------------
ARGS = ': shlax-args; for a; do printf "[%s]\\n" "$a"; done'
ENV = ': shlax-env; printf "%s|%s" "$SHLAX_A" "$SHLAX_B"'
PWD = ": shlax-pwd; pwd"
ENV_PATH = ': shlax-env-path; printf "%s" "$PATH"'
USER = ": shlax-user; id -un"
CAT = ": shlax-cat; cat"
DIGEST = ': shlax-digest; cat > "$1" && wc -c < "$1" && sha256sum < "$1" && rm -f -- "$1"'
EXIT = ': shlax-exit; echo "$1"; echo "$2" >&2; exit "$3"'
LIVE = (': shlax-live; echo first; i=0; while [ ! -e "$1" ] && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i+1)); done; '
        'if [ -e "$1" ]; then echo second; else echo "no marker"; fi')
TOUCH = ': shlax-touch; : > "$1"'
MKDIR = ': shlax-mkdir; mkdir -p -- "$1"'
READ = ': shlax-read; cat -- "$1"'
WRITE = ': shlax-write; printf "%s" "$2" > "$1"'
READLINK = ': shlax-readlink; readlink "$1"'
PROBES = (ARGS, ENV, PWD, USER, CAT, DIGEST, EXIT, LIVE, TOUCH, MKDIR, READ, WRITE, READLINK, ENV_PATH)

#: arguments a wrapper (a shell, sudo, env, ssh, chroot) must not re-split, expand or parse
TRICKY = ["two words", "it's", 'say "hi"', "$HOME", "`id`", "$(id)", "a;b", "a && b", "x|y", "-n",
          "--help", "-", "*", "?", "~", "back\\slash", "tab\there", "", " ", "é ü", "%s %d", "a=b"]


def probe(script: str, *args: str) -> list[str]:
    """The argv running one probe with ``args`` as its positional parameters."""
    return ["sh", "-c", script, "sh", *args]


# -- a started backend ------------------------------------------------------------------------------

@contextlib.contextmanager
def started(backend_cls: type[Backend], options: Optional[Mapping[str, Any]] = None, *,
            target: str = "conformance", plugins: Optional["Plugins"] = None,
            recipe_dir: Optional[Path] = None) -> Iterator[Backend]:
    """A backend built from recipe ``options`` (validated like a recipe's), opened, and for an
    image backend with its working container started from its base; closed afterwards.

    A fleet backend must name exactly one host. ``plugins`` defaults to the installed ones
    (an image backend may ask hooks for its base).
    """
    from shlax_core import params as P
    from shlax_core.output import Reporter
    from shlax_core.plugins import Plugins
    from shlax_core.recipe import Target
    from shlax_core.session import Session

    options = dict(options or {})
    path = f"targets.{target}"
    params = P.build(backend_cls.Params, options, path=path, what="option")
    session = Session(plugins if plugins is not None else Plugins(), Reporter(), recipe_dir=recipe_dir)
    where = str(recipe_dir or "conformance")
    recipe_target = Target(target, backend_cls.name or backend_cls.__name__, options, [], path, where)
    instances = backend_cls.expand(params, recipe_dir)
    if len(instances) != 1:
        raise ValueError(f"started() needs exactly one host, not {len(instances)}")
    label, host_params = instances[0]
    backend = backend_cls(recipe_target, host_params, session, label=label or target)
    try:
        backend.open()
        if isinstance(backend, ImageBackend):
            backend.base_key()
            backend.start(None)
        yield backend
    finally:
        backend.close()


def tar_of(entries: Sequence[tuple]) -> bytes:
    """A tar archive from ``(name, kind, data_or_link, mode)`` rows (kind: file, dir, symlink)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 1_700_000_000
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the suite --------------------------------------------------------------------------------------

class BackendContract:
    """Subclass as ``TestSomething(BackendContract)`` and provide the ``backend`` fixture.

    Class attributes: ``mounts`` — True when the backend must support mounts, False when it
    must refuse them with :class:`Unsupported`, None (default) when either is accepted.
    """

    mounts: Optional[bool] = None

    # -- fixtures an author overrides -----------------------------------------------------------
    @pytest.fixture
    def backend(self) -> Backend:
        """A started backend (see :func:`started`); class- or module-scoped is fine."""
        pytest.fail("BackendContract: override the `backend` fixture to return a started backend")

    @pytest.fixture
    def contract_user(self) -> str:
        """A user of the target other than the one steps run as by default."""
        return "nobody"

    @pytest.fixture
    def contract_group(self) -> str:
        """A group of the target that ``contract_user`` may own files with."""
        return "nogroup"

    @pytest.fixture
    def scratch(self, backend: Backend) -> str:
        """A new, empty folder in the target for one test."""
        path = f"/tmp/shlax-contract-{uuid.uuid4().hex[:10]}"
        backend.run(probe(MKDIR, path))
        return path

    # -- run: argv, env, workdir, user -------------------------------------------------------------
    def test_argv_reaches_the_program_intact(self, backend: Backend) -> None:
        res = backend.run(probe(ARGS, *TRICKY), capture=True)
        assert res.ok
        assert res.output.split("\n") == [f"[{a}]" for a in TRICKY]

    def test_env_reaches_the_program(self, backend: Backend) -> None:
        env = {"SHLAX_A": "two words; $HOME `id` 'q' \"d\"", "SHLAX_B": "-x"}
        assert backend.run(probe(ENV), env=env, capture=True).output == f"{env['SHLAX_A']}|-x"

    def test_workdir(self, backend: Backend, scratch: str) -> None:
        inner = f"{scratch}/with space"
        backend.run(probe(MKDIR, inner))
        assert backend.run(probe(PWD), workdir=inner, capture=True).output == inner

    def test_start_env_is_what_commands_get(self, backend: Backend) -> None:
        """A build-wide ``${PATH}`` expands to the PATH the target's commands start with; an unset
        variable is None (an error for the user, never an empty string)."""
        path = backend.start_env("PATH")
        assert path, "every target has a PATH its commands are looked up in"
        assert backend.run(probe(ENV_PATH), capture=True).output == path
        assert backend.start_env("SHLAX_SURELY_UNSET_8d1f") is None

    def test_user(self, backend: Backend, contract_user: str) -> None:
        assert backend.run(probe(USER), user=contract_user, capture=True).output == contract_user

    # -- stdin ------------------------------------------------------------------------------------
    def test_stdin_bytes(self, backend: Backend) -> None:
        data = "line one\nline two with 'quotes' and $VAR\n"
        assert backend.run(probe(CAT), stdin=data.encode(), capture=True).output == data.rstrip("\n")

    def test_stdin_empty(self, backend: Backend) -> None:
        res = backend.run(probe(CAT), stdin=b"", capture=True)
        assert res.ok and res.output == ""

    def test_no_stdin_is_end_of_file(self, backend: Backend) -> None:
        """Without ``stdin`` a program reading its input gets end-of-file, never a hang."""
        res = backend.run(probe(CAT), capture=True)
        assert res.ok and res.output == ""

    def test_stdin_large_binary(self, backend: Backend, scratch: str) -> None:
        data = bytes(range(256)) * 4096 + b"\x00no newline at the end"  # ~1 MB, NUL bytes included
        out = backend.run(probe(DIGEST, f"{scratch}/stdin.bin"), stdin=data, capture=True).output.split("\n")
        assert [out[0].strip(), out[1].split()[0]] == [str(len(data)), _sha(data)]

    # -- output ---------------------------------------------------------------------------------
    def test_capture_on_and_off(self, backend: Backend) -> None:
        args = [f"line {i}" for i in range(30)]
        on = backend.run(probe(ARGS, *args), capture=True)
        assert on.output.split("\n") == [f"[{a}]" for a in args]
        off = backend.run(probe(ARGS, *args))
        assert off.ok and off.output == ""
        assert off.tail and off.tail[-1] == "[line 29]"  # the tail is kept for failure messages

    def test_output_is_streamed_line_by_line(self, backend: Backend) -> None:
        seen: list[str] = []
        backend.run(probe(EXIT, "to stdout", "to stderr", "0"), output=seen.append)
        assert sorted(seen) == ["to stderr", "to stdout"]  # stderr too, one call per line
        seen.clear()
        backend.run(probe(ARGS, "one", "two", "three"), output=seen.append)
        assert seen == ["[one]", "[two]", "[three]"]

    def test_output_arrives_while_the_program_runs(self, backend: Backend, scratch: str) -> None:
        """The first line reaches ``output`` before the program ends: the program waits for a
        marker that the callback creates when it sees that line."""
        marker = f"{scratch}/go"
        seen: list[str] = []

        def on_line(line: str) -> None:
            seen.append(line)
            if line == "first":
                backend.run(probe(TOUCH, marker))

        backend.run(probe(LIVE, marker), output=on_line)
        assert seen == ["first", "second"]

    # -- exit codes -----------------------------------------------------------------------------
    def test_failure_raises_with_argv_code_and_tail(self, backend: Backend) -> None:
        argv = probe(EXIT, "some output", "an error", "3")
        with pytest.raises(StepFailed) as info:
            backend.run(argv)
        assert info.value.returncode == 3
        assert info.value.argv == argv      # the step's own argv, not a wrapper's
        assert "some output" in info.value.tail and "an error" in info.value.tail

    def test_failure_without_check_returns_the_code(self, backend: Backend) -> None:
        res = backend.run(probe(EXIT, "out", "err", "5"), check=False, capture=True)
        assert res.returncode == 5 and not res.ok
        assert "out" in res.output.split("\n")

    # -- files ----------------------------------------------------------------------------------
    def _upload(self, backend: Backend, entries: Sequence[tuple], dest: str, **kw: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="shlax-contract-") as tmp:
            archive = Path(tmp) / "files.tar"
            archive.write_bytes(tar_of(entries))
            backend.put_archive(archive, dest, **kw)

    def test_put_archive_keeps_modes_nesting_and_symlinks(self, backend: Backend, scratch: str) -> None:
        dest = f"{scratch}/new/nested"  # does not exist yet
        self._upload(backend, [
            ("d", "dir", None, 0o750),
            ("d/sub/deep/f.txt", "file", b"deep\n", 0o640),
            ("d/run.sh", "file", b"#!/bin/sh\necho run\n", 0o755),
            ("d/empty", "file", b"", 0o600),
            ("d/link", "symlink", "sub/deep/f.txt", 0o777),
        ], dest)
        d = backend.stat(f"{dest}/d")
        assert (d.exists, d.is_dir, d.mode) == (True, True, 0o750)
        f = backend.stat(f"{dest}/d/sub/deep/f.txt")
        assert (f.exists, f.is_dir, f.mode, f.digest) == (True, False, 0o640, _sha(b"deep\n"))
        assert backend.stat(f"{dest}/d/run.sh").mode == 0o755
        assert backend.stat(f"{dest}/d/empty").digest == _sha(b"")
        assert backend.stat(f"{dest}/d/sub/deep").is_dir
        link = backend.stat(f"{dest}/d/link")  # stat follows links
        assert (link.digest, link.mode, link.is_dir) == (_sha(b"deep\n"), 0o640, False)
        assert backend.run(probe(READLINK, f"{dest}/d/link"), capture=True).output == "sub/deep/f.txt"
        assert backend.run(probe(READ, f"{dest}/d/sub/deep/f.txt"), capture=True).output == "deep"

    def test_put_archive_replaces_what_is_there(self, backend: Backend, scratch: str) -> None:
        self._upload(backend, [("a.txt", "file", b"one\n", 0o644), ("l", "symlink", "a.txt", 0o777)], scratch)
        self._upload(backend, [("a.txt", "file", b"two\n", 0o600), ("l", "file", b"now a file\n", 0o644)],
                     scratch)
        a = backend.stat(f"{scratch}/a.txt")
        assert (a.digest, a.mode) == (_sha(b"two\n"), 0o600)
        assert backend.stat(f"{scratch}/l").digest == _sha(b"now a file\n")
        assert backend.stat(f"{scratch}/a.txt").digest == _sha(b"two\n")  # not written through the link

    def test_put_archive_owner(self, backend: Backend, scratch: str, contract_user: str,
                               contract_group: str) -> None:
        owner = f"{contract_user}:{contract_group}"
        self._upload(backend, [("o", "dir", None, 0o755), ("o/f", "file", b"x", 0o644)], scratch,
                     owner=owner, paths=[f"{scratch}/o", f"{scratch}/o/f"])
        assert backend.stat(f"{scratch}/o/f").owner == owner
        assert backend.stat(f"{scratch}/o").owner == owner

    def test_stat(self, backend: Backend, scratch: str) -> None:
        assert backend.stat(f"{scratch}/missing") == Stat(False)
        assert not backend.stat(f"{scratch}/missing/below").exists
        self._upload(backend, [("s.txt", "file", b"stat me", 0o604), ("dangling", "symlink", "nowhere", 0o777)],
                     scratch)
        s = backend.stat(f"{scratch}/s.txt")
        assert (s.exists, s.is_dir, s.mode, s.digest) == (True, False, 0o604, _sha(b"stat me"))
        assert not backend.stat(f"{scratch}/dangling").exists
        root = backend.stat(scratch)
        assert root.exists and root.is_dir

    def test_facts_are_the_targets_os_release(self, backend: Backend) -> None:
        res = backend.run(probe(READ, "/etc/os-release"), check=False, capture=True)
        expected = parse_os_release(res.output) if res.ok else {}
        assert backend.facts() == expected
        assert backend.facts() == expected  # cached or not, the same answer

    # -- mounts ---------------------------------------------------------------------------------
    def test_mounts_work_or_are_refused(self, backend: Backend, tmp_path: Path) -> None:
        """A file lent read-only is seen and cannot be written; a folder lent read-write keeps
        what a step wrote there for the next step that gets it, and is not part of the target
        without the mount. A backend without mounts refuses them before running anything."""
        lent = tmp_path / "lent.conf"
        lent.write_text("lent by the host\n")
        folder = tmp_path / "cache"
        folder.mkdir()
        name = uuid.uuid4().hex[:10]
        target_file, target_dir = f"/run/shlax-contract-{name}.conf", f"/tmp/shlax-contract-mnt-{name}"
        try:
            res = backend.run(probe(READ, target_file), capture=True, check=False,
                              mounts=[Mount(str(lent), target_file, readonly=True)])
        except Unsupported as exc:
            assert self.mounts is not True, f"this backend must support mounts, but refused: {exc}"
            assert "mount" in exc.message
            return
        assert self.mounts is not False, "this backend must refuse mounts with Unsupported"
        assert res.ok and res.output == "lent by the host", "a read-only file mount was not seen"
        wrote = backend.run(probe(WRITE, target_file, "changed"), check=False,
                            mounts=[Mount(str(lent), target_file, readonly=True)])
        assert not wrote.ok, "a read-only mount could be written"
        assert lent.read_text() == "lent by the host\n"
        rw = [Mount(str(folder), target_dir)]
        backend.run(probe(WRITE, f"{target_dir}/kept", "from step one"), mounts=rw)
        assert backend.run(probe(READ, f"{target_dir}/kept"), mounts=rw, capture=True).output == "from step one"
        assert not backend.run(probe(READ, f"{target_dir}/kept"), check=False).ok, \
            "what was written in a mounted folder is in the target without the mount"


# -- what the recording fakes answer ----------------------------------------------------------------

#: the environment a fake target's commands start with
FAKE_START_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def emulate(argv: Sequence[str], *, env: Mapping[str, str], workdir: Optional[str], user: Optional[str],
            stdin: Optional[bytes], mounts: Sequence[Mount], fs: "FakeFS",
            become: Optional[Become] = None) -> Optional[tuple[int, Iterable[str]]]:
    """The exit code and output lines a probe would give, computed from what the fake was
    handed; None for any other command. ``fs`` is the fake's in-memory file table. The lines are
    produced lazily: :data:`LIVE` looks for its marker only after "first" was delivered."""
    if list(argv[:4]) == ["sh", "-c", START_ENV_SCRIPT, "sh"] and len(argv) == 5:  # Backend.start_env
        value = {**FAKE_START_ENV, **env}.get(argv[4])
        return (1, []) if value is None else (0, [value])
    if len(argv) < 4 or list(argv[:2]) != ["sh", "-c"] or argv[2] not in PROBES or argv[3] != "sh":
        return None
    script, args = argv[2], list(argv[4:])
    text = (stdin or b"").decode("utf-8", "replace")
    if script == ARGS:
        return 0, [f"[{a}]" for a in args]
    if script == ENV:
        return 0, [f"{env.get('SHLAX_A', '')}|{env.get('SHLAX_B', '')}"]
    if script == PWD:
        return 0, [workdir or "/"]
    if script == ENV_PATH:
        return 0, [{**FAKE_START_ENV, **env}["PATH"]]
    if script == USER:
        if user is None and become is not None:
            user = (become.user or "root") if become.enabled else "login"
        return 0, [(user or "root").split(":")[0]]
    if script == CAT:
        return 0, text.splitlines()
    if script == DIGEST:
        data = stdin or b""
        return 0, [str(len(data)), f"{_sha(data)}  -"]
    if script == EXIT:
        return int(args[2]), [args[0], args[1]]
    if script == TOUCH:
        return fs.write(args[0], b"", mounts)
    if script == MKDIR:
        fs.mkdir(args[0])
        return 0, []
    if script == WRITE:
        return fs.write(args[0], args[1].encode(), mounts)
    if script == READ:
        data = fs.read(args[0], mounts)
        return (1, [f"cat: {args[0]}: No such file or directory"]) if data is None else \
            (0, data.decode("utf-8", "replace").splitlines())
    if script == READLINK:
        link = fs.links.get(posixpath.normpath(args[0]))
        return (1, []) if link is None else (0, [link])
    if script == LIVE:
        def live() -> Iterator[str]:
            yield "first"
            yield "second" if fs.stat(args[0]).exists else "no marker"

        return 0, live()
    return None


class FakeFS:
    """The in-memory files of a recording fake: what ``put_archive`` extracted and what the
    probes wrote, so ``stat``, ``readlink`` and reads answer as a real target would."""

    def __init__(self, files: dict[str, Stat], facts: Callable[[], Mapping[str, str]] = dict):
        self.files = files                      # shared with Recorder.files
        self.facts = facts                      # /etc/os-release, unless a step wrote one
        self.contents: dict[str, bytes] = {}
        self.links: dict[str, str] = {}
        self.lent: dict[str, bytes] = {}        # what steps wrote into mounted folders

    def _mounted(self, path: str, mounts: Sequence[Mount]) -> Optional[tuple[Mount, str]]:
        for m in mounts:
            target = m.target.rstrip("/")
            if path == target or path.startswith(target + "/"):
                return m, path[len(target):].lstrip("/")
        return None

    def follow(self, path: str) -> str:
        path = posixpath.normpath(path)
        for _ in range(40):
            parts = path.split("/")
            for i in range(2, len(parts) + 1):
                head = "/".join(parts[:i])
                if head in self.links:
                    target = self.links[head]
                    base = target if target.startswith("/") else posixpath.join(posixpath.dirname(head), target)
                    path = posixpath.normpath("/".join([base, *parts[i:]]))
                    break
            else:
                return path
        return path

    def read(self, path: str, mounts: Sequence[Mount]) -> Optional[bytes]:
        hit = self._mounted(path, mounts)
        if hit is not None:
            m, rel = hit
            key = os.path.join(m.source, rel) if rel else m.source
            if key in self.lent:
                return self.lent[key]
            try:
                with open(key, "rb") as f:  # reading what the host lends, as the mount would
                    return f.read()
            except OSError:
                return None
        real = self.follow(path)
        if real == "/etc/os-release" and real not in self.contents:
            return "".join(f"{k}={v}\n" for k, v in self.facts().items()).encode()
        return self.contents.get(real)

    def write(self, path: str, data: bytes, mounts: Sequence[Mount]) -> tuple[int, list[str]]:
        hit = self._mounted(path, mounts)
        if hit is not None:
            m, rel = hit
            if m.readonly:
                return 1, [f"sh: can't create {path}: Read-only file system"]
            self.lent[os.path.join(m.source, rel) if rel else m.source] = data
            return 0, []
        real = self.follow(path)
        self.contents[real] = data
        self.files[real] = Stat(True, 0o644, _sha(data))
        return 0, []

    def mkdir(self, path: str) -> None:
        parts = posixpath.normpath(path).split("/")
        for i in range(2, len(parts) + 1):
            head = "/".join(parts[:i])
            self.files.setdefault(head, Stat(True, 0o755, is_dir=True))

    def stat(self, path: str) -> Stat:
        return self.files.get(self.follow(path), Stat(False))


# -- image backends: layers by key, and the layer-transfer protocol ----------------------------------

class ImageLayerContract:
    """What the core and the registry plugin ask of an image backend beyond steps: layers named by
    key (:meth:`~shlax_core.backends.ImageBackend.lookup`, ``list_layers``, ``remove_layers``)
    and, when ``transfers_layers``, pulling and pushing them. Mix it into a
    :class:`BackendContract` subclass whose backend is an :class:`ImageBackend` on the store
    ``list_layers`` reads (class methods know no target), and provide ``transfer_repo``: a
    registry repository ``host[:port]/repo`` the tests may push to (with ``transfer_tls``)."""

    transfer_tls: bool = True

    @pytest.fixture
    def layer_backend(self) -> Backend:
        pytest.fail("ImageLayerContract: override the `layer_backend` fixture (a started image backend)")

    @pytest.fixture
    def transfer_repo(self) -> str:
        pytest.fail("ImageLayerContract: override the `transfer_repo` fixture (a repository to push to)")

    @pytest.fixture
    def layer(self, layer_backend: Backend) -> Iterator[tuple[str, str]]:
        """(key, image) of a layer committed for one test, removed afterwards."""
        assert isinstance(layer_backend, ImageBackend)
        key = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        layer_backend.run(probe(WRITE, f"/tmp/layer-{key[:8]}", key))
        image = layer_backend.commit(key, {"target": "conformance", "step": "layer contract"})
        # one more commit: the working container moves on to that one, so this layer is in use by
        # nothing (as a cold layer that `shlax cache prune` removes)
        after = hashlib.sha256(key.encode() + b"after").hexdigest()
        layer_backend.commit(after, {"target": "conformance", "step": "layer contract"})
        try:
            yield key, image
        finally:
            _drop(layer_backend, [key, after])

    def test_a_committed_layer_is_found_by_its_key(self, layer_backend: Backend, layer: tuple[str, str]) -> None:
        assert isinstance(layer_backend, ImageBackend)
        key, image = layer
        other = hashlib.sha256(key.encode() + b"other").hexdigest()
        assert layer_backend.lookup([other, key], fresh=True) == {key: image}

    def test_layers_are_listed_and_removed_by_name(self, layer_backend: Backend, layer: tuple[str, str]) -> None:
        assert isinstance(layer_backend, ImageBackend) and type(layer_backend).keeps_layers
        key, image = layer
        rows = [r for r in type(layer_backend).list_layers() if r["key"] == key]
        assert rows and all(r["image"] == image and r["name"] for r in rows)
        assert all(isinstance(r.get("size", 0), int) for r in rows)
        type(layer_backend).remove_layers([r["name"] for r in rows])
        assert key not in layer_backend.lookup([key], fresh=True)
        assert not [r for r in type(layer_backend).list_layers() if r["key"] == key]

    def test_layers_travel_through_a_registry(self, layer_backend: Backend, layer: tuple[str, str],
                                               transfer_repo: str) -> None:
        from shlax_core.backends import Transfer, TransferFailed

        assert isinstance(layer_backend, ImageBackend)
        if not type(layer_backend).transfers_layers:
            pytest.skip("the backend does not transfer layers (transfers_layers = False)")
        key, image = layer
        how = Transfer(tls_verify=self.transfer_tls)
        ref = f"{transfer_repo}:{key}"
        layer_backend.push_layer(key, image, ref, how)
        _drop(layer_backend, [key])
        assert key not in layer_backend.lookup([key], fresh=True)
        pulled = layer_backend.pull_layer(key, ref, how)
        assert layer_backend.lookup([key], fresh=True) == {key: pulled}
        digest = layer_backend.push_image(pulled, f"{transfer_repo}:image-{key[:12]}", how)
        assert isinstance(digest, str) and (digest == "" or digest.startswith("sha256:"))
        with pytest.raises(TransferFailed) as failed:
            layer_backend.pull_layer(key, f"{transfer_repo}:absent-{key[:12]}", how)
        assert failed.value.message
        # the pulled layer stays a cache layer when the build stops here
        layer_backend.close()
        assert [r for r in type(layer_backend).list_layers() if r["key"] == key]


def _drop(backend: ImageBackend, keys: Sequence[str]) -> None:
    names = [r["name"] for r in type(backend).list_layers() if r["key"] in keys]
    if names:
        type(backend).remove_layers(names)
