"""What one image target asked for: CLI options (``shlax run --push --cache-to ...``) win over the
target's own keys (``push``, ``cache_to``, ``cache_from``, ``tls_verify``). Both are this plugin's,
declared to the core through ``shlax_plugin_options`` (:func:`declared`): the core adds the
options to ``run``/``plan`` and validates the keys with the target's others.

TLS verification is on unless either the command line (``--no-tls-verify``) or the target
(``tls_verify = false``) turns it off: the flag's default cannot be told from an explicit
``--tls-verify``, so "off" is the only thing either side can say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from shlax_core.options import PluginOptions
from shlax_core.params import doc

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


@dataclass(frozen=True)
class RegistryOptions:
    """``shlax run``'s registry options, as given."""

    push: bool = False
    cache_to: Optional[str] = None
    cache_from: Optional[str] = None
    tls_verify: bool = True


@dataclass
class RegistryParams:
    """The registry keys of an image target."""

    push: bool = doc("push the final image to its registry name after the build (like --push)", False)
    cache_to: Optional[str] = doc("registry repository to push every step layer to, tagged by key (like --cache-to)",
                                  None)
    cache_from: Optional[str] = doc("registry repository to pull missing step layers from (like --cache-from)", None)
    tls_verify: bool = doc("verify registry TLS for push and the layer cache; false for plain-HTTP registries", True)

    def validate(self) -> Any:
        for key in ("cache_to", "cache_from"):
            value = getattr(self, key)
            if value is not None and (not value.strip() or value.startswith("-")):
                return (key, f"{value!r} is not a registry repository (e.g. \"reg.example:5000/cache/app\")")
        return None


def declared() -> PluginOptions:
    import click

    return PluginOptions(
        owner="registry", Values=RegistryOptions, Params=RegistryParams, phase="push",
        cli=[click.Option(["--push"], is_flag=True, help="Push the final images to their registry names."),
             click.Option(["--cache-to"], metavar="REGISTRY/REPO",
                          help="Push every new step layer there, under its key."),
             click.Option(["--cache-from"], metavar="REGISTRY/REPO", help="Pull missing step layers from there."),
             click.Option(["--tls-verify/--no-tls-verify"], default=True,
                          help="Verify registry TLS (default: on).")])


def of(backend: Any) -> Settings:
    opts = backend.session.options.of("registry") or RegistryOptions()
    params = backend.target.parts.get("registry") or RegistryParams()

    def ref(option: str) -> Optional[refs.Ref]:
        given = getattr(opts, option)
        value = given or getattr(params, option)
        if not value:
            return None
        try:
            return refs.parse(value, what=f"--{option.replace('_', '-')}", tag_allowed=False)
        except Exception as exc:  # a ShlaxError: say where it came from when it is the recipe's
            if not given and getattr(exc, "where", None) is None:
                exc.where = backend.target.where_of(option)  # type: ignore[attr-defined]
            raise

    return Settings(
        push=opts.push or params.push,
        cache_to=ref("cache_to"),
        cache_from=ref("cache_from"),
        tls_verify=opts.tls_verify and params.tls_verify,
    )


class RunState:
    """Per-run memory: one client per registry, registries found down (asked once per run), and
    keys already pushed. Kept on the session so two runs in one process never share it."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, bool], "Registry"] = {}
        self.down: dict[str, str] = {}
        self.pushed: set[tuple[str, str]] = set()
        #: credentials found per (host, repository), for the image backend (see auth.login)
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
