"""The [services] section: owned by a plugin through ``shlax.sections``, validated before anything
starts (exit 2, file:line), and the CLI verbs come from the plugin without slowing ``--help``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_shlax

from shlax_services.names import Project  # installed by ./dev setup, like every plugin

GOOD = """
[targets.app]
base = "localhost/shlax-test-busybox:latest"
steps = []

[services.db]
image = "localhost/db:1"

[services.web]
image = "app"
depends_on = ["db"]
"""

CASES = [
    # (id, recipe text, expected message parts, expected where)
    ("unknown-service-dep", GOOD.replace('depends_on = ["db"]', 'depends_on = ["dbb"]'),
     ["unknown service 'dbb'", "did you mean 'db'"], "recipe.toml:10"),
    ("unknown-target", GOOD.replace('image = "app"', 'image = "ap"'),
     ["'ap' is not a target of this recipe", "did you mean 'app'"], "recipe.toml:9"),
    ("cycle", GOOD.replace('image = "localhost/db:1"', 'image = "localhost/db:1"\ndepends_on = ["web"]'),
     ["cycle: db -> web -> db"], "recipe.toml:7"),
    ("self-dependency", GOOD.replace('depends_on = ["db"]', 'depends_on = ["web"]'),
     ["cannot depend on itself"], "recipe.toml:10"),
    ("port-clash", GOOD.replace('image = "localhost/db:1"', 'image = "localhost/db:1"\nports = ["8080:80"]')
     .replace('depends_on = ["db"]', 'ports = ["127.0.0.1:8080:8000"]'),
     ["host port 8080/tcp is already published by service 'db'"], "recipe.toml:11"),
    ("bad-port", GOOD.replace('depends_on = ["db"]', 'ports = ["80:99999"]'),
     ["port 99999 in '80:99999' is out of range"], "recipe.toml:10"),
    ("bad-port-syntax", GOOD.replace('depends_on = ["db"]', 'ports = ["http"]'),
     ["port 'http' is not"], "recipe.toml:10"),
    ("bad-volume", GOOD.replace('depends_on = ["db"]', 'volumes = ["data"]'),
     ["volume 'data' is not \"SOURCE:/path[:OPTIONS]\""], "recipe.toml:10"),
    ("relative-mount-point", GOOD.replace('depends_on = ["db"]', 'volumes = ["data:var/lib"]'),
     ["the mount point 'var/lib' in 'data:var/lib' must be an absolute path"], "recipe.toml:10"),
    ("missing-bind-folder", GOOD.replace('depends_on = ["db"]', 'volumes = ["./nope:/srv"]'),
     ["the host folder './nope' does not exist"], "recipe.toml:10"),
    ("dash-image", GOOD.replace('image = "localhost/db:1"', 'image = "--privileged"'),
     ["'--privileged' is not a target name or an image reference"], "recipe.toml:6"),
    ("dash-volume", GOOD.replace('depends_on = ["db"]', 'volumes = ["-v:/x"]'),
     ["'-v' is not a volume name or a host folder"], "recipe.toml:10"),
    ("dash-user", GOOD.replace('depends_on = ["db"]', 'user = "--privileged"'),
     ["'--privileged' is not a user name"], "recipe.toml:10"),
    ("bad-env-name", GOOD.replace('depends_on = ["db"]', 'env = { "A B" = "x" }'),
     ["environment variable name"], "recipe.toml:10"),
    ("unknown-key", GOOD.replace('depends_on = ["db"]', 'depend_on = ["db"]'),
     ["unknown key 'depend_on' in services.web", "did you mean 'depends_on'"], "recipe.toml:10"),
    ("wrong-type", GOOD.replace('depends_on = ["db"]', 'ports = 8080'),
     ["services.web.ports must be a list of strings"], "recipe.toml:10"),
    ("bad-service-name", GOOD.replace("[services.web]", "[services.Web_1]"),
     ["service name 'Web_1' may hold only lower-case letters"], "recipe.toml:8"),
    ("shell-one-word-healthcheck", GOOD.replace('depends_on = ["db"]', 'healthcheck = ["curl -f localhost || exit 1"]'),
     ["one-word healthcheck runs through the image's /bin/sh"], "recipe.toml:10"),
    ("host-target-image", GOOD.replace('image = "app"', 'image = "box"') + '\n[targets.box]\nbackend = "local"\nsteps = []\n',
     ["target 'box' provisions a host (local); it builds no image"], "recipe.toml:9"),
]


def _podman_objects(recipe: Path) -> list[str]:
    label = f"label=shlax.recipe={Project.of(recipe).recipe_id}"
    out = []
    for cmd in (["ps", "-a"], ["pod", "ps"], ["volume", "ls"], ["network", "ls"]):
        out += subprocess.run(["podman", *cmd, "--filter", label, "--format", "json"],
                              capture_output=True, text=True).stdout.strip() not in ("", "[]", "null") and [cmd[0]] or []
    return out


@pytest.mark.slow  # asks podman that nothing started
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_services_exit_2_with_file_line_and_start_nothing(tmp_path, case):
    _, text, parts, where = case
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(text.lstrip("\n"))
    proc = run_shlax("up", "recipe.toml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    message = proc.stderr
    assert message.startswith(f"shlax: error: {where}: "), message
    for part in parts:
        assert part in message, message
    assert proc.stdout == ""  # nothing was built nor started
    assert _podman_objects(recipe) == []


def test_unknown_service_on_the_command_line(tmp_path):
    (tmp_path / "shlax.toml").write_text(GOOD.lstrip("\n"))
    proc = run_shlax("up", "wbe", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown service 'wbe'" in proc.stderr and "did you mean 'web'" in proc.stderr


def test_unknown_top_level_key_without_an_owner_still_errors(tmp_path):
    (tmp_path / "recipe.toml").write_text('[servics.web]\nimage = "localhost/x:1"\n')
    proc = run_shlax("run", str(tmp_path / "recipe.toml"))
    assert proc.returncode == 2
    assert "recipe.toml:1: unknown top-level key 'servics'" in proc.stderr
    assert "did you mean 'services'" in proc.stderr


def test_services_section_names_its_plugin_when_that_is_not_installed(tmp_path):
    (tmp_path / "recipe.toml").write_text('[services.web]\nimage = "localhost/x:1"\n')
    proc = run_shlax("run", str(tmp_path / "recipe.toml"), env={"SHLAX_DISABLE_PLUGINS": "shlax-plugin-services"})
    assert proc.returncode == 2
    assert "unknown top-level key 'services'" in proc.stderr
    assert "pip install shlax-plugin-services" in proc.stderr


def test_a_recipe_with_services_still_builds_its_targets(tmp_path, busybox_image, nonce):
    (tmp_path / "recipe.toml").write_text(textwrap.dedent(f"""
        [targets.app]
        base = "{busybox_image}"
        image = "localhost/shlax-test-svc-{nonce}"
        steps = [ {{ run = ["true"] }} ]

        [services.app]
        image = "app"
    """))
    proc = run_shlax("run", str(tmp_path / "recipe.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_help_lists_the_verbs_and_imports_no_plugin():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "shlax_core", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    for verb in ("up", "down", "ps", "logs"):
        assert f"\n  {verb} " in proc.stdout
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert not [m for m in imported if m.startswith("shlax_services")]
    assert "shlax_core.recipe" not in imported  # not even the recipe loader


def test_plugins_lists_the_section_and_the_commands():
    proc = run_shlax("plugins", "--json")
    rows = [r for r in json.loads(proc.stdout) if r["distribution"] == "shlax-plugin-services"]
    assert {(r["kind"], r["name"]) for r in rows} == {
        ("section", "services"), ("command", "up"), ("command", "down"), ("command", "ps"), ("command", "logs")}
    assert all(r["error"] is None for r in rows)


def test_create_argv_keeps_recipe_values_in_one_element_each(tmp_path):
    """Values that look like options stay inside ``--option=value`` elements; the command comes
    after the image, where podman reads no option."""
    from shlax_core.recipe import parse
    from shlax_services.desired import container_spec
    from shlax_services.spec import load

    recipe = parse(textwrap.dedent("""
        [services.web]
        image = "localhost/web:1"
        command = ["--rm", "-v", "/:/host"]
        env = { A = "--privileged", B = "x y" }
        workdir = "/-x"
    """), tmp_path / "shlax.toml")
    services = load(recipe)
    spec = container_spec(Project.of(recipe.path), services.services["web"], "sha-id", {}, tmp_path)
    argv = spec.create_args()
    assert argv[-4:] == ["sha-id", "--rm", "-v", "/:/host"]
    options = argv[1:-4]
    assert "--env=A=--privileged" in options and "--env=B=x y" in options and "--workdir=/-x" in options
    assert all(o.startswith("--") and "=" in o for o in options)


def test_naming_a_service_brings_its_dependencies_and_pod_mates(tmp_path):
    from shlax_core.recipe import parse
    from shlax_services.spec import load

    recipe = parse(textwrap.dedent("""
        [services.db]
        image = "localhost/db:1"
        [services.api]
        image = "localhost/api:1"
        pod = "stack"
        depends_on = ["db"]
        [services.side]
        image = "localhost/side:1"
        pod = "stack"
        [services.other]
        image = "localhost/other:1"
    """), tmp_path / "shlax.toml")
    services = load(recipe)
    assert [s.name for s in services.select(["api"])] == ["db", "api", "side"]
    assert [s.name for s in services.select([])] == ["db", "api", "side", "other"]
