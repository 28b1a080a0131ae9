"""``shlax cache export/import``: the download caches through a real registry or a tarball.

Synthetic cache folders check the round trip (content, modes, mtimes), incremental uploads and
concurrent exports; the last test installs a real apt package on a "CI runner" whose download
cache came only from the registry, with the network unplugged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from fixtures_caches import Host, in_image, output, remove_image


class Machine:
    """A machine's download caches: shlax's own folder, plus a pip cache of its own (PIP_CACHE_DIR)."""

    def __init__(self, root: Path):
        self.root = root
        self.cache = root / "shlax-cache"
        self.pip = root / "pip-cache"
        self.home = root / "home"
        for p in (self.cache, self.pip, self.home):
            p.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "NO_COLOR": "1", "SHLAX_CACHE_DIR": str(self.cache), "PIP_CACHE_DIR": str(self.pip),
                "HOME": str(self.home), "XDG_CACHE_HOME": str(self.home / ".cache")}

    def shlax(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shlax_core", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)

    @property
    def apt(self) -> Path:
        return self.cache / "downloads" / "apt" / "debian-bookworm"

    def files(self) -> dict[str, tuple[bytes, int, int]]:
        """Every file under the caches: content, mode, mtime (seconds)."""
        out = {}
        for base in (self.cache / "downloads", self.pip):
            for path in sorted(base.rglob("*")):
                if path.is_file() and path.name != "lock" and "partial" not in path.parts:
                    st = path.stat()
                    out[str(path.relative_to(self.root))] = (path.read_bytes(), st.st_mode & 0o7777, int(st.st_mtime))
        return out


def fill(m: Machine) -> None:
    (m.apt / "archives" / "partial").mkdir(parents=True)
    (m.apt / "lists").mkdir(parents=True)
    (m.apt / "archives" / "big_1.0_amd64.deb").write_bytes(os.urandom(700_000))
    (m.apt / "archives" / "small_1.0_all.deb").write_bytes(b"tiny deb")
    for i in range(40):
        (m.apt / "lists" / f"deb.debian.org_dists_bookworm_{i}").write_text(f"Package: p{i}\n")
    os.utime(m.apt / "lists" / "deb.debian.org_dists_bookworm_0", (1_600_000_000, 1_600_000_000))
    (m.apt / "lists" / "lock").write_text("")                      # never exported
    (m.apt / "archives" / "partial" / "half.deb").write_text("x")  # never exported
    (m.pip / "wheels").mkdir()
    wheel = m.pip / "wheels" / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(os.urandom(300_000))
    wheel.chmod(0o600)


def uploaded(proc: subprocess.CompletedProcess) -> int:
    """Blobs uploaded, from the export summary line."""
    return int(proc.stdout.split(": ", 1)[1].split(" blobs uploaded")[0])


@pytest.fixture
def machines(tmp_path):
    return lambda name: Machine(tmp_path / name)


def test_export_import_round_trip_through_a_registry(registry, machines, nonce):
    a, b = machines("a"), machines("b")
    fill(a)
    ref = f"{registry.host}/shlax-test/downloads-{nonce}"
    proc = a.shlax("cache", "export", "--to", ref, "--no-tls-verify")
    assert proc.returncode == 0, output(proc)
    assert "exported 43 files" in proc.stdout

    proc = b.shlax("cache", "import", "--from", ref, "--no-tls-verify")
    assert proc.returncode == 0, output(proc)
    assert "43 written" in proc.stdout
    mine = {k.split("/", 1)[1]: v for k, v in a.files().items() if "/partial/" not in k and not k.endswith("/lock")}
    theirs = {k.split("/", 1)[1]: v for k, v in b.files().items()}
    assert theirs == mine  # content, mode and mtime (apt's lists freshness) all came across
    # nothing to do the second time
    again = b.shlax("cache", "import", "--from", ref, "--no-tls-verify")
    assert "0 written" in again.stdout and "43 already up to date" in again.stdout


def test_export_is_incremental(registry, machines, nonce):
    a = machines("a")
    fill(a)
    ref = f"{registry.host}/shlax-test/downloads-{nonce}"
    first = a.shlax("cache", "export", "--to", ref, "--no-tls-verify")
    assert first.returncode == 0 and uploaded(first) > 10, output(first)
    same = a.shlax("cache", "export", "--to", ref, "--no-tls-verify")
    assert uploaded(same) == 0, same.stdout
    # one new package and one changed list: one file blob + one pack, nothing else
    (a.apt / "archives" / "new_2.0_amd64.deb").write_bytes(os.urandom(400_000))
    (a.apt / "lists" / "deb.debian.org_dists_bookworm_7").write_text("Package: changed\n")
    more = a.shlax("cache", "export", "--to", ref, "--no-tls-verify")
    assert uploaded(more) == 2, more.stdout


def test_tarball_round_trip(tmp_path, machines):
    a, b = machines("a"), machines("b")
    fill(a)
    tarball = tmp_path / "caches.tar"
    assert a.shlax("cache", "export", "--to", str(tarball)).returncode == 0
    proc = b.shlax("cache", "import", "--from", str(tarball))
    assert proc.returncode == 0, output(proc)
    assert (b.apt / "archives" / "big_1.0_amd64.deb").read_bytes() == (a.apt / "archives" / "big_1.0_amd64.deb").read_bytes()
    assert ((b.pip / "wheels" / "demo-1.0-py3-none-any.whl").stat().st_mode & 0o777) == 0o600


def test_only_some_caches_and_errors(tmp_path, registry, machines, nonce):
    a = machines("a")
    fill(a)
    ref = f"{registry.host}/shlax-test/downloads-{nonce}"
    proc = a.shlax("cache", "export", "--to", ref, "--no-tls-verify", "--cache", "pip")
    assert proc.returncode == 0 and "exported 1 files" in proc.stdout, output(proc)
    bad = a.shlax("cache", "export", "--to", ref, "--no-tls-verify", "--cache", "nope")
    assert bad.returncode == 2 and "no download cache named 'nope'" in bad.stderr
    missing = a.shlax("cache", "import", "--from", str(tmp_path / "none.tar"))
    assert missing.returncode == 2 and "no such tarball" in missing.stderr
    tls = a.shlax("cache", "import", "--from", ref)  # plain-HTTP registry, TLS verification on
    assert tls.returncode == 2 and "--no-tls-verify" in tls.stderr and "Traceback" not in tls.stderr


def test_two_runners_export_at_once_and_both_are_kept(registry, machines, nonce):
    """Each CI runner adds its own packages; concurrent exports merge instead of erasing each other."""
    ref = f"{registry.host}/shlax-test/downloads-{nonce}"
    runners = [machines(f"r{i}") for i in range(2)]
    for i, m in enumerate(runners):
        (m.apt / "archives").mkdir(parents=True)
        for j in range(5):
            (m.apt / "archives" / f"pkg{i}-{j}_1.0_all.deb").write_bytes(os.urandom(300_000 + j))
    procs = [subprocess.Popen([sys.executable, "-m", "shlax_core", "cache", "export", "--to", ref, "--no-tls-verify"],
                              env=m.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in runners]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
    fresh = machines("fresh")
    proc = fresh.shlax("cache", "import", "--from", ref, "--no-tls-verify")
    assert proc.returncode == 0, output(proc)
    names = {p.name for p in (fresh.apt / "archives").glob("*.deb")}
    assert names == {f"pkg{i}-{j}_1.0_all.deb" for i in range(2) for j in range(5)}


@pytest.mark.slow
def test_a_fresh_runner_installs_apt_packages_offline_from_an_imported_cache(tmp_path, registry, debian_image,
                                                                              nonce):
    ref = f"{registry.host}/shlax-test/downloads-{nonce}"
    recipe = f"""
        [targets.app]
        base = "{debian_image}"
        image = "localhost/shlax-test-offline-{nonce}"
        steps = [
          {{ run = ["sh", "-c", "echo {nonce} > /nonce"] }},
          {{ apt = ["hello"] }},
        ]
    """
    first = Host(tmp_path / "first")
    proc = first.run("run", str(first.recipe(recipe)))
    assert proc.returncode == 0, output(proc)
    assert any(name.startswith("hello_") for name in first.debs())
    proc = first.run("cache", "export", "--to", ref, "--no-tls-verify", "--cache", "apt")
    assert proc.returncode == 0, output(proc)

    runner = Host(tmp_path / "runner")  # empty download caches
    proc = runner.run("cache", "import", "--from", ref, "--no-tls-verify", "--cache", "apt")
    assert proc.returncode == 0, output(proc)
    assert runner.debs() == first.debs()
    # no network at all, layers dropped: everything comes from the imported cache
    proc = runner.run("run", str(runner.recipe(recipe)), "--no-cache", "--offline", offline_net=True)
    try:
        assert proc.returncode == 0, output(proc)
        assert in_image(f"localhost/shlax-test-offline-{nonce}", "hello").stdout.strip() == "Hello, world!"
    finally:
        remove_image(f"localhost/shlax-test-offline-{nonce}")
