"""A user error that only running can reveal (a ``ShlaxError`` raised by a step, a base missing
offline...) ends its target like a failed command does, on image and host targets alike: the
step is ``FAILED`` with the message, where it points and the hint; ``target_end`` and ``run_end``
are emitted; nothing of the step is committed; the run exits 2 and says why on stderr."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import events, run_shlax, working_containers
from shlax_core.actions import Action
from shlax_core.errors import ShlaxError
from shlax_core.params import doc


@dataclass
class _Params:
    who: str = doc("who")


class Picky(Action):
    """Fails with a user error when asked to greet nobody."""

    Params = _Params
    primary = "who"

    def apply(self, ctx):
        if self.params.who == "nobody":
            raise ShlaxError("there is nobody to greet", key="who", hint="greet somebody")
        ctx.run(["echo", self.params.who])
        return True


@pytest.mark.parametrize("backend", ["fake", "fake-image"])
def test_a_user_error_mid_run_fails_the_step_and_ends_the_run(shlax_recipe, backend: str) -> None:
    project = shlax_recipe(f"""
        [targets.t]
        backend = "{backend}"
        steps = [
          {{ picky = "world" }},
          {{ picky = {{
               who = "nobody" }} }},
          {{ picky = "never" }},
        ]
    """, actions={"picky": Picky})
    result = project.run()
    assert result.code == 2
    assert result.error is not None and result.error.message == "there is nobody to greet"
    assert result.error.where.endswith("shlax.toml:6")       # the `who` line, not the step's first
    first = "done" if backend == "fake-image" else "changed"
    assert result.statuses == [first, "failed"]
    failed = result.steps[-1]
    assert failed["error"]["message"].endswith("shlax.toml:6: there is nobody to greet")
    assert failed["error"]["hint"] == "greet somebody"
    kinds = [e["event"] for e in result.events]
    assert kinds[-2:] == ["target_end", "run_end"] and result.events[-1]["status"] == "failed"
    assert ["echo", "never"] not in result.commands
    assert result.calls[-1]["call"] == "close"
    if backend == "fake-image":
        assert [c["call"] for c in result.calls].count("commit") == 1   # the first step only
    assert "hint: greet somebody" in result.output


def _recipe(tmp_path: Path, head: str) -> Path:
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(head) + textwrap.dedent(f"""\
        steps = [
          {{ run = ["sh", "-c", "echo first", "{tmp_path}"] }},
          {{ hello = "nobody" }},
          {{ run = ["touch", "{tmp_path / 'never'}"] }},
        ]
    """))
    return tmp_path


@pytest.mark.parametrize("kind", ["image", "host"])
def test_a_user_error_mid_build_on_real_backends(test_plugins, tmp_path: Path, busybox_image: str,  # noqa: F811
                                                 nonce: str, kind: str) -> None:
    head = (f'[targets.m{nonce}]\nbase = "{busybox_image}"\nimage = "localhost/shlax-test-mid-{nonce}"\n'
            if kind == "image" else f'[targets.m{nonce}]\nbackend = "local"\n')
    project = _recipe(tmp_path, head)
    proc = run_shlax("run", "--json", cwd=project)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = 6 if kind == "image" else 5
    message = f"shlax.toml:{line}: hello: there is nobody to greet"
    assert proc.stderr.startswith(f"shlax: error: {message}"), proc.stderr
    assert "hint: greet somebody" in proc.stderr
    evs = events(proc.stdout)
    steps = [e for e in evs if e["event"] == "step_end"]
    assert [s["status"] for s in steps] == ["done" if kind == "image" else "changed", "failed"]
    assert steps[-1]["error"]["message"] == message
    assert [e["event"] for e in evs][-2:] == ["target_end", "run_end"]
    assert evs[-1]["status"] == "failed"
    assert not (tmp_path / "never").exists()
    if kind == "image":
        assert working_containers(f"m{nonce}") == []
    # plain output shows the failed step with its message and hint, then the end of the run
    plain = run_shlax("run", cwd=project)
    assert plain.returncode == 2
    assert "FAILED" in plain.stdout and f"error: {message}" in plain.stdout
    assert "hint: greet somebody" in plain.stdout
    assert plain.stdout.rstrip().splitlines()[-1].startswith("failed in ")
