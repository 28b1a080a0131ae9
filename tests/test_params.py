"""Typed parameters: validation messages with key paths, canonical form, docs rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

import pytest

from shlax_core.errors import RecipeError
from shlax_core.imageconfig import ImageConfig
from shlax_core.params import build, canonical, describe, doc


@dataclass
class Inner:
    port: int = doc("a port")


@dataclass
class P:
    name: str = doc("the name")
    count: int = doc("how many", 1)
    ratio: float = doc("a number", 0.5)
    flag: bool = doc("a switch", False)
    tags: list[str] = doc("tags", default_factory=list)
    env: dict[str, str] = doc("env", default_factory=dict)
    kind: Literal["a", "b"] = doc("a or b", "a")
    cmd: Union[list[str], str] = doc("argv or script", "x")
    maybe: Optional[str] = doc("optional", None)
    inner: Optional[Inner] = doc("nested", None)


def err(data: dict) -> str:
    with pytest.raises(RecipeError) as info:
        build(P, data, path="targets.t.steps[0]", locate=lambda p: f"r.toml:{p}")
    return str(info.value)


def test_valid_values_and_defaults() -> None:
    p = build(P, {"name": "x", "ratio": 2, "tags": ["a"], "inner": {"port": 80}}, path="p")
    assert p.ratio == 2.0 and p.count == 1 and p.inner == Inner(80) and p.tags == ["a"]


@pytest.mark.parametrize("data, message", [
    ({}, "targets.t.steps[0] needs parameter 'name' (string)"),
    ({"name": 1}, "name must be a string, not an integer (1)"),
    ({"name": "x", "count": True}, "count must be an integer, not a boolean (True)"),
    ({"name": "x", "flag": "yes"}, "flag must be a boolean, not a string ('yes')"),
    ({"name": "x", "tags": "a"}, "tags must be a list of strings, not a string"),
    ({"name": "x", "tags": ["a", 2]}, "targets.t.steps[0].tags[1] must be a string, not an integer (2)"),
    ({"name": "x", "env": {"A": 1}}, "targets.t.steps[0].env.A must be a string"),
    ({"name": "x", "kind": "c"}, "kind must be 'a' or 'b', not a string ('c')"),
    ({"name": "x", "inner": {"prot": 1}}, "unknown key 'prot' in targets.t.steps[0].inner"),
    ({"name": "x", "nmae": 1}, "did you mean 'name'"),
])
def test_errors_name_the_key(data: dict, message: str) -> None:
    assert message in err(data)


def test_error_points_at_the_bad_key() -> None:
    assert err({"name": "x", "tags": ["a", 2]}).startswith("r.toml:targets.t.steps[0].tags[1]: ")


def test_validate_hook() -> None:
    with pytest.raises(RecipeError, match="port '99999' is not PORT"):
        build(ImageConfig, {"ports": ["99999"]}, path="targets.t.config")


def test_canonical_sorts_tables_and_keeps_lists() -> None:
    p = build(P, {"name": "x", "env": {"B": "1", "A": "2"}, "tags": ["z", "a"]}, path="p")
    c = canonical(p)
    assert list(c["env"]) == ["A", "B"] and c["tags"] == ["z", "a"] and c["inner"] is None


def test_describe_rows() -> None:
    rows = {r[0]: r for r in describe(P)}
    assert rows["name"] == ("name", "string", "required", "the name")
    assert rows["tags"][1:3] == ("list of strings", "[]")
    assert rows["cmd"][1] == "list of strings or string"
