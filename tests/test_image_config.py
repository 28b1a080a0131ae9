"""Image configuration beyond cmd/env: healthcheck (Docker format), stop signal, volumes; onbuild refused.

Real busybox builds, read back with `buildah inspect` and `podman inspect` (what a container
started from the image gets).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import buildah, events, statuses, working_containers

RECIPE = """
[targets.h{nonce}]
base = "{base}"
image = "localhost/shlax-test-health-{nonce}"
steps = [
  {{ run = ["sh", "-c", "echo {nonce} > /nonce"] }},
{more}]

[targets.h{nonce}.config]
cmd = ["cat", "/nonce"]
{config}
"""

# an argv whose elements hold spaces, quotes, $ and a backslash: each must reach the image as written
ARGV = ["CMD", "sh", "-c", "test -f '/tmp/a b' && echo \"ok $HOME\" \\ || exit 1", ""]
HEALTHY = f"""healthcheck = {{ test = {json.dumps(ARGV)}, interval = "5s", timeout = "2s", start_period = "1m30s", retries = 5 }}
stop_signal = "SIGQUIT"
volumes = ["/data", "/var/log/app"]"""


def docker_config(image: str) -> dict:
    return json.loads(buildah("inspect", "--type", "image", image).stdout)["Docker"]["config"]


def podman(image: str, fmt: str) -> str:
    return subprocess.run(["podman", "image", "inspect", "--format", fmt, image], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.buildah
def test_healthcheck_stop_signal_and_volumes_reach_the_image_and_go_again(tmp_path, shlax, busybox_image, nonce):
    recipe = tmp_path / "shlax.toml"
    image = f"localhost/shlax-test-health-{nonce}:latest"
    recipe.write_text(RECIPE.format(nonce=nonce, base=busybox_image, more="", config=HEALTHY))
    try:
        first = shlax("run", str(recipe), "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        config = docker_config(image)
        assert config["Healthcheck"] == {"Test": ARGV, "Interval": 5 * 10**9, "Timeout": 2 * 10**9,
                                         "StartPeriod": 90 * 10**9, "Retries": 5}
        assert config["StopSignal"] == "SIGQUIT" and set(config["Volumes"]) == {"/data", "/var/log/app"}
        # what podman gives a container of it: the Docker format, so the healthcheck is there
        assert json.loads(podman(image, "{{json .HealthCheck.Test}}")) == ARGV
        assert podman(image, "{{.ManifestType}}") == "application/vnd.docker.distribution.manifest.v2+json"

        # a shell-form check, as a string: only the config changes, no step runs
        shell = HEALTHY.replace(f"test = {json.dumps(ARGV)}", 'test = "curl -f http://localhost/ || exit 1"')
        recipe.write_text(RECIPE.format(nonce=nonce, base=busybox_image, more="", config=shell))
        again = shlax("run", str(recipe), "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        assert statuses(again.stdout) == ["cached"]
        assert not [e for e in events(again.stdout) if e["event"] == "step_start"]
        assert docker_config(image)["Healthcheck"]["Test"] == ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]

        # all three gone, and a step added after the configured layer: nothing of them is left,
        # neither in the final image nor in the new step's layer, and the image is OCI again
        more = '  { run = ["sh", "-c", "echo two > /two"] },\n'
        recipe.write_text(RECIPE.format(nonce=nonce, base=busybox_image, more=more, config=""))
        added = shlax("run", str(recipe), "--json")
        assert added.returncode == 0, added.stdout + added.stderr
        assert statuses(added.stdout) == ["cached", "done"]
        config = docker_config(image)
        assert not config.get("Healthcheck") and not config.get("StopSignal") and not config.get("Volumes")
        assert podman(image, "{{.ManifestType}}") == "application/vnd.oci.image.manifest.v1+json"
        assert working_containers(f"h{nonce}") == []
    finally:
        buildah("rmi", image, check=False)


@pytest.mark.buildah
def test_oci_format_drops_the_healthcheck_with_a_warning(tmp_path, shlax, busybox_image, nonce):
    recipe = tmp_path / "shlax.toml"
    image = f"localhost/shlax-test-health-{nonce}:latest"
    recipe.write_text(RECIPE.format(nonce=nonce, base=busybox_image, more="",
                                    config='healthcheck = { test = ["CMD", "true"] }\nformat = "oci"'))
    try:
        proc = shlax("run", str(recipe), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        warnings = [e["message"] for e in events(proc.stdout) if e["event"] == "warning"]
        assert any("HEALTHCHECK is not supported for OCI image format" in w for w in warnings), warnings
        assert not docker_config(image).get("Healthcheck")
        assert podman(image, "{{.ManifestType}}") == "application/vnd.oci.image.manifest.v1+json"
    finally:
        buildah("rmi", image, check=False)


@pytest.mark.parametrize("config, fragment, line", [
    ('onbuild = ["RUN make"]', "ONBUILD is not supported", 11),
    ('stop_signal = "SIGFOO"', "'SIGFOO' is not a signal", 11),
    ('volumes = ["data"]', "volume 'data' must be an absolute path", 11),
    ('healthcheck = { test = ["curl", "-f", "http://x/"] }', 'must start with "CMD"', 11),
    ('healthcheck = { test = ["CMD-SHELL", "a", "b"] }', "takes one command line", 11),
    ('healthcheck = { test = "true", interval = "30" }', "'30' is not a duration", 11),
    ('healthcheck = { test = "true", retries = -1 }', "must be 0 or more", 11),
    ('format = "v2s2"', "must be 'oci' or 'docker'", 11),
])
def test_bad_config_is_a_recipe_error_before_anything_runs(tmp_path, shlax, config, fragment, line):
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(RECIPE.format(nonce="x", base="scratch", more="", config=config))
    proc = shlax("run", str(recipe))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert fragment in proc.stderr and f"shlax.toml:{line}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_keys_added_later_keep_the_final_image_key_at_their_defaults():
    """A recipe written before healthcheck/stop_signal/volumes/format keeps its final image."""
    from shlax_core.imageconfig import ImageConfig
    from shlax_core.params import build, canonical

    config = build(ImageConfig, {"cmd": ["x"]}, path="c")
    assert set(config.key_data(canonical(config))) == {"cmd", "entrypoint", "env", "workdir", "user", "labels",
                                                       "ports"}
    config = build(ImageConfig, {"cmd": ["x"], "stop_signal": "9"}, path="c")
    assert config.key_data(canonical(config))["stop_signal"] == "9"


@pytest.mark.buildah
def test_a_docker_format_base_healthcheck_is_kept_in_the_docker_format_only(tmp_path, shlax, busybox_image, nonce):
    """Step layers are OCI and drop the base's check: the final commit sets it again."""
    base, image = f"localhost/shlax-test-hbase-{nonce}:latest", f"localhost/shlax-test-health-{nonce}:latest"
    (tmp_path / "base.toml").write_text(textwrap.dedent(f"""
        [targets.b]
        base = "{busybox_image}"
        image = "{base}"
        steps = [ {{ run = ["true", "{nonce}"] }} ]
        config = {{ healthcheck = {{ test = ["CMD", "true", "base"] }} }}
    """))
    try:
        assert shlax("run", str(tmp_path / "base.toml")).returncode == 0
        for fmt, expected in (('format = "docker"', ["CMD", "true", "base"]), ("", None)):
            (tmp_path / "shlax.toml").write_text(RECIPE.format(
                nonce=nonce, base=base, more='  { run = ["sh", "-c", "echo two > /two"] },\n', config=fmt))
            proc = shlax("run", str(tmp_path / "shlax.toml"))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert (docker_config(image).get("Healthcheck") or {}).get("Test") == expected, fmt
    finally:
        buildah("rmi", image, check=False)
        buildah("rmi", base, check=False)
