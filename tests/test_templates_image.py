"""Variables and templates in image builds (real buildah, the busybox image), the service action's
offline enabling, and what the fake backends record for per-step become."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import buildah, events, run_shlax, statuses


def image_file(image: str, path: str) -> str:
    ctr = buildah("from", "--pull=never", image).stdout.strip()
    try:
        return buildah("run", "--isolation", "chroot", ctr, "--", "sh", "-c",
                       'if [ -L "$1" ]; then echo "link -> $(readlink "$1")"; else cat "$1"; fi', "sh", path).stdout
    finally:
        buildah("rm", ctr, check=False)


def test_variables_are_part_of_the_step_key(tmp_path, busybox_image, nonce):
    image = f"localhost/shlax-test-vars-{nonce}"
    (tmp_path / "app.conf.j2").write_text("port = {{ port }}\nname = {{ target }}\n")
    recipe = tmp_path / "shlax.toml"

    def write(port: int) -> None:
        recipe.write_text(textwrap.dedent(f"""
            [vars]
            port = {port}
            nonce = "{nonce}"

            [targets.img]
            base = "{busybox_image}"
            image = "{image}"
            steps = [
              {{ run = ["sh", "-c", "echo {{{{ nonce }}}} > /nonce"] }},
              {{ template = {{ src = "app.conf.j2", dest = "/etc/app.conf", mode = "0600" }} }},
              {{ run = ["sh", "-c", "echo {{{{ port }}}} > /port"] }},
            ]
        """))

    try:
        write(8080)
        first = run_shlax("run", str(recipe), "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        assert image_file(image, "/etc/app.conf") == "port = 8080\nname = img\n"
        # a variable's value is part of the key of the steps that use it, and only of those
        write(9090)
        second = run_shlax("run", str(recipe), "--json")
        assert statuses(second.stdout) == ["cached", "done", "done"]
        assert image_file(image, "/etc/app.conf") == "port = 9090\nname = img\n"
        assert image_file(image, "/port") == "9090\n"
        # the no-op fast path answers an unchanged run...
        again = run_shlax("run", str(recipe), "--json")
        assert events(again.stdout)[0].get("fast") is True
        # ...but never for --var, and a --var run leaves no record a plain run would replay
        other = run_shlax("run", str(recipe), "--json", "--var", "port=7070")
        assert not events(other.stdout)[0].get("fast") and statuses(other.stdout)[1:] == ["done", "done"]
        assert image_file(image, "/port") == "7070\n"
        plain = run_shlax("run", str(recipe), "--json")
        assert not events(plain.stdout)[0].get("fast")
        assert statuses(plain.stdout) == ["cached"] * 3
        assert image_file(image, "/port") == "9090\n"
        # editing the template file is noticed by the fast path's guards too
        (tmp_path / "app.conf.j2").write_text("port = {{ port }}\n")
        edited = run_shlax("run", str(recipe), "--json")
        assert not events(edited.stdout)[0].get("fast") and statuses(edited.stdout) == ["cached", "done", "done"]
    finally:
        buildah("rmi", image, check=False)


def test_host_and_facts_do_not_exist_in_images(tmp_path, busybox_image):
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.img]
        base = "{busybox_image}"
        steps = [ {{ run = ["echo", "{{{{ facts.hostname }}}}"] }} ]
    """))
    proc = run_shlax("run", str(tmp_path / "shlax.toml"))
    assert proc.returncode == 2
    assert "shlax.toml:4:" in proc.stderr and "'facts' is undefined" in proc.stderr
    assert "exist on host targets" in proc.stderr


def test_service_enables_a_unit_in_an_image(tmp_path, busybox_image, nonce):
    image = f"localhost/shlax-test-service-{nonce}"
    (tmp_path / "app.service").write_text(textwrap.dedent(f"""
        [Unit]
        Description=test {nonce}

        [Service]
        ExecStart=/bin/true

        [Install]
        WantedBy=multi-user.target
    """))
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.img]
        base = "{busybox_image}"
        image = "{image}"
        steps = [
          {{ copy = {{ src = "app.service", dest = "/etc/systemd/system/app.service" }} }},
          {{ service = "app.service", enabled = true, state = "started" }},
        ]
    """))
    try:
        proc = run_shlax("run", str(tmp_path / "shlax.toml"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # busybox has no systemctl: the [Install] section's symlink, made without starting anything
        link = image_file(image, "/etc/systemd/system/multi-user.target.wants/app.service")
        assert link == "link -> /etc/systemd/system/app.service\n"
    finally:
        buildah("rmi", image, check=False)


def test_fast_path_and_help_import_no_jinja(tmp_path, busybox_image):
    (tmp_path / "t.j2").write_text("{{ x }}\n")
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [vars]
        x = "y"

        [targets.img]
        base = "{busybox_image}"
        steps = [ {{ template = {{ src = "t.j2", dest = "/t" }} }} ]
    """))
    assert run_shlax("run", str(tmp_path / "shlax.toml")).returncode == 0
    for argv in (["run", str(tmp_path / "shlax.toml")], ["--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "shlax_core", *argv],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
        assert "shlax_core.fastpath" in imported
        assert not [m for m in imported if m.startswith(("jinja2", "shlax_core.templating"))]


# -- the fake backends: what per-step become hands the backend ------------------------------------

def test_become_reaches_every_backend_call_of_the_step(shlax_recipe):
    project = shlax_recipe("""
        [targets.t]
        backend = "fake"
        steps = [
          { run = ["a"] },
          { run = ["b"], become = true },
          { copy = { src = "f", dest = "/etc/f" }, become_user = "app" },
          { run = ["c"], become = false },
        ]
    """, files={"f": "x"})
    result = project.run()
    assert result.code == 0, result.error
    become = [(c["call"], c.get("become")) for c in result.calls if c["call"] in ("run", "stat", "put_archive")]
    assert [(call, b and (b.enabled, b.user)) for call, b in become] == [
        ("run", None), ("run", (True, None)), ("stat", (True, "app")), ("put_archive", (True, "app")),
        ("run", (False, None))]


def test_become_is_part_of_an_image_step_key_only_when_set(shlax_recipe):
    project = shlax_recipe("""
        [targets.t]
        backend = "fake-image"
        steps = [ { run = ["a"] }, { run = ["b"] } ]
    """)
    project.run()
    project.write("shlax.toml", """
        [targets.t]
        backend = "fake-image"
        steps = [ { run = ["a"] }, { run = ["b"], become_user = "app" } ]
    """)
    assert project.run().statuses == ["cached", "done"]


def test_notify_and_step_options_are_checked(shlax_recipe):
    project = shlax_recipe("""
        [handlers]
        restart = { run = ["restart"] }

        [targets.t]
        backend = "fake"
        steps = [ { run = ["a"], notify = "restrat" } ]
    """)
    result = project.run()
    assert result.code == 2 and "notify names no handler 'restrat'" in str(result.error)
    assert "did you mean 'restart'" in str(result.error) and "shlax.toml:7" in str(result.error)
    project.write("shlax.toml", """
        [targets.t]
        backend = "fake"
        steps = [ { run = ["a"], become = "yes" } ]
    """)
    assert "become must be true or false" in str(project.run().error)


def test_handlers_run_once_after_a_change_on_the_fake_host(shlax_recipe):
    project = shlax_recipe("""
        [handlers]
        reload = [ { run = ["reload", "{{ host.name }}"] } ]

        [targets.t]
        backend = "fake"
        hosts = ["a", "b"]
        steps = [
          { copy = { src = "f", dest = "/{{ host.name }}/f" }, notify = "reload" },
          { copy = { src = "g", dest = "/{{ host.name }}/g" }, notify = "reload" },
        ]
    """, files={"f": "1", "g": "2"})
    first = project.run()  # (the fake hosts share one file table: each host copies to its own path)
    assert first.code == 0, first.error
    assert sorted(c for c in first.commands if c[0] == "reload") == [["reload", "a"], ["reload", "b"]]
    second = project.run()
    assert [c for c in second.commands if c[0] == "reload"] == []
    assert "[handler reload]" in first.output
