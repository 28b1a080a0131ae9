"""Every user error points at the line a user must edit: ``FILE:LINE[:COL]: what is wrong``, exit 2.

Table-driven, one small project per case: its files (the recipe, an inventory...), the command
line, the ``FILE:LINE`` the message must start with and fragments it must hold. Each recipe spreads
its values over several lines, so pointing at a table's header, the target or the step instead of
the value itself fails the case. ``{MARK}`` is a first step that leaves a file behind if anything
ran. These are the places that once lacked a location (issue 9): messages of backends' host
expansion, of nested tables, of files other than the recipe, of unused step lists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import pytest

from test_recipe_errors import MARK, shlax_cli, shlax_in_process

LOCAL = '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n]\n'

# id, files (name -> text or bytes), args, expected "FILE:LINE[:COL]", fragments
CASES: list[tuple[str, dict[str, Union[str, bytes]], list[str], str, list[str]]] = [
    ("recipe-given-as-directory",
     {"proj/shlax.toml": '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { rn = ["x"] },\n]\n'},
     ["run", "proj"], "proj/shlax.toml:5", ["unknown action 'rn'"]),
    ("recipe-directory-toml-syntax",
     {"proj/shlax.toml": '[targets.t]\nbackend = "local"\nsteps = [ { run = ["a"] ,, } ]\n'},
     ["run", "proj"], "proj/shlax.toml:3:26", ["TOML syntax error", "Invalid initial character"]),
    ("recipe-not-utf8",
     {"recipe.toml": b'[targets.t]\nbackend = "local"\nsteps = [\n  { run = ["caf\xe9"] },\n]\n'},
     ["run", "recipe.toml"], "recipe.toml:4:16", ["not UTF-8 text", "0xe9"]),
    ("config-port-points-at-the-value",
     {"recipe.toml": '[targets.t]\nbase = "scratch"\nsteps = [\n  MARK\n]\n\n[targets.t.config]\n'
                     'cmd = ["app"]\nports = [\n  "8000/tcp",\n  "http",\n]\n'},
     ["run", "recipe.toml"], "recipe.toml:11", ["targets.t.config.ports[1]: port 'http' is not PORT"]),
    ("copy-dest-in-a-multi-line-table",
     {"recipe.toml": '[targets.t]\nbackend = "local"\nsteps = [\n  MARK\n  { copy = {\n    src = "a.txt",\n'
                     '    dest = "relative/x",\n  } },\n]\n', "a.txt": "a\n"},
     ["run", "recipe.toml"], "recipe.toml:7", ["dest 'relative/x' must be an absolute path"]),
    ("sub-table-of-an-array-of-tables-step",
     {"recipe.toml": '[targets.t]\nbackend = "local"\n\n[[targets.t.steps]]\nrun = ["touch", "ran"]\n\n'
                     '[[targets.t.steps]]\n[targets.t.steps.copy]\nsrc = "a.txt"\ndest = "relative"\n', "a.txt": "a\n"},
     ["run", "recipe.toml"], "recipe.toml:10", ["dest 'relative' must be an absolute path"]),
    ("unused-step-list-bad-parameter",
     {"recipe.toml": '[steps]\nunused = [\n  { run = ["true"] },\n  { run = ["true"], wrkdir = "/" },\n]\n\n'
                     + LOCAL},
     ["run", "recipe.toml"], "recipe.toml:4", ["unknown parameter 'wrkdir'", "did you mean 'workdir'"]),
    ("unused-step-list-bad-type",
     {"recipe.toml": '[steps]\nunused = [\n  { user = { name = "app",\n    uid = "1000" } },\n]\n\n' + LOCAL},
     ["run", "recipe.toml"], "recipe.toml:4", ["uid must be an integer, not a string"]),
    ("unused-step-list-unknown-action",
     {"recipe.toml": '[steps]\nunused = [\n  { run = ["true"] },\n  { rn = ["true"] },\n]\n\n' + LOCAL},
     ["plan", "recipe.toml"], "recipe.toml:4", ["unknown action 'rn'", "did you mean 'run'"]),
    ("ssh-bad-string-host",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\nhosts = [\n  "web1",\n  "bad host!",\n]\nsteps = [\n  MARK\n]\n'},
     ["run", "recipe.toml"], "recipe.toml:5", ["hosts[1]: host 'bad host!' is not a host name"]),
    ("ssh-string-host-bad-user",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\nhosts = [\n  "web1",\n  "b@d user@web2",\n]\n'
                     'steps = [\n  MARK\n]\n'},
     ["run", "recipe.toml"], "recipe.toml:5", ["is not a login name"]),
    ("ssh-host-listed-twice",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\nhosts = [\n  "web1",\n  "web2",\n  "web1",\n]\n'
                     'steps = [\n  MARK\n]\n'},
     ["run", "recipe.toml"], "recipe.toml:6", ["hosts[2]: host 'web1' is listed twice (also hosts[0])"]),
    ("ssh-unknown-inventory-group",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\ninventory = "hosts.toml"\ngroups = [\n  "web",\n  "dbb",\n]\n'
                     'steps = [\n  MARK\n]\n',
      "hosts.toml": '[groups.web]\nhosts = ["web1"]\n[groups.db]\nhosts = ["db1"]\n'},
     ["run", "recipe.toml"], "recipe.toml:6", ["no group 'dbb' in the inventory hosts.toml", "did you mean 'db'"]),
    ("ssh-missing-inventory",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\nhosts = ["web1"]\ninventory = "nope.toml"\nsteps = [\n  MARK\n]\n'},
     ["run", "recipe.toml"], "recipe.toml:4", ["cannot read the inventory nope.toml"]),
    ("ssh-inventory-bad-string-host",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\ninventory = "hosts.toml"\nsteps = [\n  MARK\n]\n',
      "hosts.toml": '[groups.web]\nhosts = [\n  "web1",\n  "-oProxyCommand=x",\n]\n'},
     ["run", "recipe.toml"], "hosts.toml:4", ["groups.web.hosts[1]: host '-oProxyCommand=x' is not a host name"]),
    ("ssh-host-in-recipe-and-inventory",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\nhosts = ["web1"]\ninventory = "hosts.toml"\nsteps = [\n  MARK\n]\n',
      "hosts.toml": '[groups.web]\nhosts = [\n  "web2",\n  "web1",\n]\n'},
     ["run", "recipe.toml"], "hosts.toml:4", ["host 'web1' is listed twice (also hosts[0])"]),
    ("ssh-inventory-defaults-user",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\ninventory = "hosts.toml"\nsteps = [\n  MARK\n]\n',
      "hosts.toml": '[defaults]\nbecome = true\nuser = "-oProxyCommand=x"\n\n[groups.web]\nhosts = ["web1"]\n'},
     ["run", "recipe.toml"], "hosts.toml:3", ["user '-oProxyCommand=x' is not a login name"]),
    ("ssh-inventory-group-port",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\ninventory = "hosts.toml"\nsteps = [\n  MARK\n]\n',
      "hosts.toml": '[groups.web]\nhosts = ["web1"]\nport = 70000\n'},
     ["run", "recipe.toml"], "hosts.toml:3", ["port 70000 is out of range"]),
    ("ssh-inventory-toml-syntax",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\ninventory = "hosts.toml"\nsteps = [\n  MARK\n]\n',
      "hosts.toml": '[groups.web]\nhosts = ["web1",, "web2"]\n'},
     ["run", "recipe.toml"], "hosts.toml:2:17", ["TOML syntax error in the inventory"]),
    ("ssh-inventory-not-utf8",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\ninventory = "hosts.toml"\nsteps = [\n  MARK\n]\n',
      "hosts.toml": b'[groups.web]\n# caf\xe9\nhosts = ["web1"]\n'},
     ["run", "recipe.toml"], "hosts.toml:2:6", ["not UTF-8 text"]),
    ("ssh-target-option-key",
     {"recipe.toml": '[targets.w]\nbackend = "ssh"\nhosts = ["web1"]\n\n[targets.w.options]\n'
                     'ServerAliveInterval = "15"\n"Bad-Key" = "x"\n\n[[targets.w.steps]]\nrun = ["touch", "ran"]\n'},
     ["run", "recipe.toml"], "recipe.toml:7", ["ssh option name 'Bad-Key' must be letters only"]),
]


@pytest.mark.parametrize("case_id, files, args, where, fragments", CASES, ids=[c[0] for c in CASES])
def test_error_points_at_the_line_to_edit(tmp_path: Path, case_id: str, files: dict, args: list[str],
                                          where: str, fragments: list[str]) -> None:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("MARK", MARK))
    proc = shlax_in_process(args, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"shlax: error: {where}: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "ran").exists() and not (tmp_path / "proj" / "ran").exists()


def test_an_unused_step_list_loads_only_the_plugins_it_names(tmp_path: Path) -> None:
    """Checking an unused list loads its actions by name, nothing else: a broken plugin that no
    list names still breaks nothing."""
    (tmp_path / "recipe.toml").write_text(
        '[steps]\nunused = [ { run = ["true"] } ]\n\n[targets.t]\nbackend = "local"\n'
        'steps = [ { run = ["touch", "ran"] } ]\n')
    proc = shlax_cli(["run", "recipe.toml", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ran").exists()


@pytest.mark.slow  # OpenSSH's own client
def test_an_invalid_jump_shows_openssh_own_message(tmp_path: Path) -> None:
    """ssh rejects a malformed -J before it opens its log: its message must reach the user, not
    "ssh failed without a message" (only the ssh client is needed: nothing is contacted)."""
    (tmp_path / "recipe.toml").write_text(
        '[targets.w]\nbackend = "ssh"\nhosts = ["127.0.0.1"]\njump = ",,"\nsteps = [ { run = ["true"] } ]\n')
    proc = shlax_cli(["run", "recipe.toml", "--json"], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [e for e in map(json.loads, proc.stdout.splitlines())
              if e["event"] == "step_end" and e["status"] == "unreachable"]
    assert len(failed) == 1
    error = failed[0]["error"]
    assert "failed without a message" not in error["message"]
    assert "ssh refused the `jump` setting" in error["message"]
    assert "Invalid -J argument" in error["tail"]
