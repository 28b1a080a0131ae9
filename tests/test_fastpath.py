"""The no-op fast path on real buildah builds: it answers exactly when the full path would find
every step cached, and declines as soon as any input of a step key changed (docs/layers.md lists
them). Each case builds, checks that the unchanged rerun is answered fast, changes one input, and
checks that the next run is *not* answered fast and that the full path then does the right thing.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from conftest import buildah, events, run_shlax, statuses

#: a tiny action plugin, installed for one test through PYTHONPATH (a dist-info folder beside it)
PLUGIN_MODULE = '''
from dataclasses import dataclass
from shlax_core.actions import Action
from shlax_core.params import doc


@dataclass
class NoteParams:
    text: str = doc("what to write")


class Note(Action):
    """Write a note into /note."""

    Params = NoteParams
    primary = "text"

    def describe(self):
        return f"note {self.params.text}"

    def apply(self, ctx):
        ctx.run(["sh", "-c", 'echo "$1" > /note', "sh", self.params.text])
'''


def fast(stdout: str) -> bool:
    return any(e["event"] == "run_start" and e.get("fast") for e in events(stdout))


class Project:
    """A recipe in its own folder, built on a base image of its own (two names, one ID)."""

    def __init__(self, tmp_path: Path, busybox: str, nonce: str):
        self.dir = tmp_path
        self.nonce = nonce
        self.env: dict[str, str] = {}
        self.base = f"localhost/shlax-test-fpbase-{nonce}"
        ctr = buildah("from", "--pull=never", busybox).stdout.strip()
        buildah("commit", "--quiet", "--rm", ctr, f"{self.base}:latest")  # an image of its own
        buildah("tag", f"{self.base}:latest", f"{self.base}:12")
        self.image = f"localhost/shlax-test-fp-{nonce}:latest"
        (tmp_path / "app").mkdir()
        (tmp_path / "app" / "hello.txt").write_text("hello\n")
        (tmp_path / "app" / "notes.log").write_text("notes\n")
        self.recipe = tmp_path / "shlax.toml"
        self.write()

    def write(self, step3: str = '{ run = ["sh", "-c", "ls /app > /listing"] }', config: str = '["cat", "/listing"]',
              extra: str = "") -> None:
        self.recipe.write_text(textwrap.dedent(f"""
            [targets.f{self.nonce}]
            base = "{self.base}"
            image = "{self.image}"
            steps = [
              {{ run = ["sh", "-c", "echo {self.nonce} > /nonce"] }},
              {{ copy = {{ src = "app/", dest = "/app/" }} }},
              {step3},
            ]
            {extra}
            [targets.f{self.nonce}.config]
            cmd = {config}
        """))

    def run(self, *args: str, **env: str):
        proc = run_shlax("run", str(self.recipe), "--json", *args, env={**self.env, **env})
        assert proc.returncode in (0, 2), proc.stdout + proc.stderr
        return proc

    def record(self) -> Path:
        from shlax_core import fastpath

        return fastpath._record_path(self.recipe.resolve(), [])


@pytest.fixture
def project(tmp_path, busybox_image, nonce) -> Project:
    p = Project(tmp_path, busybox_image, nonce)
    first = p.run()
    assert statuses(first.stdout) == ["done", "done", "done"], first.stdout + first.stderr
    again = p.run()
    assert fast(again.stdout) and statuses(again.stdout) == ["cached", "cached", "cached"], again.stdout
    return p


def _base_name_moved(p: Project) -> list[str]:
    """The recipe's base name now names another image; the old image keeps its other name (as
    after pulling debian:bookworm by hand while the old one keeps its :12 tag)."""
    ctr = buildah("from", "--pull=never", p.base).stdout.strip()
    buildah("run", "--isolation", "chroot", ctr, "--", "sh", "-c", f"echo new > /base-{p.nonce}")
    buildah("commit", "--quiet", "--rm", ctr, f"{p.base}:latest")
    return ["done", "done", "done"]


def _parameter(p: Project) -> list[str]:
    p.write(step3='{ run = ["sh", "-c", "ls -a /app > /listing"] }')
    return ["cached", "cached", "done"]


def _action_name(p: Project) -> list[str]:
    p.write(step3='{ copy = { src = "app/hello.txt", dest = "/listing" } }')
    return ["cached", "cached", "done"]


def _input_contents(p: Project) -> list[str]:
    """Same size, same mtime, other bytes: only the ctime and the content say so."""
    hello = p.dir / "app" / "hello.txt"
    st = hello.stat()
    hello.write_text("HELLO\n")
    os.utime(hello, ns=(st.st_atime_ns, st.st_mtime_ns))
    return ["cached", "done", "done"]


def _input_mode(p: Project) -> list[str]:
    os.chmod(p.dir / "app" / "hello.txt", 0o755)
    return ["cached", "done", "done"]


def _input_added(p: Project) -> list[str]:
    (p.dir / "app" / "new.txt").write_text("new\n")
    return ["cached", "done", "done"]


def _ignore_file(p: Project) -> list[str]:
    (p.dir / ".shlaxignore").write_text("*.log\n")
    return ["cached", "done", "done"]


def _image_config(p: Project) -> list[str]:
    p.write(config='["cat", "/nonce"]')
    return ["cached", "cached", "cached"]  # no step runs: a new image config on the last layer


def _final_image_untagged(p: Project) -> list[str]:
    buildah("rmi", p.image)
    return ["cached", "cached", "cached"]  # the full path tags it again


def _formatting_only(p: Project) -> list[str]:
    """Not a key input: the fast path cannot tell without parsing, the full path finds it all cached."""
    p.recipe.write_text(p.recipe.read_text() + "\n# a comment\n")
    return ["cached", "cached", "cached"]


CHANGES: dict[str, Callable[[Project], list[str]]] = {
    "base name moved to another image": _base_name_moved,
    "step parameter": _parameter,
    "action name": _action_name,
    "host input contents": _input_contents,
    "host input mode": _input_mode,
    "host input added": _input_added,
    ".shlaxignore": _ignore_file,
    "image config": _image_config,
    "final image untagged": _final_image_untagged,
    "recipe formatting": _formatting_only,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_fast_path_declines_when_a_key_input_changes(project, change):
    expected = CHANGES[change](project)
    proc = project.run()
    assert not fast(proc.stdout), f"{change}: answered from a stale record"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == expected, proc.stdout
    config = buildah("inspect", "--type", "image", "--format", "{{.OCIv1.Config.Cmd}}", project.image).stdout
    assert config.strip() in ("[cat /listing]", "[cat /nonce]")
    # the full path recorded again: the next unchanged run is fast and agrees with it
    again = project.run()
    assert fast(again.stdout) and statuses(again.stdout) == ["cached", "cached", "cached"], again.stdout


def test_base_name_moved_rebuilds_on_the_new_base(project):
    _base_name_moved(project)
    assert statuses(project.run().stdout) == ["done", "done", "done"]
    ctr = buildah("from", "--pull=never", project.image).stdout.strip()
    try:
        mnt = buildah("mount", ctr).stdout.strip()
        assert Path(mnt, f"base-{project.nonce}").read_text() == "new\n"
    finally:
        buildah("rm", ctr)


def test_plugin_version_edited_in_place(tmp_path, busybox_image, nonce):
    """A plugin's version is part of its steps' keys, even when only its METADATA changes."""
    site = tmp_path / "site"
    (site / "shlax_test_fpnote").mkdir(parents=True)
    (site / "shlax_test_fpnote" / "__init__.py").write_text(PLUGIN_MODULE)
    meta = site / "shlax_test_fpnote-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: shlax-test-fpnote\nVersion: 1.0\n")
    (meta / "entry_points.txt").write_text("[shlax.actions]\nfpnote = shlax_test_fpnote:Note\n")
    work = tmp_path / "work"
    work.mkdir()
    p = Project(work, busybox_image, nonce)
    p.env = {"PYTHONPATH": str(site)}
    p.write(step3=f'{{ fpnote = "{nonce}" }}')
    assert statuses(p.run().stdout) == ["done", "done", "done"]
    assert fast(p.run().stdout)

    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: shlax-test-fpnote\nVersion: 1.1\n")
    proc = p.run()
    assert not fast(proc.stdout) and statuses(proc.stdout) == ["cached", "cached", "done"], proc.stdout
    assert fast(p.run().stdout)

    # an editable install: the code's cache_version changes, no metadata does
    module = site / "shlax_test_fpnote" / "__init__.py"
    module.write_text(PLUGIN_MODULE.replace('    primary = "text"', '    primary = "text"\n    cache_version = "2"'))
    proc = p.run()
    assert not fast(proc.stdout) and statuses(proc.stdout) == ["cached", "cached", "done"], proc.stdout
    assert fast(p.run().stdout)


def test_disabled_backend_plugin_is_an_error_not_a_fast_answer(project):
    proc = project.run(SHLAX_DISABLE_PLUGINS="shlax-plugin-buildah")
    assert proc.returncode == 2 and not fast(proc.stdout)
    assert "unknown backend 'buildah'" in proc.stderr, proc.stderr
    # a built-in action hidden the same way
    proc = project.run(SHLAX_DISABLE_PLUGINS="copy")
    assert proc.returncode == 2 and "unknown action 'copy'" in proc.stderr, proc.stderr
    # hiding something the recipe does not use changes nothing
    assert fast(project.run(SHLAX_DISABLE_PLUGINS="shlax-plugin-npm").stdout)


def test_no_fastpath_env_writes_no_record(tmp_path, busybox_image, nonce):
    p = Project(tmp_path, busybox_image, nonce)
    assert statuses(p.run(SHLAX_NO_FASTPATH="1").stdout) == ["done", "done", "done"]
    assert not p.record().exists()
    assert not fast(p.run().stdout)
    assert p.record().exists()


def test_plan_keeps_the_record(project):
    record = project.record().read_bytes()
    plan = run_shlax("plan", str(project.recipe), "--json")
    assert plan.returncode == 0 and statuses(plan.stdout) == ["cached", "cached", "cached"]
    assert project.record().read_bytes() == record
    assert fast(project.run().stdout)


def test_offline_runs_use_and_make_records(project):
    assert fast(project.run("--offline").stdout)
    _parameter(project)
    assert statuses(project.run("--offline").stdout) == ["cached", "cached", "done"]
    assert fast(project.run().stdout)


LOADED = """
import sys
from shlax_core.console import main
sys.argv = ["shlax", "run", {recipe!r}, "--json"]
try:
    main()
except SystemExit:
    pass
print("MODULES", " ".join(sorted(sys.modules)))
"""


def test_a_fast_answer_loads_only_the_backend_entry_point(project):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", LOADED.format(recipe=str(project.recipe))],
                          capture_output=True, text=True)
    out, modules = proc.stdout.split("MODULES", 1)
    assert fast(out), proc.stdout + proc.stderr
    modules = modules.split()
    assert "shlax_buildah.backend" in modules
    assert not [m for m in modules if m.startswith(("shlax_core.builtin", "shlax_core.cli", "shlax_core.runner",
                                                    "shlax_registry", "pluggy", "stevedore", "click",
                                                    "importlib.metadata"))]
