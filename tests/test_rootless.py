"""Rootless builds: an ordinary user runs ``shlax run`` and gets root's layers, caches and cleanup.

The user is ``shlax-rootless`` (``$SHLAX_ROOTLESS_USER``), made by .ci/setup.d/50-rootless-user.sh
with a subordinate id range. Each session gives it a HOME and an XDG_RUNTIME_DIR of its own under
/var/tmp, so its image store (``~/.local/share/containers/storage``) and download caches
(``~/.cache``) are fresh, and removed whole at the end. It runs this checkout's shlax with a
Python it may execute (the venv's, or the system's of the same version with the venv's
site-packages on PYTHONPATH, when the venv's interpreter lives where the user cannot read), from
a copy of the recipe in a folder it owns (``runuser -u USER -- ...``).

The base images come from root's store, exported as docker archives and pulled by the user: the
busybox test image, and the ``debootstrap:`` Debian base root built (a rootless user cannot run
debootstrap; see docs/rootless.md).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

from conftest import ROOT, buildah, events, statuses

USER = os.environ.get("SHLAX_ROOTLESS_USER", "shlax-rootless")
NO_RANGE_USER = "shlax-nosubuid"


@dataclass
class Rootless:
    """The rootless user of this session: its HOME, its Python, and how to run things as it."""

    user: str
    uid: int
    gid: int
    base: Path         # a folder it owns under /var/tmp: home/, run/, work/
    python: list[str]  # the interpreter it runs shlax with
    pythonpath: str

    @property
    def home(self) -> Path:
        return self.base / "home"

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": str(self.home), "USER": self.user, "LOGNAME": self.user,
               "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "XDG_RUNTIME_DIR": str(self.base / "run"),
               "PYTHONPATH": self.pythonpath, "NO_COLOR": "1", "LANG": "C.UTF-8"}
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "http_proxy", "https_proxy", "no_proxy"):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(extra)
        return env

    def argv(self, *argv: str, user: Optional[str] = None) -> list[str]:
        return ["runuser", "-u", user or self.user, "--", "env", "-i",
                *(f"{k}={v}" for k, v in self.env().items()), *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*argv), capture_output=True, text=True, cwd=self.base, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} as {self.user}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def shlax(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return self.run(*self.python, "-m", "shlax_core", *args, check=False, timeout=timeout)

    def buildah(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("buildah", *args, check=check)

    def own(self, path: Path) -> Path:
        """Give ``path`` (and what is below) to the user."""
        subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", str(path)], check=True)
        return path

    def workdir(self, name: str) -> Path:
        path = self.base / "work" / name
        path.mkdir(parents=True)
        return self.own(path)

    def give_image(self, image: str) -> str:
        """Root's ``image``, exported and pulled into the user's store under the same name;
        returns its ID there."""
        archive = self.base / f"image-{os.urandom(4).hex()}.tar"
        subprocess.run(["buildah", "push", "--quiet", image, f"docker-archive:{archive}:{image}"], check=True,
                       capture_output=True)
        try:
            archive.chmod(0o644)
            return self.buildah("pull", "--quiet", f"docker-archive:{archive}").stdout.strip().splitlines()[-1]
        finally:
            archive.unlink()

    def containers(self) -> list[str]:
        out = self.buildah("containers", "--format", "{{.ContainerName}}").stdout
        return [line for line in out.split() if line.startswith("shlax-")]

    def read(self, image: str, *paths: str) -> list[str]:
        """Files of ``image`` in the user's store, read in buildah's user namespace."""
        script = 'c=$(buildah from --pull=never "$1") && m=$(buildah mount "$c") && shift && ' \
                 'for p; do cat "$m$p"; echo "--"; done; s=$?; buildah rm "$c" >/dev/null; exit $s'
        out = self.run("buildah", "unshare", "--", "sh", "-c", script, "sh", image, *paths).stdout
        return [part.strip() for part in out.split("--\n")[:-1]]

    def owners(self, image: str, path: str) -> str:
        script = 'c=$(buildah from --pull=never "$1") && m=$(buildah mount "$c") && stat -c "%u:%g" "$m$2"; ' \
                 's=$?; buildah rm "$c" >/dev/null; exit $s'
        return self.run("buildah", "unshare", "--", "sh", "-c", script, "sh", image, path).stdout.strip()


def _python_for(user: str) -> tuple[list[str], str]:
    """An interpreter ``user`` can run with this checkout's shlax and the venv's packages."""
    paths = [str(ROOT), *site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    pythonpath = os.pathsep.join(dict.fromkeys(paths))
    ok = subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", "pass"], capture_output=True)
    if ok.returncode == 0:
        return [sys.executable], pythonpath
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    assert os.access(system, os.X_OK), (f"{user} cannot run {sys.executable} and there is no {system}: make the "
                                        "virtualenv with a Python every user can read")
    return [system], pythonpath


@pytest.fixture(scope="session")
def rootless(busybox_image: str) -> Iterator[Rootless]:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        pytest.fail(f"no user {USER!r}: run ./dev setup (.ci/setup.d/50-rootless-user.sh makes it)")
    base = Path(tempfile.mkdtemp(prefix="shlax-rootless-", dir="/var/tmp"))
    base.chmod(0o755)
    python, pythonpath = _python_for(USER)
    r = Rootless(USER, entry.pw_uid, entry.pw_gid, base, python, pythonpath)
    for sub in ("home", "run", "work"):
        (base / sub).mkdir()
    (base / "run").chmod(0o700)
    r.own(base)
    try:
        r.give_image(busybox_image)
        yield r
    finally:
        # the user's store holds files of its subordinate ids: removed from its namespace
        subprocess.run(r.argv("buildah", "unshare", "--", "rm", "-rf", str(base / "home"), str(base / "work")),
                       capture_output=True, cwd="/")
        shutil.rmtree(base, ignore_errors=True)


RECIPE = """
[targets.app]
base = "{base}"
image = "localhost/shlax-test-rootless-{nonce}"
steps = [
  {{ run = ["sh", "-c", "echo {nonce} > /hello; id -u > /uid"] }},
  {{ copy = {{ src = "files/", dest = "/files/", owner = "1000:1000" }} }},
  {{ run = ["sh", "-c", "cat /files/a >> /hello; echo kept > $PIP_CACHE_DIR/from-step; echo $PIP_CACHE_DIR $PIP_FIND_LINKS > /lent"], caches = ["pip"] }},
]
"""


def write_recipe(folder: Path, base: str, nonce: str) -> Path:
    (folder / "files").mkdir(exist_ok=True)
    (folder / "files" / "a").write_text("copied\n")
    (folder / "shlax.toml").write_text(RECIPE.format(base=base, nonce=nonce))
    return folder / "shlax.toml"


def layer_keys(cache: Path) -> dict[str, str]:
    """{step path: key} of the layers a cache folder's usage file recorded."""
    usage = json.loads((cache / "layers.json").read_text())
    return {v["step"]: k for k, v in usage.items() if v.get("step", "").startswith("targets.")}


def test_a_rootless_build_gets_root_s_layers_caches_and_cleanup(rootless, busybox_image, tmp_path, nonce, shlax):
    work = rootless.workdir(f"build-{nonce}")
    recipe = write_recipe(work, busybox_image, nonce)
    rootless.own(work)
    proc = rootless.shlax("run", "--json", str(recipe))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["done", "done", "done"]
    image = f"localhost/shlax-test-rootless-{nonce}:latest"
    # the image is in the user's own store, made as root would: root inside, the copy's owner kept
    assert rootless.read(image, "/hello", "/uid") == [f"{nonce}\ncopied", "0"]
    assert rootless.owners(image, "/files/a") == "1000:1000"
    # the step's pip cache is the user's own (XDG), and what the step wrote there stays there,
    # owned by the user, not in the layer
    from_step = rootless.home / ".cache" / "pip" / "from-step"
    assert from_step.read_text() == "kept\n" and from_step.stat().st_uid == rootless.uid
    assert (rootless.home / ".cache" / "shlax" / "layers.json").stat().st_uid == rootless.uid
    lent = rootless.read(image, "/lent")[0].split()
    assert len(lent) == 2
    listing = rootless.run("buildah", "unshare", "--", "sh", "-c",
                           'c=$(buildah from --pull=never "$1"); m=$(buildah mount "$c"); shift; '
                           'for p; do [ ! -e "$m$p" ] || echo "$p"; done; buildah rm "$c" >/dev/null', "sh", image,
                           *lent).stdout
    assert listing.strip() == "", "a cache's mount point reached the layer"
    # nothing left: no working container, no temporary folder of shlax's in /var/tmp
    assert rootless.containers() == []
    assert not [p for p in Path("/var/tmp").glob("shlax-buildah-*") if p.stat().st_uid == rootless.uid]

    # unchanged: all cached, without entering the namespace at all
    proc = rootless.shlax("run", "--json", str(recipe))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "cached", "cached"]

    # the same recipe as root, from the same base: the same layer keys
    root_work = tmp_path / "as-root"
    root_work.mkdir()
    root_recipe = write_recipe(root_work, busybox_image, nonce)
    root_cache = tmp_path / "root-cache"
    proc = shlax("run", str(root_recipe), env={"SHLAX_CACHE_DIR": str(root_cache)})
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert layer_keys(root_cache) == layer_keys(rootless.home / ".cache" / "shlax")
    finally:
        buildah("rmi", image, check=False)


def test_a_failed_rootless_step_leaves_nothing(rootless, busybox_image, nonce):
    work = rootless.workdir(f"fail-{nonce}")
    (work / "shlax.toml").write_text(f"""
[targets.app]
base = "{busybox_image}"
image = "localhost/shlax-test-rootless-fail-{nonce}"
steps = [{{ run = ["sh", "-c", "echo {nonce} > /x; exit 3"] }}]
""")
    rootless.own(work)
    proc = rootless.shlax("run", str(work / "shlax.toml"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "exit code: 3" in proc.stdout
    assert rootless.containers() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_rootless_build_cleans_up(rootless, busybox_image, nonce, sig):
    """The signal reaches the run inside buildah's namespace (``buildah unshare`` would not pass
    it on): the step stops, the working container goes, the exit code is 130."""
    work = rootless.workdir(f"stop-{nonce}-{sig.name}")
    (work / "shlax.toml").write_text(f"""
[targets.app]
base = "{busybox_image}"
image = "localhost/shlax-test-rootless-stop-{nonce}"
steps = [{{ run = ["sh", "-c", "echo started-{nonce} > /dev/stderr; sleep 60"] }}]
""")
    rootless.own(work)
    proc = subprocess.Popen(rootless.argv(*rootless.python, "-m", "shlax_core", "run", str(work / "shlax.toml")),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=rootless.base,
                            process_group=0)
    deadline = time.monotonic() + 120
    seen = ""
    assert proc.stdout is not None
    while f"started-{nonce}" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert f"started-{nonce}" in seen, seen
    # the signal goes to shlax itself (runuser's child: ``env -i`` execs it), as a CI runner's
    # would; runuser's own handling (SIGKILL 2 s after a SIGTERM) is not what is tested
    shlax_pid = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()[0])
    started = time.monotonic()
    os.kill(shlax_pid, sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, seen + out
    assert time.monotonic() - started < 30
    assert rootless.containers() == []
    left = subprocess.run(["pgrep", "-u", rootless.user, "-f", f"started-{nonce}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "the step's processes outlived the run"


def test_no_subordinate_ids_is_one_clear_error(rootless, busybox_image, nonce):
    """A user without a /etc/subuid range: exit 2, what to set up, nothing run."""
    if subprocess.run(["id", NO_RANGE_USER], capture_output=True).returncode != 0:
        # a system user gets no subordinate ids
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NO_RANGE_USER],
                       check=True)
    for kind in ("uid", "gid"):
        text = Path(f"/etc/sub{kind}").read_text()
        assert not any(line.startswith(f"{NO_RANGE_USER}:") for line in text.splitlines())
    work = rootless.workdir(f"norange-{nonce}")
    (work / "shlax.toml").write_text(f"""
[targets.app]
base = "{busybox_image}"
steps = [{{ run = ["true"] }}]
""")
    work.chmod(0o755)
    (work / "shlax.toml").chmod(0o644)
    argv = rootless.argv(*rootless.python, "-m", "shlax_core", "run", str(work / "shlax.toml"), user=NO_RANGE_USER)
    argv = [a if not a.startswith("HOME=") else f"HOME={work}" for a in argv]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd="/")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "subordinate ids" in proc.stderr and "/etc/subuid" in proc.stderr and "usermod --add-subuids" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("shlax: error:") == 1


def test_a_debootstrap_base_comes_from_root(rootless, debian_image, nonce):
    """debootstrap needs real root: without the base, a clear error that says how root gives it;
    with root's base exported to the user, the rootless build uses it as it is."""
    work = rootless.workdir(f"deb-{nonce}")
    (work / "shlax.toml").write_text(f"""
[targets.deb]
base = "debootstrap:bookworm"
image = "localhost/shlax-test-rootless-deb-{nonce}"
steps = [{{ run = ["sh", "-c", "cat /etc/debian_version > /version; echo {nonce} >> /version"] }}]
""")
    rootless.own(work)
    proc = rootless.shlax("run", str(work / "shlax.toml"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "a rootless build cannot make it" in proc.stderr and "docker-archive:" in proc.stderr

    # root's base (the debian_image fixture built it with shlax, under its hashed name)
    names = [n for i in json.loads(buildah("images", "--json").stdout) for n in i.get("names") or []
             if n.startswith("localhost/shlax-base:debootstrap-bookworm-")]
    wanted = proc.stderr.split("(", 1)[1].split(")", 1)[0]
    assert wanted in names, (wanted, names)
    rootless.give_image(wanted)
    proc = rootless.shlax("run", "--json", str(work / "shlax.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["done"]
    version = rootless.read(f"localhost/shlax-test-rootless-deb-{nonce}:latest", "/version")[0]
    assert version.startswith("12.") and version.endswith(nonce)
    assert not [e for e in events(proc.stdout) if e["event"] == "warning"]
