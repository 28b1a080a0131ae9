"""Stages: a target copies from another target's image (built first when stale, its image's ID
in the copy's key, untagged when it only feeds others) or from any image reference."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import buildah, events, image_exists, run_shlax, statuses, working_containers
from test_buildah_layers import read_in_image

RECIPE = """
[targets.b{nonce}]
base = "{base}"
steps = [
  {{ run = ["sh", "-c", "mkdir -p /opt/venv/bin /junk && echo {marker} > /opt/venv/bin/marker && chown 1000:1000 /opt/venv/bin/marker && echo x > /junk/big"] }},
]

[targets.a{nonce}]
base = "{base}"
image = "localhost/shlax-test-stage-{nonce}"
steps = [
  {{ run = ["mkdir", "-p", "/srv/{nonce}"] }},
  {{ copy = {{ from = "b{nonce}", src = "/opt/venv", dest = "/opt/venv" }} }},
  {{ copy = {{ from = "{base}", src = "/bin/busybox", dest = "/opt/bb", mode = "0700" }} }},
  {{ run = ["sh", "-c", "cat /opt/venv/bin/marker > /srv/seen"] }},
]
"""


def write(tmp_path: Path, base: str, nonce: str, marker: str) -> Path:
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(RECIPE.format(base=base, nonce=nonce, marker=marker))
    return recipe


def test_stage_is_built_first_and_feeds_the_copy(tmp_path, busybox_image, nonce):
    recipe = write(tmp_path, busybox_image, nonce, "v1")
    image = f"localhost/shlax-test-stage-{nonce}:latest"
    plan = run_shlax("plan", str(recipe), f"a{nonce}", "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    infos = [e["message"] for e in events(plan.stdout) if e["event"] == "info"]
    assert f"a{nonce} copies from stage b{nonce}, image {busybox_image}" in infos, infos
    assert [e["target"] for e in events(plan.stdout) if e["event"] == "target_start"] == [f"b{nonce}", f"a{nonce}"]

    # only `a` is asked for: its stage `b` is built first
    first = run_shlax("run", str(recipe), f"a{nonce}", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout, f"b{nonce}") == ["done"]
    assert statuses(first.stdout, f"a{nonce}") == ["done"] * 4
    assert read_in_image(image, "/srv/seen") == "v1\n"
    assert read_in_image(image, "/opt/venv/bin/marker") == "v1\n"
    # only what was copied: the stage's other files stay out of the final image
    ctr = buildah("from", "--pull=never", image).stdout.strip()
    try:
        root = Path(buildah("mount", ctr).stdout.strip())
        assert not (root / "junk").exists()
        assert (root / "opt" / "bb").stat().st_mode & 0o7777 == 0o700
        # owned by root unless `owner`, as COPY --from
        assert (root / "opt" / "venv" / "bin" / "marker").stat().st_uid == 0
    finally:
        buildah("rm", ctr)
    # the stage only feeds `a`: no name of its own
    assert not image_exists(f"localhost/b{nonce}")

    again = run_shlax("run", str(recipe), f"a{nonce}", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert statuses(again.stdout) == ["cached"] * 5

    # the stage changes: its steps rerun, then `a` from the copy of it (the step before is kept)
    recipe = write(tmp_path, busybox_image, nonce, "v2")
    plan = run_shlax("plan", str(recipe), f"a{nonce}", "--json")
    assert statuses(plan.stdout, f"a{nonce}") == ["cached", "run", "run", "run"]
    changed = run_shlax("run", str(recipe), f"a{nonce}", "--json")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert statuses(changed.stdout, f"a{nonce}") == ["cached", "done", "done", "done"]
    assert read_in_image(image, "/srv/seen") == "v2\n"
    assert working_containers(f"a{nonce}") == [] and working_containers(f"b{nonce}") == []


def test_failed_stage_stops_what_copies_from_it(tmp_path, busybox_image, nonce):
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(RECIPE.format(base=busybox_image, nonce=nonce, marker="v1").replace(
        "echo x > /junk/big", "exit 3"))
    proc = run_shlax("run", str(recipe), "--json")
    assert proc.returncode != 0
    ends = [e for e in events(proc.stdout) if e["event"] == "step_end"]
    assert not [e for e in ends if e["target"] == f"a{nonce}" and e["status"] == "done"]
    assert "was not built" in proc.stdout
    assert working_containers(f"a{nonce}") == [] and working_containers(f"b{nonce}") == []


def test_stage_mistakes_are_refused_at_their_line(tmp_path, busybox_image):
    recipe = tmp_path / "shlax.toml"
    cases = {
        # a cycle
        textwrap.dedent(f"""
            [targets.x]
            base = "{busybox_image}"
            steps = [ {{ copy = {{ from = "y", src = "/a", dest = "/a" }} }} ]
            [targets.y]
            base = "{busybox_image}"
            steps = [ {{ copy = {{ from = "x", src = "/a", dest = "/a" }} }} ]
        """): ("shlax.toml:7:", "cycle"),
        # relative src in another image
        textwrap.dedent(f"""
            [targets.x]
            base = "{busybox_image}"
            steps = [ {{ copy = {{ from = "{busybox_image}", src = "bin", dest = "/a" }} }} ]
        """): ("shlax.toml:4:", "must be an absolute path"),
        # neither a target nor an image reference
        textwrap.dedent(f"""
            [targets.x]
            base = "{busybox_image}"
            steps = [ {{ copy = {{ from = "Not A Ref", src = "/bin", dest = "/a" }} }} ]
        """): ("shlax.toml:4:", "neither a target"),
        # a host target cannot copy from an image
        textwrap.dedent(f"""
            [targets.x]
            base = "{busybox_image}"
            steps = [ {{ run = ["true"] }} ]
            [targets.h]
            backend = "local"
            steps = [ {{ copy = {{ from = "x", src = "/bin", dest = "/tmp/a" }} }} ]
        """): ("shlax.toml:7:", "image builds only"),
    }
    for text, (where, message) in cases.items():
        recipe.write_text(text)
        proc = run_shlax("plan", str(recipe))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out
        assert where in out and message in out, (text, out)
        assert "Traceback" not in out


def test_fast_path_notices_a_stage_input(tmp_path, busybox_image, nonce):
    (tmp_path / "lib.txt").write_text("one\n")
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.s{nonce}]
        base = "{busybox_image}"
        steps = [ {{ copy = {{ src = "lib.txt", dest = "/lib/{nonce}.txt" }} }} ]

        [targets.f{nonce}]
        base = "{busybox_image}"
        image = "localhost/shlax-test-stage-{nonce}"
        steps = [ {{ copy = {{ from = "s{nonce}", src = "/lib/{nonce}.txt", dest = "/srv/lib.txt" }} }} ]
    """))
    image = f"localhost/shlax-test-stage-{nonce}:latest"
    first = run_shlax("run", str(recipe), f"f{nonce}", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    again = run_shlax("run", str(recipe), f"f{nonce}", "--json")
    assert again.returncode == 0 and statuses(again.stdout) == ["cached", "cached"]
    assert events(again.stdout)[0].get("fast"), "an unchanged run with a stage takes the fast path"
    (tmp_path / "lib.txt").write_text("two\n")
    changed = run_shlax("run", str(recipe), f"f{nonce}", "--json")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert statuses(changed.stdout) == ["done", "done"]
    assert read_in_image(image, "/srv/lib.txt") == "two\n"


def test_independent_stages_build_at_the_same_time(tmp_path, busybox_image, nonce):
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.p{nonce}]
        base = "{busybox_image}"
        steps = [ {{ run = ["sh", "-c", "sleep 5; echo p > /p.txt # {nonce}"] }} ]

        [targets.q{nonce}]
        base = "{busybox_image}"
        steps = [ {{ run = ["sh", "-c", "sleep 5; echo q > /q.txt # {nonce}"] }} ]

        [targets.r{nonce}]
        base = "{busybox_image}"
        image = "localhost/shlax-test-stage-{nonce}"
        steps = [
          {{ copy = {{ from = "p{nonce}", src = "/p.txt", dest = "/srv/" }} }},
          {{ copy = {{ from = "q{nonce}", src = "/q.txt", dest = "/srv/" }} }},
        ]
    """))
    proc = run_shlax("run", str(recipe), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [(e["event"], e["target"]) for e in events(proc.stdout) if e["event"] in ("step_start", "step_end")
             and e.get("index")]
    # both stages started their step before either finished it; the final target after both
    first_end = steps.index(next(s for s in steps if s[0] == "step_end"))
    assert {t for ev, t in steps[:first_end] if ev == "step_start"} == {f"p{nonce}", f"q{nonce}"}, steps
    assert [t for _, t in steps[-4:]] == [f"r{nonce}"] * 4
    image = f"localhost/shlax-test-stage-{nonce}:latest"
    assert read_in_image(image, "/srv/p.txt") == "p\n" and read_in_image(image, "/srv/q.txt") == "q\n"
    recap = [e for e in events(proc.stdout) if e["event"] == "run_end"][0]["recap"]
    assert [x["target"] for x in recap] == [f"p{nonce}", f"q{nonce}", f"r{nonce}"]
    assert working_containers(f"p{nonce}") == [] and working_containers(f"q{nonce}") == []


def test_interrupt_while_stages_build_side_by_side_leaves_nothing(tmp_path, busybox_image, nonce):
    import os
    import signal
    import subprocess
    import sys

    from conftest import leftover_mounts

    forever = f"echo started; while :; do sleep 1; done # {nonce}"
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.p{nonce}]
        base = "{busybox_image}"
        steps = [ {{ run = ["sh", "-c", "{forever}"] }} ]

        [targets.q{nonce}]
        base = "{busybox_image}"
        steps = [ {{ run = ["sh", "-c", "{forever} q"] }} ]

        [targets.r{nonce}]
        base = "{busybox_image}"
        steps = [
          {{ copy = {{ from = "p{nonce}", src = "/bin", dest = "/p" }} }},
          {{ copy = {{ from = "q{nonce}", src = "/bin", dest = "/q" }} }},
        ]
    """))
    proc = subprocess.Popen([sys.executable, "-m", "shlax_core", "run", str(recipe), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})
    assert proc.stdout is not None
    started = 0
    for line in proc.stdout:  # both stages' steps are running
        started += '"started"' in line
        if started == 2:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    for t in ("p", "q", "r"):
        assert working_containers(f"{t}{nonce}") == []
    assert leftover_mounts() == []
    assert not subprocess.run(["pgrep", "-f", f"done # {nonce}"], capture_output=True).stdout
