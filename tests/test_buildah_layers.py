"""The layer cache on real buildah builds: what reruns, what is reused, what is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import buildah, events, leftover_mounts, statuses, working_containers

RECIPE = """
[targets.t{nonce}]
base = "{base}"
image = "localhost/shlax-test-app-{nonce}"
steps = [
  {{ run = ["sh", "-c", "mkdir -p /data && echo {nonce} > /data/nonce"] }},
  {{ copy = {{ src = "app/", dest = "/app/", mode = "0640" }} }},
  {{ run = ["sh", "-c", "{third}"] }},
]

[targets.t{nonce}.config]
cmd = ["cat", "/app/hello.txt"]
env = {{ GREETING = "hi" }}
workdir = "/app"
labels = {{ "org.example.team" = "infra" }}
ports = ["8000/tcp"]
"""


def write(tmp_path: Path, base: str, nonce: str, third: str = "ls /app > /data/listing") -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "hello.txt").write_text("hello world\n")
    (tmp_path / "app" / "sub").mkdir(exist_ok=True)
    (tmp_path / "app" / "sub" / "data.bin").write_bytes(b"\x00\x01" * 100)
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(RECIPE.format(base=base, nonce=nonce, third=third))
    return recipe


def read_in_image(image: str, path: str) -> str:
    ctr = buildah("from", "--pull=never", image).stdout.strip()
    try:
        mnt = buildah("mount", ctr).stdout.strip()
        return Path(mnt, path.lstrip("/")).read_text()
    finally:
        buildah("rm", ctr)


def mode_in_image(image: str, path: str) -> int:
    ctr = buildah("from", "--pull=never", image).stdout.strip()
    try:
        mnt = buildah("mount", ctr).stdout.strip()
        return os.stat(Path(mnt, path.lstrip("/"))).st_mode & 0o7777
    finally:
        buildah("rm", ctr)


def test_three_step_image_then_rebuilds(tmp_path, shlax, busybox_image, nonce):
    recipe = write(tmp_path, busybox_image, nonce)
    image = f"localhost/shlax-test-app-{nonce}:latest"

    first = shlax("run", str(recipe), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["done", "done", "done"]
    # files and config are in the built image
    assert read_in_image(image, "/data/nonce").strip() == nonce
    assert read_in_image(image, "/app/hello.txt") == "hello world\n"
    assert read_in_image(image, "/data/listing").split() == ["hello.txt", "sub"]
    assert mode_in_image(image, "/app/hello.txt") == 0o640
    config = json.loads(buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]
    assert config["Cmd"] == ["cat", "/app/hello.txt"]
    assert "GREETING=hi" in config["Env"]
    assert config["WorkingDir"] == "/app"
    assert config["Labels"]["org.example.team"] == "infra"
    assert "8000/tcp" in config["ExposedPorts"]

    # unchanged rebuild: every step cached, nothing run
    again = shlax("run", str(recipe), "--json")
    assert again.returncode == 0, again.stderr
    assert statuses(again.stdout) == ["cached", "cached", "cached"]
    assert not [e for e in events(again.stdout) if e["event"] == "step_start"]

    # touch a copied file (mtime only): still cached
    hello = tmp_path / "app" / "hello.txt"
    os.utime(hello, (time.time() + 100, time.time() + 100))
    touched = shlax("run", str(recipe), "--json")
    assert statuses(touched.stdout) == ["cached", "cached", "cached"]

    # same size, same mtime, other content: the copy step reruns, and so does the next one
    st = hello.stat()
    hello.write_text("HELLO WORLD\n")
    os.utime(hello, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert hello.stat().st_size == st.st_size and hello.stat().st_mtime_ns == st.st_mtime_ns
    changed = shlax("run", str(recipe), "--json")
    assert changed.returncode == 0, changed.stderr
    assert statuses(changed.stdout) == ["cached", "done", "done"]
    assert read_in_image(image, "/app/hello.txt") == "HELLO WORLD\n"

    # change step 2's parameters: step 1 cached, steps 2 and 3 run
    recipe.write_text(recipe.read_text().replace('mode = "0640"', 'mode = "0644"'))
    plan = shlax("plan", str(recipe), "--json")
    reasons = [e.get("reason") for e in events(plan.stdout) if e["event"] == "step_end"]
    assert reasons[1] == "parameters changed: mode"
    assert reasons[2] == "an earlier step or the base image changed"
    rebuilt = shlax("run", str(recipe), "--json")
    assert statuses(rebuilt.stdout) == ["cached", "done", "done"]
    assert mode_in_image(image, "/app/hello.txt") == 0o644
    assert working_containers(f"t{nonce}") == []


def test_failing_step_commits_nothing_and_leaves_nothing(tmp_path, shlax, busybox_image, nonce):
    recipe = write(tmp_path, busybox_image, nonce, third="echo about to fail; exit 3")
    proc = shlax("run", str(recipe))
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout
    assert "exit code: 3" in proc.stdout
    assert "about to fail" in proc.stdout          # the tail of its output
    assert "command: sh -c" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    layers = json.loads(shlax("cache", "ls", "--json").stdout)["layers"]
    steps = sorted(layer["step"] for layer in layers if layer["target"] == f"t{nonce}")
    assert steps == [f"targets.t{nonce}.steps[0]", f"targets.t{nonce}.steps[1]"]  # nothing for step 3
    assert working_containers(f"t{nonce}") == []
    assert leftover_mounts() == []
    # the next run reuses the two good layers and fails again at step 3 only
    again = shlax("run", str(recipe), "--json")
    assert statuses(again.stdout) == ["cached", "cached", "failed"]


def _default_sigint() -> None:
    """The child starts with SIGINT's default disposition even when pytest runs as a background
    job (which starts with SIGINT ignored): otherwise Python installs no handler and a Ctrl-C
    never lands."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cleans_up_and_keeps_layers(tmp_path, busybox_image, nonce, sig):
    # the step's shell carries the nonce in its command line (a comment), so looking for it finds
    # this test's process only, never another test's or another user's `sleep`
    forever = f"echo started; while :; do sleep 1; done # {nonce}"
    recipe = write(tmp_path, busybox_image, nonce, third=forever)
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "run", str(recipe), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint)
    assert proc.stdout is not None
    for line in proc.stdout:   # wait until the third step is really running
        if '"started"' in line:
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert working_containers(f"t{nonce}") == []
    assert leftover_mounts() == []
    assert not subprocess.run(["pgrep", "-f", f"done # {nonce}"], capture_output=True).stdout
    # the next run reuses the layers committed before the interruption
    recipe.write_text(recipe.read_text().replace(forever, "true"))
    again = subprocess.run([sys.executable, "-m", "shlax_core", "run", str(recipe), "--json"],
                           capture_output=True, text=True, env=env)
    assert statuses(again.stdout) == ["cached", "cached", "done"]


def test_two_variants_keep_their_layers(tmp_path, shlax, busybox_image, nonce):
    recipe = write(tmp_path, busybox_image, nonce)
    a = recipe.read_text()
    b = a.replace("ls /app > /data/listing", "echo variant-b > /data/listing")
    for text in (a, b):
        recipe.write_text(text)
        proc = shlax("run", str(recipe), "--json")
        assert proc.returncode == 0, proc.stderr
    for text in (a, b, a, b):
        recipe.write_text(text)
        proc = shlax("run", str(recipe), "--json")
        assert statuses(proc.stdout) == ["cached", "cached", "cached"], text


def test_no_cache_rebuilds_every_step(tmp_path, shlax, busybox_image, nonce):
    recipe = write(tmp_path, busybox_image, nonce)
    assert shlax("run", str(recipe)).returncode == 0
    proc = shlax("run", str(recipe), "--no-cache", "--json")
    assert statuses(proc.stdout) == ["done", "done", "done"]


def test_debootstrap_base_and_user(tmp_path, shlax, debian_image, nonce):
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.deb]
        base = "debootstrap:bookworm"
        image = "localhost/shlax-test-deb-{nonce}"
        steps = [
          {{ user = {{ name = "app", uid = 1500, home = "/srv/app" }} }},
          {{ run = ["sh", "-c", "id app > /srv/app/id-{nonce}"] }},
        ]
    """))
    proc = shlax("run", str(tmp_path / "shlax.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = read_in_image(f"localhost/shlax-test-deb-{nonce}", f"/srv/app/id-{nonce}")
    assert text.startswith("uid=1500(app)")
    # the base was built once: it is not rebuilt
    assert "building base image" not in proc.stdout


def test_scratch_base_with_copy_only(tmp_path, shlax, nonce):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "index.html").write_text(f"<p>{nonce}</p>\n")
    (tmp_path / "static" / "skip.log").write_text("not copied\n")
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.s{nonce}]
        base = "scratch"
        image = "localhost/shlax-test-scratch-{nonce}:v1"
        tags = ["stable"]
        steps = [ {{ copy = {{ src = "static/", dest = "/www/", exclude = ["*.log"] }} }} ]
    """))
    proc = shlax("run", str(tmp_path / "shlax.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    image = f"localhost/shlax-test-scratch-{nonce}"
    assert read_in_image(f"{image}:v1", "/www/index.html") == f"<p>{nonce}</p>\n"
    ctr = buildah("from", "--pull=never", f"{image}:stable").stdout.strip()
    try:
        mnt = buildah("mount", ctr).stdout.strip()
        assert sorted(os.listdir(mnt)) == ["www"]
        assert os.listdir(Path(mnt, "www")) == ["index.html"]
    finally:
        buildah("rm", ctr)


def test_interrupts_at_any_moment_leave_nothing(tmp_path, busybox_image, nonce):
    """Ctrl-C lands anywhere: in a step, a commit, between steps. No working container survives,
    nor a temporary folder of shlax's or of an interrupted buildah (TMPDIR is this test's own).

    The moments are random but reproducible: the seed is printed (and shown on failure), and
    ``SHLAX_TEST_SEED=N`` replays them. The last step never ends on its own, so every run is
    still going when its signal comes: exit 130 proves the interrupt landed."""
    import random

    seed = int(os.environ.get("SHLAX_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"SHLAX_TEST_SEED={seed}")
    rng = random.Random(seed)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "NO_COLOR": "1", "TMPDIR": str(scratch)}
    recipe = tmp_path / "shlax.toml"
    for n in range(6):
        recipe.write_text(textwrap.dedent(f"""
            [targets.i{nonce}]
            base = "{busybox_image}"
            steps = [
              {{ run = ["sh", "-c", "echo {nonce}-{n}; sleep 0.5"] }},
              {{ run = ["sh", "-c", "sleep 0.5"] }},
              {{ run = ["sh", "-c", "while :; do sleep 1; done # {nonce}"] }},
            ]
        """))
        proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "run", str(recipe)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_sigint)
        # the moment counts from shlax's first line: a signal that lands while the interpreter
        # itself is still starting (under load, seconds) kills it before any shlax code exists
        first = proc.stdout.readline() if proc.stdout else ""
        delay = rng.uniform(0.0, 2.7)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        out = first + out
        why = f"seed {seed}, run {n}, SIGINT after {delay:.2f}s\n{out}{err}"
        assert proc.returncode == 130, why
        assert "interrupted" in out + err, why
        assert "Traceback" not in err, why
        assert working_containers(f"i{nonce}") == [], why
        assert sorted(p.name for p in scratch.iterdir()) == [], why
        assert not subprocess.run(["pgrep", "-f", f"done # {nonce}"], capture_output=True).stdout, why


def _fast(stdout: str) -> bool:
    return any(e["event"] == "run_start" and e.get("fast") for e in events(stdout))


def test_noop_fast_path_and_what_invalidates_it(tmp_path, shlax, busybox_image, nonce):
    recipe = write(tmp_path, busybox_image, nonce)
    image = f"localhost/shlax-test-app-{nonce}:latest"
    assert shlax("run", str(recipe)).returncode == 0
    quick = shlax("run", str(recipe), "--json")
    assert _fast(quick.stdout) and statuses(quick.stdout) == ["cached", "cached", "cached"]

    # a new file in a copied directory: the directory's signature changed, the copy step reruns
    (tmp_path / "app" / "new.txt").write_text("new\n")
    proc = shlax("run", str(recipe), "--json")
    assert not _fast(proc.stdout) and statuses(proc.stdout) == ["cached", "done", "done"]
    assert "new.txt" in read_in_image(image, "/data/listing")

    # a file's content changed in place (same size, same directory listing): its own signature
    # (recorded from the stat cache's view of it) tells, the copy step reruns
    assert _fast(shlax("run", str(recipe), "--json").stdout)
    (tmp_path / "app" / "sub" / "data.bin").write_bytes(b"\x02\x01" * 100)
    proc = shlax("run", str(recipe), "--json")
    assert not _fast(proc.stdout) and statuses(proc.stdout) == ["cached", "done", "done"]

    # the final image's name was taken away: no fast answer, the normal path re-tags it
    assert _fast(shlax("run", str(recipe), "--json").stdout)
    buildah("rmi", image)
    proc = shlax("run", str(recipe), "--json")
    assert not _fast(proc.stdout) and statuses(proc.stdout) == ["cached", "cached", "cached"]
    assert buildah("inspect", "--type", "image", image, check=False).returncode == 0

    # another option than --json and --offline, or SHLAX_NO_FASTPATH, always takes the normal path
    assert not _fast(shlax("run", str(recipe), "--json", "-j", "1").stdout)
    assert not _fast(shlax("run", str(recipe), "--json", env={"SHLAX_NO_FASTPATH": "1"}).stdout)

    # a failed run forgets the record
    recipe.write_text(recipe.read_text().replace("ls /app > /data/listing", "exit 9"))
    assert shlax("run", str(recipe)).returncode == 1
    recipe.write_text(recipe.read_text().replace("exit 9", "ls /app > /data/listing"))
    assert not _fast(shlax("run", str(recipe), "--json").stdout)


def test_lent_caches_leave_no_mount_point_in_the_image(tmp_path, shlax, busybox_image, nonce):
    """A step that borrows host folders (here the pip cache) commits none of them, not even the
    empty mount points buildah creates for them."""
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.m{nonce}]
        base = "{busybox_image}"
        image = "localhost/shlax-test-mounts-{nonce}"
        steps = [
          {{ run = ["sh", "-c", "echo {nonce} > /marker; ls /run/shlax"], caches = ["pip"] }},
          {{ run = ["true"] }},
        ]
    """))
    proc = shlax("run", str(tmp_path / "shlax.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wheelhouse" in proc.stdout          # the cache was mounted during the step
    ctr = buildah("from", "--pull=never", f"localhost/shlax-test-mounts-{nonce}").stdout.strip()
    try:
        mnt = buildah("mount", ctr).stdout.strip()
        assert Path(mnt, "marker").read_text() == f"{nonce}\n"
        assert not Path(mnt, "run", "shlax").exists()
        assert not Path(mnt, "run").exists() or os.listdir(Path(mnt, "run")) == []
    finally:
        buildah("rm", ctr)


def _feed_action():
    from dataclasses import dataclass

    from shlax_core.actions import Action

    @dataclass
    class FeedParams:
        path: str
        text: str

    class Feed(Action):
        """Write ``text`` to ``path`` through the command's stdin."""

        Params = FeedParams

        def apply(self, ctx):
            ctx.run(["sh", "-c", 'cat > "$1"', "sh", self.params.path], stdin=self.params.text.encode())
            return True

    return Feed


def test_stdin_and_copy_owner_reach_the_committed_image(shlax_recipe, busybox_image, nonce) -> None:
    """``ctx.run(argv, stdin=data)`` in an image build: the data is in the committed layer (it was
    dropped, committing an empty file and reporting DONE); a copy's ``owner`` reaches the files of
    the archive (buildah add --chown did not)."""
    image = f"localhost/shlax-test-stdin-{nonce}"
    project = shlax_recipe(f"""
        [targets.s{nonce}]
        base = "{busybox_image}"
        image = "{image}"
        steps = [
          {{ run = ["sh", "-c", "echo 'app:x:4242:4242::/:/bin/sh' >> /etc/passwd; echo 'app:x:4242:' >> /etc/group",
                    "{nonce}"] }},
          {{ feed = {{ path = "/etc/app.conf", text = "port = 8080\\nname = {nonce}\\n" }} }},
          {{ copy = {{ src = "owned.txt", dest = "/srv/owned/", owner = "app" }} }},
        ]
    """, files={"owned.txt": "mine\n"}, actions={"feed": _feed_action()})
    result = project.run()
    assert result.code == 0, result.output
    assert result.statuses == ["done", "done", "done"]
    assert read_in_image(image, "/etc/app.conf") == f"port = 8080\nname = {nonce}\n"
    ctr = buildah("from", "--pull=never", image).stdout.strip()
    try:
        st = os.stat(Path(buildah("mount", ctr).stdout.strip(), "srv/owned/owned.txt"))
    finally:
        buildah("rm", ctr)
    assert (st.st_uid, st.st_gid) == (4242, 4242)


CONFIGURED = """
[targets.c{nonce}]
base = "{base}"
image = "localhost/shlax-test-conf-{nonce}"
steps = [
  {{ run = ["sh", "-c", "mkdir -p /data && echo {nonce} > /data/nonce"] }},
  {{ run = ["sh", "-c", "echo two > /data/two"] }},
{more}]

[targets.c{nonce}.config]
{config}
"""

FIRST_CONFIG = """cmd = ["cat", "/data/nonce"]
env = { GREETING = "hi" }
workdir = "/data"
labels = { "org.example.team" = "infra", "org.example.gone" = "soon" }
ports = ["8000/tcp"]"""


def _image_info(image: str) -> tuple[str, dict, int, list[str]]:
    """ID, run configuration, number of layers, and names of an image."""
    info = json.loads(buildah("inspect", "--type", "image", image).stdout)
    image_id = info["FromImageID"]
    names = [n for i in json.loads(buildah("images", "--json", "--no-trunc", image_id).stdout)
             for n in i.get("names") or []]
    return image_id, info["OCIv1"]["config"], len(info["OCIv1"]["rootfs"]["diff_ids"]), names


@pytest.mark.parametrize("path", ["direct", "buildah-run"])
def test_final_image_is_the_steps_and_a_configuration_commit(tmp_path, shlax, busybox_image, nonce, path):
    """The final image is the step layers and, on top, the configuration in an empty layer of its
    own, dated with the pinned epoch (docs/reproducible.md: a configuration change then gives the
    image a build from scratch gives). A configuration-only change runs no step and leaves nothing
    of the old configuration; a step added later runs with the base's configuration, and its
    layer does not carry the target's."""
    env = {"SHLAX_BUILDAH_RUN": "1"} if path == "buildah-run" else {}
    recipe = tmp_path / "shlax.toml"
    image = f"localhost/shlax-test-conf-{nonce}:latest"
    recipe.write_text(CONFIGURED.format(nonce=nonce, base=busybox_image, more="", config=FIRST_CONFIG))
    base_layers = _image_info(busybox_image)[2]

    first = shlax("run", str(recipe), "--json", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["done", "done"]
    image_id, config, layers, names = _image_info(image)
    # direct: both small steps committed from one working container; then an empty layer for the config
    assert layers == base_layers + (2 if path == "direct" else 3)
    assert len([n for n in names if n.startswith("localhost/shlax-cache:")]) == 1  # the final key
    assert config["Cmd"] == ["cat", "/data/nonce"] and "GREETING=hi" in config["Env"]
    assert config["Labels"]["org.example.gone"] == "soon"

    # the configuration alone changes: nothing runs, nothing of the old one is left
    recipe.write_text(CONFIGURED.format(nonce=nonce, base=busybox_image, more="", config="""cmd = ["true"]
labels = { "org.example.team" = "infra" }"""))
    again = shlax("run", str(recipe), "--json", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert statuses(again.stdout) == ["cached", "cached"]
    assert not [e for e in events(again.stdout) if e["event"] == "step_start"]
    _, config, again_layers, _ = _image_info(image)
    assert again_layers == base_layers + (2 if path == "direct" else 3)
    assert config["Cmd"] == ["true"]
    assert "org.example.gone" not in config["Labels"] and config["Labels"]["org.example.team"] == "infra"
    assert not [e for e in config["Env"] if e.startswith("GREETING=")]
    assert not config.get("WorkingDir") and not config.get("ExposedPorts")

    # back to the first configuration, with steps added after the configured layer
    more = ('  { run = ["sh", "-c", "echo \\"[$GREETING]\\" > /data/greeting; pwd > /data/pwd"] },\n'
            '  { run = ["sh", "-c", "echo four > /data/four"] },\n')
    recipe.write_text(CONFIGURED.format(nonce=nonce, base=busybox_image, more=more, config=FIRST_CONFIG))
    added = shlax("run", str(recipe), "--json", env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    assert statuses(added.stdout) == ["cached", "cached", "done", "done"]
    assert read_in_image(image, "/data/greeting") == "[]\n"   # the base's environment, not the target's
    assert read_in_image(image, "/data/pwd") == "/\n"
    _, config, layers, _ = _image_info(image)
    assert layers == base_layers + (3 if path == "direct" else 5)
    assert config["Cmd"] == ["cat", "/data/nonce"] and config["Labels"]["org.example.gone"] == "soon"
    # the layer of the step added after the configured one has the base's configuration
    rows = json.loads(shlax("cache", "ls", "--json").stdout)["layers"]
    step2 = [r["image"] for r in rows if r.get("step") == f"targets.c{nonce}.steps[2]"]
    assert step2, rows
    _, layer_config, _, _ = _image_info(step2[0])
    assert layer_config.get("Cmd") == _image_info(busybox_image)[1].get("Cmd")
    assert "org.example.team" not in (layer_config.get("Labels") or {})
    assert not [e for e in layer_config.get("Env") or [] if e.startswith("GREETING=")]
    assert working_containers(f"c{nonce}") == []


def test_what_a_step_leaves_running_ends_with_it(tmp_path, shlax, busybox_image, nonce):
    """A step that starts a daemon and exits: the daemon is killed with the step's PID namespace
    (it would hold the output pipe, and keep files open in the container being committed)."""
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.d{nonce}]
        base = "{busybox_image}"
        image = "localhost/shlax-test-daemon-{nonce}"
        steps = [
          {{ run = ["sh", "-c", "sleep 600 {nonce} > /dev/null 2>&1 & echo started"] }},
          {{ run = ["sh", "-c", "ps | grep -v grep | grep -c {nonce} > /count || true"] }},
        ]
    """))
    proc = shlax("run", str(tmp_path / "shlax.toml"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    alive = subprocess.run(["pgrep", "-f", f"sleep 600 {nonce}"], capture_output=True, text=True).stdout.split()
    assert alive == []
    assert read_in_image(f"localhost/shlax-test-daemon-{nonce}", "/count").strip() == "0"


CHAIN = """
[targets.k{nonce}]
base = "{base}"
image = "localhost/shlax-test-chain-{nonce}"
steps = [
  {{ run = ["sh", "-c", "echo a-{nonce} > /a; mkdir /d; echo x > /d/x"] }},
  {{ run = ["sh", "-c", "rm /a /d/x /etc/group; echo b > /b"] }},
  {{ run = ["sh", "-c", "head -c {big} /dev/urandom > /big"] }},
  {{ run = ["sh", "-c", "echo {third} > /c"] }},
  {{ run = ["sh", "-c", "rm /big; echo d > /d2"] }},
]
"""


def _present(image: str, paths: list[str]) -> list[str]:
    ctr = buildah("from", "--pull=never", image).stdout.strip()
    try:
        mnt = buildah("mount", ctr).stdout.strip()
        return [p for p in paths if os.path.lexists(Path(mnt, p.lstrip("/")))]
    finally:
        buildah("rm", ctr)


@pytest.mark.parametrize("path", ["direct", "buildah-run"])
def test_each_layer_is_the_tree_after_its_step(tmp_path, shlax, busybox_image, nonce, path):
    """Steps run in one working container committed after each step (direct), or in a container
    made again from each layer (buildah run): either way every layer is exactly the file system
    after its step (files added, changed, removed, the base's included), a rebuild can restart
    from any of them, and no layer after a big step holds its bytes again."""
    big = 8_000_000
    env = {"SHLAX_BUILDAH_RUN": "1"} if path == "buildah-run" else {}
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(CHAIN.format(nonce=nonce, base=busybox_image, big=big, third="c"))
    first = shlax("run", str(recipe), "--json", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["done"] * 5
    rows = [r for r in json.loads(shlax("cache", "ls", "--json").stdout)["layers"] if r["target"] == f"k{nonce}"]
    by_step = {int(r["step"].rsplit("[", 1)[1].rstrip("]")): r for r in rows if "steps[" in (r["step"] or "")}
    assert sorted(by_step) == [0, 1, 2, 3, 4], rows
    # the final image is the last step's layer and an empty configuration layer (docs/reproducible.md)
    assert _present(f"localhost/shlax-test-chain-{nonce}", ["/a", "/d/x", "/d", "/etc/group", "/b", "/big", "/c",
                                                           "/d2"]) == ["/d", "/b", "/c", "/d2"]
    paths = ["/a", "/d/x", "/d", "/etc/group", "/b", "/big", "/c", "/d2"]
    expected = {
        0: ["/a", "/d/x", "/d", "/etc/group"],
        1: ["/d", "/b"],
        2: ["/d", "/b", "/big"],
        3: ["/d", "/b", "/big", "/c"],
        4: ["/d", "/b", "/c", "/d2"],
    }
    for step, want in expected.items():
        assert _present(by_step[step]["image"], paths) == want, step
    assert by_step[2]["size"] >= big
    assert by_step[3]["size"] < 100_000 and by_step[4]["size"] < 100_000   # the big file is not repeated
    base_layers = _image_info(busybox_image)[2]
    _, _, layers, _ = _image_info(f"localhost/shlax-test-chain-{nonce}")
    # direct: steps 0-2 in one container (one layer), then a new one from the big step's layer;
    # then the configuration layer
    assert layers == base_layers + (3 if path == "direct" else 6)

    # a rebuild restarts from the big step's layer, unchanged steps stay cached
    recipe.write_text(CHAIN.format(nonce=nonce, base=busybox_image, big=big, third="c2"))
    again = shlax("run", str(recipe), "--json", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert statuses(again.stdout) == ["cached", "cached", "cached", "done", "done"]
    final = f"localhost/shlax-test-chain-{nonce}"
    assert _present(final, paths) == expected[4]
    assert read_in_image(final, "/c") == "c2\n"
    assert working_containers(f"k{nonce}") == []
