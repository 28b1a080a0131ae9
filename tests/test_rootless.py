"""Rootless builds: an ordinary user runs ``shlax run`` and gets root's layers, caches and cleanup.

The user, its fresh HOME and image store for the session, and how shlax runs as it are in
tests/fixtures_rootless.py; recipes are copied into folders it owns.

The base images come from root's store, exported as docker archives and pulled by the user: the
busybox test image, and the ``debootstrap:`` Debian base root built (a rootless user cannot run
debootstrap; see docs/rootless.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import fixtures_rootless
from conftest import buildah, events, statuses
from fixtures_rootless import Rootless

NO_RANGE_USER = "shlax-nosubuid"


@pytest.fixture(scope="session")
def rootless(busybox_image: str) -> Iterator[Rootless]:
    try:
        r = fixtures_rootless.make()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        r.give_image(busybox_image)
        yield r
    finally:
        r.destroy()


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
