"""A registry is outside input: whatever it answers, shlax warns and builds locally (the layer
cache) or fails with a clear error (push, ``cache export``, ``cache import``), never a traceback.

The misbehaving registry is tests/fake_registry.py, in this process, on loopback; behind it the
real docker-registry answers whatever a test does not break. First the HTTP client alone, against
every bad answer on every kind of request; then the real CLI where users met the crashes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import events, statuses, working_containers
from fake_registry import Answer, FakeRegistry, body, garbage, hang, huge, redirect_loop, reset, status, trickle, truncated
from shlax_registry.client import Registry
from shlax_registry.errors import RegistryError

TIMEOUT = 1.5  # seconds the client waits in these tests; "no answer" cases wait for ever
#: the client alone against every bad answer: shorter, so the fast tier stays fast (the cases
#: that never answer wait this long). Still longer than a trickle's pause between bytes (0.2 s):
#: only the deadline on the whole document stops one. Tests of one message keep TIMEOUT
CLIENT_TIMEOUT = 0.4
BLOB = b"a blob of the cache\n"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def bad_documents(kind: str) -> dict[str, Answer]:
    """Every bad answer to a request for a JSON document (``kind``: tags, manifest or token)."""
    wrong = {"tags": {"tags": "latest"},
             "manifest": {"schemaVersion": 2, "config": {"mediaType": "x", "digest": "../../../etc", "size": 1}},
             "token": {"token": 42}}[kind]
    missing = {"tags": {"name": "shlax-test/x"}, "manifest": {"config": {}}, "token": {"expires_in": 60}}[kind]
    return {
        "500": status(500, b"internal error"),
        "401 without a challenge": status(401),
        "403": status(403, b'{"errors": "not a list"}'),
        "invalid JSON": body(b'{"tags": [nope'),
        "not UTF-8": body(b'{"tags": ["\xff\xfe"]}'),
        "a list": body(["latest"]),
        "missing keys": body(missing),
        "wrong types": body(wrong),
        "deep nesting": body(b"[" * 100_000 + b"]" * 100_000),
        "truncated": truncated(),
        "no answer": hang(),
        "trickle": trickle(),
        "trickle, no length": trickle(declare=False),
        "reset": reset(),
        "reset mid-body": reset(after_headers=True),
        "redirect loop": redirect_loop(),
        "huge": huge(),
        "huge, no length": huge(declare=False),
        "not HTTP": garbage(),
    }


BAD_BLOBS = {
    "404": status(404),
    "500": status(500),
    "truncated": truncated(declared=len(BLOB) + 10, sent=BLOB[:5]),
    "no answer": hang(),
    "trickle, no length": trickle(declare=False),
    "reset": reset(),
    "reset mid-body": reset(after_headers=True),
    "redirect loop": redirect_loop(),
    "redirect to a file": status(302, headers={"Location": "file:///etc/passwd"}),
    "huge": huge(),
    "huge, no length": huge(declare=False),
    "wrong digest": body(b"another content"),
    "not HTTP": garbage(),
}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeRegistry]:
    server = FakeRegistry().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake(fake_server: FakeRegistry) -> Iterator[FakeRegistry]:
    """One server for the module (stopping one waits for its poll), reset for each test."""
    try:
        yield fake_server
    finally:
        fake_server.reset()


def client(fake: FakeRegistry, timeout: float = TIMEOUT) -> Registry:
    return Registry(fake.host, tls_verify=False, timeout=timeout)


def fails_clearly(fake: FakeRegistry, call: Callable[[], Any]) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        call()
    assert fake.host in info.value.message or "token" in info.value.message, info.value.message
    return info.value


# -- the client alone ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", bad_documents("tags"))
def test_tag_list(fake, case):
    fake.on("GET", r"/tags/list", bad_documents("tags")[case])
    fails_clearly(fake, lambda: client(fake, CLIENT_TIMEOUT).tags("shlax-test/x"))


@pytest.mark.parametrize("case", bad_documents("manifest"))
def test_manifest(fake, case):
    fake.on("GET", r"/manifests/latest", bad_documents("manifest")[case])
    fails_clearly(fake, lambda: client(fake, CLIENT_TIMEOUT).get_manifest("shlax-test/x", "latest"))


@pytest.mark.parametrize("case", bad_documents("token"))
def test_token(fake, case, monkeypatch):
    monkeypatch.setenv("SHLAX_REGISTRY_USER", "alice")
    monkeypatch.setenv("SHLAX_REGISTRY_PASSWORD", "secret")
    fake.on("GET", r"/tags/list", status(401, headers={
        "WWW-Authenticate": f'Bearer realm="http://{fake.host}/token",service="fake",scope="repository:x:pull"'}))
    fake.on("GET", r"^/token", bad_documents("token")[case])
    err = fails_clearly(fake, lambda: client(fake, CLIENT_TIMEOUT).tags("shlax-test/x"))
    assert "secret" not in err.message


@pytest.mark.parametrize("case", BAD_BLOBS)
@pytest.mark.parametrize("into", ["memory", "file"])
def test_blob(fake, case, into, tmp_path):
    fake.on("GET", r"/blobs/", BAD_BLOBS[case])
    if into == "file":  # as shlax reads blobs into files: knowing their size from the manifest
        fails_clearly(fake, lambda: client(fake, CLIENT_TIMEOUT).get_blob("shlax-test/x", BLOB_DIGEST, tmp_path / "blob", len(BLOB)))
    else:
        fails_clearly(fake, lambda: client(fake, CLIENT_TIMEOUT).get_blob("shlax-test/x", BLOB_DIGEST))
    assert list(tmp_path.iterdir()) == []  # no half-written blob, no .part


def test_blob_larger_than_its_manifest_says(fake, tmp_path):
    fake.on("GET", r"/blobs/", body(BLOB))
    err = fails_clearly(fake, lambda: client(fake).get_blob("shlax-test/x", BLOB_DIGEST, tmp_path / "b", size=5))
    assert "not the 5 expected" in err.message
    assert client(fake).get_blob("shlax-test/x", BLOB_DIGEST, size=len(BLOB)) == BLOB


@pytest.mark.parametrize("case", ["500", "no answer", "reset", "not HTTP", "redirect loop"])
def test_ping_and_blob_checks(fake, case):
    answer = bad_documents("tags")[case]
    fake.on("*", r"^/v2/", answer)
    fails_clearly(fake, lambda: client(fake, CLIENT_TIMEOUT).ping())
    fails_clearly(fake, lambda: client(fake, CLIENT_TIMEOUT).has_blob("shlax-test/x", BLOB_DIGEST))


def test_tag_pages_in_a_loop_or_elsewhere(fake):
    fake.on("GET", r"/tags/list", status(200, b'{"tags": ["a"]}', {"Link": '</v2/shlax-test/x/tags/list?n=1000>; rel="next"'}))
    assert "in a loop" in fails_clearly(fake, lambda: client(fake).tags("shlax-test/x")).message
    fake.clear()
    fake.on("GET", r"/tags/list", status(200, b'{"tags": ["a"]}', {"Link": '<http://192.0.2.1/v2/x/tags/list?n=2>; rel="next"'}))
    assert "another place" in fails_clearly(fake, lambda: client(fake).tags("shlax-test/x")).message


@pytest.mark.parametrize("location", [None, "file:///etc/passwd", "ftp://192.0.2.1/upload"])
def test_upload_without_a_usable_location(fake, location):
    fake.on("POST", r"/blobs/uploads/", status(202, headers={"Location": location} if location else {}))
    err = fails_clearly(fake, lambda: client(fake).put_blob("shlax-test/x", BLOB_DIGEST, BLOB))
    assert "Location" in err.message
    assert not fake.requests("PUT")


def test_a_digest_from_outside_never_reaches_a_url(fake):
    for digest in ("sha256:../../v2/other/manifests/latest", "md5:abc", "sha256:" + "A" * 64):
        with pytest.raises(RegistryError):
            client(fake).get_blob("shlax-test/x", digest)
    assert fake.seen == []


@pytest.mark.parametrize("content", ['["not", "an", "auth", "file"]', '{"auths": ["x"]}', '{"auths": {"HOST": "abc"}}',
                                     '{"auths": {"HOST": {"auth": 5}}}', '{"auths": {"HOST": {"auth": "%%%"}}}'])
def test_an_auth_file_of_the_wrong_shape_is_skipped(fake, tmp_path, monkeypatch, content):
    """The challenge reads the user's auth files: one that is not what buildah writes is no crash."""
    from shlax_registry import auth

    path = tmp_path / "auth.json"
    path.write_text(content.replace("HOST", fake.host))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SHLAX_REGISTRY_USER", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert auth.credentials(fake.host) is None
    fake.on("GET", r"/tags/list", status(401, headers={"WWW-Authenticate": 'Basic realm="x"'}))
    assert "requires credentials" in fails_clearly(fake, lambda: client(fake).tags("shlax-test/x")).message


# -- the real CLI ----------------------------------------------------------------------------------
BUSYBOX_TARGET = """
[targets.{name}]
base = "{base}"
image = "localhost/shlax-test-fault-{nonce}-{name}"
tls_verify = false
{option} = "{host}/shlax-test/cache-{nonce}"
steps = [{{ run = ["sh", "-c", "echo {nonce} {name} > /one"] }}]
"""


@pytest.fixture
def fakes(registry) -> Iterator[Callable[[], FakeRegistry]]:  # noqa: F811
    """Factory of misbehaving registries in front of the real one (one host per case: a host
    that failed is not asked again in the same run)."""
    made: list[FakeRegistry] = []

    def make() -> FakeRegistry:
        made.append(FakeRegistry(upstream=registry.host).start())
        return made[-1]

    try:
        yield make
    finally:
        for server in made:
            server.stop()


def targets(tmp_path: Path, base: str, nonce: str, option: str, hosts: dict[str, str]) -> Path:
    path = tmp_path / "shlax.toml"
    path.write_text("".join(BUSYBOX_TARGET.format(name=name, base=base, nonce=nonce, option=option, host=host)
                            for name, host in hosts.items()))
    return path


def case_names(cases: dict[str, Answer], nonce: str) -> dict[str, str]:
    """Target names for cases ("invalid JSON" -> "fNONCEt3"): the nonce keeps their working
    containers apart from those of tests running at the same time."""
    return {f"f{nonce}t{i}": case for i, case in enumerate(cases)}


def test_cache_from_any_bad_answer_is_a_warning_and_a_local_build(tmp_path, shlax, busybox_image, nonce, fakes):
    cases = bad_documents("tags")
    names = case_names(cases, nonce)
    hosts = {}
    for name, case in names.items():
        server = fakes()
        server.on("GET", r"/tags/list", cases[case])
        hosts[name] = server.host
    proc = shlax("run", str(targets(tmp_path, busybox_image, nonce, "cache_from", hosts)), "--json",
                 env={"SHLAX_REGISTRY_TIMEOUT": str(TIMEOUT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    warned = {e["target"]: e["message"] for e in events(proc.stdout) if e["event"] == "warning"}
    for name, case in names.items():
        assert statuses(proc.stdout, name) == ["done"], (case, proc.stdout)
        assert "building locally" in warned.get(name, ""), (case, warned)
        assert hosts[name] in warned[name], (case, warned[name])
    assert not working_containers(f"f{nonce}t")


def test_cache_to_bad_tag_list_after_pushing_still_reports_the_build(tmp_path, shlax, busybox_image, nonce, fakes,
                                                                   registry):  # noqa: F811
    """The pushes go through to the real registry; the tag list at the end is broken."""
    cases = {k: v for k, v in bad_documents("tags").items()
             if k in ("invalid JSON", "a list", "wrong types", "truncated", "reset mid-body", "no answer", "not HTTP")}
    names = case_names(cases, nonce)
    hosts = {}
    for name, case in names.items():
        server = fakes()
        server.on("GET", r"/tags/list", cases[case])
        hosts[name] = server.host
    proc = shlax("run", str(targets(tmp_path, busybox_image, nonce, "cache_to", hosts)),
                 env={"SHLAX_REGISTRY_TIMEOUT": str(TIMEOUT)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    for name, case in names.items():
        assert f"{name} [1/1] DONE" in out, (case, out)          # step lines
        assert f"{name}: image localhost/shlax-test-fault-{nonce}-{name}" in out, (case, out)  # its summary
        assert any(line.startswith("warning: cache-to") and hosts[name] in line and "layers stay local" in line
                   for line in out.splitlines()), (case, out)
    assert "success in" in out
    # each target's layer went to the registry before the tag list broke, under its key
    assert len(registry.tags(f"shlax-test/cache-{nonce}")) >= len(names)


def test_push_to_a_broken_registry_fails_clearly(tmp_path, shlax, busybox_image, nonce, fakes):
    server = fakes()
    server.on("*", r"^/v2/.+", status(500, b"oops"))
    path = tmp_path / "shlax.toml"
    path.write_text(f"""
[targets.app{nonce}]
base = "{busybox_image}"
image = "{server.host}/shlax-test/app-{nonce}"
tls_verify = false
steps = [{{ run = ["sh", "-c", "echo {nonce} > /one"] }}]
""")
    proc = shlax("run", str(path), "--push")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and f"pushing {server.host}/shlax-test/app-{nonce}:latest failed" in out
    assert not working_containers(f"app{nonce}")


# -- cache export / import -------------------------------------------------------------------------
@pytest.fixture
def machine(tmp_path):
    """A machine's download caches (an apt folder with a few files) and its environment."""
    cache = tmp_path / "shlax-cache"
    apt = cache / "downloads" / "apt" / "debian-bookworm" / "archives"
    apt.mkdir(parents=True)
    (apt / "big_1.0_all.deb").write_bytes(b"x" * 300_000)
    (apt / "small_1.0_all.deb").write_bytes(b"small")
    env = {"SHLAX_CACHE_DIR": str(cache), "HOME": str(tmp_path / "home"), "SHLAX_REGISTRY_TIMEOUT": str(TIMEOUT)}
    return cache, env


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def good_export(shlax, fake: FakeRegistry, env: dict, nonce: str) -> str:
    ref = f"{fake.host}/shlax-test/downloads-{nonce}"
    proc = shlax("cache", "export", "--to", ref, "--no-tls-verify", "--cache", "apt", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ref


def expect_failure(proc, code: int, *words: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert proc.stderr.startswith("shlax: error: "), out
    for word in words:
        assert word in proc.stderr, out


IMPORT_CASES = {**{f"manifest: {k}": ("manifests/latest", v) for k, v in bad_documents("manifest").items()},
                **{f"blob: {k}": ("blobs/", v) for k, v in BAD_BLOBS.items() if k != "redirect to a file"}}


@pytest.mark.parametrize("case", IMPORT_CASES)
def test_import_from_a_bad_registry(shlax, fakes, machine, tmp_path, nonce, case):
    cache, env = machine
    fake = fakes()
    ref = good_export(shlax, fake, env, nonce)
    other = tmp_path / "other"
    other_env = {**env, "SHLAX_CACHE_DIR": str(other), "HOME": str(tmp_path / "home2")}
    where, answer = IMPORT_CASES[case]
    fake.on("GET", where, answer)
    proc = shlax("cache", "import", "--from", ref, "--no-tls-verify", "--cache", "apt", env=other_env)
    expect_failure(proc, 2 if case.endswith(("401 without a challenge", "403")) else 1, fake.host)
    assert not (other / "downloads").exists() or snapshot(other / "downloads") == {}


def test_import_of_an_index_that_is_not_one(shlax, fakes, machine, tmp_path, nonce):
    """The manifest is fine, the index blob it names (digest right) is a JSON list."""
    cache, env = machine
    fake = fakes()
    index = b'["not", "an", "index"]'
    digest = "sha256:" + hashlib.sha256(index).hexdigest()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.shlax.downloads.index.v1+json", "digest": digest,
                           "size": len(index)}, "layers": []}
    fake.on("GET", r"/manifests/latest", body(manifest))
    fake.on("GET", rf"/blobs/{digest}", body(index))
    proc = shlax("cache", "import", "--from", f"{fake.host}/shlax-test/x", "--no-tls-verify", env=env)
    expect_failure(proc, 1, "index", "not an object")


EXPORT_CASES = {
    "remote manifest: invalid JSON": ("GET", "manifests/latest", body(b"{nope")),
    "remote manifest: a list": ("GET", "manifests/latest", body([])),
    "blob check: 500": ("HEAD", "/blobs/", status(500)),
    "blob check: no answer": ("HEAD", "/blobs/", hang()),
    "upload: no Location": ("POST", "/blobs/uploads/", status(202)),
    "upload: reset": ("PUT", "/blobs/uploads/", reset()),
    "upload: 401 without a challenge": ("POST", "/blobs/uploads/", status(401)),
    "manifest: 500": ("PUT", "/manifests/latest", status(500, b'{"errors": [{"code": "X", "message": "disk full"}]}')),
    "manifest: not HTTP": ("PUT", "/manifests/latest", garbage()),
}


@pytest.mark.parametrize("case", EXPORT_CASES)
def test_export_to_a_bad_registry(shlax, fakes, machine, nonce, case):
    _cache, env = machine
    fake = fakes()
    method, where, answer = EXPORT_CASES[case]
    fake.on(method, where, answer)
    proc = shlax("cache", "export", "--to", f"{fake.host}/shlax-test/downloads-{nonce}", "--no-tls-verify",
                 "--cache", "apt", env=env)
    expect_failure(proc, 2 if "401" in case else 1, fake.host)
    if case == "manifest: 500":
        assert "disk full" in proc.stderr
    if "401" in case:
        assert "SHLAX_REGISTRY_USER" in proc.stderr  # the hint: log in


def test_registry_timeout_must_be_a_number(shlax, machine):
    _cache, env = machine
    proc = shlax("cache", "import", "--from", "127.0.0.1:1/x", "--no-tls-verify", env={**env, "SHLAX_REGISTRY_TIMEOUT": "soon"})
    expect_failure(proc, 2, "SHLAX_REGISTRY_TIMEOUT='soon' is not a number of seconds")


def raw(data: bytes) -> Answer:
    """These bytes as the whole answer, then a closed connection."""

    def answer(h) -> None:
        h.wfile.write(data)
        h.wfile.flush()
        h.close_connection = True

    return answer


def test_a_registrys_bytes_never_reach_the_terminal_raw(shlax, busybox_image, tmp_path, nonce, fakes):
    """What a registry sent is quoted in the warning: no terminal escape, no line of its own;
    in a document it could not parse, in its own error message, or in a line that is not HTTP."""
    evil = '\x1b[2J\nwarning: all good\n\x1b]0;owned\x07'
    answers = [body(evil.encode()),
               status(500, json.dumps({"errors": [{"code": "X", "message": evil}]}).encode()),
               raw(b"HTTP/1.1 300 " + evil.replace("\n", " ").encode() + b"\r\nContent-Length: 0\r\n\r\n"),
               raw(evil.replace("\n", " ").encode() + b"\r\n\r\n")]
    hosts = {}
    for i, answer in enumerate(answers):
        server = fakes()
        server.on("GET", r"/tags/list", answer)
        hosts[f"f{nonce}t{i}"] = server.host
    proc = shlax("run", str(targets(tmp_path, busybox_image, nonce, "cache_from", hosts)))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "\x1b" not in out and "\x07" not in out
    assert not any(line.startswith("warning: all good") for line in out.splitlines()), out
    assert out.count("building locally") == len(answers), out
