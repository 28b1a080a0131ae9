"""Tiny package repositories for the dnf and pacman tests, built here and served on loopback.

Only Debian's mirror is reachable from the test bed, so Fedora's and Arch's repositories are
made from scratch with the tools Debian ships: ``rpmbuild`` + ``createrepo_c`` for RPMs, and a
hand-made ``.pkg.tar.zst`` (a tar with a ``.PKGINFO``) + ``repo-add`` for pacman. A repository is
served by Python's http.server in a thread of the test process, on a free port of 127.0.0.1,
and records every path requested: "downloaded nothing" is read from that log.
"""

from __future__ import annotations

import functools
import http.server
import io
import subprocess
import tarfile
import textwrap
import threading
from pathlib import Path
from typing import Iterator

import pytest


class Served:
    """A folder served over HTTP on 127.0.0.1 while the fixture lives; ``requests`` is its log."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
                log.append(self.path)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      functools.partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def fetched(self, suffix: str = "") -> list[str]:
        return [p for p in self.requests if p.endswith(suffix)]

    def __enter__(self) -> "Served":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def build_rpm(work: Path, name: str, version: str, out: Path) -> Path:
    """A noarch RPM installing ``/usr/share/NAME/hello.txt``, made with rpmbuild."""
    spec = work / f"{name}.spec"
    spec.write_text(textwrap.dedent(f"""\
        Name: {name}
        Version: {version}
        Release: 1
        Summary: shlax test package
        License: MIT
        BuildArch: noarch
        %description
        shlax test package
        %install
        mkdir -p %{{buildroot}}/usr/share/{name}
        echo {name} {version} > %{{buildroot}}/usr/share/{name}/hello.txt
        %files
        /usr/share/{name}/hello.txt
    """))
    subprocess.run(["rpmbuild", "--define", f"_topdir {work / 'rpmbuild'}", "-bb", str(spec)],
                   check=True, capture_output=True)
    rpm = next((work / "rpmbuild" / "RPMS" / "noarch").glob(f"{name}-{version}-1.*.rpm"))
    target = out / rpm.name
    rpm.replace(target)
    return target


def rpm_repository(root: Path, packages: dict[str, str]) -> Path:
    """``root`` made a dnf repository holding ``{name: version}``."""
    root.mkdir(parents=True, exist_ok=True)
    work = root.parent / f"{root.name}-build"
    work.mkdir(exist_ok=True)
    for name, version in packages.items():
        build_rpm(work, name, version, root)
    subprocess.run(["createrepo_c", "-q", str(root)], check=True, capture_output=True)
    return root


def build_pacman_package(name: str, version: str, out: Path) -> Path:
    """A pacman package made by hand: a zstd tar with ``.PKGINFO`` and ``/usr/share/NAME/hello.txt``."""
    data = f"{name} {version}\n".encode()
    info = textwrap.dedent(f"""\
        pkgname = {name}
        pkgbase = {name}
        pkgver = {version}-1
        pkgdesc = shlax test package
        url = http://127.0.0.1/
        builddate = 1700000000
        packager = shlax tests
        size = {len(data)}
        arch = any
        license = MIT
    """).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, content in ((".PKGINFO", info), (f"usr/share/{name}/hello.txt", data)):
            parts = path.split("/")
            for i in range(1, len(parts)):
                entry = tarfile.TarInfo("/".join(parts[:i]))
                if entry.name not in tar.getnames():
                    entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, 0o755, 1700000000
                    tar.addfile(entry)
            entry = tarfile.TarInfo(path)
            entry.size, entry.mode, entry.mtime = len(content), 0o644, 1700000000
            tar.addfile(entry, io.BytesIO(content))
    target = out / f"{name}-{version}-1-any.pkg.tar.zst"
    subprocess.run(["zstd", "-q", "-f", "-o", str(target)], input=raw.getvalue(), check=True)
    return target


def pacman_repository(root: Path, packages: dict[str, str], db: str = "shlaxtest") -> Path:
    """``root`` made a pacman repository ``db`` holding ``{name: version}``."""
    root.mkdir(parents=True, exist_ok=True)
    files = [build_pacman_package(name, version, root) for name, version in packages.items()]
    subprocess.run(["repo-add", "-q", str(root / f"{db}.db.tar.gz"), *map(str, files)], check=True,
                   capture_output=True)
    return root


@pytest.fixture
def served() -> Iterator[callable]:
    """``served(path)`` starts serving a folder for the test; every server stops at its end."""
    started: list[Served] = []

    def start(root: Path) -> Served:
        started.append(Served(root).__enter__())
        return started[-1]

    yield start
    for s in started:
        s.__exit__()
