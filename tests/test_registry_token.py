"""The registry Bearer-token flow (the Docker token protocol).

The real docker-registry is configured for token authentication; its token service is
tests/fixtures_registry.py's :class:`TokenServer`, which signs JWTs the registry verifies (alice
may pull and push, bob only pull, anonymous nothing). shlax's client answers the registry's
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge with our credentials and
gets one token per scope; buildah does the same for its pulls and pushes, from the auth file shlax
writes for it.

Token expiry cannot be waited for against the real registry (its clock, a minute of leeway), so
those cases run against tests/fake_registry.py, whose token service and clock a test controls.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

import pytest

from conftest import events, statuses
from fake_registry import FakeRegistry, TokenAuth, status
from shlax_registry.client import Registry
from shlax_registry.errors import RegistryError

BLOB = b"a layer of the cache\n"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def login(monkeypatch, user: str, password: str) -> None:
    monkeypatch.setenv("SHLAX_REGISTRY_USER", user)
    monkeypatch.setenv("SHLAX_REGISTRY_PASSWORD", password)


def anonymous(monkeypatch, tmp_path: Path) -> None:
    """No credentials at all: none in the environment, no auth file."""
    for name in ("SHLAX_REGISTRY_USER", "SHLAX_REGISTRY_PASSWORD", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))
    monkeypatch.setenv("HOME", str(tmp_path))


def manifest_for(config: bytes) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
                       "layers": []}).encode()


# -- the real registry --------------------------------------------------------------------------------
def test_client_gets_one_token_per_scope_from_the_real_registry(token_registry, monkeypatch, nonce):
    login(monkeypatch, "alice", "alice-pw")
    repo = f"shlax-test/token-{nonce}"
    issued = len(token_registry.tokens.issued)
    reg = Registry(token_registry.host, tls_verify=False)
    reg.put_blob(repo, BLOB_DIGEST, BLOB)
    reg.put_manifest(repo, "v1", manifest_for(BLOB))
    assert reg.tags(repo) == {"v1"}
    assert reg.has_blob(repo, BLOB_DIGEST)
    assert reg.get_blob(repo, BLOB_DIGEST) == BLOB
    manifest, _digest = reg.get_manifest(repo, "v1")
    assert manifest["config"]["digest"] == BLOB_DIGEST
    # two scopes, two tokens, both alice's: the push scope's token was reused for the upload and
    # the manifest, the pull scope's for every read
    # (the registry's challenge names the actions in either order, run to run: Go map order)
    def actions(scope: str) -> str:
        head, _, acts = scope.rpartition(":")
        return f"{head}:{','.join(sorted(acts.split(',')))}"
    assert [(user, [actions(s) for s in scopes]) for user, scopes in token_registry.tokens.issued[issued:]] == \
        [("alice", [f"repository:{repo}:pull,push"]), ("alice", [f"repository:{repo}:pull"])]
    # without a token the registry says no (the token really is what let us in)
    bare = Registry(token_registry.host, tls_verify=False)
    anonymous(monkeypatch, Path("/nonexistent"))
    with pytest.raises(RegistryError) as info:
        bare.tags(repo)
    assert info.value.status == 401 and "requires credentials" in info.value.message


def test_wrong_password_and_missing_rights_are_clear_errors(token_registry, monkeypatch, nonce):
    repo = f"shlax-test/token-{nonce}"
    login(monkeypatch, "alice", "guess")
    with pytest.raises(RegistryError) as info:
        Registry(token_registry.host, tls_verify=False).tags(repo)
    assert info.value.status == 401
    assert "refused the credentials of user 'alice'" in info.value.message and "guess" not in info.value.message

    login(monkeypatch, "bob", "bob-pw")
    reg = Registry(token_registry.host, tls_verify=False)
    assert reg.tags(repo) == set()  # bob may read
    with pytest.raises(RegistryError) as info:
        reg.put_blob(repo, BLOB_DIGEST, BLOB)
    assert info.value.status == 401 and "the credentials of user 'bob' do not allow POST" in info.value.message


def test_layer_cache_through_token_auth(tmp_path, shlax, token_registry, registry_busybox, busybox_image, nonce,
                                        empty_store):
    """alice's CI job fills the cache (buildah pushes with a token); bob's machine, with an empty
    store and read-only rights, builds nothing; a wrong password is a warning and a local build."""
    cache = f"{token_registry.host}/shlax-test/cache-{nonce}"
    recipe = tmp_path / "shlax.toml"

    def write(extra: str = "") -> Path:
        recipe.write_text(f"""
[targets.app]
base = "{registry_busybox}"
image = "localhost/shlax-test-token-{nonce}"
{extra}
steps = [
  {{ run = ["sh", "-c", "echo {nonce} > /one"] }},
  {{ run = ["sh", "-c", "echo two > /two"] }},
]
""")
        return recipe

    alice = {"SHLAX_REGISTRY_USER": "alice", "SHLAX_REGISTRY_PASSWORD": "alice-pw"}
    proc = shlax("run", str(write()), "--json", "--cache-to", cache, "--no-tls-verify", env=alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [e for e in events(proc.stdout) if e["event"] == "warning"], proc.stdout
    users = {user for user, _scopes in token_registry.tokens.issued}
    assert "alice" in users

    empty_store.pull(registry_busybox)
    bob = {"SHLAX_REGISTRY_USER": "bob", "SHLAX_REGISTRY_PASSWORD": "bob-pw"}
    proc = shlax("run", str(write(empty_store.toml())), "--json", "--cache-from", cache, "--no-tls-verify", env=bob)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["cached", "cached"], proc.stdout

    wrong = {"SHLAX_REGISTRY_USER": "bob", "SHLAX_REGISTRY_PASSWORD": f"wrong-{nonce}"}
    recipe.write_text(write(empty_store.toml()).read_text().replace(f"echo {nonce}", f"echo {nonce}-changed"))
    proc = shlax("run", str(recipe), "--json", "--cache-from", cache, "--no-tls-verify", env=wrong)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == ["done", "done"], proc.stdout
    found = [e["message"] for e in events(proc.stdout) if e["event"] == "warning"]
    assert len(found) == 1 and "refused the credentials of user 'bob'" in found[0] and "building locally" in found[0]
    assert f"wrong-{nonce}" not in proc.stdout + proc.stderr


def test_cache_export_import_through_token_auth(tmp_path, shlax, token_registry, nonce):
    ref = f"{token_registry.host}/shlax-test/downloads-{nonce}"
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    archives = mine / "downloads" / "apt" / "debian-bookworm" / "archives"
    archives.mkdir(parents=True)
    (archives / "big_1.0_all.deb").write_bytes(b"x" * 300_000)
    (archives / "small_1.0_all.deb").write_bytes(b"small")

    def env(cache: Path, user: str, password: str) -> dict[str, str]:
        return {"SHLAX_CACHE_DIR": str(cache), "HOME": str(tmp_path / "home"),
                "SHLAX_REGISTRY_USER": user, "SHLAX_REGISTRY_PASSWORD": password}

    proc = shlax("cache", "export", "--to", ref, "--no-tls-verify", "--cache", "apt", env=env(mine, "alice", "alice-pw"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = shlax("cache", "import", "--from", ref, "--no-tls-verify", "--cache", "apt", env=env(theirs, "bob", "bob-pw"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = theirs / "downloads" / "apt" / "debian-bookworm" / "archives"
    assert {p.name: p.read_bytes() for p in got.iterdir()} == {p.name: p.read_bytes() for p in archives.iterdir()}

    # bob may not push; a wrong password is refused by the token service: exit 2, a hint, no secret
    proc = shlax("cache", "export", "--to", ref, "--no-tls-verify", "--cache", "apt", env=env(theirs, "bob", "bob-pw"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "user 'bob' do not allow" in proc.stderr and "SHLAX_REGISTRY_USER" in proc.stderr
    proc = shlax("cache", "import", "--from", ref, "--no-tls-verify", env=env(theirs, "bob", "guess-pw"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refused the credentials of user 'bob'" in proc.stderr and "guess-pw" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


# -- expiry and the token service's own faults, on the fake -----------------------------------------
@pytest.fixture
def token_fake(registry) -> Iterator[FakeRegistry]:  # noqa: F811
    """The token protocol in front of the real registry, on a clock the test moves."""
    server = FakeRegistry(upstream=registry.host, token_auth=TokenAuth(
        users={"alice": ("alice-pw", ("pull", "push")), "bob": ("bob-pw", ("pull",))})).start()
    try:
        yield server
    finally:
        server.stop()


def v2(fake: FakeRegistry) -> list[tuple[str, str, bool]]:
    """Registry requests seen: (method, path, carried a token)."""
    return [(m, p, "Authorization" in h) for m, p, h in fake.seen if p.startswith("/v2/")]


def test_an_expired_token_is_replaced(token_fake, monkeypatch, nonce):
    login(monkeypatch, "alice", "alice-pw")
    clock = [1000.0]
    reg = Registry(token_fake.host, tls_verify=False, timeout=10, clock=lambda: clock[0])
    repo = f"shlax-test/token-{nonce}"
    reg.put_blob(repo, BLOB_DIGEST, BLOB)
    assert reg.get_blob(repo, BLOB_DIGEST) == BLOB
    auth = token_fake.auth
    assert auth.issued == [("alice", [f"repository:{repo}:pull,push"]), ("alice", [f"repository:{repo}:pull"])]

    # the registry decides the token expired (its clock moved, ours did not): one 401, a fresh
    # token, the same request again
    token_fake.now += auth.ttl + 1
    seen = len(v2(token_fake))
    assert reg.get_blob(repo, BLOB_DIGEST) == BLOB
    assert len(auth.issued) == 3
    assert [m for m, _p, _t in v2(token_fake)[seen:]] == ["GET", "GET"]

    # our clock says a token is stale: the fresh one comes *before* the request, with no 401 (an
    # upload refused for an expired token would be sent twice)
    clock[0] += 10_000
    token_fake.now += 10_000
    seen = len(v2(token_fake))
    reg.put_blob(repo, BLOB_DIGEST, BLOB)
    assert [m for m, _p, _t in v2(token_fake)[seen:]] == ["POST", "PUT"]
    assert len(auth.issued) == 4


def test_wrong_password_on_the_fake_token_service(token_fake, monkeypatch):
    login(monkeypatch, "alice", "not-her-password")
    with pytest.raises(RegistryError) as info:
        Registry(token_fake.host, tls_verify=False, timeout=5).tags("shlax-test/x")
    assert info.value.status == 401
    assert "refused the credentials of user 'alice'" in info.value.message
    assert "not-her-password" not in info.value.message


@pytest.mark.parametrize("realm", ["", "file:///etc/passwd", "not a url"])
def test_a_challenge_naming_no_http_token_service(realm):
    fake = FakeRegistry().start()
    try:
        fake.on("GET", r"/tags/list", status(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'}))
        with pytest.raises(RegistryError) as info:
            Registry(fake.host, tls_verify=False, timeout=5).tags("shlax-test/x")
        assert "http(s) URL" in info.value.message
        assert fake.requests(path="token") == []
    finally:
        fake.stop()
