"""Beyond one machine: push, the layer cache through a real registry, registry failures.

A "second machine" is an empty buildah store (``root``/``runroot`` target options). Recipes use
a base pulled from the registry, so every store sees the same base image ID, as real machines
pulling one upstream image do.
"""

from __future__ import annotations

import subprocess
import sys
import os
from pathlib import Path

from conftest import ROOT, events, statuses, working_containers
from fixtures_hosts import free_port

RECIPE = """
[targets.app]
base = "{base}"
image = "{image}"
{extra}
steps = [
  {{ run = ["sh", "-c", "echo {nonce} > /one"] }},
  {{ run = ["sh", "-c", "echo two > /two"] }},
  {{ run = ["sh", "-c", "{last}"] }},
]
"""


def recipe(tmp_path: Path, base: str, nonce: str, *, name: str = "shlax.toml", extra: str = "",
           last: str = "cat /one /two > /three", image: str = "") -> Path:
    path = tmp_path / name
    path.write_text(RECIPE.format(base=base, nonce=nonce, extra=extra, last=last,
                                  image=image or f"localhost/shlax-test-reg-{nonce}"))
    return path


def warnings(stdout: str) -> list[str]:
    return [e["message"] for e in events(stdout) if e["event"] == "warning"]


def test_cache_to_then_cache_from_on_an_empty_store(tmp_path, shlax, registry, registry_busybox, nonce,
                                                    empty_store):
    cache = f"{registry.host}/shlax-test/cache-{nonce}"
    first = shlax("run", str(recipe(tmp_path, registry_busybox, nonce)), "--json", "--cache-to", cache,
                  "--no-tls-verify")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(first.stdout) == ["done", "done", "done"], first.stdout
    # three step layers + the final image (the configuration commit on the last step), tagged by key
    tags = registry.tags(f"shlax-test/cache-{nonce}")
    assert len(tags) == 4 and all(len(t) == 64 for t in tags)

    # a second machine: empty store, same recipe -> every step comes from the registry
    empty_store.pull(registry_busybox)
    second = recipe(tmp_path, registry_busybox, nonce, name="second.toml", extra=empty_store.toml())
    proc = shlax("run", str(second), "--json", "--cache-from", cache, "--no-tls-verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "cached", "cached"], proc.stdout
    assert not warnings(proc.stdout)
    ctr = empty_store.buildah("from", "--pull=never", f"localhost/shlax-test-reg-{nonce}:latest").stdout.strip()
    try:
        mnt = empty_store.buildah("mount", ctr).stdout.strip()
        assert Path(mnt, "three").read_text() == f"{nonce}\ntwo\n"
    finally:
        empty_store.buildah("rm", ctr)

    # change the last step: only it runs, on top of the pulled second layer
    changed = recipe(tmp_path, registry_busybox, nonce, name="second.toml", extra=empty_store.toml(),
                     last="cat /two /one > /three")
    proc = shlax("run", str(changed), "--json", "--cache-from", cache, "--no-tls-verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "cached", "done"], proc.stdout


def test_only_the_last_cached_layer_is_pulled(tmp_path, shlax, registry, registry_busybox, nonce, empty_store):
    cache = f"{registry.host}/shlax-test/cache-{nonce}"
    assert shlax("run", str(recipe(tmp_path, registry_busybox, nonce)), "--cache-to", cache,
                 "--no-tls-verify").returncode == 0
    empty_store.pull(registry_busybox)
    before = {i["id"] for i in empty_store.images()}
    changed = recipe(tmp_path, registry_busybox, nonce, name="second.toml", extra=empty_store.toml(),
                     last="echo changed > /three")
    proc = shlax("run", str(changed), "--json", "--cache-from", cache, "--no-tls-verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "cached", "done"], proc.stdout
    local = {n.split(":", 1)[1] for i in empty_store.images() if i["id"] not in before
             for n in i.get("names") or [] if n.startswith("localhost/shlax-cache:")}
    remote = registry.tags(f"shlax-test/cache-{nonce}")
    # of the registry's layers (step 1, step 2, old step 3, old final image) only step 2 came
    # down: it contains step 1; the other local names are the new step 3 and final image, built here
    assert len(local & remote) == 1 and len(local) == 3
    infos = [e["message"] for e in events(proc.stdout) if e["event"] == "info"]
    assert any("pulling layer" in m for m in infos)


def test_cache_options_per_target(tmp_path, shlax, registry, registry_busybox, nonce, empty_store):
    cache = f"{registry.host}/shlax-test/cache-{nonce}"
    extra = f'cache_to = "{cache}"\ntls_verify = false\n'
    proc = shlax("run", str(recipe(tmp_path, registry_busybox, nonce, extra=extra)), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(registry.tags(f"shlax-test/cache-{nonce}")) == 4
    empty_store.pull(registry_busybox)
    extra = empty_store.toml() + f'cache_from = "{cache}"\ntls_verify = false\n'
    proc = shlax("run", str(recipe(tmp_path, registry_busybox, nonce, name="b.toml", extra=extra)), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "cached", "cached"], proc.stdout


def test_registry_down_is_a_warning_and_a_local_build(tmp_path, shlax, busybox_image, nonce):
    down = f"127.0.0.1:{free_port()}/shlax-test/cache"  # nothing listens there
    proc = shlax("run", str(recipe(tmp_path, busybox_image, nonce)), "--json", "--cache-from", down,
                 "--cache-to", down, "--no-tls-verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["done", "done", "done"], proc.stdout
    found = warnings(proc.stdout)
    assert any("cache-from" in w and "cannot reach" in w and "building locally" in w for w in found), found
    assert len(found) == 1, found  # a down registry is said once per run, not once per layer
    assert not [c for c in working_containers() if c.startswith("shlax-app-")]


def test_cache_from_an_unknown_repository_builds_locally(tmp_path, shlax, registry, busybox_image, nonce):
    proc = shlax("run", str(recipe(tmp_path, busybox_image, nonce)), "--json",
                 "--cache-from", f"{registry.host}/shlax-test/never-{nonce}", "--no-tls-verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["done", "done", "done"], proc.stdout


def test_tls_verification_is_on_by_default(tmp_path, shlax, registry, busybox_image, nonce):
    """The loopback registry speaks plain HTTP: without --no-tls-verify the cache is skipped with a
    warning that says what to do."""
    proc = shlax("run", str(recipe(tmp_path, busybox_image, nonce)), "--json",
                 "--cache-from", f"{registry.host}/shlax-test/cache-{nonce}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any("--no-tls-verify" in w for w in warnings(proc.stdout)), warnings(proc.stdout)


def test_bad_cache_reference_is_a_user_error(tmp_path, shlax, busybox_image, nonce):
    proc = shlax("run", str(recipe(tmp_path, busybox_image, nonce)), "--cache-from", "just-a-name")
    assert proc.returncode == 2
    assert "does not name a registry host" in proc.stderr and "Traceback" not in proc.stderr


def test_push_then_pull_into_a_fresh_store_and_run(tmp_path, shlax, registry, registry_busybox, nonce,
                                                  empty_store):
    image = f"{registry.host}/shlax-test/app-{nonce}"
    path = recipe(tmp_path, registry_busybox, nonce, image=image, extra='tags = ["v1"]\n')
    proc = shlax("run", str(path), "--json", "--push", "--no-tls-verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tags = registry.tags(f"shlax-test/app-{nonce}")
    assert {t for t in tags if not t.startswith("sha256-")} == {"latest", "v1"}
    # and one more: the image's SBOM referrers, by the fallback tag schema (docs/sbom.md)
    assert len(tags) == 3
    infos = [e["message"] for e in events(proc.stdout) if e["event"] == "info"]
    assert any(m.startswith(f"pushed {image}:latest@sha256:") for m in infos), infos

    empty_store.pull(f"{image}:v1")
    out = empty_store.buildah("run", "--isolation", "chroot", empty_store.buildah(
        "from", "--pull=never", f"{image}:v1").stdout.strip(), "--", "cat", "/three").stdout
    assert out == f"{nonce}\ntwo\n"
    empty_store.buildah("rm", "--all")


def test_push_with_tls_verification_fails_clearly(tmp_path, shlax, registry, busybox_image, nonce):
    image = f"{registry.host}/shlax-test/app-{nonce}"
    proc = shlax("run", str(recipe(tmp_path, busybox_image, nonce, image=image)), "--push")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--no-tls-verify" in proc.stdout + proc.stderr
    assert not registry.tags(f"shlax-test/app-{nonce}")


def test_push_of_a_local_name_is_a_user_error(tmp_path, shlax, busybox_image, nonce):
    proc = shlax("run", str(recipe(tmp_path, busybox_image, nonce)), "--push")
    assert proc.returncode == 2
    assert "names no registry" in proc.stderr


def test_credentials_from_the_environment_are_never_printed(tmp_path, shlax, registry, busybox_image, nonce):
    """The registry takes anonymous pushes; the secret must still not show up anywhere."""
    image = f"{registry.host}/shlax-test/app-{nonce}"
    secret = f"s3cr3t-{nonce}"
    proc = shlax("run", str(recipe(tmp_path, busybox_image, nonce, image=image)), "--push", "--no-tls-verify",
                 "--cache-to", f"{registry.host}/shlax-test/cache-{nonce}",
                 env={"SHLAX_REGISTRY_USER": "ci", "SHLAX_REGISTRY_PASSWORD": secret})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert {t for t in registry.tags(f"shlax-test/app-{nonce}") if not t.startswith("sha256-")} == {"latest"}
    leftovers = [p for p in Path("/tmp").glob("shlax-auth-*")]
    assert not leftovers


def test_two_machines_push_the_same_cache_tags_at_once(tmp_path, registry, registry_busybox, nonce, make_store):
    """Both stores build the same recipe (same keys, different layer bytes) and push at the same
    time; a third store then pulls every tag, and each image is complete and right."""
    cache = f"{registry.host}/shlax-test/race-{nonce}"
    stores = [make_store() for _ in range(3)]
    for s in stores:
        s.pull(registry_busybox)
    procs = []
    for i, s in enumerate(stores[:2]):
        path = recipe(tmp_path, registry_busybox, nonce, name=f"m{i}.toml", extra=s.toml())
        env = {**os.environ, "NO_COLOR": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "shlax_core", "run", str(path), "--json",
                                       "--cache-to", cache, "--no-tls-verify"], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out + err
        assert not [e for e in events(out) if e["event"] == "warning"], out
    tags = registry.tags(f"shlax-test/race-{nonce}")
    assert len(tags) == 4  # three step layers + the final image key
    for tag in tags:  # every manifest names blobs that exist
        m = registry.manifest(f"shlax-test/race-{nonce}", tag)
        for blob in [m["config"], *m["layers"]]:
            assert registry.has_blob(f"shlax-test/race-{nonce}", blob["digest"])
    third = stores[2]
    path = recipe(tmp_path, registry_busybox, nonce, name="m3.toml", extra=third.toml())
    proc = subprocess.run([sys.executable, "-m", "shlax_core", "run", str(path), "--json", "--cache-from", cache,
                           "--no-tls-verify"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "cached", "cached"], proc.stdout
    ctr = third.buildah("from", "--pull=never", f"localhost/shlax-test-reg-{nonce}:latest").stdout.strip()
    out = third.buildah("run", "--isolation", "chroot", ctr, "--", "cat", "/three").stdout
    third.buildah("rm", ctr)
    assert out == f"{nonce}\ntwo\n"
