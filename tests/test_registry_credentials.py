"""Registry credentials where users keep them (shlax_registry.credentials).

Files in every place buildah, podman and Docker keep them (containers' auth.json, Docker's
config.json, ``$DOCKER_CONFIG``, ``~/.dockercfg``), Docker Hub's many names, namespace keys, and
credential helpers (``credsStore``, ``credHelpers``): the helpers are a small fake
``docker-credential-NAME`` script put on PATH, speaking Docker's helper protocol (the server on
stdin, ``{"ServerURL", "Username", "Secret"}`` out, "credentials not found" and exit 1 when it
has none), recording what it was asked. What the credentials open is checked against the real
docker-registry with token authentication (tests/fixtures_registry.py), with shlax's client and
with buildah (``shlax run --push``), including an identity token traded through the OAuth2 form of
the token protocol.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import buildah, events
from shlax_buildah.cli import Buildah
from shlax_buildah.transfer import auth_args, auth_json
from shlax_core.backends import Login, Transfer
from shlax_registry.auth import login
from shlax_registry.client import Registry
from shlax_registry.credentials import CredentialsError, lookup

BLOB = b"a blob pushed with credentials from a helper\n"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()

HELPER = '''#!{python}
"""A fake docker-credential-{name}: Docker's credential helper protocol over a JSON store."""
import json, sys
if sys.argv[1:] != ["get"]:
    print("unknown action", sys.argv[1:]); sys.exit(1)
server = sys.stdin.read().strip()
with open({log!r}, "a") as log:
    log.write(server + "\\n")
store = json.load(open({store!r}))
if store.get("__fail__"):
    print(store["__fail__"]); sys.exit(3)
if server not in store:
    print("credentials not found in native keychain"); sys.exit(1)
user, secret = store[server]
if user == "__garbage__":
    print("this is not json"); sys.exit(0)
print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
'''


@dataclass
class Helper:
    name: str
    store: Path
    log: Path

    def set(self, entries: dict) -> None:
        self.store.write_text(json.dumps(entries))

    def asked(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A HOME of the test's own, no credentials anywhere, a bin folder first on PATH."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("SHLAX_REGISTRY_USER", "SHLAX_REGISTRY_PASSWORD", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR",
                 "XDG_CONFIG_HOME", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return home


@pytest.fixture
def make_helper(tmp_path, home):
    def make(name: str, entries: dict) -> Helper:
        helper = Helper(name, tmp_path / f"{name}-store.json", tmp_path / f"{name}-asked.log")
        helper.set(entries)
        script = tmp_path / "bin" / f"docker-credential-{name}"
        script.write_text(HELPER.format(python=sys.executable, name=name, log=str(helper.log),
                                        store=str(helper.store)))
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return helper
    return make


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def found(host: str, repo=None) -> tuple[str, str]:
    creds = lookup(host, repo)
    assert creds is not None
    return creds.user, creds.secret


# -- where the files are, and in which order ------------------------------------------------------------
def test_every_place_users_keep_credentials_in_containers_order(home, tmp_path, monkeypatch):
    host = "reg.example:5000"
    places = {
        "REGISTRY_AUTH_FILE": tmp_path / "custom" / "auth.json",
        "runtime": tmp_path / "run" / "containers" / "auth.json",
        "xdg-config": tmp_path / "cfg" / "containers" / "auth.json",
        "docker-config": tmp_path / "dockercfgdir" / "config.json",
        "legacy": home / ".dockercfg",
    }
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfgdir"))
    for name, path in places.items():
        entry = {host: {"auth": b64(f"{name}:pw-{name}")}}
        write_json(path, entry if name == "legacy" else {"auths": entry})
    assert lookup("other.example") is None

    # each file is read only when those before it have nothing for the host
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(places["REGISTRY_AUTH_FILE"]))
    assert found(host) == ("REGISTRY_AUTH_FILE", "pw-REGISTRY_AUTH_FILE")
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    for name in ("runtime", "xdg-config", "docker-config", "legacy"):
        assert found(host) == (name, f"pw-{name}")
        places[name].unlink()
    assert lookup(host) is None

    # without $DOCKER_CONFIG, Docker's file is ~/.docker/config.json; without $XDG_CONFIG_HOME,
    # ~/.config/containers/auth.json
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    write_json(home / ".docker" / "config.json", {"auths": {host: {"auth": b64("docker:pw1")}}})
    assert found(host) == ("docker", "pw1")
    write_json(home / ".config" / "containers" / "auth.json", {"auths": {host: {"auth": b64("podman:pw2")}}})
    assert found(host) == ("podman", "pw2")

    # CI secrets in the environment win over every file
    monkeypatch.setenv("SHLAX_REGISTRY_USER", "ci")
    monkeypatch.setenv("SHLAX_REGISTRY_PASSWORD", "ci-pw")
    assert found(host) == ("ci", "ci-pw")


def test_keys_are_matched_as_containers_image_matches_them(home):
    path = write_json(home / ".config" / "containers" / "auth.json", {"auths": {
        "https://reg.example:5000/v1/": {"auth": b64("url:pw")},
        "reg.example/team": {"auth": b64("team:pw")},
        "reg.example/team/app": {"auth": b64("app:pw")},
        "reg.example": {"auth": b64("host:pw")},
    }})
    assert found("reg.example:5000") == ("url", "pw")
    assert found("reg.example", "team/app") == ("app", "pw")        # the longest namespace wins
    assert found("reg.example", "team/other/x") == ("team", "pw")
    assert found("reg.example", "elsewhere") == ("host", "pw")
    assert found("reg.example") == ("host", "pw")
    assert lookup("reg.example:5001") is None                        # a port is part of the name
    assert path.exists()


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "index.docker.io", "docker.io",
                                 "registry-1.docker.io"])
@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_has_many_names_and_one_key(home, key, host):
    write_json(home / ".docker" / "config.json", {"auths": {key: {"auth": b64("hubuser:hubpw")}}})
    assert found(host) == ("hubuser", "hubpw")
    # shlax's client talks to Docker Hub where its API is, whatever name the image used
    assert Registry(host).endpoint == "registry-1.docker.io"
    assert Registry("reg.example:5000").endpoint == "reg.example:5000"


# -- credential helpers --------------------------------------------------------------------------------
def test_creds_store_and_cred_helpers(home, make_helper):
    store = make_helper("shlaxstore", {"reg.example:5000": ["from-store", "s1"],
                                       "https://index.docker.io/v1/": ["hub-from-store", "s2"]})
    special = make_helper("shlaxspecial", {"special.example": ["from-special", "s3"]})
    write_json(home / ".docker" / "config.json", {
        "auths": {"reg.example:5000": {}, "plain.example": {"auth": b64("plain:pw")}},
        "credsStore": "shlaxstore",
        "credHelpers": {"special.example": "shlaxspecial"},
    })
    assert found("reg.example:5000") == ("from-store", "s1")
    # Docker Hub: the helper is asked for the key docker login uses, whatever name the image used
    assert found("docker.io") == ("hub-from-store", "s2")
    assert found("registry-1.docker.io") == ("hub-from-store", "s2")
    assert store.asked() == ["reg.example:5000", "https://index.docker.io/v1/", "https://index.docker.io/v1/"]
    # credHelpers names the helper of one registry, before the store
    assert found("special.example") == ("from-special", "s3")
    assert special.asked() == ["special.example"]
    # an auths entry with the credentials themselves is used as it is
    assert found("plain.example") == ("plain", "pw")
    # the store has nothing: anonymous (Docker's "credentials not found")
    assert lookup("unknown.example") is None
    creds = lookup("reg.example:5000")
    assert creds is not None and "docker-credential-shlaxstore" in creds.source and "s1" not in repr(creds)


def test_cred_helpers_in_a_containers_auth_file(home, make_helper):
    make_helper("shlaxpodman", {"reg.example": ["podman-helper", "pw"]})
    write_json(home / ".config" / "containers" / "auth.json", {"auths": {}, "credHelpers": {"reg.example": "shlaxpodman"}})
    assert found("reg.example") == ("podman-helper", "pw")


def test_a_helper_that_is_missing_or_fails_is_a_clear_error(home, make_helper):
    config = write_json(home / ".docker" / "config.json", {"credsStore": "nosuchhelper"})
    with pytest.raises(CredentialsError) as info:
        lookup("reg.example")
    err = info.value
    assert "docker-credential-nosuchhelper is not on PATH" in err.message
    assert str(config) in err.where and "credsStore" in err.where and "install" in err.hint
    assert err.exit_code == 2

    helper = make_helper("shlaxbroken", {"__fail__": "the keyring is locked"})
    config.write_text(json.dumps({"credHelpers": {"reg.example": "shlaxbroken"}}))
    with pytest.raises(CredentialsError) as info:
        lookup("reg.example")
    assert "docker-credential-shlaxbroken failed for reg.example: the keyring is locked" in info.value.message
    assert "credHelpers['reg.example']" in info.value.where
    assert "echo reg.example | docker-credential-shlaxbroken get" in info.value.hint

    helper.set({"reg.example": ["__garbage__", "x"]})
    with pytest.raises(CredentialsError) as info:
        lookup("reg.example")
    assert "not JSON" in info.value.message


def test_the_cli_says_what_to_fix_when_a_helper_is_missing(shlax, home, tmp_path, token_registry, monkeypatch):
    write_json(home / ".docker" / "config.json", {"credsStore": "nosuchhelper"})
    proc = shlax("cache", "export", "--to", f"{token_registry.host}/shlax-test/helper-missing", "--no-tls-verify",
                 env={"SHLAX_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(home), "PATH": os.environ["PATH"]})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "docker-credential-nosuchhelper is not on PATH" in proc.stderr and "Traceback" not in proc.stderr


# -- what the credentials open: the real registry, token authentication -------------------------------------
def test_a_helper_s_password_opens_the_token_registry(home, make_helper, token_registry, nonce):
    helper = make_helper("shlaxci", {token_registry.host: ["alice", "alice-pw"]})
    write_json(home / ".docker" / "config.json", {"credsStore": "shlaxci"})
    repo = f"shlax-test/helper-{nonce}"
    issued = len(token_registry.tokens.issued)
    reg = Registry(token_registry.host, tls_verify=False)
    reg.put_blob(repo, BLOB_DIGEST, BLOB)
    assert reg.get_blob(repo, BLOB_DIGEST) == BLOB
    assert [user for user, _ in token_registry.tokens.issued[issued:]] == ["alice", "alice"]
    assert helper.asked() == [token_registry.host]  # asked once per client, not per request

    # bob's password from the helper: the registry's own answer says whose rights are missing
    helper.set({token_registry.host: ["bob", "bob-pw"]})
    with pytest.raises(Exception) as info:
        Registry(token_registry.host, tls_verify=False).put_blob(repo, BLOB_DIGEST, BLOB)
    assert "the credentials of user 'bob' do not allow POST" in str(info.value)
    assert "bob-pw" not in str(info.value)


def test_an_identity_token_is_traded_through_oauth2(home, make_helper, token_registry, nonce):
    """Docker's ``<token>`` user: the secret is a refresh token, POSTed to the token service."""
    make_helper("shlaxoauth", {token_registry.host: ["<token>", "alice-identity-token"]})
    write_json(home / ".docker" / "config.json", {"credHelpers": {token_registry.host: "shlaxoauth"}})
    repo = f"shlax-test/oauth-{nonce}"
    tokens = token_registry.tokens
    posts, issued = len(tokens.posts), len(tokens.issued)
    reg = Registry(token_registry.host, tls_verify=False)
    reg.put_blob(repo, BLOB_DIGEST, BLOB)
    assert reg.get_blob(repo, BLOB_DIGEST) == BLOB
    assert tokens.posts[posts:] == [("refresh_token", "shlax"), ("refresh_token", "shlax")]
    assert [user for user, _ in tokens.issued[issued:]] == ["alice", "alice"]

    # an identity token the service does not know: refused, and the message names no secret
    make_helper("shlaxoauth", {token_registry.host: ["<token>", "stale-token-value"]})
    with pytest.raises(Exception) as info:
        Registry(token_registry.host, tls_verify=False).tags(repo)
    assert "refused the credentials of the identity token" in str(info.value)
    assert "stale-token-value" not in str(info.value)

    # the same in an auth.json entry (``identitytoken``, as docker login writes it)
    (home / ".docker" / "config.json").unlink()
    write_json(home / ".config" / "containers" / "auth.json",
               {"auths": {token_registry.host: {"auth": "", "identitytoken": "alice-identity-token"}}})
    assert Registry(token_registry.host, tls_verify=False).tags(repo) == set()


def test_buildah_gets_what_the_helper_gave_and_no_file_is_left(home, make_helper, token_registry, tmp_path,
                                                             monkeypatch):
    make_helper("shlaxbuildah", {token_registry.host: ["alice", "alice-pw"]})
    write_json(home / ".docker" / "config.json", {"credsStore": "shlaxbuildah"})
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    found = login(token_registry.host, "shlax-test/x")
    assert found is not None and not found.portable  # a machine's own helper: it stays here
    ref = f"{token_registry.host}/shlax-test/x:k"
    with auth_args(Buildah(), ref, Transfer(credentials=found)) as args:
        assert args[0] == "--authfile"
        path = Path(args[1])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        data = json.loads(path.read_text())
        assert base64.b64decode(data["auths"][token_registry.host]["auth"]).decode() == "alice:alice-pw"
    assert list((tmp_path / "tmp").iterdir()) == []
    # a remote builder gets only the environment's credentials (its own files are its own)
    remote = Buildah()
    remote.transport = object()  # type: ignore[assignment]
    with auth_args(remote, ref, Transfer(credentials=found)) as args:
        assert args == []
    # nothing found: no file at all, buildah reads its own
    assert login("nothing.example") is None
    with auth_args(Buildah(), "nothing.example/x:k", Transfer()) as args:
        assert args == []
    # an identity token goes as one, for buildah's own OAuth2 exchange
    assert json.loads(auth_json("h", Login("<token>", "tok", identity_token=True))) == \
        {"auths": {"h": {"auth": b64("<token>:"), "identitytoken": "tok"}}}


@pytest.mark.parametrize("secret", [("alice", "alice-pw"), ("<token>", "alice-identity-token")],
                         ids=["password", "identity-token"])
def test_shlax_push_with_credentials_from_a_helper(shlax, home, make_helper, token_registry, registry_busybox,
                                                   tmp_path, nonce, secret):
    """The real CLI: buildah pushes through token authentication with what the helper gave
    (a password, or an identity token buildah trades itself), Docker's config in $DOCKER_CONFIG."""
    make_helper("shlaxpush", {token_registry.host: list(secret)})
    docker_dir = tmp_path / "docker-config"
    write_json(docker_dir / "config.json", {"credsStore": "shlaxpush"})
    image = f"{token_registry.host}/shlax-test/pushed-{nonce}"
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(f"""
[targets.app]
base = "{registry_busybox}"
image = "{image}"
tls_verify = false
steps = [{{ run = ["sh", "-c", "echo {nonce} > /one"] }}]
""")
    env = {"HOME": str(home), "DOCKER_CONFIG": str(docker_dir)}  # the fixture emptied the rest
    tags = token_registry.registry.root / "docker/registry/v2/repositories/shlax-test" / f"pushed-{nonce}" / \
        "_manifests/tags"
    try:
        posts = len(token_registry.tokens.posts)
        proc = shlax("run", str(recipe), "--push", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # the image, and its SBOM listed under the referrers fallback tag (sha256-DIGEST)
        assert [p.name for p in tags.iterdir() if not p.name.startswith("sha256-")] == ["latest"]
        assert secret[1] not in proc.stdout + proc.stderr
        # an identity token is traded by buildah itself (containers/image's OAuth2 POST)
        assert ("refresh_token", "containers/image") in token_registry.tokens.posts[posts:] or secret[0] != "<token>"
    finally:
        buildah("rmi", f"{image}:latest", check=False)


def test_a_helper_runs_once_per_registry_and_run(shlax, home, make_helper, token_registry, registry_busybox,
                                                 tmp_path, nonce):
    """--cache-to pushes every layer with buildah, and asks the registry's API: the helper is
    asked once for shlax's client and once for buildah, not once per layer."""
    helper = make_helper("shlaxcount", {token_registry.host: ["alice", "alice-pw"]})
    write_json(home / ".docker" / "config.json", {"credsStore": "shlaxcount"})
    recipe = tmp_path / "shlax.toml"
    recipe.write_text(f"""
[targets.app]
base = "{registry_busybox}"
image = "localhost/shlax-test-helper-count-{nonce}"
steps = [
  {{ run = ["sh", "-c", "echo {nonce} > /one"] }},
  {{ run = ["sh", "-c", "echo two > /two"] }},
  {{ run = ["sh", "-c", "echo three > /three"] }},
]
""")
    cache = f"{token_registry.host}/shlax-test/helper-count-{nonce}"
    proc = shlax("run", str(recipe), "--json", "--cache-to", cache, "--no-tls-verify", env={"HOME": str(home)})
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not [e for e in events(proc.stdout) if e["event"] == "warning"], proc.stdout
        layers = token_registry.registry.root / "docker/registry/v2/repositories/shlax-test" / \
            f"helper-count-{nonce}" / "_manifests/tags"
        assert len(list(layers.iterdir())) >= 3
        assert helper.asked() == [token_registry.host, token_registry.host]
    finally:
        buildah("rmi", f"localhost/shlax-test-helper-count-{nonce}:latest", check=False)
