"""Build-wide env and workdir (a Containerfile's ENV and WORKDIR): every command of every later
step gets them, ``${VAR}`` expands from earlier values and the starting environment, and they are
part of the key of the steps that run commands (only those)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conftest import buildah, events, run_shlax, statuses, working_containers
from test_buildah_layers import read_in_image

IMAGE_RECIPE = """
[targets.e{nonce}]
base = "{base}"
image = "localhost/shlax-test-env-{nonce}"
env = {{ PATH = "/opt/tools/bin:${{PATH}}", MODE = "{mode}" }}
workdir = "/srv/app"
steps = [
  {{ copy = {{ src = "tool", dest = "/opt/tools/bin/mytool", mode = "0755" }} }},
  {{ run = ["sh", "-c", "mytool > first.txt; echo $PATH > path.txt"] }},
  {{ copy = {{ src = "data.txt", dest = "/srv/data.txt" }} }},
  {{ env = {{ MODE = "${{MODE}}-late" }} }},
  {{ workdir = "/srv/later" }},
  {{ run = ["sh", "-c", "mytool > second.txt"] }},
  {{ run = ["sh", "-c", "mytool > /srv/own.txt"], workdir = "/srv", env = {{ MODE = "own" }} }},
]
"""


def image_recipe(tmp_path: Path, base: str, nonce: str, mode: str = "build") -> Path:
    tool = tmp_path / "tool"
    tool.write_text(f'#!/bin/sh\n# {nonce}\necho "tool:$MODE:$PWD"\n')
    (tmp_path / "data.txt").write_text("data\n")
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(IMAGE_RECIPE.format(base=base, nonce=nonce, mode=mode))
    return recipe


def test_image_steps_get_build_env_and_workdir(tmp_path, busybox_image, nonce):
    recipe = image_recipe(tmp_path, busybox_image, nonce)
    image = f"localhost/shlax-test-env-{nonce}:latest"
    first = run_shlax("run", str(recipe), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["done"] * 5
    # PATH prepends to the image's own (the test busybox sets PATH=/bin); the workdir is made
    # when missing, as WORKDIR does
    base_env = json.loads(buildah("inspect", "--type", "image", busybox_image).stdout)["OCIv1"]["config"]["Env"]
    assert "PATH=/bin" in base_env
    assert read_in_image(image, "/srv/app/path.txt").strip() == "/opt/tools/bin:/bin"
    assert read_in_image(image, "/srv/app/first.txt") == "tool:build:/srv/app\n"
    # a pseudo-step changes the steps after it; ${MODE} expands to the earlier value
    assert read_in_image(image, "/srv/later/second.txt") == "tool:build-late:/srv/later\n"
    # a step's own env and workdir win
    assert read_in_image(image, "/srv/own.txt") == "tool:own:/srv\n"
    # the build-wide settings are for steps, not the container (that is config.env/workdir)
    config = json.loads(buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]
    assert not any(e.startswith("MODE=") for e in config.get("Env") or [])

    again = run_shlax("run", str(recipe), "--json")
    assert statuses(again.stdout) == ["cached"] * 5

    # a changed value reruns from the first step that runs a command: the copy before it is kept
    recipe = image_recipe(tmp_path, busybox_image, nonce, mode="other")
    plan = run_shlax("plan", str(recipe), "--json")
    assert statuses(plan.stdout) == ["cached", "run", "run", "run", "run"]
    reasons = [e.get("reason") for e in events(plan.stdout) if e["event"] == "step_end"]
    assert "(env)" in reasons[1], reasons
    changed = run_shlax("run", str(recipe), "--json")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert read_in_image(image, "/srv/app/first.txt") == "tool:other:/srv/app\n"
    assert read_in_image(image, "/srv/later/second.txt") == "tool:other-late:/srv/later\n"

    # a pseudo-step placed after the copies: only later steps rerun
    text = recipe.read_text().replace('"${MODE}-late"', '"${MODE}-later"')
    recipe.write_text(text)
    late = run_shlax("run", str(recipe), "--json")
    assert statuses(late.stdout) == ["cached", "cached", "cached", "done", "done"]
    assert read_in_image(image, "/srv/later/second.txt") == "tool:other-later:/srv/later\n"
    assert working_containers(f"e{nonce}") == []


def test_undefined_variable_is_an_error_at_its_line(tmp_path, busybox_image, nonce):
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.u{nonce}]
        base = "{busybox_image}"
        image = "localhost/shlax-test-env-{nonce}"
        steps = [
          {{ run = ["touch", "/{nonce}"] }},
          {{ env = {{ PATH = "/opt/bin:${{PAHT}}" }} }},
          {{ run = ["true"] }},
        ]
    """))
    for command in ("plan", "run"):
        proc = run_shlax(command, str(recipe), "--json")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        out = proc.stdout + proc.stderr
        assert "shlax.toml:7:" in out and "${PAHT} is not defined" in out, out
        assert "Traceback" not in out
        # found before any step ran: the step before it did not run either
        assert not [e for e in events(proc.stdout) if e["event"] == "step_start"]
    assert working_containers(f"u{nonce}") == []


def test_local_backend_build_env(tmp_path):
    work, other, bin_dir = tmp_path / "work", tmp_path / "other", tmp_path / "bin"
    for d in (work, other, bin_dir):
        d.mkdir()
    (bin_dir / "mytool").write_text('#!/bin/sh\necho "tool:$GREETING:$PWD" > "$1"\n')
    (bin_dir / "mytool").chmod(0o755)
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.here]
        backend = "local"
        env = {{ GREETING = "hello", PATH = "{bin_dir}:${{PATH}}" }}
        workdir = "{work}"
        steps = [
          {{ run = ["mytool", "one.txt"], creates = "{work}/one.txt" }},
          {{ env = {{ GREETING = "${{GREETING}} world", PRICE = "$$5" }} }},
          {{ workdir = "{other}" }},
          {{ run = ["sh", "-c", "mytool two.txt; echo $PRICE > price.txt"], creates = "{other}/two.txt" }},
        ]
    """))
    proc = run_shlax("run", str(recipe), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (work / "one.txt").read_text() == f"tool:hello:{work}\n"
    assert (other / "two.txt").read_text() == f"tool:hello world:{other}\n"
    assert (other / "price.txt").read_text() == "$5\n"


def test_bad_build_env_is_refused_at_its_line(tmp_path):
    recipe = tmp_path / "shlax.toml"
    cases = {
        'env = { "A-B" = "x" }': "is not a variable name",
        'env = { A = 3 }': "must be a string",
        'env = { A = "${A:-x}" }': "is not a variable reference",
        'workdir = "app"': "must be an absolute path",
    }
    for line, message in cases.items():
        recipe.write_text(f'[targets.here]\nbackend = "local"\n{line}\nsteps = [ {{ run = ["true"] }} ]\n')
        proc = run_shlax("plan", str(recipe))
        assert proc.returncode == 2, line
        assert "shlax.toml:3:" in proc.stderr + proc.stdout and message in proc.stderr + proc.stdout, \
            (line, proc.stderr)
    recipe.write_text('[targets.here]\nbackend = "local"\nsteps = [\n  { workdir = "/srv", run = ["true"] },\n]\n')
    proc = run_shlax("plan", str(recipe))
    assert proc.returncode == 2 and "shlax.toml:4:" in proc.stderr + proc.stdout
    assert "takes nothing else" in proc.stderr + proc.stdout


def test_missing_workdir_on_a_host_fails_the_step_clearly(tmp_path):
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(f'[targets.here]\nbackend = "local"\nworkdir = "{tmp_path}/missing"\n'
                      'steps = [ { run = ["true"] } ]\n')
    proc = run_shlax("run", str(recipe))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no such folder on this machine" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
