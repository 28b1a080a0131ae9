"""The local backend: steps checked and applied on this machine; a second run changes nothing."""

from __future__ import annotations

import textwrap

from conftest import run_shlax, statuses


def test_local_apply_is_idempotent(tmp_path):
    dest = tmp_path / "installed"
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "app.conf").write_text("a = 1\n")
    (tmp_path / "recipe" / "bin").mkdir()
    (tmp_path / "recipe" / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (tmp_path / "recipe" / "bin" / "tool").chmod(0o755)
    recipe = tmp_path / "recipe" / "shlax.toml"
    recipe.write_text(textwrap.dedent(f"""
        [targets.here]
        backend = "local"
        steps = [
          {{ copy = {{ src = "app.conf", dest = "{dest}/etc/app.conf", mode = "0600" }} }},
          {{ copy = {{ src = "bin/", dest = "{dest}/bin/" }} }},
          {{ run = ["sh", "-c", "date +%s%N > {dest}/stamp"], creates = "{dest}/stamp" }},
          {{ run = ["touch", "{dest}/guard"], unless = ["test", "-e", "{dest}/guard"] }},
        ]
    """))
    dest.mkdir()
    dest.chmod(0o777)
    plan = run_shlax("plan", str(recipe), "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert statuses(plan.stdout) == ["change"] * 4
    assert sorted(p.name for p in dest.iterdir()) == []  # plan changed nothing

    first = run_shlax("run", str(recipe), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["changed"] * 4
    assert (dest / "etc" / "app.conf").read_text() == "a = 1\n"
    assert oct((dest / "etc" / "app.conf").stat().st_mode & 0o777) == "0o600"
    assert (dest / "bin" / "tool").stat().st_mode & 0o111
    mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}

    second = run_shlax("run", str(recipe))
    assert second.returncode == 0, second.stdout
    assert "CHANGED" not in second.stdout and second.stdout.count(" OK ") == 4
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == mtimes

    # a changed input changes that step only
    (tmp_path / "recipe" / "app.conf").write_text("a = 2\n")
    third = run_shlax("run", str(recipe), "--json")
    assert statuses(third.stdout) == ["changed", "ok", "ok", "ok"]
    assert (dest / "etc" / "app.conf").read_text() == "a = 2\n"


def test_local_failure_is_reported_with_exit_code(tmp_path):
    recipe = tmp_path / "shlax.toml"
    recipe.write_text('[targets.here]\nbackend = "local"\nsteps = [ { run = ["id", "-un"], user = "nobody" }, '
                      '{ run = ["sh", "-c", "echo boom; exit 4"] } ]\n')
    proc = run_shlax("run", str(recipe))
    assert proc.returncode == 1
    assert "| nobody" in proc.stdout  # user = switches users on this machine
    assert "exit code: 4" in proc.stdout and "| boom" in proc.stdout
