"""``shlax cache export/import``: the apt/pip/npm host caches as an OCI artifact, incrementally.

The artifact is an OCI manifest whose config blob is an *index* (one entry per file: cache name,
folder number, relative path, size, mode, mtime, sha256) and whose layers are the blobs the index
points to:

- a file of 256 KiB or more (a .deb, a wheel, an npm tarball) is its own blob, named by its sha256:
  the same file on two machines, or in two exports, is one blob, uploaded once;
- smaller files (apt's Release files, npm's index entries) are packed, by a hash of their path,
  into 16 deterministic tarballs per cache, so an export is not thousands of tiny uploads and an
  unchanged pack has the same digest as last time.

Export asks the registry only for what it lacks: blobs named by the previous index are known to
be there, the others are checked with one ``HEAD`` each before uploading, in parallel. By default
the new index is the union of the registry's and the local one (local wins), so CI runners that
each add packages do not erase each other's; ``--replace`` publishes exactly the local state.
Blobs always go up before the manifest that names them: a reader never sees a manifest with a
missing blob, and two concurrent exports leave one complete manifest on the tag (each exporter
re-reads the tag after writing and merges again if another export overwrote its entries).

Import downloads only files whose content differs from the local one, verifies every digest, and
writes each file atomically (temporary name, then rename) with its mode and mtime (apt decides
whether its lists are fresh from them). Paths are checked: an artifact cannot write outside the
cache folders.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import stat as stat_mod
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Optional

from shlax_core import dirs
from shlax_core.cache.hashing import StatCache
from shlax_core.errors import ShlaxError

from shlax_registry import answers
from shlax_registry.client import OCI_MANIFEST, RegistryError
from shlax_registry.stores import Store

INDEX_TYPE = "application/vnd.shlax.downloads.index.v1+json"
FILE_TYPE = "application/vnd.shlax.downloads.file.v1"
PACK_TYPE = "application/vnd.shlax.downloads.pack.v1.tar"
ARTIFACT_TYPE = "application/vnd.shlax.downloads.v1"
SMALL = 256 * 1024
BUCKETS = 16
SKIP_NAMES = {"lock", ".lock"}
SKIP_DIRS = {"partial", "_locks", "tmp"}
WORKERS = 4


@dataclass
class Entry:
    cache: str
    folder: int
    path: str           # relative, POSIX
    size: int
    mode: int
    mtime: float
    digest: str
    blob: str = ""      # the file's own digest, or the digest of its pack

    @property
    def key(self) -> str:
        return f"{self.cache}/{self.folder}/{self.path}"

    def to_json(self) -> dict[str, Any]:
        return {"cache": self.cache, "folder": self.folder, "path": self.path, "size": self.size,
                "mode": self.mode, "mtime": self.mtime, "digest": self.digest, "blob": self.blob}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Entry":
        """From an index entry :data:`answers.CACHE_FILE` already checked (types, ranges, digests)."""
        e = cls(data["cache"], data["folder"], data["path"], data["size"], data["mode"], data["mtime"],
                data["digest"], data.get("blob") or data["digest"])
        _check_path(e.path)
        return e


@dataclass
class Report:
    files: int = 0
    bytes: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


def _check_path(path: str) -> None:
    """A relative path below a cache folder, in its plain form: no ``..``, no ``/`` in front,
    no ``.`` or empty parts, no NUL."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts or path != p.as_posix() or "\0" in path:
        raise ShlaxError(f"the artifact names an unsafe path {path!r}: refusing to import it",
                         hint="export it again with shlax, or check who can write to that repository")


def _check_tree(entries: list[Entry]) -> None:
    """No path is both a file and a folder of another (``a`` and ``a/b``): writing one would
    fail halfway through, or replace the other."""
    files = {(e.cache, e.folder, e.path) for e in entries}
    for e in entries:
        parent = PurePosixPath(e.path).parent
        while parent.parts:
            if (e.cache, e.folder, parent.as_posix()) in files:
                raise ShlaxError(f"the artifact names {parent.as_posix()!r} both as a file and as the folder of "
                                 f"{e.path!r}: refusing to import it",
                                 hint="export it again with shlax, or check who can write to that repository")
            parent = parent.parent


# -- hashing with the core's stat cache ------------------------------------------------------------
class Digests:
    """``sha256:HEX`` per file through the core's stat cache (:class:`shlax_core.cache.hashing.StatCache`):
    an unchanged file is not read again by a second export or import, with the same guarantees as
    a step's inputs (ctime in the signature, racy entries not trusted)."""

    def __init__(self) -> None:
        self.cache = StatCache(Path("/"), path=dirs.state("registry/digests.bin"))

    def of(self, path: Path, st: os.stat_result) -> str:
        return "sha256:" + self.cache.digest(str(path), st)

    def save(self) -> None:
        self.cache.save()


def _walk(root: Path) -> Iterable[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name in SKIP_NAMES or name.endswith((".lock", ".part", ".tmp")) or name.startswith(".~"):
                continue
            full = Path(dirpath) / name
            yield full, Path(os.path.relpath(full, root)).as_posix()


def collect(caches: dict[str, list[Path]], digests: Digests) -> list[Entry]:
    """Every regular file of every cache folder (symlinks, locks and half-written files skipped)."""
    out = []
    for name, folders in sorted(caches.items()):
        for i, folder in enumerate(folders):
            if not folder.is_dir():
                continue
            for full, rel in _walk(folder):
                try:
                    st = full.lstat()
                    if not stat_mod.S_ISREG(st.st_mode):
                        continue
                    digest = digests.of(full, st)
                except OSError:
                    continue  # vanished while we walked: a concurrent run cleaning up
                out.append(Entry(name, i, rel, st.st_size, stat_mod.S_IMODE(st.st_mode), st.st_mtime, digest))
    return out


def _bucket(e: Entry) -> str:
    h = int(hashlib.sha256(e.key.encode()).hexdigest()[:8], 16) % BUCKETS
    return f"{e.cache}-{h:02d}"


def _pack(entries: list[Entry], source: Callable[[Entry], Path]) -> bytes:
    """A deterministic tar of small files: sorted names, no times or owners, so equal content
    gives an equal digest on every machine."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in sorted(entries, key=lambda x: x.key):
            data = source(e).read_bytes()
            if "sha256:" + hashlib.sha256(data).hexdigest() != e.digest:
                raise OSError(f"{e.key} changed while exporting")
            info = tarfile.TarInfo(e.key)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- export --------------------------------------------------------------------------------------
def _remote_index(store: Store) -> tuple[Optional[dict[str, Any]], list[Entry]]:
    found = store.manifest()
    if found is None:
        return None, []
    manifest, _digest = found
    config = manifest.get("config") or {}
    if config.get("mediaType") != INDEX_TYPE:
        raise ShlaxError(f"{store.label} holds something else than a shlax download cache "
                         f"(config {config.get('mediaType')!r})", hint="export to another repository or tag")
    raw = store.get(config["digest"], size=config["size"]) or b""
    index = answers.parse(raw, answers.CACHE_INDEX, f"the download-cache index of {store.label}")
    entries = [Entry.from_json(x) for x in index["files"]]
    _check_tree(entries)
    return manifest, entries


def export(caches: dict[str, list[Path]], store: Store, *, replace: bool = False,
           log: Callable[[str], None] = lambda _m: None) -> Report:
    report = Report()
    digests = Digests()
    local = collect(caches, digests)
    digests.save()
    folder_of = {(name, i): f for name, fs in caches.items() for i, f in enumerate(fs)}
    manifest, remote = _remote_index(store)
    present = {e.blob for e in remote if e.blob}
    sizes = _layer_sizes(manifest)

    # assign blobs: big files are their own blob; small files go to their pack
    small: dict[str, list[Entry]] = {}
    uploads: dict[str, Any] = {}  # digest -> Path or bytes
    for e in local:
        if e.size >= SMALL:
            e.blob = e.digest
            uploads.setdefault(e.blob, folder_of[(e.cache, e.folder)] / e.path)
        else:
            small.setdefault(_bucket(e), []).append(e)
    for _name, members in sorted(small.items()):
        data = _pack(members, lambda e: folder_of[(e.cache, e.folder)] / e.path)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        for e in members:
            e.blob = digest
        uploads[digest] = data
        sizes[digest] = len(data)

    def upload(item: tuple[str, Any]) -> int:
        digest, source = item
        if digest in present or (store.remote and store.has(digest)):
            return 0
        store.put(digest, source)
        return source.stat().st_size if isinstance(source, Path) else len(source)

    todo = sorted(uploads.items())
    with ThreadPoolExecutor(max_workers=WORKERS if store.remote else 1) as pool:
        sent = list(pool.map(upload, todo))
    report.uploaded = sum(1 for s in sent if s)
    report.uploaded_bytes = sum(sent)
    report.skipped = len(todo) - report.uploaded

    mine = {e.key: e for e in local}
    for attempt in range(8):
        if store.remote and attempt == 0 and not replace:
            # read again just before writing: uploads take long, another runner may have exported meanwhile
            manifest, remote = _remote_index(store)
            sizes.update(_layer_sizes(manifest))
        merged = dict(mine) if replace else {**{e.key: e for e in remote}, **mine}
        body = _manifest_for(store, merged.values(), sizes)
        written = store.put_manifest(body)
        if not store.remote:
            break
        # a registry has no compare-and-swap: a runner that read the tag just before our write may
        # overwrite it. Look again a moment later; if our files are gone, merge and write again.
        time.sleep(0.3 + random.random() * 0.4)
        now = store.manifest()
        if now is None or now[1] == written:
            break
        manifest, remote = _remote_index(store)
        sizes.update(_layer_sizes(manifest))
        theirs = {e.key: e.digest for e in remote}
        if replace or all(theirs.get(k) == e.digest for k, e in mine.items()):
            break
        log(f"another export overwrote {store.label} at the same time: merging again ({attempt + 1})")
    report.files = len(merged)
    report.bytes = sum(e.size for e in merged.values())
    return report


def _layer_sizes(manifest: Optional[dict[str, Any]]) -> dict[str, int]:
    return {layer["digest"]: int(layer["size"]) for layer in (manifest or {}).get("layers") or []}


def _manifest_for(store: Store, entries: Iterable[Entry], known: dict[str, int]) -> bytes:
    files = sorted(entries, key=lambda e: e.key)
    index = json.dumps({"version": 1, "files": [e.to_json() for e in files]}, sort_keys=True,
                       separators=(",", ":")).encode()
    index_digest = "sha256:" + hashlib.sha256(index).hexdigest()
    if not (store.remote and store.has(index_digest)):
        store.put(index_digest, index)
    sizes: dict[str, int] = {}
    kinds: dict[str, str] = {}
    for e in files:
        if e.blob == e.digest and e.size >= SMALL:
            sizes[e.blob], kinds[e.blob] = e.size, FILE_TYPE
        else:
            kinds[e.blob] = PACK_TYPE
            sizes[e.blob] = known[e.blob] if e.blob in known else len(store.get(e.blob) or b"")
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": INDEX_TYPE, "digest": index_digest, "size": len(index)},
        "layers": [{"mediaType": kinds[d], "digest": d, "size": sizes[d]} for d in sorted(kinds)],
        "annotations": {"org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


# -- import --------------------------------------------------------------------------------------
def import_(caches: dict[str, list[Path]], store: Store,
            log: Callable[[str], None] = lambda _m: None) -> Report:
    report = Report()
    manifest, entries = _remote_index(store)
    if manifest is None:
        raise ShlaxError(f"{store.label} holds no download cache", hint="export one first: shlax cache export --to ...")
    digests = Digests()
    blob_sizes = _layer_sizes(manifest)
    wanted: dict[str, list[tuple[Entry, Path]]] = {}
    missing_caches = set()
    for e in entries:
        folders = caches.get(e.cache)
        if folders is None or e.folder >= len(folders):
            missing_caches.add(e.cache)
            continue
        dest = folders[e.folder] / e.path
        report.files += 1
        report.bytes += e.size
        try:
            st = dest.lstat()
            if stat_mod.S_ISREG(st.st_mode) and st.st_size == e.size and digests.of(dest, st) == e.digest:
                report.skipped += 1
                continue
        except OSError:
            pass
        wanted.setdefault(e.blob, []).append((e, dest))
    for name in sorted(missing_caches):
        report.notes.append(f"skipped the {name!r} cache: no such download cache installed here")

    def fetch(item: tuple[str, list[tuple[Entry, Path]]]) -> int:
        blob, targets = item
        with tempfile.TemporaryDirectory(prefix="shlax-import-") as tmp:
            got = Path(tmp) / "blob"
            first = targets[0][0]
            whole = first.blob == first.digest and first.size >= SMALL
            store.get(blob, got, size=first.size if whole else blob_sizes.get(blob))
            size = got.stat().st_size
            if whole:  # a whole file
                for e, dest in targets:
                    _place(dest, got, e, copy=len(targets) > 1)
            else:
                for e, dest in targets:
                    part = Path(tmp) / "member"
                    part.write_bytes(_unpack(got, blob, e.key))
                    _place(dest, part, e, copy=False)
            return size

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        sizes = list(pool.map(fetch, sorted(wanted.items())))
    report.uploaded = sum(len(v) for v in wanted.values())   # files written
    report.uploaded_bytes = sum(sizes)                        # bytes downloaded
    digests.save()
    return report


def _unpack(pack: Path, blob: str, key: str) -> bytes:
    """One small file out of a pack: a regular member named ``key``, read, never extracted to
    disk by tarfile (no path of the pack's choosing is ever written)."""
    try:
        with tarfile.open(pack) as tar:
            member = tar.getmember(key)
            data = tar.extractfile(member) if member.isreg() else None
            if data is None:
                raise RegistryError(f"pack {blob[:19]} holds {key} as a {_kind(member)}, not a file")
            return data.read()
    except KeyError:
        raise RegistryError(f"pack {blob[:19]} lacks {key}") from None
    except (tarfile.TarError, EOFError) as exc:
        raise RegistryError(f"pack {blob[:19]} is not a readable tar ({exc})") from None


def _kind(member: tarfile.TarInfo) -> str:
    return ("symlink" if member.issym() else "hard link" if member.islnk() else "folder" if member.isdir()
            else "device" if member.isdev() else "special file")


def _place(dest: Path, source: Path, e: Entry, *, copy: bool) -> None:
    """Write one file atomically with its mode and mtime; the mode keeps permission bits only
    (an artifact never makes a setuid or setgid file here)."""
    h = hashlib.sha256(source.read_bytes()).hexdigest()
    if "sha256:" + h != e.digest:
        raise RegistryError(f"{e.key}: content does not match the index digest")
    tmp = dest.with_name(f".{dest.name}.shlax-import-{os.getpid()}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            tmp.write_bytes(source.read_bytes())
        else:
            os.replace(source, tmp) if source.stat().st_dev == dest.parent.stat().st_dev else tmp.write_bytes(
                source.read_bytes())
        os.chmod(tmp, e.mode & 0o777)
        os.utime(tmp, (e.mtime, e.mtime))
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ShlaxError(f"cannot write {dest}: {exc.strerror or exc}",
                         hint="check that folder (a file or folder in the way, permissions, free space)") from None
