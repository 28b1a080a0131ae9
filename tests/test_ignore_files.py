"""Ignore files: .dockerignore / .containerignore read with Docker's rules, .shlaxignore with git's.

The unit cases come from Docker's documentation of .dockerignore; the image cases build the same
context with `buildah bud` (which reads .dockerignore itself) and with a shlax `copy`, and compare
the files each image got.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import buildah, events, run_shlax, statuses
from shlax_core.dockerignore import DockerIgnore, PatternError, parse
from shlax_core.errors import RecipeError
from shlax_core.files import IGNORE_FILES, select


def excluded(lines: list[str], path: str) -> bool:
    rules = DockerIgnore(parse("\n".join(lines)))
    parts = path.split("/")
    state = rules.state("")
    for depth in range(1, len(parts) + 1):
        state = rules.step("/".join(parts[:depth]), state)
    return rules.excluded(state)


# patterns, path, excluded?
DOCKER_CASES = [
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "somedir/temp", True),
    (["*/temp*"], "temp", False),                       # no match at any depth
    (["*/temp*"], "a/b/temp", False),
    (["*/*/temp*"], "a/b/temp.txt", True),
    (["temp?"], "tempa", True),
    (["temp?"], "tempab", False),
    (["*.pyc"], "x.pyc", True),
    (["*.pyc"], "pkg/x.pyc", False),                    # gitignore would say True
    (["**/*.pyc"], "pkg/sub/x.pyc", True),
    (["**/*.pyc"], "x.pyc", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "a.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),   # the last match wins
    (["*.md", "!README*.md", "README-secret.md"], "README-public.md", False),
    (["*", "!/bookmarks"], "bookmarks", False),
    (["*", "!/bookmarks"], "bookmarks/models.py", False),
    (["*", "!/bookmarks"], "other/x.py", True),
    (["*", "!/bookmarks"], "manage.py", True),
    (["build"], "build/out/x.o", True),                  # a directory's match covers what is under it
    (["build"], "src/build", False),
    (["/build/"], "build/x", True),                      # leading / and trailing / mean nothing
    (["docs", "!docs/keep.md"], "docs/keep.md", False),  # re-included under an excluded directory
    (["docs", "!docs/keep.md"], "docs/other.md", True),
    (["foo/**"], "foo/a/b", True),
    (["foo/**"], "foobar", False),
    (["**"], "any/thing", True),
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["[ab].txt"], "a.txt", True),
    (["[ab].txt"], "c.txt", False),
    (["[^a].txt"], "b.txt", True),
    (["[^a].txt"], "a.txt", False),
    (["\\*.txt"], "*.txt", True),
    (["\\*.txt"], "a.txt", False),
    (["./a/../b"], "b", True),
    (["# a comment"], "# a comment", False),
    ([" #x"], "#x", True),                               # only a line *starting* with # is a comment
    (["  spaced.txt  "], "spaced.txt", True),
    (["a.(x)+{y}$"], "a.(x)+{y}$", True),               # regex characters are plain
    (["a.txt"], "abtxt", False),
]


@pytest.mark.parametrize("lines, path, expected", DOCKER_CASES)
def test_docker_rules(lines: list[str], path: str, expected: bool) -> None:
    assert excluded(lines, path) is expected


def test_bad_patterns_name_their_line() -> None:
    with pytest.raises(PatternError) as info:
        parse("ok\n!\n")
    assert info.value.args[0] == 2
    with pytest.raises(PatternError) as info:
        parse("# c\n\n[abc\n")
    assert info.value.args[0] == 3


@pytest.fixture
def django(tmp_path: Path) -> Path:
    """The shape of the issue's project: an app folder among others, a .dockerignore of `*`
    then `!/bookmarks`."""
    for rel in ["bookmarks/models.py", "bookmarks/static/app.js", "bookmarks/__init__.py", "docs/x.md",
                "node_modules/p/index.js", "manage.py", "README.md"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / ".dockerignore").write_text("*\n!/bookmarks\n")
    return tmp_path


def arcnames(groups) -> list[str]:
    return sorted(e.arcname for _, entries in groups for e in entries)


def test_star_then_reinclude_copies_the_reincluded_folder(django: Path) -> None:
    assert arcnames(select(django, ["."], [])) == [
        "bookmarks", "bookmarks/__init__.py", "bookmarks/models.py", "bookmarks/static", "bookmarks/static/app.js"]


def test_the_same_file_under_gitignore_rules_copies_nothing_and_says_why(django: Path) -> None:
    (django / ".shlaxignore").write_text((django / ".dockerignore").read_text())
    with pytest.raises(RecipeError) as info:
        select(django, ["."], [], where="shlax.toml:7")
    message = str(info.value)
    assert "copies no file" in message and ".shlaxignore:1 `*`" in message and "shlax.toml:7" in message


def test_a_copy_emptied_by_a_docker_rule_names_the_file_and_line(django: Path) -> None:
    (django / ".dockerignore").write_text("# keep the app only\n*\n!/bookmarks\n")
    with pytest.raises(RecipeError) as info:
        select(django, ["docs"], [], where="shlax.toml:9")
    assert ".dockerignore:2 `*`" in str(info.value) and "shlax.toml:9" in str(info.value)


def test_exclude_adds_to_a_docker_ignore_file(django: Path) -> None:
    got = arcnames(select(django, ["."], ["static/"]))
    assert got == ["bookmarks", "bookmarks/__init__.py", "bookmarks/models.py"]
    with pytest.raises(RecipeError, match=r"left out by exclude\[0\] `\*\.py`, exclude\[1\] `static/`"):
        select(django, ["bookmarks"], ["*.py", "static/"])


@pytest.mark.parametrize("present, used", [
    ((".dockerignore",), ".dockerignore"),
    ((".containerignore", ".dockerignore"), ".containerignore"),
    ((".shlaxignore", ".containerignore", ".dockerignore"), ".shlaxignore"),
])
def test_precedence(tmp_path: Path, present: tuple[str, ...], used: str) -> None:
    """One file is read: .shlaxignore, else .containerignore, else .dockerignore."""
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / "d" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "d" / name).write_text(name)
    drops = {".shlaxignore": "a.txt", ".containerignore": "d/b.txt", ".dockerignore": "d/c.txt"}
    for name in present:
        (tmp_path / name).write_text(drops[name] + "\n")
    left = {"a.txt", "b.txt", "c.txt"} - set(arcnames(select(tmp_path, ["d"], [])))
    assert left == {drops[used].split("/")[-1]}


def test_every_ignore_file_is_watched_by_the_fast_path(django: Path) -> None:
    watch: dict = {}
    select(django, ["bookmarks"], [], watch=watch)
    assert {str(django / name) for name in IGNORE_FILES} <= set(watch)


def test_a_big_excluded_folder_is_not_walked(django: Path, monkeypatch) -> None:
    """Only a `!` rule that may keep something under an excluded folder makes the walk enter it."""
    from shlax_core import files

    seen = []
    walk = files._walk

    def recording(top, watch):
        seen.append(top)
        yield from walk(top, watch)  # which calls _walk again for each folder it enters: this

    monkeypatch.setattr(files, "_walk", recording)
    select(django, ["."], [])
    assert not any("node_modules" in s or s.endswith("docs") for s in seen), seen
    # `!*.md` reaches top-level names only: still no reason to enter node_modules
    (django / ".dockerignore").write_text("*\n!/bookmarks\n!*.md\n")
    seen.clear()
    assert "README.md" in arcnames(select(django, ["."], []))
    assert not any("node_modules" in s for s in seen), seen
    # `!*/x.md` may keep docs/x.md: docs is entered, and added with what it keeps
    (django / ".dockerignore").write_text("*\n!*/x.md\n")
    assert arcnames(select(django, ["."], [])) == ["docs", "docs/x.md"]


# -- real images: shlax's copy against buildah bud's COPY on the same context -----------------

TREE = ["bookmarks/models.py", "bookmarks/static/app.js", "bookmarks/tests/t.py", "bookmarks/x.pyc",
        "docs/index.md", "docs/keep.md", "node_modules/p/index.js", "manage.py", "README.md",
        "README-secret.md", "a/b/temp.txt", "a/temp1", "temp2", "build/out.o", "src/build/keep.c",
        "src/pkg/mod.pyc", "empty/.keep"]

IGNORES = {
    "star-reinclude": "*\n!/bookmarks\n",
    "star-reinclude-file": "*\n!manage.py\n!bookmarks/static\n",
    "no-any-depth": "*.pyc\nbuild\n",
    "double-star": "**/*.pyc\n**/build\n",
    "last-wins": "*.md\n!README*.md\nREADME-secret.md\n",
    "dir-then-file": "docs\n!docs/keep.md\nnode_modules/\n",
    "wildcard-dirs": "*/temp*\ntemp?\n*/*/t.py\n",
    "slashes-comments": "# comment\n/build/\n./a/../node_modules\n  bookmarks/tests  \n",
    "wild-reinclude": "*\n!*/keep.md\n!**/*.c\n",
    "reinclude-then-exclude": "bookmarks\n!bookmarks/static\nbookmarks/static/*.js\n!README.md\n*.md\n",
}
#: where buildah 1.28 and shlax differ, on purpose: buildah enters a folder it excluded only for a `!`
#: rule whose text starts with the folder's path (Docker's classic builder did the same); shlax,
#: like BuildKit (Docker's builder since 23.0), also for a wildcard rule that may match below it
ONLY_SHLAX = {"wild-reinclude": {"docs", "docs/keep.md", "src", "src/build", "src/build/keep.c"}}


def image_files(image: str, under: str) -> set[str]:
    ctr = buildah("from", "--pull=never", image).stdout.strip()
    try:
        root = Path(buildah("mount", ctr).stdout.strip()) / under.strip("/")
        found = set()
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                found.add(os.path.relpath(os.path.join(dirpath, name), root))
        return found
    finally:
        buildah("rm", ctr)


@pytest.mark.buildah
def test_copy_selects_what_buildah_bud_copies(tmp_path: Path, busybox_image: str, nonce: str) -> None:
    """For each .dockerignore, `COPY . /ctx/` under bud and `copy = { src = ".", dest = "/ctx/" }`
    give the image the same files and folders (but for ONLY_SHLAX)."""
    made = []
    try:
        for name, text in IGNORES.items():
            ctx = tmp_path / name
            for rel in TREE:
                (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
                (ctx / rel).write_text(rel)
            (ctx / ".dockerignore").write_text(text)
            (ctx / "shlax.toml").write_text(textwrap.dedent(f"""
                [targets.t]
                base = "{busybox_image}"
                image = "localhost/shlax-test-ignore-{name}-{nonce}"
                steps = [ {{ copy = {{ src = ".", dest = "/ctx/" }} }} ]
            """))
            containerfile = tmp_path / f"{name}.Containerfile"
            containerfile.write_text(f"FROM {busybox_image}\nCOPY . /ctx/\n")
            bud = f"localhost/shlax-test-ignore-bud-{name}-{nonce}"
            made += [bud, f"localhost/shlax-test-ignore-{name}-{nonce}"]
            out = subprocess.run(["buildah", "bud", "--pull=never", "--layers=false", "-f", str(containerfile),
                                  "-t", bud, str(ctx)], capture_output=True, text=True,
                                 env={**os.environ, "BUILDAH_ISOLATION": "chroot"})
            assert out.returncode == 0, out.stderr
            proc = run_shlax("run", str(ctx / "shlax.toml"))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            ours, theirs = image_files(made[-1], "/ctx"), image_files(bud, "/ctx")
            theirs |= ONLY_SHLAX.get(name, set())
            assert ours == theirs, f"{name}: only shlax {sorted(ours - theirs)}, only bud {sorted(theirs - ours)}"
    finally:
        for image in made:
            buildah("rmi", image, check=False)


@pytest.mark.buildah
def test_an_emptied_copy_fails_before_anything_runs_and_a_fixed_rule_rebuilds(
        tmp_path: Path, busybox_image: str, nonce: str) -> None:
    image = f"localhost/shlax-test-ignore-empty-{nonce}"
    for rel in ["bookmarks/models.py", "app/main.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / ".dockerignore").write_text("*\n!/bookmarks\n")
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.t]
        base = "{busybox_image}"
        image = "{image}"
        steps = [
          {{ run = ["true", "{nonce}"] }},
          {{ copy = {{ src = "app", dest = "/app/" }} }},
        ]
    """))
    try:
        proc = run_shlax("run", str(tmp_path / "shlax.toml"), "--json")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        text = proc.stdout + proc.stderr
        assert "copies no file" in text and ".dockerignore:1 `*`" in text and "shlax.toml:7" in text, text
        assert "Traceback" not in text and not statuses(proc.stdout)
        # re-including the folder makes the copy work; the rule change reaches the step's key
        (tmp_path / ".dockerignore").write_text("*\n!/bookmarks\n!/app\n")
        proc = run_shlax("run", str(tmp_path / "shlax.toml"), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert image_files(image, "/app") == {"main.py"}
        (tmp_path / ".dockerignore").write_text("*\n!/bookmarks\n!/app\n/app/main.py\n!/app/main.py\n")
        proc = run_shlax("run", str(tmp_path / "shlax.toml"), "--json")
        assert statuses(proc.stdout) == ["cached", "cached"], "same files copied: the same key"
        (tmp_path / "app" / "extra.py").write_text("x")
        (tmp_path / ".dockerignore").write_text("*\n!/bookmarks\n!/app\napp/extra.py\n")
        proc = run_shlax("run", str(tmp_path / "shlax.toml"), "--json")
        assert statuses(proc.stdout) == ["cached", "cached"], proc.stdout
        (tmp_path / ".dockerignore").write_text("*\n!/bookmarks\n!/app\n")
        proc = run_shlax("run", str(tmp_path / "shlax.toml"), "--json")
        assert statuses(proc.stdout) == ["cached", "done"], proc.stdout
        assert image_files(image, "/app") == {"main.py", "extra.py"}
    finally:
        buildah("rmi", image, check=False)
