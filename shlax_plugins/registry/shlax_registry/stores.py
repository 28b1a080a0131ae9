"""Where an exported download cache lives: a registry repository, or an OCI layout in a tarball.

Both hold content-addressed blobs and one manifest; the exporter and importer only see this small
interface, so ``--to``/``--from`` take either form.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Union

from shlax_core.errors import ShlaxError
from shlax_core.filestate import replacing

from shlax_registry import answers, refs
from shlax_registry.client import OCI_MANIFEST, Registry, RegistryError


#: the files of an OCI layout, all shlax reads from a tarball
_LAYOUT_FILE = re.compile(r"oci-layout|index\.json|blobs/sha256/[0-9a-f]{64}")


def _unsafe(path: Path, member: tarfile.TarInfo, what: str) -> ShlaxError:
    return ShlaxError(f"{path}: member {member.name!r} {what}: refusing to import this tarball (nothing was written)",
                      hint="import only tarballs made by shlax cache export, from people you trust")


class Store:
    """Blobs by digest plus one manifest (the artifact)."""

    label: str = ""
    #: a registry answers HEAD per blob; a fresh tarball holds nothing
    remote: bool = False

    def has(self, digest: str) -> bool:
        raise NotImplementedError

    def put(self, digest: str, source: Union[bytes, Path]) -> None:
        raise NotImplementedError

    def get(self, digest: str, dest: Optional[Path] = None, size: Optional[int] = None) -> Optional[bytes]:
        """A blob, digest checked: into ``dest`` or returned; ``size``: what the manifest says
        it weighs (more is an error, read no further)."""
        raise NotImplementedError

    def manifest(self) -> Optional[tuple[dict[str, Any], str]]:
        raise NotImplementedError

    def put_manifest(self, body: bytes) -> str:
        raise NotImplementedError

    def close(self, ok: bool) -> None:
        """Finish writing (tarball: pack the layout) or clean up."""


class RegistryStore(Store):
    remote = True

    def __init__(self, ref: refs.Ref, tls_verify: bool):
        self.ref = ref if ref.tag else ref.with_tag("latest")
        self.label = str(self.ref)
        self.client = Registry(ref.host, tls_verify=tls_verify)

    def has(self, digest: str) -> bool:
        return self.client.has_blob(self.ref.repo, digest)

    def put(self, digest: str, source: Union[bytes, Path]) -> None:
        self.client.put_blob(self.ref.repo, digest, source)

    def get(self, digest: str, dest: Optional[Path] = None, size: Optional[int] = None) -> Optional[bytes]:
        return self.client.get_blob(self.ref.repo, digest, dest, size=size)

    def manifest(self) -> Optional[tuple[dict[str, Any], str]]:
        return self.client.get_manifest(self.ref.repo, self.ref.tag or "latest")

    def put_manifest(self, body: bytes) -> str:
        return self.client.put_manifest(self.ref.repo, self.ref.tag or "latest", body)


class LayoutStore(Store):
    """An OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``) in a tarball.

    Export writes a fresh layout and packs it at :meth:`close`; import unpacks the tarball first.
    Plain ``.tar`` (blobs are mostly compressed already) unless the name ends in .gz/.tgz.
    """

    def __init__(self, path: str, *, reading: bool):
        self.path = Path(os.path.expanduser(path)).resolve()
        self.label = str(self.path)
        self.dir = Path(tempfile.mkdtemp(prefix="shlax-oci-"))
        self.reading = reading
        if reading:
            if not self.path.is_file():
                shutil.rmtree(self.dir)
                raise ShlaxError(f"no such tarball: {self.path}", hint="export one with: shlax cache export --to FILE.tar")
            try:
                self._unpack()
            except (tarfile.TarError, OSError, EOFError) as exc:
                shutil.rmtree(self.dir)
                raise ShlaxError(f"{self.path} is not a readable tarball: {exc}") from None
            except BaseException:
                shutil.rmtree(self.dir)
                raise
        else:
            (self.dir / "blobs" / "sha256").mkdir(parents=True)
            (self.dir / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def _unpack(self) -> None:
        """Extract the layout's own files (``oci-layout``, ``index.json``, ``blobs/sha256/HEX``)
        into the private folder, by our names, as plain files. A member that is not a plain
        file or folder (a symlink, a hard link, a device, a fifo), or whose name leaves the
        archive (absolute, ``..``), is refused before anything is written: a shlax export has
        none, so such a tarball was made to attack. Other plain files are not extracted."""
        with tarfile.open(self.path) as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith("/") or ".." in parts:
                    raise _unsafe(self.path, m, "leaves the archive")
                if not (m.isreg() or m.isdir()):
                    kind = ("a symlink" if m.issym() else "a hard link" if m.islnk() else
                            "a device" if m.isdev() else "a fifo" if m.isfifo() else "a special file")
                    target = f" to {m.linkname!r}" if m.issym() or m.islnk() else ""
                    raise _unsafe(self.path, m, f"is {kind}{target}")
            for m in members:
                name = "/".join(p for p in PurePosixPath(m.name).parts if p != ".")
                if not m.isreg() or not _LAYOUT_FILE.fullmatch(name):
                    continue
                dest = self.dir.joinpath(*name.split("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(m)
                assert source is not None  # a regular member
                with dest.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)

    def _blob(self, digest: str) -> Path:
        algo, _, hexa = digest.partition(":")
        if algo != "sha256" or len(hexa) != 64 or not all(c in "0123456789abcdef" for c in hexa):
            raise ShlaxError(f"{self.label}: bad digest {digest!r}")
        return self.dir / "blobs" / "sha256" / hexa

    def has(self, digest: str) -> bool:
        return self._blob(digest).exists()

    def put(self, digest: str, source: Union[bytes, Path]) -> None:
        dest = self._blob(digest)
        if isinstance(source, Path):
            shutil.copyfile(source, dest)
        else:
            dest.write_bytes(source)

    def get(self, digest: str, dest: Optional[Path] = None, size: Optional[int] = None) -> Optional[bytes]:
        path = self._blob(digest)
        if not path.exists():
            raise RegistryError(f"{self.label}: blob {digest} is missing")
        if size is not None and path.stat().st_size != size:
            raise RegistryError(f"{self.label}: blob {digest} is {path.stat().st_size} bytes, not the {size} expected")
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if "sha256:" + h.hexdigest() != digest:
            raise RegistryError(f"{self.label}: blob {digest} does not match its digest")
        if dest is None:
            return path.read_bytes()
        shutil.copyfile(path, dest)
        return None

    def manifest(self) -> Optional[tuple[dict[str, Any], str]]:
        index = self.dir / "index.json"
        if not index.exists():
            return None
        entries = answers.parse(index.read_bytes(), answers.LAYOUT_INDEX, f"index.json of {self.label}")["manifests"]
        if not entries:
            return None
        digest = entries[0]["digest"]
        return answers.parse(self.get(digest) or b"", answers.MANIFEST, f"the manifest in {self.label}"), digest

    def put_manifest(self, body: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.put(digest, body)
        index = {"schemaVersion": 2, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
             "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
        (self.dir / "index.json").write_text(json.dumps(index))
        return digest

    def close(self, ok: bool) -> None:
        try:
            if ok and not self.reading:
                mode = "w:gz" if self.path.name.endswith((".gz", ".tgz")) else "w"
                with replacing(self.path) as tmp, tarfile.open(tmp, mode) as tar:
                    for name in sorted(os.listdir(self.dir)):
                        tar.add(self.dir / name, arcname=name)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def open_store(where: str, *, tls_verify: bool, reading: bool) -> Store:
    if refs.is_tarball(where):
        return LayoutStore(where, reading=reading)
    return RegistryStore(refs.parse(where, what="cache location"), tls_verify)
