"""Incremental package steps against the recording image backend: when they apply, which key the
layer gets, and that a cache hit never returns a layer made another way than its key says.

The real package managers (same packages as a clean build: dpkg-query, pip list, npm ls) are in
tests/test_incremental_real.py.
"""

from __future__ import annotations

import pytest

from shlax_apt.action import Apt, AptCache
from shlax_core.cache import incremental
from shlax_pip.action import Pip, PipCache

DEBIAN = {"ID": "debian", "VERSION_CODENAME": "bookworm"}


def project(shlax_recipe, packages: list[str], extra: str = ""):
    proj = shlax_recipe("", actions={"apt": Apt, "pip": Pip}, caches={"apt": AptCache, "pip": PipCache})
    write(proj, packages, extra)
    proj.recorder.facts = dict(DEBIAN)
    return proj


def write(proj, packages: list[str], extra: str = "", after: str = '{ run = ["true", "after"] }') -> None:
    listed = ", ".join(f'"{p}"' for p in packages)
    proj.write("shlax.toml", f"""
        [targets.t]
        backend = "fake-image"
        steps = [
          {{ run = ["true", "first"] }},
          {{ apt = {{ packages = [{listed}]{extra} }} }},
          {after},
        ]
    """)


def packages_of(argv: list[str]) -> list[str]:
    """The package arguments of an apt-get install argv (after its -o KEY=VALUE options)."""
    out, skip = [], False
    for a in argv[2:]:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def apt_installs(result) -> list[list[str]]:
    return [packages_of(c) for c in result.commands if c[:2] == ["apt-get", "install"]]


def commits(result) -> list[str]:
    return [c["key"] for c in result.calls if c["call"] in ("commit", "finish")]


def starts(result) -> list:
    return [c["image"] for c in result.calls if c["call"] == "start"]


def test_a_grown_list_builds_on_the_previous_layer_under_its_own_key(shlax_recipe):
    proj = project(shlax_recipe, ["jq"])
    first = proj.run()
    assert first.code == 0 and apt_installs(first) == [["jq"]]
    layer_before = proj.recorder.layers[commits(first)[1]]

    write(proj, ["jq", "curl"])
    plan = proj.plan()
    assert plan.statuses == ["cached", "run", "run"]
    assert plan.steps[1]["incremental"] == ["curl"] and "incremental" in plan.steps[1]["reason"]
    second = proj.run()
    assert second.code == 0, second.output
    assert apt_installs(second) == [["curl"]], "only the added package is installed"
    assert starts(second) == [layer_before], "on the previous list's layer"
    key = commits(second)[0]
    assert key == incremental.incremental_key(commits(first)[1], "apt", Apt.key_version(), ["curl"])

    # unchanged: everything is found under the keys it was built with
    third = proj.run()
    assert third.statuses == ["cached", "cached", "cached"] and not apt_installs(third)


def test_a_clean_build_of_the_same_list_never_gets_the_incremental_layer(shlax_recipe):
    proj = project(shlax_recipe, ["jq"])
    proj.run()
    write(proj, ["jq", "curl"])
    inc = proj.run()
    inc_key = commits(inc)[0]
    # another recipe file (no history) with the same steps: plain key, built from scratch
    other = shlax_recipe("", actions={"apt": Apt}, caches={"apt": AptCache}, name="other.toml")
    other.recorder.layers = proj.recorder.layers  # one image store
    other.recorder.facts = dict(DEBIAN)
    other.write("other.toml", proj.path.read_text())
    clean = other.run()
    assert clean.code == 0
    assert apt_installs(clean) == [["jq", "curl"]]
    assert commits(clean)[0] != inc_key


@pytest.mark.parametrize("second,extra,why", [
    (["curl"], "", "shrunk"),
    (["jq=1.7", "curl"], "", "a pin changed"),
    (["jq", "curl"], ", recommends = true", "another parameter changed"),
    (["jq", "curl"], ", incremental = false", "incremental = false"),
])
def test_anything_but_a_grown_list_rebuilds_from_scratch(shlax_recipe, second, extra, why):
    proj = project(shlax_recipe, ["jq", "file"] if why == "shrunk" else ["jq"])
    proj.run()
    write(proj, second, extra)
    result = proj.run()
    assert result.code == 0
    assert apt_installs(result) == [second], why
    assert "incremental" not in result.steps[1]


def test_no_cache_rebuilds_from_scratch(shlax_recipe):
    proj = project(shlax_recipe, ["jq"])
    proj.run()
    write(proj, ["jq", "curl"])
    result = proj.run(no_cache=True)
    assert apt_installs(result) == [["jq", "curl"]] and starts(result) == [None]


def test_a_missing_previous_layer_rebuilds_from_scratch_under_the_plain_key(shlax_recipe):
    proj = project(shlax_recipe, ["jq"])
    first = proj.run()
    del proj.recorder.layers[commits(first)[1]]  # pruned, or another machine
    write(proj, ["jq", "curl"])
    result = proj.run()
    assert apt_installs(result) == [["jq", "curl"]]
    assert "incremental" not in result.steps[1]
    assert commits(result)[0] != incremental.incremental_key(commits(first)[1], "apt", Apt.key_version(), ["curl"])


def test_incremental_is_not_part_of_the_key(shlax_recipe):
    proj = project(shlax_recipe, ["jq"])
    first = proj.run()
    write(proj, ["jq"], ", incremental = false")
    again = proj.run()
    assert again.statuses == ["cached", "cached", "cached"]
    assert commits(first) and not commits(again)


def test_a_chain_of_incremental_layers_stays_short(shlax_recipe):
    proj = project(shlax_recipe, ["p0"])
    proj.run()
    lists = [["p0", "p1"], ["p0", "p1", "p2"], ["p0", "p1", "p2", "p3"], ["p0", "p1", "p2", "p3", "p4"]]
    got = []
    for packages in lists:
        write(proj, packages)
        got.append(apt_installs(proj.run()))
    assert got[:3] == [[["p1"]], [["p2"]], [["p3"]]]
    assert got[3] == [lists[3]], f"past {incremental.MAX_DEPTH} stacked layers the step rebuilds whole"
    write(proj, lists[3] + ["p5"])
    assert apt_installs(proj.run()) == [["p5"]], "and may grow again from there"
