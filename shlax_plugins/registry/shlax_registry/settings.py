"""What one image target asked for: CLI options (``shlax run --push --cache-to ...``) win over the
target's own keys (``push``, ``cache_to``, ``cache_from``, ``tls_verify``).

TLS verification is on unless either the command line (``--no-tls-verify``) or the target
(``tls_verify = false``) turns it off: the flag's default cannot be told from an explicit
``--tls-verify``, so "off" is the only thing either side can say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from shlax_registry import refs
from shlax_registry.errors import RegistryError

if TYPE_CHECKING:  # the HTTP client (and ssl) is imported only when a registry is used
    from shlax_registry.client import Registry


@dataclass
class Settings:
    push: bool
    cache_to: Optional[refs.Ref]
    cache_from: Optional[refs.Ref]
    tls_verify: bool


def of(backend: Any) -> Settings:
    opts = backend.session.options or {}
    params = backend.params
    where = getattr(backend.target, "where", None)

    def ref(option: str) -> Optional[refs.Ref]:
        value = opts.get(option) or getattr(params, option, None)
        if not value:
            return None
        try:
            return refs.parse(value, what=f"--{option.replace('_', '-')}", tag_allowed=False)
        except Exception as exc:  # a ShlaxError: say where it came from when it is the recipe's
            if not opts.get(option) and where and getattr(exc, "where", None) is None:
                exc.where = where  # type: ignore[attr-defined]
            raise

    return Settings(
        push=bool(opts.get("push") or getattr(params, "push", False)),
        cache_to=ref("cache_to"),
        cache_from=ref("cache_from"),
        tls_verify=bool(opts.get("tls_verify", True)) and getattr(params, "tls_verify", True) is not False,
    )


class RunState:
    """Per-run memory: one client per registry, registries found down (asked once per run), and
    keys already pushed. Kept on the session so two runs in one process never share it."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, bool], "Registry"] = {}
        self.down: dict[str, str] = {}
        self.pushed: set[tuple[str, str]] = set()
        #: credentials found per (host, repository), for buildah (see auth.buildah_args)
        self.credentials: dict[Any, Any] = {}

    def client(self, host: str, tls_verify: bool) -> "Registry":
        key = (host, tls_verify)
        if key not in self.clients:
            from shlax_registry.client import Registry

            self.clients[key] = Registry(host, tls_verify=tls_verify)
        return self.clients[key]


def state(session: Any) -> RunState:
    found = getattr(session, "_shlax_registry_state", None)
    if found is None:
        found = RunState()
        setattr(session, "_shlax_registry_state", found)
    return found


def tls_hint(exc: RegistryError, tls_verify: bool) -> str:
    if tls_verify and getattr(exc, "tls", False):
        return " (a plain-HTTP registry? pass --no-tls-verify or set tls_verify = false in the target)"
    return ""
