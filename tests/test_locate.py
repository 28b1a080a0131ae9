"""The locator maps key paths to lines on the TOML users write: multi-line strings, quoted and
dotted keys, arrays of tables with sub-tables. Table-driven: a text, then key path -> line.

Every text is checked to be valid TOML first: the locator only needs to be right on files the
parser accepted."""

from __future__ import annotations

import pytest

from shlax_core.locate import Locator
from shlax_core.tomlfile import tomllib

CASES = [
    ("multi-line-basic-string",
     '[targets.t]\nbackend = "local"\nsteps = [\n  { run = """\nline one\nline "two" \\\n""", shell = "/bin/sh" },\n'
     '  { run = ["x"] },\n]\n',
     {"targets.t.steps[0]": 4, "targets.t.steps[0].shell": 7, "targets.t.steps[1]": 8}),
    ("multi-line-literal-string-looking-like-tables",
     "[a]\nx = '''\n[not.a.table]\ny = 1\n'''\nz = 2\n", {"a.x": 2, "a.z": 6, "not": None}),
    ("multi-line-string-in-an-array", '[t]\nx = [ """a\n]\n""",\n  2 ]\ny = 3\n', {"t.x[1]": 5, "t.y": 6}),
    ("multi-line-literal-in-an-inline-table", "[t]\nx = { a = '''\n}\n''', b = 1 }\ny = 2\n",
     {"t.x.b": 4, "t.y": 5}),
    ("multi-line-string-with-escaped-quotes", '[t]\nx = """a\\"""b"""\ny = 1\n', {"t.y": 3}),
    ("multi-line-string-ending-in-four-quotes", '[t]\nx = """a""""\ny = 1\n', {"t.y": 3}),
    ("quoted-table-name", '[targets."my.app"]\nbackend = "local"\nsteps = []\n', {"targets.my.app.backend": 2}),
    ("quoted-key-with-escapes", '[t]\n"a\\"b" = 1\n"\\u0063" = 2\n', {'t.a"b': 2, "t.c": 3}),
    ("literal-keys", "[t]\n'a.b' = 1\nc.'d e' = 2\n", {"t.a.b": 2, "t.c.d e": 3}),
    ("quoted-key-in-an-inline-table", '[t]\nx = { "a.b" = 1,\n  c = 2 }\n', {"t.x.c": 3}),
    ("dotted-keys", '[targets.t]\nconfig.env.A = "1"\nconfig.ports = [\n "80",\n "x",\n]\n',
     {"targets.t.config.env.A": 2, "targets.t.config.ports[1]": 5}),
    ("dotted-header-with-spaces", '[ targets . t ]\nbackend = "local"\n', {"targets.t.backend": 2}),
    ("strings-holding-comment-and-bracket", '[t]\nx = "a # ]"\ny = [\n "#",\n "b",\n]\n', {"t.y[1]": 5}),
    ("comments-inside-an-array", '[t]\nx = [ # c ]\n  1,\n  2, # ]\n  3,\n]\ny = 1\n', {"t.x[2]": 5, "t.y": 7}),
    ("array-of-tables", '[[targets.t.steps]]\nrun = ["a"]\n[[targets.t.steps]]\nrun = [\n "b",\n]\nworkdir = "/x"\n',
     {"targets.t.steps[1].workdir": 7, "targets.t.steps[1].run[0]": 5}),
    ("sub-table-of-an-array-of-tables", '[[t.s]]\nb = 2\n[t.s.sub]\nc = 1\n[[t.s]]\nb = 3\n[t.s.sub]\nc = 4\n',
     {"t.s[0].sub.c": 4, "t.s[1].sub.c": 8, "t.s[1].b": 6}),
    ("nested-arrays-of-tables", '[[a]]\n[[a.b]]\nx = 1\n[[a]]\n[[a.b]]\nx = 2\n[[a.b]]\nx = 3\n',
     {"a[0].b[0].x": 3, "a[1].b[0].x": 6, "a[1].b[1].x": 8}),
    ("crlf-line-ends", '[t]\r\nx = [\r\n "a",\r\n "b",\r\n]\r\n', {"t.x[1]": 4}),
]


@pytest.mark.parametrize("case_id, text, expected", CASES, ids=[c[0] for c in CASES])
def test_locator_finds_the_line(case_id: str, text: str, expected: dict) -> None:
    tomllib.loads(text)
    loc = Locator("f.toml", text)
    for path, line in expected.items():
        if line is None:   # text inside a string is not a key
            assert path not in loc.lines
        else:
            assert loc.line(path) == line, path
            assert loc(path) == f"f.toml:{line}"


def test_an_unknown_path_falls_back_to_its_nearest_parent() -> None:
    loc = Locator("f.toml", '[t]\nx = [\n  1,\n]\n')
    assert loc("t.x[5].nope") == "f.toml:2"
    assert loc("other") == "f.toml"
