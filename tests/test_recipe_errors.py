"""Malformed recipes through the real CLI: one clear message at file:LINE, exit 2, nothing run.

Table-driven: each case is a recipe text (``{MARK}`` is a first step that would leave a file
behind if anything ran), the message fragment the user must see and the ``file:LINE`` it points
at. ``SHLAX_DISABLE_PLUGINS`` hides shlax-plugin-apt, so the `apt` hint case holds whether or not
the apt plugin is installed in this venv.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

MARK = '{ run = ["touch", "ran"] },'

# id, recipe, expected fragment(s), expected where (file:LINE[:COL]), extra CLI args
CASES = [
    ("toml-syntax", '[targets.t]\nbackend = "local"\nsteps = [\n  { run = ["a"] ,, },\n]\n',
     ["TOML syntax error", "Invalid initial character"], "recipe.toml:4:18", ()),
    ("toml-unclosed", '[targets.t]\nbackend = "local"\nsteps = [ { run = ["a"] }\n',
     ["TOML syntax error", "Unclosed array"], "recipe.toml:3:26", ()),
    ("unknown-action", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { rn = ["true"] },\n]\n',
     ["unknown action 'rn'", "did you mean 'run'"], "recipe.toml:5", ()),
    ("unknown-action-apt", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { apt = ["curl"] },\n]\n',
     ["unknown action 'apt'", "pip install shlax-plugin-apt"], "recipe.toml:5", ()),
    ("unknown-action-far", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { zzqxw = 1 },\n]\n',
     ["unknown action 'zzqxw'", "installed actions:", "copy", "run", "user"], "recipe.toml:5", ()),
    ("unknown-backend", '[targets.t]\nbackend = "lokal"\nsteps = [\n  MARK\n]\n',
     ["unknown backend 'lokal'", "did you mean 'local'"], "recipe.toml:2", ()),
    ("wrong-type", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { run = ["true"], workdir = 3 },\n]\n',
     ["targets.t.steps[1].workdir must be a string, not an integer (3)"], "recipe.toml:5", ()),
    ("wrong-type-bool", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { user = { name = "app", system = "yes" } },\n]\n',
     ["system must be a boolean, not a string"], "recipe.toml:5", ()),
    ("unknown-key", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { run = ["true"], wrkdir = "/" },\n]\n',
     ["unknown parameter 'wrkdir'", "did you mean 'workdir'"], "recipe.toml:5", ()),
    ("unknown-key-own-line", '[targets.t]\nbackend = "local"\n[[targets.t.steps]]\nrun = ["touch", "ran"]\n'
     '[[targets.t.steps]]\nrun = ["true"]\nenv = { A = "1" }\nwrkdir = "/"\n',
     ["unknown parameter 'wrkdir'", "did you mean 'workdir'"], "recipe.toml:8", ()),
    ("bad-image-name", '[targets.t]\nbase = "scratch"\nimage = "localhost/App-"\nsteps = [\n  MARK\n]\n',
     ["targets.t.image: 'localhost/App-' is not a valid image name"], "recipe.toml:3", ()),
    ("unknown-backend-option", '[targets.t]\nbackend = "local"\nroots = "/x"\nsteps = [\n  MARK\n]\n',
     ["unknown option 'roots' in targets.t", "did you mean 'root'"], "recipe.toml:3", ()),
    ("unknown-top-level", '[target.t]\nbackend = "local"\n',
     ["unknown top-level key 'target'", "did you mean 'targets'"], "recipe.toml:1", ()),
    ("unknown-target", '[targets.web]\nbackend = "local"\nsteps = [\n  MARK\n]\n',
     ["unknown target 'wbe'", "did you mean 'web'"], "recipe.toml", ("wbe",)),
    ("missing-param", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { copy = { src = "a.txt" } },\n]\n',
     ["needs parameter 'dest'"], "recipe.toml:5", ()),
    ("copy-missing-source", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { copy = { src = "nope.txt", dest = "/tmp/x" } },\n]\n',
     ["src 'nope.txt' matches nothing"], "recipe.toml:5", ()),
    ("copy-escapes-dotdot", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { copy = { src = "../outside.txt", dest = "/tmp/x" } },\n]\n',
     ["'../outside.txt' escapes the recipe's directory"], "recipe.toml:5", ()),
    ("copy-escapes-absolute", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { copy = { src = "/etc/hostname", dest = "/tmp/x" } },\n]\n',
     ["'/etc/hostname' is absolute"], "recipe.toml:5", ()),
    ("copy-escapes-symlink", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { copy = { src = "link.txt", dest = "/tmp/x" } },\n]\n',
     ["escapes the recipe's directory (through the symlink"], "recipe.toml:5", ()),
    ("copy-escapes-symlink-in-dir", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { copy = { src = "tree/", dest = "/tmp/x/" } },\n]\n',
     ["escapes the recipe's directory (through the symlink", "tree/inner-link"], "recipe.toml:5", ()),
    ("run-string-without-shell", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { run = "make && make install" },\n]\n',
     ["a string command is a shell script", 'shell = "/bin/sh"'], "recipe.toml:5", ()),
    ("run-empty-argv", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { run = [] },\n]\n',
     ["the command is an empty list"], "recipe.toml:5", ()),
    ("unknown-step-list", '[steps]\npython = []\n[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { use = "pyton" },\n]\n',
     ["unknown step list 'pyton'", "did you mean 'python'"], "recipe.toml:7", ()),
    ("recursive-use", '[steps]\na = [ { use = "b" } ]\nb = [\n  { use = "a" },\n]\n[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n]\n',
     ["step list 'a' uses itself (a -> b -> a)"], "recipe.toml:4", ()),
    ("use-with-options", '[steps]\na = []\n[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { use = "a", workdir = "/" },\n]\n',
     ["`use` takes the name of a step list, alone"], "recipe.toml:7", ()),
    ("non-table-step", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  "run",\n]\n',
     ["targets.t.steps[1] must be a table naming an action"], "recipe.toml:5", ()),
    ("steps-not-a-list", '[targets.t]\nbackend = "local"\nsteps = "run"\n',
     ["targets.t.steps must be a list of steps"], "recipe.toml:3", ()),
    ("param-given-twice", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { run = { command = ["true"] }, command = ["x"] },\n]\n',
     ["'command' is given twice"], "recipe.toml:5", ()),
    ("bad-mode", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { copy = { src = "a.txt", dest = "/tmp/x", mode = "0999" } },\n]\n',
     ["mode '0999' must be octal permission bits"], "recipe.toml:5", ()),
    ("relative-dest", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { copy = { src = "a.txt", dest = "tmp/x" } },\n]\n',
     ["dest 'tmp/x' must be an absolute path"], "recipe.toml:5", ()),
    ("bad-user-name", '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { user = "Bad Name" },\n]\n',
     ["user name 'Bad Name' must match"], "recipe.toml:5", ()),
    ("no-targets", '[steps]\na = [ { run = ["true"] } ]\n',
     ["the recipe has no targets"], "recipe.toml", ()),
    ("empty-file", '',
     ["the recipe has no targets"], "recipe.toml", ()),
    ("no-steps", '[targets.t]\nbackend = "local"\n',
     ["targets.t has no `steps` list"], "recipe.toml:1", ()),
    ("no-backend", '[targets.t]\nsteps = [\n  MARK\n]\n',
     ["targets.t needs a `backend`"], "recipe.toml:1", ()),
    ("backend-not-string", '[targets.t]\nbackend = 3\nsteps = []\n',
     ["targets.t.backend must be a string"], "recipe.toml:2", ()),
    ("bad-target-name", '[targets."a b"]\nbackend = "local"\nsteps = []\n',
     ["target name 'a b' may hold only"], "recipe.toml:1", ()),
    ("array-of-tables-step", '[targets.t]\nbackend = "local"\n\n[[targets.t.steps]]\nrun = ["touch", "ran"]\n\n[[targets.t.steps]]\nrn = ["true"]\n',
     ["unknown action 'rn'"], "recipe.toml:7", ()),
]


def shlax_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`python -m shlax_core ARGS` in a subprocess, with a private cache dir."""
    full_env = {**os.environ, "SHLAX_CACHE_DIR": str(cwd / ".cache"), "NO_COLOR": "1", **env}
    return subprocess.run([sys.executable, "-m", "shlax_core", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def shlax_in_process(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """:func:`shlax_cli` without a new interpreter: the CLI's own ``main`` in this process, with
    the same environment, folder and captured output (what the fast tier can afford for each of
    dozens of cases). For errors caught before anything runs; what a fresh process proves (which
    modules load, signals, a plugin's import) stays with :func:`shlax_cli`."""
    from shlax_core.cli import main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.environ.update({"SHLAX_CACHE_DIR": str(cwd / ".cache"), "NO_COLOR": "1", **env})
    os.environ.pop("CI", None)
    os.chdir(cwd)
    tempfile.tempdir = None  # TMPDIR as the environment says, like a new process
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        tempfile.tempdir = None
    return subprocess.CompletedProcess(["shlax", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "tree").mkdir(parents=True)
    (root / "a.txt").write_text("a\n")
    (tmp_path / "outside.txt").write_text("secret\n")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    (root / "tree" / "ok.txt").write_text("ok\n")
    (root / "tree" / "inner-link").symlink_to(tmp_path / "outside.txt")
    return root


@pytest.mark.parametrize("case_id, text, fragments, where, args", CASES, ids=[c[0] for c in CASES])
def test_malformed_recipe(recipe_dir: Path, case_id: str, text: str, fragments: list[str], where: str,
                          args: tuple[str, ...]) -> None:
    (recipe_dir / "recipe.toml").write_text(text.replace("MARK", MARK))
    proc = shlax_in_process(["run", "recipe.toml", *args], recipe_dir,
                            SHLAX_DISABLE_PLUGINS="shlax-plugin-apt")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"shlax: error: {where}: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr
    assert proc.stdout == ""          # nothing reported as run...
    assert not (recipe_dir / "ran").exists()   # ...and nothing run


def test_enough_cases() -> None:
    assert len(CASES) >= 15


def test_plan_reports_the_same_errors(recipe_dir: Path) -> None:
    (recipe_dir / "recipe.toml").write_text('[targets.t]\nbackend = "local"\nsteps = [\n  { rn = ["x"] },\n]\n')
    proc = shlax_cli(["plan", "recipe.toml"], recipe_dir)
    assert proc.returncode == 2
    assert proc.stderr.startswith("shlax: error: recipe.toml:4: unknown action 'rn'")


def test_missing_recipe_file(tmp_path: Path) -> None:
    proc = shlax_cli(["run"], tmp_path)
    assert proc.returncode == 2
    assert "no recipe at shlax.toml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "shlax.toml").write_bytes(b"[targets.t]\nbackend = \"\xff\"\n")
    proc = shlax_cli(["run"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("shlax: error: shlax.toml:2:12: not UTF-8 text")


def test_only_selected_targets_are_validated(recipe_dir: Path) -> None:
    """A broken target does not stop another one from running when that one is named."""
    (recipe_dir / "recipe.toml").write_text(
        '[targets.good]\nbackend = "local"\nsteps = [ { run = ["touch", "ran"] } ]\n'
        '[targets.bad]\nbackend = "local"\nsteps = [ { rn = ["true"] } ]\n')
    proc = shlax_cli(["run", "recipe.toml", "good"], recipe_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (recipe_dir / "ran").exists()
