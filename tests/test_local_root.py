"""The local backend's ``root``: every path resolves inside the tree, as in a chroot.

A real chroot tree (static busybox, tests/fixtures_trees.py) holds the escape routes an outside
test run found: ``..`` above the root, an absolute symlink (``/opt -> /srv/elsewhere`` must mean
the tree's own /srv/elsewhere), a relative symlink climbing out, a dangling symlink (a traceback
before), links inside an archive, owners through links, and the tables and os-release files the
backend reads on the host side. The host side of each route is a folder of this test: nothing
may appear there, and nothing there may change.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import textwrap
from pathlib import Path

import pytest

from conftest import events, run_shlax, statuses
from fixtures_trees import busybox_tree
from shlax_core.builtin.local import LocalBackend
from shlax_core.conformance import started
from shlax_core.errors import StepFailed

#: a chroot tree made of busybox-static, entered with chroot(1): root
pytestmark = pytest.mark.slow


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return busybox_tree(tmp_path / "chroot")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host folder the recipe points at through links; it must stay as it is."""
    path = tmp_path / "srv" / "elsewhere"
    path.mkdir(parents=True)
    (path / "a.txt").write_text("host file, not the recipe's\n")
    return path


def snapshot(path: Path) -> dict[str, tuple]:
    return {str(p): (p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_symlink() else None,
                     p.lstat().st_uid, p.lstat().st_mode) for p in sorted(path.rglob("*"))}


def recipe(tmp_path: Path, tree: Path, steps: str) -> str:
    src = tmp_path / "recipe"
    src.mkdir(exist_ok=True)
    (src / "a.txt").write_text("from the recipe\n")
    (src / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.t]
        backend = "local"
        root = "{tree}"
        steps = [
        {steps}
        ]
    """))
    return str(src / "shlax.toml")


def test_dotdot_stays_in_the_root(tmp_path: Path, tree: Path, nonce: str) -> None:
    name = f"shlax-test-outside-{nonce}"
    steps = f'{{ copy = {{ src = "a.txt", dest = "/{"../" * 30}srv/{name}/" }} }},'
    try:
        proc = run_shlax("run", recipe(tmp_path, tree, steps), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (tree / "srv" / name / "a.txt").read_text() == "from the recipe\n"
        assert not Path("/srv", name).exists()
    finally:
        shutil.rmtree(Path("/srv", name), ignore_errors=True)  # what the escape wrote, if it did


def test_absolute_symlink_means_the_roots_own_path(tmp_path: Path, tree: Path, outside: Path) -> None:
    (tree / str(outside).lstrip("/")).mkdir(parents=True)
    (tree / "opt").symlink_to(outside)           # /opt -> /.../srv/elsewhere: the tree's one
    before = snapshot(outside)
    steps = '{ copy = { src = "a.txt", dest = "/opt/", owner = "app", mode = "0600" } },'
    proc = run_shlax("run", recipe(tmp_path, tree, steps), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    landed = tree / str(outside).lstrip("/") / "a.txt"
    assert landed.read_text() == "from the recipe\n"
    assert (landed.stat().st_uid, landed.stat().st_mode & 0o777) == (4242, 0o600)  # the tree's `app`
    assert snapshot(outside) == before           # the host's file: same content, same owner
    # checked through the same link: a second run is ok, not a rewrite of the host's file
    again = run_shlax("run", recipe(tmp_path, tree, steps), "--json")
    assert statuses(again.stdout) == ["ok"], again.stdout


def test_relative_symlink_climbing_out_is_clamped(tmp_path: Path, tree: Path, outside: Path) -> None:
    (tree / "up").symlink_to("../../../../../../../../" + str(outside).lstrip("/"))
    (tree / str(outside).lstrip("/")).mkdir(parents=True)
    before = snapshot(outside)
    proc = run_shlax("run", recipe(tmp_path, tree, '{ copy = { src = "a.txt", dest = "/up/" } },'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tree / str(outside).lstrip("/") / "a.txt").read_text() == "from the recipe\n"
    assert snapshot(outside) == before


def test_dangling_symlink_is_a_clear_failure(tmp_path: Path, tree: Path, outside: Path) -> None:
    """``/opt -> /srv/elsewhere`` with no such folder in the tree: tar in the chroot would fail,
    and so does the step — with a message, not a traceback — writing nothing on the host."""
    (tree / "opt").symlink_to(outside)
    before = snapshot(outside)
    proc = run_shlax("run", recipe(tmp_path, tree, '{ copy = { src = "a.txt", dest = "/opt/sub/" } },'),
                     "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    failed = [e for e in events(proc.stdout) if e["event"] == "step_end"][0]
    assert failed["status"] == "failed"
    assert f"/opt is a symlink to {outside}, which does not exist in the root" in failed["error"]["message"]
    assert snapshot(outside) == before


def test_stat_and_creates_look_inside_the_root(tmp_path: Path, tree: Path, outside: Path) -> None:
    """``creates`` names a path that exists on the host through the link, not in the tree: the
    command must run (inside the chroot, as the tree's user, in its workdir)."""
    (tree / "opt").symlink_to(outside)
    (tree / "work").mkdir()
    steps = ('{ run = ["sh", "-c", "id -u > /work/out; pwd >> /work/out"], creates = "/opt/a.txt", '
             'user = "app", workdir = "/work" },')
    os.chmod(tree / "work", 0o777)
    proc = run_shlax("run", recipe(tmp_path, tree, steps), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["changed"]
    assert (tree / "work" / "out").read_text() == "4242\n/work\n"


def _archive(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info in entries:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def test_archive_members_cannot_escape(tmp_path: Path, tree: Path, outside: Path) -> None:
    """What other plugins hand put_archive: a member named ``../``, a symlink member followed by
    a member below it, a hard link to a path above the root."""
    (tree / str(outside).lstrip("/")).mkdir(parents=True)
    host_passwd = os.stat("/etc/passwd")
    before = snapshot(outside)
    archive = tmp_path / "evil.tar"
    archive.write_bytes(_archive([
        _member("../../../../climbed.txt"),
        _member("jump", tarfile.SYMTYPE, str(outside)),
        _member("jump/through.txt"),
        _member("pw", tarfile.LNKTYPE, "../../../../../etc/passwd"),
    ], {"../../../../climbed.txt": b"c\n", "jump/through.txt": b"t\n"}))
    with started(LocalBackend, {"root": str(tree)}) as backend:
        backend.put_archive(archive, "/srv/x", owner="app", paths=["/srv/x/jump/through.txt"])
    assert (tree / "climbed.txt").read_bytes() == b"c\n"
    inner = tree / str(outside).lstrip("/") / "through.txt"
    assert inner.read_bytes() == b"t\n" and inner.stat().st_uid == 4242
    assert snapshot(outside) == before
    assert os.stat(tree / "srv" / "x" / "pw").st_ino == os.stat(tree / "etc" / "passwd").st_ino
    assert os.stat("/etc/passwd") == host_passwd and host_passwd.st_ino != os.stat(tree / "etc/passwd").st_ino


def test_tables_and_os_release_are_read_inside_the_root(tmp_path: Path, tree: Path) -> None:
    """/etc/passwd and /etc/os-release as absolute links: the tree's files, not this machine's."""
    (tree / "data").mkdir()
    os.replace(tree / "etc" / "passwd", tree / "data" / "passwd")
    (tree / "etc" / "passwd").symlink_to("/data/passwd")
    (tree / "etc" / "os-release").unlink()
    (tree / "etc" / "os-release").symlink_to("/usr/lib/os-release")
    assert not Path("/data/passwd").exists()
    archive = tmp_path / "f.tar"
    archive.write_bytes(_archive([_member("owned.txt")], {"owned.txt": b"x"}))
    with started(LocalBackend, {"root": str(tree)}) as backend:
        assert backend.facts() == {"ID": "shlaxtree", "VERSION_CODENAME": "tiny"}
        backend.put_archive(archive, "/srv", owner="app", paths=["/srv/owned.txt"])
        assert backend.stat("/srv/owned.txt").owner == "app:app"
        assert backend.run(["id", "-un"], user="app", capture=True).output == "app"
        with pytest.raises(StepFailed) as info:
            backend.put_archive(archive, "/srv", owner="ghost", paths=["/srv/owned.txt"])
        assert "no user or group 'ghost'" in info.value.message
    assert (tree / "srv" / "owned.txt").stat().st_uid == 4242
    digest = hashlib.sha256(b"x").hexdigest()
    with started(LocalBackend, {"root": str(tree)}) as backend:
        assert backend.stat("/srv/../../srv/owned.txt").digest == digest


def test_archive_dest_through_a_link_and_absolute_member_names(tmp_path: Path, tree: Path) -> None:
    """As ``tar -x -C DEST`` in the chroot: DEST's own entry (``./``) enters the folder a link
    points to (the link stays), and a member named ``/abs.txt`` lands below DEST."""
    (tree / "data").mkdir()
    (tree / "current").symlink_to("data")
    dot = _member("./", tarfile.DIRTYPE, mode=0o755)
    archive = tmp_path / "d.tar"
    archive.write_bytes(_archive([dot, _member("/abs.txt")], {"/abs.txt": b"a\n"}))
    with started(LocalBackend, {"root": str(tree)}) as backend:
        backend.put_archive(archive, "/current")
    assert (tree / "current").is_symlink()
    assert (tree / "data" / "abs.txt").read_bytes() == b"a\n"
    assert not (tree / "abs.txt").exists()
