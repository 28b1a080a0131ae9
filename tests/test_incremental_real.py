"""Incremental package steps with the real managers: a list that grew builds on the previous
layer, installing only what was added, and ends with the same packages as a clean build of the
whole list (``dpkg-query -W``, ``pip list``, ``npm ls``). Key discipline: tests/test_incremental.py.
"""

from __future__ import annotations

import pytest

from conftest import events
from fixtures_caches import Host, in_image, output, remove_image

pytestmark = [pytest.mark.buildah, pytest.mark.slow]


def build(host: Host, nonce: str, image: str, setup: str, step: str, name: str = "shlax.toml"):
    host.recipe(f"""
        [targets.t{nonce}]
        base = "debootstrap:bookworm"
        image = "{image}"
        steps = [
          {setup}
          {{ run = ["true", "{nonce}"] }},
          {step},
        ]
    """, name=name)
    proc = host.run("run", "--json", name)
    assert proc.returncode == 0, output(proc)
    return [e for e in events(proc.stdout) if e["event"] == "step_end" and e.get("index")][-1]


def grown_then_clean(host: Host, nonce: str, setup: str, first: str, grown: str, added: list[str],
                     query: list[str]) -> tuple[str, str]:
    """Build ``first``, then ``grown`` (incremental), then ``grown`` from another recipe file (no
    history: a clean build); returns ``query``'s output in both images."""
    inc, clean = f"localhost/shlax-test-inc-{nonce}", f"localhost/shlax-test-clean-{nonce}"
    try:
        build(host, nonce, inc, setup, first)
        step = build(host, nonce, inc, setup, grown)
        assert step["status"] == "done" and step.get("incremental") == added, step
        step = build(host, nonce, clean, setup, grown, name="clean.toml")
        assert step["status"] == "done" and "incremental" not in step, step
        return in_image(inc, *query).stdout, in_image(clean, *query).stdout
    finally:
        remove_image(inc)
        remove_image(clean)


def test_apt_grown_list_installs_only_the_added_and_matches_a_clean_build(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    got, want = grown_then_clean(host, nonce, "", '{ apt = ["jq"] }', '{ apt = ["jq", "file"] }', ["file"],
                                 ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\\n"])
    assert "file " in got and "jq " in got
    assert got == want


def test_pip_grown_list_matches_a_clean_build(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    setup = '{ apt = ["python3", "python3-venv"] },'
    got, want = grown_then_clean(host, nonce, setup, '{ pip = { packages = ["six"], venv = "/v" } }',
                                 '{ pip = { packages = ["six", "idna"], venv = "/v" } }', ["idna"],
                                 ["/v/bin/pip", "list", "--format=freeze"])
    assert "idna==" in got and "six==" in got
    assert got == want


def test_npm_grown_global_list_matches_a_clean_build(tmp_path, nonce, debian_image):
    host = Host(tmp_path)
    setup = '{ apt = ["nodejs", "npm"] },'
    got, want = grown_then_clean(host, nonce, setup, '{ npm = { packages = ["is-number@7.0.0"] } }',
                                 '{ npm = { packages = ["is-number@7.0.0", "is-odd@3.0.1"] } }', ["is-odd@3.0.1"],
                                 ["npm", "ls", "-g", "--all"])
    assert "is-odd@3.0.1" in got and "is-number@7.0.0" in got
    assert got == want
