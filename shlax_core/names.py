"""Checks for recipe values that end up in command lines: image references, tags, user, group,
container and environment variable names.

A value beginning with ``-`` that reaches ``buildah`` or ``podman`` is parsed as an option
(``image = "--privileged"``), and a malformed one fails only after steps ran. Backends and
actions check such values here, at recipe time (from their ``Params.validate``), so every one is
a ``file:line`` error before anything runs; the argv builders also keep user data after ``--`` or
in ``--flag=value`` form. One image-reference grammar serves every plugin (buildah names, podman
images, registry references): the distribution reference grammar, digests included.
"""

from __future__ import annotations

import re
from typing import Optional

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
#: one path component of a repository name: lower case, separators inside only
PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
#: a repository path below the registry host: ``cache/app``
REPOSITORY_PATH = re.compile(rf"^{PATH_COMPONENT}(?:/{PATH_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
#: a tag: letters, digits, ``_ . -``, at most 128, not starting with ``.`` or ``-``
TAG = re.compile(rf"^{_TAG}$")
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
#: ``[host[:port]/]path[:tag][@digest]``
REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{PATH_COMPONENT}(?:/{PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$")
_ACCOUNT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?"
#: a user or group: a name (``app``, ``www-data``) or a number
ACCOUNT = re.compile(rf"^{_ACCOUNT}$")
#: ``user`` or ``user:group`` (names or numbers), as chown and ``--user`` take them
OWNER = re.compile(rf"^{_ACCOUNT}(?::{_ACCOUNT})?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: a template variable's name (a recipe's ``[vars]``, an inventory's, ``--var``): the same grammar
VARIABLE = ENV_NAME
#: what podman and buildah accept as a container name (and podman as a volume or pod name)
CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

REFERENCE_HINT = ('lower-case path components (letters, digits, . _ -, not at the ends), an optional '
                  'registry host[:port] and an optional :tag or @digest, e.g. "localhost/app:1.2"')


def image_reference(value: str, *, what: str = "image name") -> Optional[str]:
    """A problem with ``value`` as an image reference, or None when it is one."""
    if not value:
        return f"the {what} is empty"
    if value.startswith("-"):
        return f"{what} {value!r} begins with '-': it would be read as an option"
    if len(value) > 255 or not REFERENCE.match(value):
        return f"{value!r} is not a valid {what}: {REFERENCE_HINT}"
    return None


def tag(value: str) -> Optional[str]:
    if not TAG.match(value):
        return f"{value!r} is not a valid tag: letters, digits, _ . - (at most 128, not starting with . or -)"
    return None


def owner(value: str, *, what: str = "owner") -> Optional[str]:
    """``user`` or ``user:group``, each a name or a number."""
    if not OWNER.match(value):
        return (f"{what} {value!r} is not USER or USER:GROUP (names or numbers; letters, digits, _ . -, "
                "not starting with - or .)")
    return None


def account(value: str, *, what: str = "user") -> Optional[str]:
    """One user or group name (or number)."""
    if not ACCOUNT.match(value):
        return f"{what} {value!r} is not a user or group name (letters, digits, _ . -, not starting with - or .)"
    return None


def env_names(env: "dict[str, str]") -> Optional[str]:
    for name in env:
        if not ENV_NAME.match(name):
            return f"{name!r} is not a variable name (letters, digits and _, not starting with a digit)"
    return None


def container(value: str) -> Optional[str]:
    if not CONTAINER.match(value):
        return (f"container name {value!r} may hold only letters, digits, '.', '_' and '-', and must "
                "start with a letter or digit")
    return None


def absolute_path(value: str, *, what: str) -> Optional[str]:
    if not value.startswith("/"):
        return f"{what} {value!r} must be an absolute path"
    if "\0" in value or "\n" in value:
        return f"{what} {value!r} holds a NUL or newline character"
    return None


def program(value: str, *, what: str) -> Optional[str]:
    """A program to run: a path or a name in PATH, never an option."""
    if not value or value.startswith("-") or any(c in value for c in "\0\n"):
        return f"{what} {value!r} is not a program name or path"
    return None
