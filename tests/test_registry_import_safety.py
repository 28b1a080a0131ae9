"""``shlax cache import`` writes only inside the cache folders, whatever the archive says.

An exported cache is data from elsewhere (a CI runner, a registry anyone with push rights can
write to). Two ways to aim outside: the tarball itself (members named ``../x`` or ``/x``,
symlinks, hard links, devices, fifos), and the index inside a well-formed artifact (paths with
``..``, absolute paths, a path that is both a file and a folder, setuid modes, a pack whose member
is a link). Each is refused with a clear error (exit 2, no traceback) before anything is written,
and the temporary folder goes too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from shlax_registry.client import Registry
from test_recipe_errors import shlax_in_process

INDEX_TYPE = "application/vnd.shlax.downloads.index.v1+json"
FILE_TYPE = "application/vnd.shlax.downloads.file.v1"


class Box:
    """A machine whose download caches are empty, with its own TMPDIR, beside folders an attack aims at."""

    def __init__(self, root: Path):
        self.root = root
        self.cache = root / "shlax-cache"
        self.tmp = root / "tmp"
        self.outside = root / "outside"
        for p in (self.cache, self.tmp, self.outside):
            p.mkdir(parents=True)
        self.victim = self.outside / "victim"
        self.victim.write_text("precious\n")

    @property
    def env(self) -> dict[str, str]:
        return {"SHLAX_CACHE_DIR": str(self.cache), "TMPDIR": str(self.tmp), "HOME": str(self.root.parent / "home")}

    def everything(self) -> dict[str, Any]:
        """Every file and link under the box (but shlax's own digest memo), with its content:
        what an import changed."""
        out: dict[str, Any] = {}
        for p in sorted(self.root.rglob("*")):
            rel = str(p.relative_to(self.root))
            if p.name == "digests.bin":
                continue
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif not p.is_dir():
                out[rel] = p.read_bytes() if p.is_file() else "special"
        return out


@pytest.fixture
def shlax() -> Callable[..., subprocess.CompletedProcess]:
    """The CLI in this process (:func:`test_recipe_errors.shlax_in_process`): every refusal here
    happens before anything runs, and dozens of fresh interpreters would make this file most of
    the fast tier's time."""

    def run(*args: str, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
        return shlax_in_process(list(args), Path.cwd(), **(env or {}))

    return run


@pytest.fixture
def box(tmp_path) -> Box:
    return Box(tmp_path / "box")


def refused(proc, *words: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and proc.stderr.startswith("shlax: error: "), out
    for word in words:
        assert word in proc.stderr, out


def unchanged(box: Box, before: dict[str, Any]) -> None:
    assert box.everything() == before
    assert box.victim.read_text() == "precious\n"
    assert list(box.tmp.iterdir()) == []  # the unpacked layout is gone too


# -- the tarball's members -------------------------------------------------------------------------
def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


@pytest.fixture
def good_export(tmp_path, shlax) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The members of a real export (two small files): what an attacker starts from."""
    cache = tmp_path / "exporter"
    archives = cache / "downloads" / "apt" / "debian-bookworm" / "archives"
    archives.mkdir(parents=True)
    (archives / "hello_1.0_all.deb").write_bytes(b"a deb")
    (archives / "big_1.0_all.deb").write_bytes(os.urandom(300_000))
    tarball = tmp_path / "good.tar"
    proc = shlax("cache", "export", "--to", str(tarball), "--cache", "apt", env={"SHLAX_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with tarfile.open(tarball) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]


def attacks(box: Box) -> dict[str, list[tuple[tarfile.TarInfo, bytes]]]:
    """Members put in front of a good export's (names relative to the unpack folder, which is
    TMPDIR/shlax-oci-XXXX: ``../../outside`` is the box's outside folder)."""
    blob = "blobs/sha256/" + "0" * 64
    return {
        "dot-dot": [member("../../outside/escaped", data=b"pwned")],
        "dot-dot inside": [member("blobs/../../../outside/escaped", data=b"pwned")],
        "absolute": [member(str(box.outside / "escaped"), data=b"pwned")],
        "symlink out, then a file through it": [member("blobs", tarfile.SYMTYPE, link=str(box.outside)),
                                                member(blob, data=b"pwned")],
        "relative symlink out": [member("index.json", tarfile.SYMTYPE, link="../../outside/victim")],
        "hard link out, then a file over it": [member("oci-layout", tarfile.LNKTYPE, link=str(box.victim)),
                                               member("oci-layout", data=b"pwned")],
        "relative hard link out": [member("index.json", tarfile.LNKTYPE, link="../../outside/victim")],
        "character device": [member("index.json", tarfile.CHRTYPE)],
        "block device": [member(blob, tarfile.BLKTYPE)],
        "fifo": [member("oci-layout", tarfile.FIFOTYPE)],
    }


ATTACKS = ["dot-dot", "dot-dot inside", "absolute", "symlink out, then a file through it", "relative symlink out",
           "hard link out, then a file over it", "relative hard link out", "character device", "block device", "fifo"]


@pytest.mark.parametrize("case", ATTACKS)
def test_a_tarball_aiming_outside_is_refused(box, good_export, shlax, tmp_path, case):
    assert sorted(attacks(box)) == sorted(ATTACKS)
    evil = attacks(box)[case]
    tarball = write_tar(tmp_path / "evil.tar", evil + good_export)
    before = box.everything()
    proc = shlax("cache", "import", "--from", str(tarball), "--cache", "apt", env=box.env)
    refused(proc, "refusing to import this tarball", repr(evil[0][0].name))
    unchanged(box, before)
    assert not (box.outside / "escaped").exists()


def test_the_same_tarball_without_the_attack_imports(box, good_export, shlax, tmp_path):
    """The attacks above start from this good export: on its own it imports (so the refusals
    are the members' doing, not a broken base)."""
    tarball = write_tar(tmp_path / "good-again.tar", good_export)
    proc = shlax("cache", "import", "--from", str(tarball), "--cache", "apt", env=box.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (box.cache / "downloads" / "apt" / "debian-bookworm" / "archives" / "hello_1.0_all.deb").read_bytes() == b"a deb"
    assert list(box.tmp.iterdir()) == []


# -- the artifact's index ------------------------------------------------------------------------
def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def artifact(files: list[dict[str, Any]], blobs: dict[str, bytes]) -> dict[str, bytes]:
    """Blobs of an artifact (by digest) whose index lists ``files``; the manifest is under ``manifest``."""
    index = json.dumps({"version": 1, "files": files}).encode()
    layers = [{"mediaType": FILE_TYPE, "digest": d, "size": len(data)} for d, data in blobs.items()]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": INDEX_TYPE, "digest": sha(index), "size": len(index)},
                           "layers": layers}).encode()
    return {**blobs, sha(index): index, "manifest": manifest}


def entry(path: str, data: bytes, *, mode: int = 0o644, folder: int = 0, blob: Optional[str] = None) -> dict[str, Any]:
    return {"cache": "apt", "folder": folder, "path": path, "size": len(data), "mode": mode, "mtime": 1_600_000_000,
            "digest": sha(data), "blob": blob or sha(data)}


def layout_tar(path: Path, blobs: dict[str, bytes]) -> Path:
    manifest = blobs["manifest"]
    members = [member("oci-layout", data=b'{"imageLayoutVersion": "1.0.0"}'),
               member("index.json", data=json.dumps({"schemaVersion": 2, "manifests": [
                   {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
                    "size": len(manifest)}]}).encode()),
               member(f"blobs/sha256/{sha(manifest)[7:]}", data=manifest)]
    members += [member(f"blobs/sha256/{d[7:]}", data=data) for d, data in blobs.items() if d != "manifest"]
    return write_tar(path, members)


def pack(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


BIG = b"B" * 300_000
UNSAFE_PATHS = ["../../../outside/escaped", "/etc/escaped", "debian-bookworm/../../../outside/escaped",
                "./archives/x.deb", "archives//x.deb", "archives/x.deb/", "archives/\u0000x"]


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_an_index_path_outside_the_cache_is_refused(box, shlax, tmp_path, path):
    blobs = artifact([entry("archives/ok.deb", BIG), entry(path, BIG)], {sha(BIG): BIG})
    before = box.everything()
    proc = shlax("cache", "import", "--from", str(layout_tar(tmp_path / "a.tar", blobs)), env=box.env)
    refused(proc, "unsafe path")
    unchanged(box, before)


def test_a_path_both_file_and_folder_is_refused(box, shlax, tmp_path):
    blobs = artifact([entry("archives", BIG), entry("archives/x.deb", BIG)], {sha(BIG): BIG})
    before = box.everything()
    proc = shlax("cache", "import", "--from", str(layout_tar(tmp_path / "a.tar", blobs)), env=box.env)
    refused(proc, "both as a file and as the folder")
    unchanged(box, before)


@pytest.mark.parametrize("bad", [{"folder": -1}, {"mode": 0o10000}, {"mtime": "yesterday"}, {"size": -5},
                                 {"digest": "sha256:../../x"}, {"cache": ["apt"]}])
def test_an_index_entry_of_the_wrong_shape_is_refused(box, shlax, tmp_path, bad):
    blobs = artifact([{**entry("archives/x.deb", BIG), **bad}], {sha(BIG): BIG})
    before = box.everything()
    proc = shlax("cache", "import", "--from", str(layout_tar(tmp_path / "a.tar", blobs)), env=box.env)
    refused(proc, "index", "wrong shape", next(iter(bad)))
    unchanged(box, before)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_a_pack_member_that_is_not_a_file_is_refused(box, shlax, tmp_path, kind):
    """Small files travel in packs (tars read in memory); a pack's member is read as a file or not at all."""
    secret = (box.victim).read_bytes()
    evil = pack([member("apt/0/lists/x", kind, link=str(box.victim))])
    blobs = artifact([entry("lists/x", secret, blob=sha(evil))], {sha(evil): evil})
    before = box.everything()
    proc = shlax("cache", "import", "--from", str(layout_tar(tmp_path / "a.tar", blobs)), env=box.env)
    refused(proc, "not a file")
    unchanged(box, before)


def test_setuid_and_setgid_bits_are_not_imported(box, shlax, tmp_path):
    blobs = artifact([entry("archives/tool", BIG, mode=0o6755)], {sha(BIG): BIG})
    proc = shlax("cache", "import", "--from", str(layout_tar(tmp_path / "a.tar", blobs)), env=box.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = box.cache / "downloads" / "apt" / "archives" / "tool"
    assert written.read_bytes() == BIG
    assert stat.S_IMODE(written.stat().st_mode) == 0o755


def test_an_unsafe_index_from_a_registry_is_refused(box, shlax, registry, nonce):  # noqa: F811
    """The same checks hold when the artifact comes from a registry (pushed here by hand)."""
    repo = f"shlax-test/evil-{nonce}"
    blobs = artifact([entry("archives/ok.deb", BIG), entry("../../../outside/escaped", BIG)], {sha(BIG): BIG})
    reg = Registry(registry.host, tls_verify=False)
    for digest, data in blobs.items():
        if digest != "manifest":
            reg.put_blob(repo, digest, data)
    reg.put_manifest(repo, "latest", blobs["manifest"])
    before = box.everything()
    proc = shlax("cache", "import", "--from", f"{registry.host}/{repo}", "--no-tls-verify", env=box.env)
    refused(proc, "unsafe path", "../../../outside/escaped")
    unchanged(box, before)
