"""Plugins: installed distributions (non-editable), broken ones, name clashes, lazy imports, the factory."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pluggy
import pytest

from test_recipe_errors import shlax_cli
from shlax_core.actions import Action
from shlax_core.errors import PluginError
from shlax_core.hookspecs import hookimpl
from shlax_core.params import doc
from shlax_core.plugins import GROUPS, Plugins, get_plugin_manager

LOCAL_RUN = '[targets.t]\nbackend = "local"\nsteps = [\n  { run = ["touch", "ran"] },\n  STEP\n]\n'


def write(tmp_path: Path, step: str = "") -> Path:
    (tmp_path / "shlax.toml").write_text(LOCAL_RUN.replace("STEP", step))
    return tmp_path


# -- installed distributions ------------------------------------------------------------------

def test_plugins_lists_installed_distributions(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["plugins"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "shlax-plugin-hello 0.1.0" in out
    assert "Greet someone (a test plugin)." in out
    # the built-ins come through the same entry points
    assert "shlax 0.1.0" in out and "copy" in out and "local" in out


def test_plugins_json(test_plugins, tmp_path: Path) -> None:
    rows = json.loads(shlax_cli(["plugins", "--json"], tmp_path).stdout)
    hello = [r for r in rows if r["name"] == "hello" and r["kind"] == "action"]
    assert hello == [{"kind": "action", "name": "hello", "distribution": "shlax-plugin-hello",
                      "version": "0.1.0", "object": "shlax_test_hello:Hello", "error": None,
                      "summary": "Greet someone (a test plugin).", "hooks": []}]


def test_plugins_lists_every_kind_and_the_hooks_of_each(test_plugins, tmp_path: Path) -> None:
    rows = json.loads(shlax_cli(["plugins", "--json"], tmp_path).stdout)
    mine = {(r["kind"], r["name"]): r for r in rows if r["distribution"] == "shlax-plugin-hello"}
    assert set(mine) == {("action", "hello"), ("action", "greet"), ("command", "hello"), ("cache-command", "hello")}
    assert mine[("command", "hello")]["hooks"] == ["shlax_register_commands"]
    assert mine[("cache-command", "hello")]["summary"] == "Say hello from the cache group (a test plugin cache command)."
    registry = {(r["kind"], r["name"]): r for r in rows if r["distribution"] == "shlax-plugin-registry"}
    assert ("cache-command", "export") in registry and ("cache-command", "import") in registry
    assert registry[("hooks", "registry")]["hooks"]  # the hooks its module implements, by name
    text = shlax_cli(["plugins"], tmp_path).stdout
    assert "hooks: shlax_register_commands" in text
    broken = next(line for line in text.splitlines() if line.split()[:2] == ["cache-command", "broken"])
    assert "BROKEN: RuntimeError: shlax-plugin-broken is broken on purpose" in broken


def test_plugin_cache_command_loads_through_the_guarded_loader(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["cache", "hello"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from a plugin cache command\n"
    broken = shlax_cli(["cache", "broken"], tmp_path)
    assert broken.returncode == 2
    assert broken.stderr.startswith("shlax: error: plugin 'broken' (shlax-plugin-broken 0.1.0) failed to load: "
                                    "RuntimeError: shlax-plugin-broken is broken on purpose")
    assert "Traceback" not in broken.stderr


def test_disable_plugins_hides_every_kind(test_plugins, tmp_path: Path) -> None:
    env = {"SHLAX_DISABLE_PLUGINS": "shlax-plugin-hello,shlax-plugin-registry"}
    rows = json.loads(shlax_cli(["plugins", "--json"], tmp_path, **env).stdout)
    assert not [r for r in rows if r["distribution"] in ("shlax-plugin-hello", "shlax-plugin-registry")]
    assert "hello" not in shlax_cli(["--help"], tmp_path, **env).stdout
    cache_help = shlax_cli(["cache", "--help"], tmp_path, **env).stdout
    assert "export" not in cache_help and "hello" not in cache_help
    assert "export" in shlax_cli(["cache", "--help"], tmp_path).stdout
    for argv in (["hello"], ["cache", "hello"], ["cache", "export", "--to", "x.tar"]):
        proc = shlax_cli(argv, tmp_path, **env)
        assert proc.returncode == 2 and "No such command" in proc.stderr, (argv, proc.stderr)
    plugins = Plugins()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHLAX_DISABLE_PLUGINS", "shlax-plugin-registry,shlax-plugin-sbom")
        assert Plugins().load_hooks() == [] and not Plugins().names("hooks")
    assert "registry" in plugins.names("hooks")


def test_broken_plugin_is_listed_as_broken(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["plugins"], tmp_path)
    assert proc.returncode == 0
    line = next(x for x in proc.stdout.splitlines() if " broken " in x)
    assert "BROKEN: RuntimeError: shlax-plugin-broken is broken on purpose" in line
    assert "broken plugin entr" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_broken_plugin_does_not_break_a_run_that_does_not_use_it(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["run"], write(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ran").exists()
    assert "shlax-plugin-broken" not in proc.stdout + proc.stderr and "BROKEN" not in proc.stdout


def test_recipe_using_broken_plugin_gets_a_clear_error(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["run"], write(tmp_path, '{ broken = "x" },'))
    assert proc.returncode == 2
    assert proc.stderr.startswith("shlax: error: shlax.toml:5: plugin 'broken' (shlax-plugin-broken 0.1.0) "
                                  "failed to load: RuntimeError: shlax-plugin-broken is broken on purpose")
    assert "pip install -U shlax-plugin-broken" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ran").exists()


def test_two_distributions_claiming_one_name(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["run"], write(tmp_path, '{ greet = "x" },'))
    assert proc.returncode == 2
    assert "the action name 'greet' is claimed by two distributions" in proc.stderr
    assert "shlax-plugin-hello 0.1.0" in proc.stderr and "shlax-plugin-hello-clash 0.2.0" in proc.stderr
    listing = shlax_cli(["plugins"], tmp_path).stdout
    assert "name claimed by shlax-plugin-hello and shlax-plugin-hello-clash" in listing


def test_installed_action_runs(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["run"], write(tmp_path, '{ hello = "world", loud = true },'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| HELLO WORLD" in proc.stdout


def test_actions_command_shows_an_installed_action(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["actions", "hello"], tmp_path)
    assert proc.returncode == 0
    assert "hello (0.1.0)" in proc.stdout
    assert "who" in proc.stdout and "(the step's value)" in proc.stdout
    listing = shlax_cli(["actions"], tmp_path).stdout
    assert "BROKEN" in next(x for x in listing.splitlines() if x.startswith("broken"))


def test_disable_plugins_env(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["plugins"], tmp_path, SHLAX_DISABLE_PLUGINS="shlax-plugin-broken, greet")
    assert "shlax-plugin-broken" not in proc.stdout
    assert "greet" not in proc.stdout
    assert proc.stderr == ""
    run = shlax_cli(["run"], write(tmp_path, '{ hello = "x" },'), SHLAX_DISABLE_PLUGINS="shlax-plugin-hello")
    assert run.returncode == 2 and "unknown action 'hello'" in run.stderr


# -- lazy loading -------------------------------------------------------------------------------

LOADED = """
import sys
from shlax_core.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("MODULES", " ".join(sorted(sys.modules)))
"""


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["cache", "--help"], ["--version"]])
def test_help_imports_no_plugin(test_plugins, tmp_path: Path, argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", LOADED.format(argv=argv)], capture_output=True, text=True,
                          cwd=tmp_path)
    modules = proc.stdout.split("MODULES", 1)[1].split()
    plugin_modules = [m for m in modules if m.startswith("shlax_") and not m.startswith("shlax_core")]
    assert plugin_modules == []
    assert not [m for m in modules if m.startswith(("shlax_core.builtin", "stevedore", "rich", "jinja2"))]
    if argv == ["--help"]:
        assert "hello" in proc.stdout  # the plugin command is listed, from its entry-point name
        assert "--cache-to" not in proc.stdout


@pytest.mark.parametrize("argv", [["run", "--help"], ["plan", "--help"]])
def test_run_help_imports_only_hook_plugins(test_plugins, tmp_path: Path, argv: list[str]) -> None:
    """``run``/``plan --help`` list the options plugins add (docs/plugins.md, "Plugin options"):
    the hook plugins are loaded for that, as for every run; no action, backend or cache is."""
    from shlax_core.plugins import Plugins

    proc = subprocess.run([sys.executable, "-c", LOADED.format(argv=argv)], capture_output=True, text=True,
                          cwd=tmp_path)
    text, modules = proc.stdout.split("MODULES", 1)
    hooks = {ep.value.split(":")[0].split(".")[0] for eps in Plugins().eps("hooks").values() for ep in eps}
    plugin_modules = {m.split(".")[0] for m in modules.split() if m.startswith("shlax_") and not m.startswith("shlax_core")}
    assert plugin_modules <= hooks
    assert not [m for m in modules.split() if m.startswith(("shlax_core.builtin", "rich", "jinja2"))]
    assert "--cache-to REGISTRY/REPO" in text and "--no-tls-verify" in text  # shlax-plugin-registry's


def test_run_imports_only_what_the_recipe_names(test_plugins, tmp_path: Path) -> None:
    write(tmp_path)
    proc = subprocess.run([sys.executable, "-c", LOADED.format(argv=["run"])], capture_output=True,
                          text=True, cwd=tmp_path)
    modules = proc.stdout.split("MODULES", 1)[1].split()
    assert "shlax_core.builtin.run" in modules and "shlax_core.builtin.local" in modules
    assert "shlax_core.builtin.copy" not in modules
    assert not [m for m in modules if m.startswith(("shlax_test_", "shlax_buildah", "shlax_apt", "jinja2"))]


def test_plugin_command(test_plugins, tmp_path: Path) -> None:
    proc = shlax_cli(["hello", "bob"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello bob from a plugin command\n"


# -- in memory: the factory, extra plugins, hook validation ---------------------------------------

@dataclass
class EchoParams:
    text: str = doc("what to echo")


class Echo(Action):
    """Echo (an in-memory test action)."""

    Params = EchoParams
    primary = "text"

    def apply(self, ctx):
        ctx.run(["echo", self.params.text])
        return True


def test_factory_gives_a_clean_manager() -> None:
    class Plugin:
        @hookimpl
        def shlax_step_env(self, ctx):
            return {"A": "1"}

    one = get_plugin_manager(register=[Plugin()])
    two = get_plugin_manager()
    assert len(one.get_plugins()) == 1
    assert two.get_plugins() == set()


def test_misspelled_hook_is_an_error() -> None:
    class Typo:
        @hookimpl
        def shlax_step_strat(self, target, step, host):
            pass

    with pytest.raises(pluggy.PluginValidationError, match="shlax_step_strat"):
        get_plugin_manager(register=[Typo()])


def test_extra_plugins_win_over_installed_ones() -> None:
    plugins = Plugins(extra={"action": {"run": Echo}})
    assert plugins.load("action", "run") is Echo
    assert Echo.name == "run" and Echo.version == "0"


def test_testing_manager_loads_no_installed_hook_plugin(shlax_recipe) -> None:
    """A plugin author's unit tests run none of somebody else's hooks: the registry plugin (an
    installed hook-only plugin) is registered on a run's manager, never on a test project's."""
    assert "registry" in Plugins().names("hooks")
    everyday = Plugins()
    assert everyday.load_hooks() == [] and everyday.pm.has_plugin("hooks:registry")
    project = shlax_recipe('[targets.t]\nbackend = "fake"\nsteps = [ { echo = "hi" } ]\n', actions={"echo": Echo})
    clean = project.plugins()
    assert clean.load_hooks() == []
    assert clean.pm.get_plugins() == set() and not clean.pm.has_plugin("hooks:registry")
    assert project.run().code == 0


def test_in_memory_action_runs(shlax_recipe) -> None:
    project = shlax_recipe('[targets.t]\nbackend = "fake"\nsteps = [ { echo = "hi" } ]\n', actions={"echo": Echo})
    result = project.run()
    assert result.code == 0 and result.commands == [["echo", "hi"]]


def test_unknown_kind_of_plugin_names_every_group() -> None:
    assert set(GROUPS) == {"action", "backend", "cache", "command", "cache-command", "hooks", "section"}
    with pytest.raises(PluginError, match="unknown cache 'nope'"):
        Plugins().load("cache", "nope")
