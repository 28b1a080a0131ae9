"""Cheap checks of the cache plugins: cache commands, recipe errors."""

from __future__ import annotations

from pathlib import Path

from fixtures_caches import Host, output

ROOT = Path(__file__).resolve().parent.parent


def test_cache_ls_and_du_list_the_download_caches(tmp_path):
    host = Host(tmp_path)
    ls = host.run("cache", "ls")
    assert ls.returncode == 0, output(ls)
    for name, folder in (("apt", host.shlax_cache / "downloads" / "apt"), ("pip", host.wheelhouse),
                         ("pip", host.pip_cache), ("npm", host.npm_cache)):
        assert any(line.split()[:2] == [name, str(folder)] for line in ls.stdout.splitlines()), ls.stdout
    du = host.run("cache", "du")
    assert du.returncode == 0 and "apt" in du.stdout and "npm" in du.stdout, output(du)


def test_prune_downloads_drops_superseded_debs(tmp_path):
    host = Host(tmp_path)
    host.apt_archives.mkdir(parents=True)
    old = host.apt_archives / "jq_1.5-1_amd64.deb"
    old.write_bytes(b"x" * 4096)
    new = host.apt_archives / "jq_1.6-2_amd64.deb"
    new.write_bytes(b"y" * 4096)
    import os
    os.utime(old, (1, 1))
    dry = host.run("cache", "prune", "--downloads", "--dry-run")
    assert dry.returncode == 0 and old.exists(), output(dry)
    real = host.run("cache", "prune", "--downloads")
    assert real.returncode == 0, output(real)
    assert not old.exists() and new.exists()


def test_unknown_cache_in_a_run_step_is_a_recipe_error(tmp_path):
    host = Host(tmp_path)
    host.recipe("""
        [targets.app]
        base = "debootstrap:bookworm"
        steps = [ { run = ["true"], caches = ["apt", "gem"] } ]
    """)
    proc = host.run("run")
    assert proc.returncode == 2 and "unknown cache 'gem'" in output(proc), output(proc)


def test_npm_needs_something_to_do(tmp_path):
    host = Host(tmp_path)
    host.recipe("""
        [targets.app]
        base = "debootstrap:bookworm"
        steps = [ { npm = { production = true } } ]
    """)
    proc = host.run("run")
    assert proc.returncode == 2 and "package.json" in output(proc), output(proc)
