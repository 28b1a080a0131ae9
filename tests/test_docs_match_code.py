"""Where docs/ describe what the code can report, the two are compared here, so they cannot drift:

- each action's parameter table (docs/recipes.md, docs/caches.md) against its ``Params``: names,
  types, defaults, the primary parameter; and the backends' option tables (docs/hosts.md,
  docs/layers.md) and ``[targets.NAME.config]`` (docs/recipes.md) the same way;
- the statuses ``shlax_step_finish`` documents against :class:`shlax_core.status.Status`
  (every hook's heading and ``test_hook_<name>`` are checked in tests/test_hooks.py);
- the events and fields of docs/output.md against what the runner (and the fast path's replay)
  emits in a set of scenarios run on the fake backends;
- the options of docs/cli.md against click's.

A difference is fixed in the docs, or in the code when the docs describe the better behaviour.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import os
import re
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, Optional

import pytest

from shlax_core import params as P
from shlax_core.status import Status

DOCS = Path(__file__).parent.parent / "docs"


# -- markdown tables ----------------------------------------------------------------------------

def section(doc: str, heading: str) -> str:
    """The text under a heading (``## apt``, ``### run``) up to the next heading of its level or higher."""
    text = (DOCS / doc).read_text()
    level = len(heading) - len(heading.lstrip("#"))
    m = re.search(rf"^{re.escape(heading)}\s*$", text, re.M)
    assert m, f"{doc}: no heading {heading!r}"
    rest = text[m.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def first_table(text: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table in ``text``, header and rule left out."""
    rows, started = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not started:
                started = True   # the header
                continue
            if set("".join(cells)) <= set("-: "):
                continue
            rows.append(cells)
        elif started:
            break
    assert rows, "no table"
    return rows


def name_of(cell: str) -> tuple[str, bool]:
    m = re.match(r"`([a-z_]+)`", cell)
    assert m, f"no parameter name in {cell!r}"
    return m.group(1), "(primary)" in cell


def norm_type(text: str) -> set[str]:
    """``list of strings, or string`` and ``string or list of strings`` are the same type."""
    text = text.replace("`", "").replace('"', "'").lower()
    return {alt.strip() for alt in re.split(r",? or |, ", text) if alt.strip()}


def norm_default(text: str) -> str:
    text = text.strip().strip("`").strip("'\"")
    return {"none": "None", "false": "False", "true": "True"}.get(text.lower(), text)


def code_default(value: str) -> str:
    return value.strip("'\"")


def check_table(rows: list[list[str]], cls: type, primary: Optional[str], computed: dict[str, str]) -> None:
    """Rows of (name, type, default, meaning) against a Params dataclass. ``computed``: parameters
    whose code default is None and whose docs state what None stands for (name -> doc text)."""
    documented = {}
    for row in rows:
        name, marked = name_of(row[0])
        documented[name] = (row[1], row[2], marked or "(the step's value)" in row[3] if len(row) > 3 else marked)
    described = {name: (tp, default) for name, tp, default, _ in P.describe(cls)}
    assert list(documented) == list(described), f"{cls.__name__}: documented parameters differ from the code"
    for name, (tp, default) in described.items():
        doc_tp, doc_default, doc_primary = documented[name]
        assert norm_type(doc_tp) == norm_type(tp), f"{cls.__name__}.{name}: docs say {doc_tp!r}, code {tp!r}"
        if name in computed:
            assert default == "None" and doc_default == computed[name], f"{cls.__name__}.{name}"
        else:
            assert norm_default(doc_default) == code_default(default), \
                f"{cls.__name__}.{name}: docs default {doc_default!r}, code {default!r}"
        assert doc_primary == (name == primary), f"{cls.__name__}.{name}: primary marking"


ACTIONS = [
    # doc, heading, module:class, documented meaning of a None default
    ("recipes.md", "### run", "shlax_core.builtin.run:Run", {}),
    ("recipes.md", "### copy", "shlax_core.builtin.copy:Copy", {}),
    ("recipes.md", "### user", "shlax_core.builtin.user:User", {"home": "`/home/NAME`"}),
    ("caches.md", "## `apt`", "shlax_apt.action:Apt", {"update_max_age": "`$SHLAX_APT_MAX_AGE` or `24h`"}),
    ("caches.md", "## `pip`", "shlax_pip.action:Pip", {}),
    ("caches.md", "## `npm`", "shlax_npm.action:Npm", {}),
]


def load(spec: str) -> Any:
    """The class; a plugin missing from this venv skips its case, except in CI where all are installed."""
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed")


@pytest.mark.parametrize("doc, heading, spec, computed", ACTIONS, ids=[a[2].split(":")[1] for a in ACTIONS])
def test_action_parameter_table_matches_params(doc: str, heading: str, spec: str, computed: dict) -> None:
    cls = load(spec)
    check_table(first_table(section(doc, heading)), cls.Params, cls.primary, computed)


BACKENDS = [
    ("hosts.md", "## `local`: this machine", "shlax_core.builtin.local:LocalBackend", {}),
    ("hosts.md", "### Target options", "shlax_ssh.backend:SSHBackend",
     {"user": "ssh's choice", "port": "ssh's choice", "identity": "ssh's choice", "known_hosts": "ssh's default",
      "ssh_config": "`~/.ssh/config`", "groups": "all"}),
    ("hosts.md", "## `podman`: a container as a host", "shlax_podman.backend:PodmanBackend",
     {"container": "`shlax-TARGET`", "runtime": "podman's"}),
]


@pytest.mark.parametrize("doc, heading, spec, computed", BACKENDS, ids=[b[2].split(":")[1] for b in BACKENDS])
def test_backend_option_table_matches_params(doc: str, heading: str, spec: str, computed: dict) -> None:
    cls = load(spec)
    rows = first_table(section(doc, heading))
    # a default the docs phrase as "all" for an empty list is what [] means there
    if "groups" in computed:
        computed = {k: v for k, v in computed.items() if k != "groups"}
        rows = [[r[0], r[1], "`[]`" if r[0] == "`groups`" else r[2], *r[3:]] for r in rows]
    check_table(rows, cls.Params, None, computed)


def test_image_config_table_matches_imageconfig() -> None:
    from shlax_core.imageconfig import ImageConfig

    check_table(first_table(section("recipes.md", "### Image configuration: `[targets.NAME.config]`")),
                ImageConfig, None, {})


# -- statuses -----------------------------------------------------------------------------------

def test_step_finish_documents_every_status_it_can_receive() -> None:
    """``run`` is a plan's status for image steps, which do not call the hook; every other does."""
    from shlax_core import hookspecs

    expected = {s.value for s in Status} - {Status.RUN.value}
    in_spec = set(re.findall(r"``([a-z]+)``", hookspecs.shlax_step_finish.__doc__.split(":param status:")[1]
                             .split(":param")[0])) - {"str"}
    assert in_spec == expected
    in_docs = set(re.findall(r"`([a-z]+)`", section("plugins.md", "### shlax_step_finish")
                             .split("`status` is")[1].split("Cached image steps")[0]))
    assert in_docs >= expected and not (in_docs - expected - {"str"})


def test_output_docs_list_every_status_word() -> None:
    text = section("output.md", "# Output: one reporter, three renderings")
    words = set(re.findall(r"`([A-Z]+)`", text.split("Step statuses, as printed")[1].split("\n\n")[0]))
    assert words == {s.word for s in Status}
    table = dict((r[0], r[1]) for r in first_table(section("output.md", "## Events")))
    assert set(re.findall(r"`([a-z]+)`", table["`step_end`"].split("`status` (")[1].split(")")[0])) == \
        {s.value for s in Status}


# -- events -------------------------------------------------------------------------------------

COMMON = {"event", "time", "target", "host"}


def documented_events() -> dict[str, set[str]]:
    out = {}
    for cells in first_table(section("output.md", "## Events")):
        fields = set(re.findall(r"`([a-z_]+)`", cells[1]))
        for name in re.findall(r"`([a-z_]+)`", cells[0]):
            out[name] = fields
    return out


@dataclasses.dataclass
class PickyParams:
    who: str = P.doc("who")


def _picky() -> type:
    from shlax_core.actions import Action
    from shlax_core.errors import ShlaxError

    class Picky(Action):
        """Says hello; a user error for nobody."""

        Params = PickyParams
        primary = "who"

        def apply(self, ctx):
            if self.params.who == "nobody":
                raise ShlaxError("nobody", key="who")
            ctx.run(["echo", self.params.who])
            return True

    return Picky


def emitted_events(shlax_recipe) -> list[dict[str, Any]]:
    """Events of runs and plans covering every kind of event the runner emits."""
    from shlax_core.backends import Backend
    from shlax_core.errors import Unreachable

    class Down(Backend):
        def open(self):
            raise Unreachable("cannot reach", argv=["ssh", "x"], returncode=255, tail=["refused"])

    events: list[dict[str, Any]] = []
    image = shlax_recipe('[targets.i]\nbackend = "fake-image"\nimage = "localhost/i"\n'
                         'steps = [ { picky = "a" }, { picky = "b" } ]\n[targets.i.config]\ncmd = ["x"]\n',
                         actions={"picky": _picky()})
    for result in (image.plan(), image.run(), image.run(), image.plan()):
        events += result.events
    image.write("shlax.toml", '[targets.i]\nbackend = "fake-image"\nsteps = [ { picky = "nobody" } ]\n')
    events += image.run().events
    hosts = shlax_recipe('[targets.h]\nbackend = "fake"\nhosts = ["a", "b"]\nsteps = [ { run = ["x"] }, { run = ["y"] } ]\n'
                         '[targets.d]\nbackend = "down"\nsteps = [ { run = ["x"] } ]\n', backends={"down": Down})
    hosts.reply(["y"], returncode=1, output="no")
    for result in (hosts.plan(), hosts.run(), hosts.run()):
        events += result.events
    return events


def replayed_events(tmp_path: Path) -> list[dict[str, Any]]:
    """What the no-op fast path prints in place of a run (see shlax_core.fastpath.replay)."""
    import time

    from shlax_core import fastpath

    record = {"recipe": str(tmp_path / "shlax.toml"), "images": [{
        "target": "t", "label": "t", "backend": "buildah", "steps": ["run x"], "paths": ["targets.t.steps[0]"],
        "summary": "image localhost/t (1 cached, 0 run)", "image": "0" * 64, "keys": ["k"]}]}
    out = io.StringIO()
    with redirect_stdout(out):
        fastpath.replay(record, True, time.monotonic())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_every_emitted_event_and_field_is_documented(shlax_recipe, tmp_path: Path) -> None:
    docs = documented_events()
    seen: dict[str, set[str]] = {}
    for event in [*emitted_events(shlax_recipe), *replayed_events(tmp_path)]:
        seen.setdefault(event["event"], set()).update(event)
    for name, fields in seen.items():
        assert name in docs, f"event {name!r} is emitted but not in docs/output.md"
        undocumented = fields - COMMON - docs[name]
        assert not undocumented, f"{name}: fields {sorted(undocumented)} are emitted but not documented"
    # and every documented event really happens
    assert set(docs) - set(seen) <= {"info", "warning"}, set(docs) - set(seen)


def test_event_types_match_the_docs(shlax_recipe, tmp_path: Path) -> None:
    """shlax_core.events types each event: the same events and fields as docs/output.md, and
    every field a run, a plan or the fast path's replay emits is typed."""
    from shlax_core import events

    docs = documented_events()
    assert set(events.EVENTS) == set(docs)
    values = {s.value for s in Status} | {o.value for o in events.Outcome}  # the table names them too
    for name in events.EVENTS:
        assert events.fields(name) == docs[name] - values, name
    for event in [*emitted_events(shlax_recipe), *replayed_events(tmp_path)]:
        assert set(event) - COMMON <= events.fields(event["event"]), event
        if "status" in event:
            kind = events.Outcome if event["event"] in ("target_end", "run_end") else Status
            kind(event["status"])  # a member, or ValueError


def test_step_end_errors_carry_the_documented_fields(shlax_recipe) -> None:
    docs = documented_events()["step_end"]
    for event in emitted_events(shlax_recipe):
        if event["event"] == "step_end" and "error" in event:
            assert set(event["error"]) <= docs, sorted(set(event["error"]) - docs)


# -- CLI options --------------------------------------------------------------------------------

def click_options(command: Any) -> set[str]:
    import click

    out = set()
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            out.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return out


def doc_options(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))


def test_run_options_table_matches_click() -> None:
    from shlax_core.cli import cli

    rows = first_table(section("cli.md", "## shlax run [RECIPE] [TARGETS]..."))
    assert doc_options(" ".join(r[0] for r in rows)) == click_options(cli.commands["run"])


def test_plan_takes_only_options_that_run_documents() -> None:
    """docs/cli.md: plan takes run's options. (Whether it takes *all* of them is issue 9 item 7.)"""
    from shlax_core.cli import cli

    rows = first_table(section("cli.md", "## shlax run [RECIPE] [TARGETS]..."))
    assert click_options(cli.commands["plan"]) <= doc_options(" ".join(r[0] for r in rows))


@pytest.mark.parametrize("heading, path", [
    ("## shlax plugins [--json]", ["plugins"]),
    ("## shlax actions [NAME]", ["actions"]),
    ("## shlax cache ls | du | prune | export | import", ["cache", "ls"]),
    ("## shlax cache ls | du | prune | export | import", ["cache", "prune"]),
])
def test_other_commands_options_match_click(heading: str, path: list[str]) -> None:
    from shlax_core.cli import cli

    command: Any = cli
    for name in path:
        command = command.commands[name]
    text = section("cli.md", heading)
    if path[-1] in ("ls", "prune"):   # one bullet per subcommand
        text = next(line for line in text.split("\n- ") if line.startswith(f"`{path[-1]}"))
    assert doc_options(text) == click_options(command)
