"""``shlax sbom IMAGE``: a CycloneDX 1.5 document of what dpkg, pip and npm recorded in an image,
valid against the official schema, the same as what the image's own dpkg says (docs/sbom.md)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import buildah, run_shlax

from shlax_sbom import inventory

STATUS = """\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u5
Maintainer: Santiago Vila <sanvila@debian.org>
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.15-1~deb12u1
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _rootfs(root: Path) -> Path:
    """A small image tree with records of each package manager, and traps."""
    _write(root / "etc/os-release", 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    _write(root / "var/lib/dpkg/status", STATUS)
    _write(root / "app/venv/lib/python3.11/site-packages/Flask-3.0.3.dist-info/METADATA",
           "Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.3\nLicense-Expression: BSD-3-Clause\n\nlong text\n")
    _write(root / "app/venv/lib/python3.11/site-packages/flask/__init__.py", "")
    _write(root / "app/node_modules/left-pad/package.json", json.dumps({"name": "left-pad", "version": "1.3.0",
                                                                         "license": "WTFPL"}))
    _write(root / "app/node_modules/@types/node/package.json", json.dumps({"name": "@types/node", "version": "20.1.0"}))
    _write(root / "app/node_modules/left-pad/test/fixture/package.json", json.dumps({"name": "not-a-dep", "version": "0"}))
    _write(root / "app/package.json", json.dumps({"name": "the-app", "version": "1.0.0"}))  # the app, not a dependency
    # a link that leaves the tree: followed on the host it would read the host's own files
    outside = root.parent / "outside"
    _write(outside / "Evil-1.0.dist-info/METADATA", "Name: Evil\nVersion: 1.0\n")
    (root / "app/venv/lib/python3.11/site-packages/linked").symlink_to(outside)
    (root / "proc").mkdir()
    _write(root / "proc/node_modules/ghost/package.json", json.dumps({"name": "ghost", "version": "1"}))
    return root


def test_inventory_reads_each_package_manager_and_nothing_else(tmp_path: Path) -> None:
    root = _rootfs(tmp_path / "root")
    found = inventory.installed(str(root))
    assert [(p.kind, p.name, p.version) for p in found] == [
        ("deb", "base-files", "12.4+deb12u5"), ("deb", "libssl3", "3.0.15-1~deb12u1"),
        ("pypi", "Flask", "3.0.3"),
        ("npm", "@types/node", "20.1.0"), ("npm", "left-pad", "1.3.0"),
    ]
    purls = {p.name: p.purl("debian-12") for p in found}
    assert purls["libssl3"] == "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64&distro=debian-12"
    assert purls["Flask"] == "pkg:pypi/flask@3.0.3"
    assert purls["@types/node"] == "pkg:npm/%40types/node@20.1.0"
    by_name = {p.name: p for p in found}
    assert by_name["Flask"].license == "BSD-3-Clause" and by_name["left-pad"].license == "WTFPL"
    assert by_name["Flask"].path == "/app/venv/lib/python3.11/site-packages/Flask-3.0.3.dist-info"
    assert by_name["libssl3"].extra == {"Source": "openssl"}


def _validate(text: str) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    assert error is None, error


def _dpkg_query(image: str) -> set[tuple[str, str]]:
    ctr = buildah("from", "--pull=never", "--", image).stdout.strip()
    try:
        out = buildah("run", "--", ctr, "dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version}\n").stdout
    finally:
        buildah("rm", ctr, check=False)
    return {tuple(line.split()[1:3]) for line in out.splitlines() if line.startswith("installed ")}


def _sbom_containers() -> list[str]:
    out = buildah("containers", "--format", "{{.ContainerName}}").stdout.split()
    return [n for n in out if n.startswith("shlax-sbom-")]


def test_sbom_of_a_built_image(tmp_path: Path, debian_image: str, nonce: str) -> None:
    app = _rootfs(tmp_path / "tree") / "app"
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""\
        [targets.sb{nonce}]
        base = "{debian_image}"
        image = "localhost/shlax-test-sbom-{nonce}"
        steps = [ {{ copy = {{ src = "tree/app/", dest = "/app/" }} }},
                  {{ run = ["sh", "-c", "echo {nonce} > /app/nonce"] }} ]
    """))
    (app / "venv/lib/python3.11/site-packages/linked").unlink()
    built = run_shlax("run", cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    image = f"localhost/shlax-test-sbom-{nonce}"
    before = _sbom_containers()

    proc = run_shlax("sbom", image)
    assert proc.returncode == 0, proc.stderr
    _validate(proc.stdout)
    doc = json.loads(proc.stdout)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    image_id = buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", image).stdout.strip()
    assert doc["metadata"]["component"]["version"] == f"sha256:{image_id}"
    debs = {(c["name"], c["version"]) for c in doc["components"] if c["purl"].startswith("pkg:deb/")}
    assert debs == _dpkg_query(image)          # exactly what the image's own dpkg says
    assert all("distro=debian-12" in c["purl"] for c in doc["components"] if c["purl"].startswith("pkg:deb/"))
    others = {(c["name"], c["version"]) for c in doc["components"] if not c["purl"].startswith("pkg:deb/")}
    assert others == {("Flask", "3.0.3"), ("left-pad", "1.3.0"), ("@types/node", "20.1.0")}
    assert _sbom_containers() == before        # the look inside left no working container

    # kept by image ID: the same bytes again, and where it is kept
    again = run_shlax("sbom", image)
    assert again.stdout == proc.stdout
    where = run_shlax("sbom", image, "--path").stdout.strip()
    assert where.endswith(f"/sbom/{image_id}.cdx.json") and Path(where).read_text() == proc.stdout
    out = tmp_path / "image.cdx.json"
    assert run_shlax("sbom", image, "-o", str(out)).returncode == 0 and out.read_text() == proc.stdout
    subprocess.run(["buildah", "rmi", image], capture_output=True)


@pytest.mark.slow  # asks buildah
def test_sbom_of_an_unknown_image_is_a_clear_error() -> None:
    proc = run_shlax("sbom", "localhost/shlax-test-no-such-image:nope")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "no image 'localhost/shlax-test-no-such-image:nope' in the local image store" in proc.stderr
    assert "hint:" in proc.stderr
