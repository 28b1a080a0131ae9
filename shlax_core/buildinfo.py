"""What an image build knows of where it comes from: the pinned time, the commit, the CI context.

Two things come out of it, for any image backend (docs/reproducible.md, docs/ci-tags.md):

- **the pinned epoch** an image is dated with: ``SOURCE_DATE_EPOCH`` when set (the
  reproducible-builds.org convention), else the time of the last commit of the git repository
  holding the recipe, else 0 (1970-01-01). It dates the image's configuration (``created``, the
  ``org.opencontainers.image.created`` label), never a step layer: layers are dated 0 whatever
  the epoch, so a new commit invalidates no cached layer.
- **the source context**: commit SHA, branch, tag, default branch and repository URL, from GitHub
  Actions' or GitLab CI's variables, else from ``git`` in the recipe's folder. It fills the
  ``{placeholders}`` of a target's ``tags`` and the OCI labels ``revision``, ``source``,
  ``version``.

Both are configuration: they change the final image's key, never a step's, so a new commit or
tag runs no step, only the final configuration commit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Optional

from shlax_core.errors import ShlaxError

EPOCH_ENV = "SOURCE_DATE_EPOCH"
#: the time every file of every step layer carries: fixed, so a layer never depends on the date
LAYER_EPOCH = 0
#: placeholders a tag template may use (docs/ci-tags.md)
PLACEHOLDERS = ("sha", "short_sha", "branch", "tag", "ref", "version")
#: conditions after " if " in a tag template
CONDITIONS = ("default_branch", "branch", "tag")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Source:
    """Where the recipe's code comes from; None where the context does not say."""

    sha: Optional[str] = None
    branch: Optional[str] = None
    tag: Optional[str] = None
    default_branch: Optional[str] = None
    url: Optional[str] = None
    #: "github", "gitlab", "git" or None (no repository at all)
    origin: Optional[str] = None

    @property
    def short_sha(self) -> Optional[str]:
        return self.sha[:8] if self.sha else None

    @property
    def ref(self) -> Optional[str]:
        return self.tag or self.branch

    @property
    def version(self) -> Optional[str]:
        """A git tag's name (a release); else the branch; else the short SHA."""
        return self.tag or self.branch or self.short_sha

    def value(self, name: str) -> Optional[str]:
        return getattr(self, name)

    def as_dict(self) -> dict[str, Optional[str]]:
        return asdict(self)


def _git(folder: Path, *args: str) -> Optional[str]:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


def epoch(folder: Optional[Path], env: Mapping[str, str] = os.environ) -> tuple[int, str]:
    """(seconds since 1970, where it came from) for the image's dates."""
    text = env.get(EPOCH_ENV, "").strip()
    if text:
        if not text.isdigit():
            raise ShlaxError(f"{EPOCH_ENV}={text!r} is not a number of seconds since 1970",
                             hint=f"e.g. {EPOCH_ENV}=$(git log -1 --format=%ct), or unset it")
        return int(text), EPOCH_ENV
    if folder is not None:
        out = _git(folder, "log", "-1", "--format=%ct")
        if out and out.isdigit():
            return int(out), "the last git commit"
    return 0, "no SOURCE_DATE_EPOCH and no git commit: 1970-01-01"


def rfc3339(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _public_url(url: Optional[str]) -> Optional[str]:
    """A repository URL fit for a label: no credentials, ``.git`` dropped, scp-like ssh forms as https."""
    if not url:
        return None
    m = re.match(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$", url)  # git@host:group/repo.git
    if m:
        url = f"https://{m.group(1)}/{m.group(2)}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "ssh", "git"):
        return None  # a local path says nothing to whoever pulls the image
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port and parts.scheme in ("http", "https") else "")
    path = parts.path[:-4] if parts.path.endswith(".git") else parts.path
    return urllib.parse.urlunsplit(("https" if parts.scheme in ("ssh", "git") else parts.scheme, netloc, path, "", ""))


def source(folder: Optional[Path], env: Mapping[str, str] = os.environ) -> Source:
    """The source context: GitHub Actions, GitLab CI, else git in ``folder``, else nothing."""
    if env.get("GITHUB_ACTIONS") == "true" or env.get("GITHUB_SHA"):
        ref_type, name = env.get("GITHUB_REF_TYPE"), env.get("GITHUB_REF_NAME")
        ref = env.get("GITHUB_REF", "")
        if ref_type is None and ref.startswith("refs/tags/"):
            ref_type = "tag"
        if env.get("GITHUB_HEAD_REF"):  # a pull request: its branch, not "123/merge"
            ref_type, name = "branch", env["GITHUB_HEAD_REF"]
        default = env.get("SHLAX_DEFAULT_BRANCH") or _github_default(env.get("GITHUB_EVENT_PATH"))
        server, repo = env.get("GITHUB_SERVER_URL", "https://github.com"), env.get("GITHUB_REPOSITORY")
        return Source(sha=env.get("GITHUB_SHA") or None,
                      branch=name if ref_type != "tag" else None, tag=name if ref_type == "tag" else None,
                      default_branch=default, url=f"{server}/{repo}" if repo else None, origin="github")
    if env.get("GITLAB_CI") == "true" or env.get("CI_COMMIT_SHA"):
        tag = env.get("CI_COMMIT_TAG") or None
        branch = None if tag else (env.get("CI_COMMIT_BRANCH") or env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
                                   or env.get("CI_COMMIT_REF_NAME") or None)
        return Source(sha=env.get("CI_COMMIT_SHA") or None, branch=branch, tag=tag,
                      default_branch=env.get("CI_DEFAULT_BRANCH") or None,
                      url=_public_url(env.get("CI_PROJECT_URL")), origin="gitlab")
    if folder is None:
        return Source()
    sha = _git(folder, "rev-parse", "HEAD")
    if sha is None:
        return Source()
    default = env.get("SHLAX_DEFAULT_BRANCH") or None
    if default is None:
        head = _git(folder, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
        default = head.split("/", 1)[1] if head and "/" in head else _git(folder, "config", "init.defaultBranch")
    return Source(sha=sha, branch=_git(folder, "symbolic-ref", "--quiet", "--short", "HEAD"),
                  tag=_git(folder, "describe", "--tags", "--exact-match", "HEAD"),
                  default_branch=default, url=_public_url(_git(folder, "remote", "get-url", "origin")),
                  origin="git")


def _github_default(event_path: Optional[str]) -> Optional[str]:
    """GitHub names the default branch only in the event's payload."""
    if not event_path:
        return None
    try:
        data = json.loads(Path(event_path).read_text())
        value = data["repository"]["default_branch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) and value else None


# -- tag templates ------------------------------------------------------------------------------
def template_problem(text: str) -> Optional[str]:
    """Why ``text`` is not a tag template (checked at recipe time), or None."""
    body, _, condition = text.partition(" if ")
    if condition and condition.strip() not in CONDITIONS:
        return f"{text!r}: unknown condition {condition.strip()!r} (one of: {', '.join(CONDITIONS)})"
    for name in _PLACEHOLDER.findall(body):
        if name not in PLACEHOLDERS:
            return f"{text!r}: unknown placeholder {{{name}}} (one of: {', '.join('{%s}' % p for p in PLACEHOLDERS)})"
    rest = _PLACEHOLDER.sub("x", body)
    if "{" in rest or "}" in rest or not re.fullmatch(r"[A-Za-z0-9_.-]+", rest) or len(rest) > 128:
        return (f"{text!r} is not a tag template: letters, digits, _ . - and {{placeholders}}, "
                "optionally followed by ' if CONDITION'")
    return None


def is_template(text: str) -> bool:
    return "{" in text or " if " in text


def render(text: str, src: Source) -> Optional[str]:
    """The tag ``text`` gives in this context; None when the context does not provide it (a
    ``{tag}`` outside a tag build, a condition not met): that tag is then not given."""
    body, _, condition = text.partition(" if ")
    condition = condition.strip()
    if condition == "default_branch" and not (src.branch and src.branch == src.default_branch):
        return None
    if condition == "branch" and not src.branch:
        return None
    if condition == "tag" and not src.tag:
        return None
    missing = False

    def fill(m: "re.Match[str]") -> str:
        nonlocal missing
        value = src.value(m.group(1))
        if not value:
            missing = True
            return ""
        return _TAG_CHARS.sub("-", value)

    out = _PLACEHOLDER.sub(fill, body)
    if missing:
        return None
    out = out.lstrip(".-")[:128]
    return out or None


def labels(src: Source, created: int) -> dict[str, str]:
    """The OCI annotations of the image's provenance (those the context knows)."""
    out = {"org.opencontainers.image.created": rfc3339(created)}
    if src.sha:
        out["org.opencontainers.image.revision"] = src.sha
    if src.url:
        out["org.opencontainers.image.source"] = src.url
    if src.version:
        out["org.opencontainers.image.version"] = src.version
    return out


@dataclass(frozen=True)
class BuildInfo:
    epoch: int
    epoch_origin: str
    source: Source

    def labels(self) -> dict[str, str]:
        return labels(self.source, self.epoch)

    def fingerprint(self) -> list[object]:
        """What the fast path compares: a new commit, tag or epoch is not "nothing changed"."""
        return [self.epoch, sorted(self.source.as_dict().items(), key=lambda kv: kv[0])]


def of(folder: Optional[Path], env: Mapping[str, str] = os.environ) -> BuildInfo:
    seconds, origin = epoch(folder, env)
    return BuildInfo(seconds, origin, source(folder, env))
