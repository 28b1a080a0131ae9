"""Values that reach a command line are checked at recipe time (issue 9, item 4).

A value beginning with ``-`` reached buildah and podman as an option (``image = "--privileged"``
became a podman flag), and malformed ones failed only after steps ran (``image = "-oops/bad"``
ran a step and committed it before ``buildah tag`` failed). Table-driven: each case is a bad
value in a target placed after a ``local`` target whose step would leave a file behind; the run
must stop with exit 2 at the value's ``file:line`` before anything runs — no file, no container,
no image.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BUSYBOX

MARK = '[targets.mark]\nbackend = "local"\nsteps = [ { run = ["touch", "RAN"] } ]\n\n'

# id, the bad target's body ({n}: a nonce in names), message fragments, line of the bad value
CASES = [
    ("buildah-base-option", 'base = "-oops"\nsteps = []', ["targets.t{n}.base", "'-oops' begins with '-'"], 6),
    ("buildah-base-empty", 'base = ""\nsteps = []', ["the base image is empty"], 6),
    ("buildah-base-words", 'base = "Debian Bookworm"\nsteps = []',
     ["'Debian Bookworm' is not a valid base image", "debootstrap:bookworm"], 6),
    ("buildah-base-suite", 'base = "debootstrap:Bookworm"\nsteps = []', ["'Bookworm' is not a Debian suite name"], 6),
    ("buildah-base-mirror", 'base = "debootstrap:bookworm?mirror=-oops"\nsteps = []',
     ["'-oops' is not a valid mirror", "URL"], 6),
    ("buildah-image-option", f'base = "{BUSYBOX}"\nimage = "-oops/bad"\nsteps = [ {{ run = ["true"] }} ]',
     ["targets.t{n}.image", "'-oops/bad' begins with '-'"], 7),
    ("buildah-image-empty", f'base = "{BUSYBOX}"\nimage = ""\nsteps = []', ["the image name is empty"], 7),
    ("buildah-image-digest", f'base = "{BUSYBOX}"\nimage = "localhost/a@sha256:{"0" * 64}"\nsteps = []',
     ["not a @digest"], 7),
    ("buildah-tag-option", f'base = "{BUSYBOX}"\ntags = ["-x"]\nsteps = []', ["'-x' is not a valid tag"], 7),
    ("buildah-root-relative", f'base = "{BUSYBOX}"\nroot = "store"\nsteps = []', ["root 'store' must be an absolute"], 7),
    ("buildah-cache-to-option", f'base = "{BUSYBOX}"\ncache_to = "--oops"\nsteps = []',
     ["'--oops' is not a registry repository"], 7),
    ("buildah-builder-jump", f'base = "{BUSYBOX}"\nbuilder = {{ host = "b1", jump = "-oProxyCommand=x" }}\nsteps = []',
     ["builder jump '-oProxyCommand=x'"], 7),
    ("config-user", f'base = "{BUSYBOX}"\nsteps = []\n[targets.t{{n}}.config]\nuser = "-u"',
     ["targets.t{n}.config.user: user '-u' is not USER or USER:GROUP"], 9),
    ("config-env", f'base = "{BUSYBOX}"\nsteps = []\n[targets.t{{n}}.config]\nenv = {{ "-e" = "1" }}',
     ["targets.t{n}.config.env: '-e' is not a variable name"], 9),
    ("podman-image-option", 'backend = "podman"\nimage = "--privileged"\ncontainer = "c{n}"\nsteps = []',
     ["targets.t{n}.image", "'--privileged' begins with '-'"], 7),
    ("podman-image-empty", 'backend = "podman"\nimage = ""\ncontainer = "c{n}"\nsteps = []',
     ["the image name is empty"], 7),
    ("podman-container-option", f'backend = "podman"\nimage = "{BUSYBOX}"\ncontainer = "--privileged"\nsteps = []',
     ["container name '--privileged' may hold only"], 8),
    ("podman-commit-option", f'backend = "podman"\nimage = "{BUSYBOX}"\ncontainer = "c{{n}}"\ncommit = "-x"\nsteps = []',
     ["image name to commit to '-x' begins with '-'"], 9),
    ("podman-commit-words", f'backend = "podman"\nimage = "{BUSYBOX}"\ncontainer = "c{{n}}"\ncommit = "My Image"\nsteps = []',
     ["'My Image' is not a valid image name to commit to"], 9),
    ("podman-runtime-option", f'backend = "podman"\nimage = "{BUSYBOX}"\ncontainer = "c{{n}}"\nruntime = "--x"\nsteps = []',
     ["runtime '--x' is not a program"], 9),
    ("run-env-name", 'backend = "local"\nsteps = [\n  { run = ["true"], env = { "-i" = "1" } },\n]',
     ["'-i' is not a variable name"], 8),
    ("run-user-option", 'backend = "local"\nsteps = [\n  { run = ["true"], user = "-u" },\n]', ["user '-u' is not USER"], 8),
    ("run-workdir-relative", 'backend = "local"\nsteps = [\n  { run = ["true"], workdir = "src" },\n]',
     ["workdir 'src' must be an absolute path"], 8),
    ("run-shell-option", 'backend = "local"\nsteps = [\n  { run = "true", shell = "-c" },\n]',
     ["shell '-c' is not a program"], 8),
    ("copy-owner-option", 'backend = "local"\nsteps = [\n  { copy = { src = "a.txt", dest = "/tmp/x", owner = "--reference=/" } },\n]',
     ["owner '--reference=/' is not USER or USER:GROUP"], 8),
    ("user-group-option", 'backend = "local"\nsteps = [\n  { user = { name = "app", groups = ["-g"] } },\n]',
     ["group '-g' is not a user or group name"], 8),
    ("user-home-relative", 'backend = "local"\nsteps = [\n  { user = { name = "app", home = "home" } },\n]',
     ["home 'home' must be an absolute path"], 8),
    ("local-root-relative", 'backend = "local"\nroot = "tree"\nsteps = []', ["'tree' must be an absolute path"], 7),
    ("ssh-jump-option", 'backend = "ssh"\nhosts = ["h{n}"]\njump = "-oProxyCommand=x"\nsteps = []',
     ["targets.t{n}.jump: '-oProxyCommand=x' is not"], 8),
]


def shlax_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SHLAX_CACHE_DIR": str(cwd / ".cache"), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "shlax_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def made_with(nonce: str) -> list[str]:
    """Containers (buildah, podman) and images whose name holds ``nonce``."""
    found = []
    for argv in (["buildah", "containers", "--format", "{{.ContainerName}}"],
                 ["podman", "ps", "-a", "--format", "{{.Names}}"],
                 ["buildah", "images", "--format", "{{.Name}}:{{.Tag}}"]):
        found += [n for n in subprocess.run(argv, capture_output=True, text=True).stdout.split() if nonce in n]
    return found


@pytest.mark.parametrize("case_id, body, fragments, line", CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_a_recipe_error_before_anything_runs(tmp_path: Path, nonce: str, case_id: str, body: str,
                                                          fragments: list[str], line: int) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    text = MARK + f"[targets.t{nonce}]\n" + body.replace("{n}", nonce) + "\n"
    (tmp_path / "recipe.toml").write_text(text)
    containers_before = subprocess.run(["podman", "ps", "-a", "-q"], capture_output=True, text=True).stdout.split()
    for command in ("run", "plan"):
        proc = shlax_cli([command, "recipe.toml"], tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"shlax: error: recipe.toml:{line}: "), proc.stderr
        for fragment in fragments:
            assert fragment.replace("{n}", nonce) in proc.stderr, proc.stderr
        assert proc.stdout == ""
    assert not (tmp_path / "RAN").exists()          # the first target did not run either
    assert made_with(nonce) == []
    if "--privileged" in body:                      # podman made nothing from a flag-like value
        after = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}} {{.Image}}"], capture_output=True,
                               text=True).stdout
        assert "sleep" not in after.split() and "--privileged" not in after
        assert set(subprocess.run(["podman", "ps", "-a", "-q"], capture_output=True, text=True).stdout.split()) \
            <= set(containers_before) | set(subprocess.run(["podman", "ps", "-a", "-q", "--filter",
                                                            "label=shlax.target"], capture_output=True,
                                                           text=True).stdout.split()) | _others()


def _others() -> set[str]:
    """Containers other sessions on this machine make meanwhile (not labelled by this test)."""
    out = subprocess.run(["podman", "ps", "-a", "--format", "{{.ID}} {{.Names}}"], capture_output=True, text=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


@pytest.mark.parametrize("jobs", ["0", "-3"])
@pytest.mark.parametrize("command", ["run", "plan"])
def test_jobs_must_be_positive(tmp_path: Path, command: str, jobs: str) -> None:
    (tmp_path / "recipe.toml").write_text(MARK)
    proc = shlax_cli([command, "recipe.toml", "-j", jobs], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Invalid value for '-j' / '--jobs'" in proc.stderr and "x>=1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "RAN").exists()


def test_values_that_look_like_options_are_not_refused_where_they_are_data(tmp_path: Path) -> None:
    """The checks refuse malformed values, not data: a run step's own argv and env values may
    begin with '-' and reach the program intact."""
    out = tmp_path / "out"
    (tmp_path / "recipe.toml").write_text(
        '[targets.here]\nbackend = "local"\n'
        f'steps = [ {{ run = ["sh", "-c", "printf \'%s|%s\' \\"$1\\" \\"$V\\" > {out}", "sh", "--privileged"], '
        'env = { V = "-oops" } } ]\n')
    proc = shlax_cli(["run", "recipe.toml"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text() == "--privileged|-oops"
