"""Typed parameters: actions and backends declare a dataclass, the core validates recipe data against it.

Declaring parameters as a dataclass gives three things from one place: validation with the key
path of a bad value, canonical values for the cache key, and the docs `shlax actions` prints.
Field docs live in ``field(metadata={"doc": "..."})``.
"""

from __future__ import annotations

import dataclasses
import keyword
import sys
import contextvars
import typing
from typing import Any, Callable, Optional, Union

from shlax_core.errors import RecipeError

if sys.version_info >= (3, 10):
    from types import UnionType
else:  # pragma: no cover
    UnionType = type(None)

MISSING = dataclasses.MISSING
_LOCATE: contextvars.ContextVar = contextvars.ContextVar("locate", default=lambda p: None)


def doc(text: str, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A dataclass field with its documentation attached."""
    kwargs: dict[str, Any] = {"metadata": {"doc": text}}
    if default is not MISSING:
        kwargs["default"] = default
    if default_factory is not MISSING:
        kwargs["default_factory"] = default_factory
    return dataclasses.field(**kwargs)


def type_name(tp: Any) -> str:
    """Human name of a type annotation, as TOML users think of it."""
    origin = typing.get_origin(tp)
    if tp is str:
        return "string"
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer"
    if tp is float:
        return "number"
    if tp is type(None):
        return "nothing"
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_plural(args[0])}" if args else "list"
    if origin is dict:
        args = typing.get_args(tp)
        return f"table of {_plural(args[1])}" if args else "table"
    if dataclasses.is_dataclass(tp):
        return "table"
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union or origin is UnionType:
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def _plural(tp: Any) -> str:
    """``strings``; ``strings or tables`` for a union (not ``string or tables``)."""
    if typing.get_origin(tp) in (Union, UnionType):
        return " or ".join(_plural(a) for a in typing.get_args(tp) if a is not type(None))
    return type_name(tp) + "s"


def _value_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


class _Mismatch(Exception):
    pass


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (lists and tables copied)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except _Mismatch:
                continue
        raise _Mismatch(key, tp, value)
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise _Mismatch(key, tp, value)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _Mismatch(key, tp, value)
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch(key, tp, value)
        _, item = typing.get_args(tp) or (str, Any)
        return {str(k): coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch(key, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch(key, tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch(key, tp, value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch(key, tp, value)
        return build(tp, value, path=key, locate=_LOCATE.get(), what="key")
    raise TypeError(f"unsupported parameter type {tp!r} for {key}")


def _a(noun: str) -> str:
    """``a string``, ``an integer``; a quoted choice (``'a' or 'b'``) stays bare."""
    if noun[:1] in "'\"":
        return noun
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def key_of(name: str) -> str:
    """The recipe key of a field: a Python keyword takes a trailing ``_`` (``from_`` is ``from``)."""
    return name[:-1] if name.endswith("_") and keyword.iskeyword(name[:-1]) else name


def fields(cls: type) -> dict[str, dataclasses.Field]:
    """The parameters by recipe key."""
    return {key_of(f.name): f for f in dataclasses.fields(cls)}


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def closest(name: str, choices: typing.Iterable[str]) -> list[str]:
    import difflib  # only when something is misspelled

    return difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)


def build(cls: type, data: dict, *, path: str, locate: Callable[[str], Optional[str]] = lambda p: None,
          what: str = "parameter") -> Any:
    """Validate ``data`` against dataclass ``cls`` and instantiate it.

    ``path`` is the key path of ``data`` in the recipe (``targets.app.steps[1].copy``);
    ``locate`` maps a key path to ``file:line`` for the error message.
    """
    token = _LOCATE.set(locate)
    try:
        return _build(cls, data, path=path, locate=locate, what=what)
    finally:
        _LOCATE.reset(token)


def _build(cls: type, data: dict, *, path: str, locate: Callable[[str], Optional[str]], what: str) -> Any:
    known = fields(cls)
    types = hints(cls)
    refused = getattr(cls, "refused", {})  # keys a recipe cannot take, with why and what instead
    for key in data:
        if key in refused:
            raise RecipeError(f"{path}.{key}: {refused[key]}", where=locate(f"{path}.{key}"))
        if key not in known:
            sugg = closest(key, known)
            hint = f"did you mean {' or '.join(repr(s) for s in sugg)}?" if sugg else (
                f"known {what}s: {', '.join(sorted(known))}" if known else f"this takes no {what}s")
            raise RecipeError(f"unknown {what} {key!r} in {path}", where=locate(f"{path}.{key}"), hint=hint)
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
                raise RecipeError(f"{path} needs {what} {name!r} ({type_name(types[f.name])})",
                                  where=locate(path), hint=f.metadata.get("doc"))
            continue
        try:
            values[f.name] = coerce(data[name], types[f.name], f"{path}.{name}")
        except _Mismatch as exc:
            bad_key, tp, bad = exc.args
            raise RecipeError(
                f"{bad_key} must be {_a(type_name(tp))}, not {_a(_value_name(bad))} ({_short(bad)})",
                where=locate(bad_key) or locate(f"{path}.{name}"),
                hint=f.metadata.get("doc")) from None
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if check is not None:
        problem = check()
        if isinstance(problem, tuple):  # (key, message): point at that key's line
            key, message = problem
            raise RecipeError(f"{path}.{key}: {message}", where=locate(f"{path}.{key}"))
        if problem:
            raise RecipeError(f"{path}: {problem}", where=locate(path))
    return obj


def describe(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, doc) rows for documentation."""
    rows = []
    types = hints(cls)
    for name, f in fields(cls).items():
        if f.default is not MISSING:
            default = repr(f.default)
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            default = repr(f.default_factory())  # type: ignore[misc]
        else:
            default = "required"
        rows.append((name, type_name(types[f.name]), default, f.metadata.get("doc", "")))
    return rows


def canonical(obj: Any) -> Any:
    """Parameters as plain, ordered JSON data: the form that goes into a cache key."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj
