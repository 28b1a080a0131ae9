"""Tags and OCI labels from the CI context (docs/ci-tags.md): GitHub Actions, GitLab CI and a
plain git checkout, with the variables each CI sets, set here by the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, buildah, events
from shlax_core import buildinfo

SHA = "0123456789abcdef0123456789abcdef01234567"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any CI's variables (CI itself runs these tests)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "CI_", "GITLAB_")) and k not in ("CI", "SOURCE_DATE_EPOCH")}
    return {**env, "NO_COLOR": "1", **extra}


# -- the context and the template syntax (no image) ----------------------------------------------
def test_github_context() -> None:
    src = buildinfo.source(None, {"GITHUB_ACTIONS": "true", "GITHUB_SHA": SHA, "GITHUB_REF_NAME": "feature/x",
                                  "GITHUB_REF_TYPE": "branch", "GITHUB_REPOSITORY": "org/app",
                                  "GITHUB_SERVER_URL": "https://github.com"})
    assert (src.sha, src.branch, src.tag, src.url) == (SHA, "feature/x", None, "https://github.com/org/app")
    assert buildinfo.render("{branch}", src) == "feature-x"
    assert buildinfo.render("sha-{short_sha}", src) == "sha-01234567"
    assert buildinfo.render("{tag}", src) is None
    assert buildinfo.render("latest if default_branch", src) is None  # the default branch is unknown here


def test_github_tag_build_and_default_branch_from_the_event(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"repository": {"default_branch": "main"}}))
    env = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": SHA, "GITHUB_REF_NAME": "v1.2.0", "GITHUB_REF_TYPE": "tag",
           "GITHUB_EVENT_PATH": str(event)}
    src = buildinfo.source(None, env)
    assert (src.tag, src.branch, src.version) == ("v1.2.0", None, "v1.2.0")
    assert buildinfo.render("{tag}", src) == "v1.2.0"
    assert buildinfo.render("latest if default_branch", src) is None
    env.update(GITHUB_REF_NAME="main", GITHUB_REF_TYPE="branch")
    assert buildinfo.render("latest if default_branch", buildinfo.source(None, env)) == "latest"


def test_gitlab_context() -> None:
    env = {"GITLAB_CI": "true", "CI_COMMIT_SHA": SHA, "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_BRANCH": "main",
           "CI_DEFAULT_BRANCH": "main", "CI_PROJECT_URL": "https://gitlab.example/group/app"}
    src = buildinfo.source(None, env)
    assert [buildinfo.render(t, src) for t in ("{ref}", "latest if default_branch", "{tag}")] == \
        ["main", "latest", None]
    labels = buildinfo.labels(src, 1700000000)
    assert labels == {"org.opencontainers.image.created": "2023-11-14T22:13:20Z",
                      "org.opencontainers.image.revision": SHA,
                      "org.opencontainers.image.source": "https://gitlab.example/group/app",
                      "org.opencontainers.image.version": "main"}
    tagged = buildinfo.source(None, {**env, "CI_COMMIT_TAG": "2.0", "CI_COMMIT_REF_NAME": "2.0",
                                     "CI_COMMIT_BRANCH": ""})
    assert (tagged.tag, tagged.branch, buildinfo.render("latest if default_branch", tagged)) == ("2.0", None, None)


@pytest.mark.parametrize("text", ["{nope}", "x if sometimes", "{sha", "a b", "x" * 129 + "{sha}"])
def test_bad_templates_are_named(text: str) -> None:
    assert buildinfo.template_problem(text) is not None


def test_credentials_never_reach_the_source_label() -> None:
    assert buildinfo._public_url("https://user:token@gitlab.example/g/app.git") == "https://gitlab.example/g/app"
    assert buildinfo._public_url("git@github.com:org/app.git") == "https://github.com/org/app"
    assert buildinfo._public_url("/srv/git/app") is None


def test_bad_epoch_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="SOURCE_DATE_EPOCH"):
        buildinfo.epoch(None, {"SOURCE_DATE_EPOCH": "yesterday"})


# -- real images -------------------------------------------------------------------------------------
def git(where: Path, *args: str, **env: str) -> str:
    return subprocess.run(["git", "-C", str(where), *args], check=True, capture_output=True, text=True,
                          env={**clean_env(), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example", **env}).stdout.strip()


def shlax(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shlax_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def labels_of(ref: str) -> dict[str, str]:
    info = json.loads(buildah("inspect", "--type", "image", ref).stdout)
    return info["OCIv1"]["config"].get("Labels") or {}


def id_of(ref: str):
    proc = buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def names_of(ref: str, *candidates: str) -> set[str]:
    """Which of ``candidates`` name the same image as ``ref`` (inspected one by one: listing the
    shared store races with other sessions removing their images)."""
    image = id_of(ref)
    return {c for c in candidates if id_of(c) == image}


@pytest.fixture
def project(tmp_path: Path, busybox_image: str, nonce: str) -> Path:
    tmp_path = tmp_path / "repo"
    tmp_path.mkdir()
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.app]
        base = "{busybox_image}"
        image = "localhost/shlax-ci-{nonce}"
        tags = ["{{short_sha}}", "{{branch}}", "{{tag}}", "latest if default_branch", "fixed"]
        steps = [ {{ run = ["sh", "-c", "echo {nonce} > /nonce"] }} ]
    """))
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "remote", "add", "origin", "https://ci:secret@git.example/team/app.git")
    git(tmp_path, "add", "shlax.toml")
    git(tmp_path, "commit", "-qm", "one", GIT_COMMITTER_DATE="@1700000000 +0000")
    return tmp_path


def test_github_actions_build(project: Path) -> None:
    image = (project / "shlax.toml").read_text().split('image = "')[1].split('"')[0]
    event = project.parent / "event.json"
    event.write_text(json.dumps({"repository": {"default_branch": "main"}}))
    env = clean_env(GITHUB_ACTIONS="true", GITHUB_SHA=SHA, GITHUB_REF_NAME="main", GITHUB_REF_TYPE="branch",
                    GITHUB_REPOSITORY="team/app", GITHUB_SERVER_URL="https://github.com",
                    GITHUB_EVENT_PATH=str(event), SOURCE_DATE_EPOCH="1700000000")
    proc = shlax("run", "--json", cwd=project, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wanted = {f"{image}:latest", f"{image}:01234567", f"{image}:main", f"{image}:fixed"}
    assert names_of(f"{image}:main", *wanted) == wanted
    assert labels_of(image) == {"org.opencontainers.image.created": "2023-11-14T22:13:20Z",
                                "org.opencontainers.image.revision": SHA,
                                "org.opencontainers.image.source": "https://github.com/team/app",
                                "org.opencontainers.image.version": "main",
                                "io.buildah.version": labels_of("localhost/shlax-test-busybox")["io.buildah.version"]}
    # the next commit, on a release tag: labels are configuration, so no step runs; the tag is given
    env.update(GITHUB_SHA="f" * 40, GITHUB_REF_NAME="v2.0.0", GITHUB_REF_TYPE="tag")
    proc = shlax("run", "--json", cwd=project, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [e["status"] for e in events(proc.stdout) if e["event"] == "step_end"] == ["cached"]
    assert names_of(f"{image}:ffffffff", f"{image}:v2.0.0") == {f"{image}:v2.0.0"}
    assert labels_of(f"{image}:v2.0.0")["org.opencontainers.image.revision"] == "f" * 40
    assert labels_of(f"{image}:v2.0.0")["org.opencontainers.image.version"] == "v2.0.0"
    assert labels_of(f"{image}:main")["org.opencontainers.image.revision"] == SHA  # the older build keeps its tags


def test_gitlab_ci_build(project: Path) -> None:
    image = (project / "shlax.toml").read_text().split('image = "')[1].split('"')[0]
    env = clean_env(GITLAB_CI="true", CI_COMMIT_SHA=SHA, CI_COMMIT_REF_NAME="topic", CI_COMMIT_BRANCH="topic",
                    CI_DEFAULT_BRANCH="main", CI_PROJECT_URL="https://gitlab.example/team/app")
    proc = shlax("run", cwd=project, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = names_of(f"{image}:topic", f"{image}:01234567", f"{image}:latest")
    assert names == {f"{image}:01234567"}  # not the default branch: no latest
    labels = labels_of(f"{image}:topic")
    # no SOURCE_DATE_EPOCH: the last commit's time dates the image
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert labels["org.opencontainers.image.source"] == "https://gitlab.example/team/app"


def test_plain_git_checkout(project: Path) -> None:
    image = (project / "shlax.toml").read_text().split('image = "')[1].split('"')[0]
    sha = git(project, "rev-parse", "HEAD")
    proc = shlax("run", cwd=project, env=clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert names_of(f"{image}:{sha[:8]}", f"{image}:main", f"{image}:latest") == {f"{image}:main"}
    labels = labels_of(f"{image}:main")
    assert labels["org.opencontainers.image.revision"] == sha
    assert labels["org.opencontainers.image.source"] == "https://git.example/team/app"  # no credentials
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    # a new commit: the fast path does not answer with the old labels; no step runs
    (project / "README").write_text("x\n")
    git(project, "add", "README")
    git(project, "commit", "-qm", "two", GIT_COMMITTER_DATE="@1700000100 +0000")
    proc = shlax("run", "--json", cwd=project, env=clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [e["status"] for e in events(proc.stdout) if e["event"] == "step_end"] == ["cached"]
    assert labels_of(f"{image}:main")["org.opencontainers.image.created"] == "2023-11-14T22:15:00Z"


def test_bad_tag_template_is_a_recipe_error(tmp_path: Path, busybox_image: str) -> None:
    (tmp_path / "shlax.toml").write_text(textwrap.dedent(f"""
        [targets.app]
        base = "{busybox_image}"
        tags = ["{{commit}}"]
        steps = []
    """))
    proc = shlax("run", cwd=tmp_path, env=clean_env())
    assert proc.returncode == 2
    assert "shlax.toml:4" in proc.stderr and "{commit}" in proc.stderr and "{short_sha}" in proc.stderr
    assert "Traceback" not in proc.stderr
