"""Every hook in shlax_core/hookspecs.py: a ``test_hook_<name>`` here and a heading in docs/plugins.md.

The meta-tests at the bottom (datasette's habit) fail when a hook is added without both.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest
from dataclasses import dataclass

from test_recipe_errors import shlax_cli
from shlax_core import hookspecs
from shlax_core.backends import Login, Mount, Transfer
from shlax_core.hookspecs import hookimpl
from shlax_core.options import PluginOptions, RunOptions
from shlax_core.params import doc

DOCS = Path(__file__).parent.parent / "docs" / "plugins.md"

HOST = '''
[targets.t]
backend = "fake"
steps = [
  { run = ["true"] },
  { run = ["false"] },
]
'''


class Recorder:
    """An in-memory plugin: records the step events it sees."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def shlax_step_start(self, target, step, host):
        self.seen.append(("start", target.name, step.path, host))

    @hookimpl
    def shlax_step_finish(self, target, step, host, status, elapsed):
        assert elapsed >= 0
        self.seen.append(("finish", target.name, step.path, host, status))


def test_hook_shlax_step_start(shlax_recipe) -> None:
    plugin = Recorder()
    project = shlax_recipe(HOST, hooks=[plugin])
    project.run()
    starts = [s for s in plugin.seen if s[0] == "start"]
    assert starts == [("start", "t", "targets.t.steps[0]", "t"), ("start", "t", "targets.t.steps[1]", "t")]


def test_hook_shlax_step_finish(shlax_recipe) -> None:
    plugin = Recorder()
    project = shlax_recipe(HOST, hooks=[plugin])
    project.reply(["false"], returncode=1, output="nope")
    result = project.run()
    assert result.code == 1
    assert plugin.seen == [
        ("start", "t", "targets.t.steps[0]", "t"), ("finish", "t", "targets.t.steps[0]", "t", "changed"),
        ("start", "t", "targets.t.steps[1]", "t"), ("finish", "t", "targets.t.steps[1]", "t", "failed"),
    ]


def test_hook_shlax_step_finish_on_image_steps(shlax_recipe) -> None:
    plugin = Recorder()
    project = shlax_recipe('[targets.i]\nbackend = "fake-image"\nsteps = [ { run = ["true"] } ]\n', hooks=[plugin])
    project.run()
    assert plugin.seen[-1] == ("finish", "i", "targets.i.steps[0]", "i", "done")


def test_hook_shlax_step_finish_reports_cached_steps(shlax_recipe) -> None:
    plugin = Recorder()
    project = shlax_recipe('[targets.i]\nbackend = "fake-image"\nsteps = [ { run = ["true"] } ]\n', hooks=[plugin])
    project.run()
    plugin.seen.clear()
    project.run()
    assert ("finish", "i", "targets.i.steps[0]", "i", "cached") in plugin.seen


def test_hook_shlax_step_mounts(shlax_recipe, tmp_path: Path) -> None:
    class Lend:
        @hookimpl
        def shlax_step_mounts(self, ctx):
            if ctx.step.path.endswith("[1]"):
                return [Mount(str(tmp_path), "/mnt/lent", readonly=True)]
            return None

    class Other:
        @hookimpl
        def shlax_step_mounts(self, ctx):
            return [Mount("/srv", "/srv")]

    project = shlax_recipe(IMAGE, hooks=[Lend(), Other()])
    result = project.run()
    assert result.mounts[0] == [Mount("/srv", "/srv")]
    assert sorted(result.mounts[1], key=lambda m: m.target) == [
        Mount(str(tmp_path), "/mnt/lent", readonly=True), Mount("/srv", "/srv")]
    # a host backend cannot lend folders: it refuses loudly instead of running without them
    host = shlax_recipe(HOST, hooks=[Other()]).run()
    assert host.code == 2 and host.statuses == ["failed"] and host.commands == []  # a user error mid-run
    assert "cannot lend host folders" in host.steps[0]["error"]["message"]


def test_hook_shlax_step_env(shlax_recipe) -> None:
    class First:
        @hookimpl
        def shlax_step_env(self, ctx):
            return {"HTTPS_PROXY": "http://proxy:3128", "WHO": "first", "MINE": "plugin"}

    class Second:
        @hookimpl
        def shlax_step_env(self, ctx):
            return {"WHO": "second"}

    project = shlax_recipe('[targets.t]\nbackend = "fake"\nsteps = [ { run = ["env"], env = { MINE = "1" } } ]\n',
                           hooks=[First(), Second()])
    result = project.run()
    (call,) = [c for c in result.calls if c["call"] == "run"]
    assert call["env"]["HTTPS_PROXY"] == "http://proxy:3128"
    assert call["env"]["MINE"] == "1"       # the step's own env wins over plugins
    assert call["env"]["WHO"] == "first"    # the plugin registered first wins (pluggy calls it last)


def test_hook_shlax_base_image(shlax_recipe) -> None:
    class Nope:
        @hookimpl
        def shlax_base_image(self, spec, backend):
            return None

    class Tarball:
        @hookimpl
        def shlax_base_image(self, spec, backend):
            assert backend.kind == "image"
            return "sha256:from-tarball" if spec.startswith("tarball:") else None

    text = '[targets.i]\nbackend = "fake-image"\nbase = "tarball:rootfs.tar"\nsteps = [ { run = ["true"] } ]\n'
    project = shlax_recipe(text, hooks=[Nope(), Tarball()])
    result = project.run()
    (base,) = [c for c in result.calls if c["call"] == "base"]
    assert base["ref"] == "sha256:from-tarball"
    # a different base is a different parent: the step runs again
    project.write("shlax.toml", text.replace("tarball:", "registry.example/"))
    assert project.plan().statuses == ["run"]


def test_hook_shlax_register_commands(test_plugins, tmp_path: Path) -> None:
    """Through the real CLI: the command comes from the installed test distribution."""
    listing = shlax_cli(["--help"], tmp_path)
    assert re.search(r"^\s+hello\s", listing.stdout, re.M)
    proc = shlax_cli(["hello", "you"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello you from a plugin command\n"
    assert "Say hello" in shlax_cli(["hello", "--help"], tmp_path).stdout


IMAGE = '[targets.i]\nbackend = "fake-image"\nimage = "localhost/i"\nsteps = [ { run = ["a"] }, { run = ["b"] } ]\n'


class Layers:
    """An in-memory plugin watching the layer-cache hooks."""

    def __init__(self, provide=None):
        self.provide = provide
        self.committed, self.built, self.missing = [], [], []

    @hookimpl
    def shlax_layers_missing(self, backend, keys):
        self.missing.append(list(keys))
        return self.provide(keys) if self.provide else None

    @hookimpl
    def shlax_layer_committed(self, backend, key, image):
        self.committed.append((key, image))

    @hookimpl
    def shlax_image_built(self, backend, image, keys):
        self.built.append((image, list(keys)))


def test_hook_shlax_layer_committed(shlax_recipe) -> None:
    plugin = Layers()
    result = shlax_recipe(IMAGE, hooks=[plugin]).run()
    commits = [(c["key"], c["image"]) for c in result.calls if c["call"] in ("commit", "finish")]
    # step 1; then, with no image config, one commit is both step 2's layer and the image
    assert len(commits) == 2 and len(plugin.committed) == 3
    assert plugin.committed[0] == commits[0]
    assert plugin.committed[2] == commits[1]
    assert plugin.committed[1][1] == commits[1][1] and plugin.committed[1][0] != commits[1][0]


def test_hook_shlax_image_built(shlax_recipe) -> None:
    plugin = Layers()
    project = shlax_recipe(IMAGE, hooks=[plugin])
    project.run()
    project.run()     # found whole in the cache: still "built"
    assert len(plugin.built) == 2
    image, keys = plugin.built[0]
    assert plugin.built[1] == plugin.built[0] and len(keys) == 3 and image.startswith("img-")
    project.plan()
    assert len(plugin.built) == 2   # plan builds nothing


def test_hook_shlax_layers_missing(shlax_recipe) -> None:
    remote: dict[str, str] = {}
    plugin = Layers(provide=lambda keys: {k: remote[k] for k in keys if k in remote} or None)
    project = shlax_recipe(IMAGE, hooks=[plugin])
    project.run()
    assert len(plugin.missing) == 1 and len(plugin.missing[0]) == 3   # two steps + the final image
    # another machine: an empty local store, but a plugin can fetch the first layer
    remote.update({k: f"fetched-{i}" for i, k in enumerate(plugin.missing[0][:1])})
    project.recorder.layers.clear()
    result = project.run()
    assert result.statuses == ["cached", "done"]
    (start,) = [c for c in result.calls if c["call"] == "start"]
    assert start["image"] == "fetched-0"
    project.plan()
    assert len(plugin.missing) == 2   # never called by plan


@dataclass
class LoudParams:
    loud: bool = doc("shout", False)
    volume: int = doc("how loud", 1)

    def validate(self):
        return ("volume", "must be 1 to 11") if not 1 <= self.volume <= 11 else None


@dataclass(frozen=True)
class LoudValues:
    shout: bool = False


class Loud:
    """A plugin owning ``--shout`` and the image targets' ``loud``/``volume`` keys."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def shlax_plugin_options(self):
        return PluginOptions(owner="loud", Values=LoudValues, Params=LoudParams, phase="shouting",
                             cli=[click.Option(["--shout"], is_flag=True, help="Shout.")])

    @hookimpl
    def shlax_image_built(self, backend, image, keys):
        self.seen.append((backend.session.options.of("loud"), backend.target.parts["loud"]))


def test_hook_shlax_plugin_options(shlax_recipe) -> None:
    plugin = Loud()
    project = shlax_recipe(IMAGE + "loud = true\nvolume = 3\n", hooks=[plugin])
    result = project.run(options=RunOptions(plugins={"loud": LoudValues(shout=True)}, given=frozenset({"loud"}),
                                            phases={"loud": "shouting"}))
    assert result.code == 0
    assert plugin.seen == [(LoudValues(shout=True), LoudParams(loud=True, volume=3))]
    # the plugin's keys are validated like the backend's: file:line, the key, what is wrong
    bad = shlax_recipe(IMAGE + "loud = true\nvolume = 12\n", hooks=[Loud()]).run()
    assert bad.code == 2 and "targets.i.volume: must be 1 to 11" in str(bad.error)
    assert bad.error.where.endswith("shlax.toml:6")
    typo = shlax_recipe(IMAGE + 'loud = "yes"\n', hooks=[Loud()]).run()
    assert typo.code == 2 and "targets.i.loud must be" in str(typo.error) and typo.error.where.endswith(":5")
    # a host target does not take them (the plugin declared image targets only)
    host = shlax_recipe(HOST + "loud = true\n", hooks=[Loud()]).run()
    assert host.code == 2 and "unknown option 'loud'" in str(host.error)
    assert host.error.hint == "'loud' belongs to loud (image targets)"
    # and a misspelt key is pointed at the plugin's
    near = shlax_recipe(IMAGE + "volumes = 3\n", hooks=[Loud()]).run()
    assert near.code == 2 and near.error.hint == "did you mean 'volume'?"
    # and `run`/`plan` take its option, parsed into its own type
    from shlax_core.cli import PluginOptionsCommand, run

    ctx = click.Context(run, obj=None)
    ctx.meta["shlax.plugins"] = project.plugins()
    assert "shout" in [p.name for p in PluginOptionsCommand.get_params(run, ctx)]


def test_hook_shlax_transfer(shlax_recipe) -> None:
    class Insecure:
        @hookimpl(tryfirst=True)  # before an installed registry plugin's
        def shlax_transfer(self, backend):
            return Transfer(tls_verify=False, credentials=Login("u", "p"))

    (base,) = [c for c in shlax_recipe(IMAGE, hooks=[Insecure()]).run().calls if c["call"] == "base"]
    assert base["transfer"] == Transfer(tls_verify=False, credentials=Login("u", "p"))
    (base,) = [c for c in shlax_recipe(IMAGE).run().calls if c["call"] == "base"]
    # no answer (the backend's tools decide), or the installed registry plugin's defaults
    assert base["transfer"] in (None, Transfer())


def test_trace_hooks(tmp_path: Path) -> None:
    (tmp_path / "shlax.toml").write_text('[targets.t]\nbackend = "local"\nsteps = [ { run = ["true"] } ]\n')
    proc = shlax_cli(["run"], tmp_path, SHLAX_TRACE_HOOKS="1")
    assert proc.returncode == 0
    assert "[hook]" in proc.stderr and "shlax_step_start" in proc.stderr


# -- meta-tests -------------------------------------------------------------------------------------

def hook_names() -> list[str]:
    return sorted(name for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
                  if name.startswith("shlax_") and hasattr(f, "shlax_spec"))


def test_hooks_are_found() -> None:
    assert "shlax_step_start" in hook_names() and len(hook_names()) >= 6


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_test(hook: str) -> None:
    assert f"test_hook_{hook}" in globals(), f"write test_hook_{hook} in tests/test_hooks.py"


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_heading_in_the_docs(hook: str) -> None:
    headings = re.findall(r"^#+ +`?(\w+)", DOCS.read_text(), re.M)
    assert hook in headings, f"add a heading for {hook} to docs/plugins.md"


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_docstring(hook: str) -> None:
    assert (getattr(hookspecs, hook).__doc__ or "").strip()
