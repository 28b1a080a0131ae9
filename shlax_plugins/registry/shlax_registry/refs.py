"""Registry references (``host[:port]/repo[:tag]``) and telling them apart from tarball paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from shlax_core.errors import ShlaxError
from shlax_core.names import REPOSITORY_PATH as _REPO, TAG as _TAG  # the core's one reference grammar

TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".oci", ".oci.tar")


@dataclass(frozen=True)
class Ref:
    """A repository in a registry, optionally with a tag."""

    host: str           # "reg.example:5000"
    repo: str           # "cache/app"
    tag: Optional[str] = None

    def with_tag(self, tag: str) -> "Ref":
        return Ref(self.host, self.repo, tag)

    @property
    def repository(self) -> str:
        return f"{self.host}/{self.repo}"

    def __str__(self) -> str:
        return f"{self.host}/{self.repo}" + (f":{self.tag}" if self.tag else "")

    def docker(self) -> str:
        """The transport reference buildah and skopeo take."""
        return f"docker://{self}"


def is_tarball(text: str) -> bool:
    """A path (absolute, ./relative, ~, or ending in .tar/.tgz/.oci) rather than a registry ref."""
    return text.startswith(("/", "./", "../", "~")) or text.endswith(TARBALL_SUFFIXES)


def parse(text: str, *, what: str = "registry reference", tag_allowed: bool = True) -> Ref:
    """``host[:port]/repo[:tag]``; the host part is required (shlax never guesses docker.io)."""
    value = text.strip()
    if value.startswith("docker://"):
        value = value[len("docker://"):]
    host, sep, rest = value.partition("/")
    if not sep or not rest or not ("." in host or ":" in host or host == "localhost"):
        raise ShlaxError(f"{what} {text!r} does not name a registry host",
                         hint="write HOST[:PORT]/REPOSITORY, e.g. reg.example:5000/cache/app")
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not tag_allowed:
            raise ShlaxError(f"{what} {text!r} must not have a tag: shlax tags layers by their keys",
                             hint=f"use {host}/{rest}")
        if not _TAG.match(tag):
            raise ShlaxError(f"{what} {text!r}: {tag!r} is not a valid tag")
    if not _REPO.match(rest):
        raise ShlaxError(f"{what} {text!r}: {rest!r} is not a valid repository name",
                         hint="lower-case letters, digits, and . _ - separators, e.g. cache/app")
    return Ref(host, rest, tag)
