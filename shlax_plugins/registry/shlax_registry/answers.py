"""What every JSON document from a registry must look like, checked in one place.

A registry is outside input: a broken proxy, a half-configured server or a hostile one may answer
anything. Every JSON document shlax reads from a registry or an exported artifact (a token, a tag
list, an error body, a manifest, the download-cache index, an OCI layout's ``index.json``) goes
through :func:`parse` with one of the shapes below, so the code that uses it can index it without
guarding each access, and a bad answer becomes one :class:`RegistryError` that says what was
wrong, never an ``AttributeError`` or ``KeyError`` deep in a caller.

A shape is a small declaration: ``Obj(required, optional)``, ``ListOf(item)``, ``Opt(shape)``
(null allowed), ``Str``, ``Int``, ``Num``, ``DIGEST``. Keys a shape does not name are allowed
(registries add their own).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Optional

from shlax_registry.errors import RegistryError


class Shape:
    name = "a value"

    def check(self, value: Any, at: str) -> Optional[str]:
        """None when ``value`` fits, else what is wrong (naming the place ``at``)."""
        raise NotImplementedError


class _Str(Shape):
    name = "a string"

    def __init__(self, pattern: Optional[str] = None, name: Optional[str] = None, nonempty: bool = False):
        self.pattern = re.compile(pattern) if pattern else None
        self.nonempty = nonempty
        if name:
            self.name = name

    def check(self, value: Any, at: str) -> Optional[str]:
        if not isinstance(value, str):
            return f"{_name(at)} is {_kind(value)}, not {self.name}"
        if self.nonempty and not value:
            return f"{_name(at)} is empty"
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return f"{_name(at)} is {_preview(value)}, not {self.name}"
        return None


class _Int(Shape):
    name = "an integer"

    def __init__(self, low: Optional[int] = None, high: Optional[int] = None):
        self.low, self.high = low, high

    def check(self, value: Any, at: str) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{_name(at)} is {_kind(value)}, not an integer"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return f"{_name(at)} is {value}, out of range"
        return None


class _Num(Shape):
    name = "a number"

    def check(self, value: Any, at: str) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{_name(at)} is {_kind(value)}, not a number"
        if not math.isfinite(value):
            return f"{_name(at)} is {value}, not a finite number"
        return None


class Opt(Shape):
    """``shape`` or null."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.name = f"{shape.name} or null"

    def check(self, value: Any, at: str) -> Optional[str]:
        return None if value is None else self.shape.check(value, at)


class ListOf(Shape):
    def __init__(self, item: Shape):
        self.item = item
        self.name = "a list"

    def check(self, value: Any, at: str) -> Optional[str]:
        if not isinstance(value, list):
            return f"{_name(at)} is {_kind(value)}, not a list"
        for i, item in enumerate(value):
            problem = self.item.check(item, f"{at}[{i}]" if at else f"item {i}")
            if problem:
                return problem
        return None


class Obj(Shape):
    """A JSON object with ``required`` keys and ``optional`` ones; ``one_of``: at least one of
    these keys must be there (a token answer names its token ``token`` or ``access_token``)."""

    name = "an object"

    def __init__(self, required: Optional[dict[str, Shape]] = None, optional: Optional[dict[str, Shape]] = None,
                 one_of: tuple[str, ...] = ()):
        self.required = required or {}
        self.optional = optional or {}
        self.one_of = one_of

    def check(self, value: Any, at: str) -> Optional[str]:
        if not isinstance(value, dict):
            return f"{_name(at)} is {_kind(value)}, not an object"
        for key, shape in self.required.items():
            if key not in value:
                return f"{_name(at)} has no {key!r}"
            problem = shape.check(value[key], f"{at}.{key}" if at else key)
            if problem:
                return problem
        for key, shape in self.optional.items():
            if key in value:
                problem = shape.check(value[key], f"{at}.{key}" if at else key)
                if problem:
                    return problem
        if self.one_of and not any(k in value for k in self.one_of):
            return f"{_name(at)} has none of {', '.join(repr(k) for k in self.one_of)}"
        return None


def _name(at: str) -> str:
    return at or "the document"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _preview(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


Str = _Str()
Int = _Int()
Num = _Num()
DIGEST = _Str(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}", name="a sha256 or sha512 digest")

#: the token service's answer (Docker token protocol)
TOKEN = Obj(optional={"token": _Str(nonempty=True), "access_token": _Str(nonempty=True),
                      "expires_in": Opt(_Int(low=0)), "issued_at": Opt(Str)},
            one_of=("token", "access_token"))

#: GET /v2/REPO/tags/list
TAGS = Obj(required={"tags": Opt(ListOf(Str))}, optional={"name": Str})

#: an error body (only read for its messages: a bad one is ignored, never an error itself)
ERRORS = Obj(optional={"errors": Opt(ListOf(Obj(optional={"code": Str, "message": Str})))})

DESCRIPTOR = Obj(required={"mediaType": Str, "digest": DIGEST, "size": _Int(low=0)})

#: a manifest: an image manifest (config, layers) or an index (manifests); callers check which
MANIFEST = Obj(required={"schemaVersion": Int},
               optional={"mediaType": Str, "config": DESCRIPTOR, "layers": ListOf(DESCRIPTOR),
                         "manifests": ListOf(DESCRIPTOR)})

#: an OCI image layout's index.json
LAYOUT_INDEX = Obj(required={"manifests": ListOf(Obj(required={"digest": DIGEST}))})

#: the download caches' index (shlax_registry.downloads): one entry per file
SHA256 = _Str(r"sha256:[0-9a-f]{64}", name="a sha256 digest")
CACHE_FILE = Obj(required={"cache": _Str(nonempty=True), "folder": _Int(low=0), "path": _Str(nonempty=True),
                           "size": _Int(low=0), "mode": _Int(low=0, high=0o7777), "mtime": Num, "digest": SHA256},
                 optional={"blob": Opt(_Str(r"|sha256:[0-9a-f]{64}", name="a sha256 digest"))})
CACHE_INDEX = Obj(required={"files": ListOf(CACHE_FILE)}, optional={"version": Int})


def parse(data: bytes, shape: Shape, what: str) -> Any:
    """The JSON document ``data``, checked against ``shape``; ``what`` names it in errors
    ("the tag list of cache/app from 127.0.0.1:5000")."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise RegistryError(f"{what} is nested too deep to be a registry document") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        start = _preview(data[:60].decode("utf-8", "replace"))
        raise RegistryError(f"{what} is not JSON ({_short(exc)}; it starts with {start})") from None
    problem = shape.check(value, "")
    if problem:
        raise RegistryError(f"{what} has the wrong shape: {problem}")
    return value


def _short(exc: Exception) -> str:
    return str(exc).split(":")[0]
