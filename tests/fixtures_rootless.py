"""A non-root user for rootless builds, used by tests/test_rootless.py and bench/bench_rootless.py.

The user is ``shlax-rootless`` (``$SHLAX_ROOTLESS_USER``), made by
.ci/setup.d/50-rootless-user.sh with a subordinate id range. :func:`make` gives it a HOME and an
XDG_RUNTIME_DIR of its own under /var/tmp, so its image store (``~/.local/share/containers/
storage``) and download caches (``~/.cache``) are fresh; :meth:`Rootless.destroy` removes them
whole. It runs this checkout's shlax with a Python it may execute (the venv's, or the system's of
the same version with the venv's site-packages on PYTHONPATH, when the venv's interpreter lives
where the user cannot read; a checkout or site-packages it cannot read is copied into its
folder), from folders it owns (``runuser -u USER -- env -i ...``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
USER = os.environ.get("SHLAX_ROOTLESS_USER", "shlax-rootless")


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

    def destroy(self) -> None:
        """Remove its HOME, store and work folders (files of its subordinate ids: removed from
        its namespace)."""
        subprocess.run(self.argv("buildah", "unshare", "--", "rm", "-rf", str(self.home), str(self.base / "work")),
                       capture_output=True, cwd="/")
        shutil.rmtree(self.base, ignore_errors=True)

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


def _readable(user: str, path: str) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", "-r", path, "-a", "-x", path],
                          capture_output=True).returncode == 0


def _python_for(user: str, base: Path) -> tuple[list[str], str]:
    """An interpreter ``user`` can run with this checkout's shlax and the venv's packages:
    ``(argv, PYTHONPATH)``. What the user cannot read where it is (a checkout or venv under
    /root, which only root may enter) is copied into ``base``, which the user will own."""
    sources = [(str(ROOT / "shlax_core"), "checkout")]
    sources += [(p, f"site-{i}") for i, p in enumerate(dict.fromkeys(
        [*site.getsitepackages(), sysconfig.get_paths()["purelib"]])) if os.path.isdir(p)]
    paths = []
    for path, name in sources:
        if _readable(user, path):
            paths.append(os.path.dirname(path) if name == "checkout" else path)
            continue
        copy = base / "python" / name
        target = copy / "shlax_core" if name == "checkout" else copy
        shutil.copytree(path, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        paths.append(str(copy))
    pythonpath = os.pathsep.join(dict.fromkeys(paths))
    ok = subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", "pass"], capture_output=True)
    if ok.returncode == 0:
        return [sys.executable], pythonpath
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    assert os.access(system, os.X_OK), (f"{user} cannot run {sys.executable} and there is no {system}: make the "
                                        "virtualenv with a Python every user can read")
    return [system], pythonpath


def make(user: str = USER, driver: Optional[str] = None) -> Rootless:
    """A fresh HOME (and store) for ``user``; ``driver``: its storage driver (``overlay``, ``vfs``),
    written in its ~/.config/containers/storage.conf, else buildah's own choice."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise RuntimeError(f"no user {user!r}: run ./dev setup (.ci/setup.d/50-rootless-user.sh makes it)") from None
    base = Path(tempfile.mkdtemp(prefix="shlax-rootless-", dir="/var/tmp"))
    base.chmod(0o755)
    python, pythonpath = _python_for(user, base)
    r = Rootless(user, entry.pw_uid, entry.pw_gid, base, python, pythonpath)
    for sub in ("home", "run", "work"):
        (base / sub).mkdir()
    (base / "run").chmod(0o700)
    if driver:
        conf = base / "home" / ".config" / "containers" / "storage.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text(f'[storage]\ndriver = "{driver}"\n')
    r.own(base)
    return r
