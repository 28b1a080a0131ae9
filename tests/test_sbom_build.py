"""Every built image gets its SBOM at build time, kept by image ID; with ``--push`` it follows
the image to the registry as an OCI 1.1 artifact whose ``subject`` is the image (docs/sbom.md).

The registry is Debian's docker-registry (distribution 2.8): it keeps a manifest's ``subject``
but serves no referrers API, so the fallback tag ``sha256-HEX`` is what a reader finds.
"""

from __future__ import annotations

import json
import textwrap
import urllib.request
from pathlib import Path

from conftest import buildah, events, run_shlax
from fixtures_registry import LocalRegistry, registry  # noqa: F401
from test_sbom import _validate


def _get(reg: LocalRegistry, path: str, accept: str) -> tuple[int, bytes, str]:
    req = urllib.request.Request(f"http://{reg.host}{path}", headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""


def _project(tmp_path: Path, base: str, image: str, nonce: str) -> Path:
    meta = tmp_path / "site/Flask-3.0.3.dist-info/METADATA"
    meta.parent.mkdir(parents=True)
    meta.write_text("Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.3\nLicense-Expression: BSD-3-Clause\n")
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""\
        [targets.sb]
        base = "{base}"
        image = "{image}"
        steps = [ {{ copy = {{ src = "site/", dest = "/usr/lib/python3/site-packages/" }} }},
                  {{ run = ["sh", "-c", "echo {nonce} > /nonce"] }} ]
    """))
    return tmp_path / "shlax.toml"


def test_each_build_keeps_its_sbom(tmp_path: Path, busybox_image: str, nonce: str) -> None:
    image = f"localhost/shlax-test-sbomb-{nonce}"
    _project(tmp_path, busybox_image, image, nonce)
    proc = run_shlax("run", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = [e["message"] for e in events(proc.stdout) if e["event"] == "info" and e["message"].startswith("SBOM: ")]
    image_id = buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", image).stdout.strip()
    assert said == [f"SBOM: {Path(said[0][6:])}"] and said[0].endswith(f"/sbom/{image_id}.cdx.json")
    text = Path(said[0][6:]).read_text()
    _validate(text)
    doc = json.loads(text)
    assert [(c["name"], c["version"]) for c in doc["components"]] == [("Flask", "3.0.3")]
    assert doc["metadata"]["component"]["name"] == f"{image}:latest"
    # `shlax sbom` gives the same document (kept by image ID, not computed again)
    assert run_shlax("sbom", image).stdout == text
    buildah("rmi", image, check=False)


def test_push_attaches_the_sbom_as_a_referrer(tmp_path: Path, registry: LocalRegistry,  # noqa: F811
                                             busybox_image: str, nonce: str) -> None:
    repo = f"shlax-test/sbom-{nonce}"
    image = f"{registry.host}/{repo}"
    _project(tmp_path, busybox_image, image, nonce)
    proc = run_shlax("run", "--json", "--push", "--no-tls-verify", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    messages = [e["message"] for e in events(proc.stdout) if e["event"] == "info"]
    assert any(m.startswith(f"SBOM of {image}:latest@sha256:") for m in messages), messages

    manifest_types = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    status, body, digest = _get(registry, f"/v2/{repo}/manifests/latest", manifest_types)
    assert status == 200 and digest.startswith("sha256:")
    # distribution 2.8 has no referrers API: the fallback tag lists the artifact
    status, _, _ = _get(registry, f"/v2/{repo}/referrers/{digest}", "application/vnd.oci.image.index.v1+json")
    assert status == 404
    fallback = digest.replace(":", "-")
    status, body, _ = _get(registry, f"/v2/{repo}/manifests/{fallback}", "application/vnd.oci.image.index.v1+json")
    assert status == 200, body
    index = json.loads(body)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [entry] = index["manifests"]
    assert entry["artifactType"] == "application/vnd.cyclonedx+json"
    status, body, _ = _get(registry, f"/v2/{repo}/manifests/{entry['digest']}", manifest_types)
    artifact = json.loads(body)
    print("SBOM referrer:", json.dumps(artifact, indent=1))
    assert artifact["artifactType"] == "application/vnd.cyclonedx+json"
    assert artifact["subject"]["digest"] == digest
    assert artifact["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    [layer] = artifact["layers"]
    status, blob, _ = _get(registry, f"/v2/{repo}/blobs/{layer['digest']}", "*/*")
    _validate(blob.decode())
    assert [(c["name"], c["version"]) for c in json.loads(blob)["components"]] == [("Flask", "3.0.3")]

    # pushed again (a rebuild, all cached): the index still lists the artifact once
    again = run_shlax("run", "--push", "--no-tls-verify", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    status, body, _ = _get(registry, f"/v2/{repo}/manifests/{fallback}", "application/vnd.oci.image.index.v1+json")
    assert [m["digest"] for m in json.loads(body)["manifests"]] == [entry["digest"]]
    buildah("rmi", f"{image}:latest", check=False)
