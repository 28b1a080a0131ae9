"""Step keys: what changes them (params, inputs, version, parent) and what does not (mtimes),
and the stat cache that keeps re-hashing a large unchanged tree cheap."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from shlax_core.cache import keys
from shlax_core.cache.hashing import RACY_SECONDS, StatCache, tree_digest

BASE = dict(parent="p", action="copy", version="1.0", params={"dest": "/a", "mode": None}, inputs={"files": "d1"})


def key(**changes):
    args = {**BASE, **changes}
    return keys.step_key(args["parent"], args["action"], args["version"], args["params"], args["inputs"])


@pytest.mark.parametrize("change", [
    {"parent": "q"}, {"action": "run"}, {"version": "1.1"},
    {"params": {"dest": "/b", "mode": None}}, {"params": {"dest": "/a", "mode": "0644"}},
    {"inputs": {"files": "d2"}}, {"inputs": {"files": "d1", "more": "x"}},
])
def test_every_ingredient_changes_the_key(change) -> None:
    assert key(**change) != key()


def test_key_is_stable_and_ignores_table_order() -> None:
    assert key() == key()
    assert key(params={"mode": None, "dest": "/a"}) == key()
    assert keys.base_key("sha256:1") != keys.base_key("sha256:2")


COPY = '''
[targets.i]
backend = "fake-image"
steps = [
  { run = ["make"] },
  { copy = { src = "app/", dest = "/app" } },
  { run = ["echo", "after"] },
]
'''


@pytest.fixture
def project(shlax_recipe):
    p = shlax_recipe(COPY, files={"app/main.py": "print(1)\n", "app/lib/util.py": "x = 1\n"})
    first = p.run()
    assert first.code == 0 and first.statuses == ["done", "done", "done"], first.output
    return p


def test_unchanged_recipe_is_fully_cached(project) -> None:
    result = project.run()
    assert result.statuses == ["cached", "cached", "cached"]
    assert not [c for c in result.calls if c["call"] in ("run", "commit", "start", "put_archive")]


def test_mtime_only_change_keeps_the_key(project) -> None:
    for f in (project.dir / "app").rglob("*.py"):
        os.utime(f, (time.time() - 3600, time.time() - 3600))
    assert project.plan().statuses == ["cached", "cached", "cached"]


def test_content_change_reruns_from_that_step(project) -> None:
    project.write("app/main.py", "print(2)\n")
    plan = project.plan()
    assert plan.statuses == ["cached", "run", "run"]
    assert plan.steps[1]["reason"] == "input changed: files"
    assert plan.steps[2]["reason"] == "an earlier step or the base image changed"
    run = project.run()
    assert run.statuses == ["cached", "done", "done"]
    (start,) = [c for c in run.calls if c["call"] == "start"]
    assert start["image"] is not None      # restarted from the first step's layer


def test_mode_change_is_an_input_change(project) -> None:
    os.chmod(project.dir / "app" / "main.py", 0o755)
    assert project.plan().statuses == ["cached", "run", "run"]


def test_new_file_is_an_input_change(project) -> None:
    project.write("app/new.txt", "")
    assert project.plan().steps[1]["reason"] == "input changed: files"


def test_params_change(project) -> None:
    project.write("shlax.toml", COPY.replace('dest = "/app"', 'dest = "/srv/app"'))
    plan = project.plan()
    assert plan.statuses == ["cached", "run", "run"]
    assert plan.steps[1]["reason"] == "parameters changed: dest"


def test_parent_change(project) -> None:
    project.write("shlax.toml", COPY.replace('["make"]', '["make", "all"]'))
    plan = project.plan()
    assert plan.statuses == ["run", "run", "run"]
    assert plan.steps[0]["reason"] == "parameters changed: command"
    assert plan.steps[1]["reason"] == "an earlier step or the base image changed"


def test_base_change(project) -> None:
    project.write("shlax.toml", COPY.replace('backend = "fake-image"', 'backend = "fake-image"\nbase = "other"'))
    assert project.plan().statuses == ["run", "run", "run"]


def test_plugin_version_change(project) -> None:
    from shlax_core.builtin.run import Run

    class Run2(Run):
        version = "9.9"

    project.extra["action"]["run"] = Run2
    plan = project.plan()
    assert plan.statuses[0] == "run"
    assert "plugin version changed" in plan.steps[0]["reason"]


def test_cache_version_replaces_the_plugin_version_in_keys(project) -> None:
    """An action with a ``cache_version`` is rebuilt when the author bumps it, not on every release."""
    from shlax_core.builtin.run import Run

    def release(version: str, cache_version: str) -> type:
        return type("Run", (Run,), {"version": version, "cache_version": cache_version})

    project.extra["action"]["run"] = release("1.0", "1")
    assert project.run().code == 0
    project.extra["action"]["run"] = release("1.1", "1")      # a release that changes no result
    assert project.plan().statuses == ["cached", "cached", "cached"]
    project.extra["action"]["run"] = release("1.2", "2")      # results change: the author bumps it
    plan = project.plan()
    assert plan.statuses == ["run", "run", "run"]
    assert plan.steps[0]["reason"] == "run cache_version changed (1 -> 2)"


def test_formatting_and_step_table_form_do_not_change_keys(project) -> None:
    project.write("shlax.toml", COPY.replace('{ run = ["make"] }', '{ run = { command = [ "make" ] } }')
                  .replace("  { copy", "\n\n  # a comment\n  { copy"))
    assert project.plan().statuses == ["cached", "cached", "cached"]


def test_no_cache_runs_everything(project) -> None:
    result = project.plan(no_cache=True)
    assert result.statuses == ["run", "run", "run"]
    assert {s["reason"] for s in result.steps} == {"--no-cache"}


def test_config_change_reruns_no_step(project) -> None:
    """Image configuration is committed on top of the last step's layer: changing it runs no step.
    (With no config at all, the last step's one commit is both its layer and the image.)"""
    for cmd in ('["python", "/app/main.py"]', '["python", "-m", "app"]'):
        project.write("shlax.toml", COPY + f'[targets.i.config]\ncmd = {cmd}\n')
        result = project.run()
        assert result.statuses == ["cached", "cached", "cached"]
        assert [c["call"] for c in result.calls if c["call"] in ("commit", "finish", "tag")] == ["finish"]


# -- the stat cache -------------------------------------------------------------------------------

def make_tree(root: Path, n: int) -> list[tuple[str, str]]:
    pairs = []
    for i in range(n):
        d = root / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"f{i:05d}.txt"
        f.write_text(f"file {i}\n")
        pairs.append((f"/app/{f.relative_to(root)}", str(f)))
    return pairs


def test_stat_cache_hits_on_an_unchanged_10000_file_tree(tmp_path: Path) -> None:
    pairs = make_tree(tmp_path / "tree", 10_000)
    later = lambda: time.time() + 10 * RACY_SECONDS   # noqa: E731  (past the racy window, without sleeping)
    cache_file = tmp_path / "stat.json"

    cold = StatCache(tmp_path, path=cache_file, clock=later)
    t0 = time.perf_counter()
    digest = tree_digest(pairs, cold)
    t_cold = time.perf_counter() - t0
    assert (cold.hits, cold.misses) == (0, 10_000)
    cold.save()

    warm = StatCache(tmp_path, path=cache_file, clock=later)   # a new process would load it the same way
    t0 = time.perf_counter()
    assert tree_digest(pairs, warm) == digest
    t_warm = time.perf_counter() - t0
    assert (warm.hits, warm.misses) == (10_000, 0)
    print(f"10,000 files: hash {t_cold:.3f}s, re-hash with stat cache {t_warm:.3f}s")

    # one file rewritten with the same size and its mtime restored: its ctime moved, it is re-read
    victim = Path(pairs[1234][1])
    st = victim.stat()
    victim.write_text(victim.read_text().replace("file", "FILE"))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = StatCache(tmp_path, path=cache_file, clock=later)
    assert tree_digest(pairs, again) != digest
    assert (again.hits, again.misses) == (9_999, 1)


def test_racy_entries_are_not_trusted(tmp_path: Path) -> None:
    """A file hashed in the tick it was written is read again next time, however slow the machine:
    the clock is the file's own change time (the moment of the write), not the wall clock."""
    f = tmp_path / "new.txt"
    f.write_text("a")
    written = f.stat().st_ctime
    cache = StatCache(tmp_path, path=tmp_path / "stat.json", clock=lambda: written + RACY_SECONDS / 2)
    tree_digest([("/new.txt", str(f))], cache)
    tree_digest([("/new.txt", str(f))], cache)
    assert cache.hits == 0 and cache.misses == 2
    # once the racy window is over, the entry is trusted
    cache.clock = lambda: written + RACY_SECONDS + 1
    tree_digest([("/new.txt", str(f))], cache)
    tree_digest([("/new.txt", str(f))], cache)
    assert (cache.hits, cache.misses) == (1, 3)


def test_a_damaged_stat_cache_is_read_as_empty(tmp_path: Path) -> None:
    """A stat cache cut short (a full disk, a crash of another tool) costs a re-read, never a
    wrong digest or an error."""
    pairs = make_tree(tmp_path / "tree", 50)
    later = lambda: time.time() + 10 * RACY_SECONDS   # noqa: E731
    cache_file = tmp_path / "stat.bin"
    cold = StatCache(tmp_path, path=cache_file, clock=later)
    digest = tree_digest(pairs, cold)
    cold.save()
    data = cache_file.read_bytes()
    for cut in (len(data) - 7, len(data) // 2, 5):
        cache_file.write_bytes(data[:cut])
        damaged = StatCache(tmp_path, path=cache_file, clock=later)
        assert tree_digest(pairs, damaged) == digest
        assert damaged.misses == 50
