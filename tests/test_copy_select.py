"""copy: source selection (globs, ignores, the recipe-dir fence) and destination semantics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shlax_core.errors import RecipeError
from shlax_core.files import select


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ["app/main.py", "app/lib/util.py", "app/__pycache__/x.pyc", "app/.env", "README.md", "b.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / "app" / "link").symlink_to("main.py")
    return tmp_path


def names(groups) -> list[list[str]]:
    return [[e.arcname for e in entries] for _, entries in groups]


def test_directory_contents_and_symlinks_inside(tree: Path) -> None:
    (entries,) = names(select(tree, ["app"], []))
    assert "main.py" in entries and "lib/util.py" in entries and "link" in entries


def test_exclude_and_shlaxignore(tree: Path) -> None:
    (tree / ".shlaxignore").write_text("__pycache__/\n")
    (entries,) = names(select(tree, ["app/"], [".env"]))
    assert not [e for e in entries if "__pycache__" in e or e == ".env"]


def test_a_file_named_outright_is_copied_even_if_ignored(tree: Path) -> None:
    (tree / ".shlaxignore").write_text("*.md\n")
    assert names(select(tree, ["README.md"], [])) == [["README.md"]]
    # a glob whose every match is ignored copies nothing: an error that names the rule
    with pytest.raises(RecipeError, match=r"copies no file.*\.shlaxignore:1 `\*\.md`"):
        select(tree, ["*.md"], [])


def test_glob(tree: Path) -> None:
    assert sorted(e for g in names(select(tree, ["app/**/*.py"], [])) for e in g) == ["main.py", "util.py"]


@pytest.mark.parametrize("src, fragment", [
    ("../x", "escapes the recipe's directory"),
    ("/etc/passwd", "is absolute"),
    ("app/../../x", "escapes"),
    ("nope", "matches nothing"),
])
def test_fence(tree: Path, src: str, fragment: str) -> None:
    (tree.parent / "x").write_text("outside")
    with pytest.raises(RecipeError, match=fragment):
        select(tree, [src], [], where="r.toml:3")


def test_symlinked_directory_pointing_out(tree: Path, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret").write_text("s")
    os.symlink(outside, tree / "app" / "escape")
    with pytest.raises(RecipeError, match="through the symlink"):
        select(tree, ["app"], [])


COPY = '[targets.h]\nbackend = "fake"\nsteps = [ { copy = { src = SRC, dest = "DEST" } } ]\n'


@pytest.mark.parametrize("src, dest, expected", [
    ('"b.txt"', "/etc/b.conf", ["/etc/b.conf"]),                      # a file is dest
    ('"b.txt"', "/etc/", ["/etc/b.txt"]),                             # dest/ is a directory
    ('["b.txt", "README.md"]', "/srv", ["/srv/README.md", "/srv/b.txt"]),   # several sources
    ('"app/lib"', "/opt/lib", ["/opt/lib/util.py"]),                  # a directory's contents
])
def test_destinations(shlax_recipe, tree: Path, src: str, dest: str, expected: list[str]) -> None:
    files = {rel: (tree / rel).read_text() for rel in ["b.txt", "README.md", "app/lib/util.py"]}
    project = shlax_recipe(COPY.replace("SRC", src).replace("DEST", dest), files=files)
    result = project.run()
    assert result.code == 0, result.output
    archive = result.archives[0]
    assert sorted(p for p, data in archive["files"].items() if data is not None) == expected


def test_mode_and_owner(shlax_recipe) -> None:
    project = shlax_recipe('[targets.h]\nbackend = "fake"\n'
                           'steps = [ { copy = { src = "s.sh", dest = "/usr/local/bin/s", mode = "0755", owner = "app" } } ]\n',
                           files={"s.sh": "#!/bin/sh\n"})
    archive = project.run().archives[0]
    assert archive["modes"]["/usr/local/bin/s"] == 0o755 and archive["owner"] == "app"
    assert archive["paths"] == ["/usr/local/bin/s"]
    assert project.run().statuses == ["ok"]


IGNORE_CASES = [
    ["*.log", "__pycache__/", "node_modules", "/build/", "docs/**/*.tmp", "a?c", "[ab]*.txt", ".env"],
    ["*.pyc", "!keep.pyc", "cache/"],  # a re-include: pathspec's own matcher answers
    ["# only a comment", ""],
]
IGNORE_PATHS = ["x.log", "d/x.log", "d/__pycache__/", "__pycache__/x", "node_modules/", "a/node_modules/",
                "node_modules", "build/", "d/build/", "docs/a/b/c.tmp", "docs/c.tmp", "abc", "d/abc",
                "abcd", "a.txt", "c.txt", "d/b1.txt", ".env", "d/.env", "keep.pyc", "d/keep.pyc",
                "z.pyc", "cache/", "d/cache/", "cache", "main.py", "d/e/f.py"]


@pytest.mark.parametrize("lines", IGNORE_CASES)
def test_ignorer_answers_as_pathspec_does(lines: list[str]) -> None:
    """The one-regex matcher (taken when no pattern re-includes) says exactly what pathspec says."""
    import pathspec

    from shlax_core.files import ignorer

    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    ignored = ignorer(spec)
    got = {p: bool(ignored and ignored(p)) for p in IGNORE_PATHS}
    assert got == {p: spec.match_file(p) for p in IGNORE_PATHS}


def test_walk_keeps_ignores_and_symlink_fence_in_nested_directories(tree: Path, tmp_path_factory) -> None:
    """Deep in a copied directory, ignored directories are pruned (nothing under them listed) and
    a symlink pointing out is still refused, while links inside are kept as links."""
    outside = tmp_path_factory.mktemp("outside")
    deep = tree / "app" / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "ok.py").write_text("ok")
    (deep / "node_modules" / "pkg").mkdir(parents=True)
    (deep / "node_modules" / "pkg" / "index.js").write_text("x")
    (deep / "inside").symlink_to("../../main.py")
    (tree / ".shlaxignore").write_text("node_modules/\n")
    ((_, entries),) = select(tree, ["app/"], [])
    by_name = {e.arcname: e for e in entries}
    assert "a/b/ok.py" in by_name and by_name["a/b/inside"].kind == "link"
    assert not [n for n in by_name if "node_modules" in n]
    assert by_name["a/b/ok.py"].path == str(deep / "ok.py")
    (deep / "out").symlink_to(outside)
    with pytest.raises(RecipeError, match="escapes"):
        select(tree, ["app/"], [])
