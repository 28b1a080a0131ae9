"""The OCI distribution (registry HTTP API v2) over urllib: what shlax needs and no more.

Cheap existence checks are the point: one ``tags/list`` call tells which layer keys a cache
repository holds, and a ``HEAD`` per blob avoids uploading what is already there. Token
(``Bearer``) and ``Basic`` authentication follow the registry's ``WWW-Authenticate`` challenge;
credentials come from :mod:`shlax_registry.auth` and never appear in messages.

With ``tls_verify=False`` the client tries HTTPS without verification, then plain HTTP, like
buildah's ``--tls-verify=false``.

A registry is outside input, and this module is the one door it comes through: every failure —
a refused or broken connection, no answer within the timeout (``SHLAX_REGISTRY_TIMEOUT``, 30 s),
an unexpected status, a redirect loop, a body cut short or larger than any registry document, a
JSON document of the wrong shape (checked by :mod:`shlax_registry.answers`), a blob that does not
match its digest — is one :class:`RegistryError` saying what the registry did. Callers decide
what it means: a warning and a local build for the layer cache, a clear error for the commands.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import math
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

from shlax_core.errors import ShlaxError

from shlax_registry import answers, auth, credentials
from shlax_registry.errors import RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = ", ".join([OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.index.v1+json"])
CHUNK = 1 << 20
#: a blob that does not bring at least this much in every stretch of the timeout (2 KiB/s with
#: the default 30 s) has stalled: a trickle is no answer either
PROGRESS = 64 << 10
#: the largest JSON document a registry sends (a tag page, a manifest, a token): the
#: distribution spec caps manifests at 4 MiB
DOC_LIMIT = 4 << 20
#: the largest blob read into memory when its size is not known (the download caches' index,
#: whose size its manifest gives, is bounded by that instead)
MEMORY_LIMIT = 64 << 20
#: a tag list longer than this many pages is a loop
MAX_PAGES = 10_000
ENV_TIMEOUT = "SHLAX_REGISTRY_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
#: what a token is worth when the token service does not say (the Docker token protocol's default)
TOKEN_SECONDS = 60
#: the OAuth2 client id sent with an identity (refresh) token, as the token protocol asks for one
CLIENT_ID = "shlax"
_UNSET = object()


def default_timeout() -> float:
    """Seconds to wait for a registry to answer: ``$SHLAX_REGISTRY_TIMEOUT``, else 30."""
    text = os.environ.get(ENV_TIMEOUT, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ShlaxError(f"{ENV_TIMEOUT}={text!r} is not a number of seconds", hint=f"e.g. {ENV_TIMEOUT}=30")
    return value


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Blob GETs may redirect to object storage: follow them over http(s) only, and without our
    Authorization when they leave the registry's host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a {urllib.parse.urlsplit(newurl).scheme or 'relative'} "
                                         "URL refused", headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


class Registry:
    """One registry host. Thread-safe enough for parallel blob uploads (tokens are idempotent)."""

    def __init__(self, host: str, *, tls_verify: bool = True, timeout: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.host = host
        #: where the API answers: Docker Hub's names all lead to registry-1.docker.io (as
        #: containers/image and Docker send them); any other host answers itself
        self.endpoint = "registry-1.docker.io" if credentials.normalize(host) == "docker.io" else host
        self.tls_verify = tls_verify
        self.timeout = timeout if timeout is not None else default_timeout()
        self._clock = clock                                   # token lifetimes (a test moves it)
        self._scheme: Optional[str] = None
        self._tokens: dict[str, tuple[str, float]] = {}      # scope -> (token, refresh after)
        self._bearer: Optional[tuple[str, str]] = None        # (realm, service) of the last challenge
        self._basic: Optional[str] = None
        self._built: Optional[urllib.request.OpenerDirector] = None
        self._found: Any = _UNSET                             # the credentials, looked up once

    @property
    def _opener(self) -> urllib.request.OpenerDirector:
        """Built on first use: loading the system CA store costs about 30 ms, and without TLS
        verification it is not loaded at all (a plain-HTTP cache registry never needs it).
        http and https only (and the ``*_proxy`` variables), no ftp or file URLs."""
        if self._built is None:
            if self.tls_verify:
                ctx = ssl.create_default_context()
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            opener = urllib.request.OpenerDirector()
            for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                            urllib.request.HTTPSHandler(context=ctx), _Redirects(),
                            urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
                opener.add_handler(handler)
            self._built = opener
        return self._built

    # -- transport -----------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self._scheme or 'https'}://{self.endpoint}{path}"

    def scheme(self) -> str:
        """https, or http when TLS verification is off and the registry speaks plain HTTP."""
        if self._scheme is None:
            self._send("GET", "/v2/", scope=None, ok=(200, 401)).close()
        return self._scheme or "https"

    def _send(self, method: str, path: str, *, scope: Optional[str], data: Union[bytes, BinaryIO, None] = None,
              headers: Optional[dict[str, str]] = None, ok: tuple[int, ...] = (200,),
              retry_auth: bool = True) -> Any:
        """The response (its body unread) when its status is in ``ok``; else a RegistryError."""
        # the first request finds the scheme itself (no separate /v2/ probe: one round trip
        # less): any HTTP answer over https settles https; a TLS failure with verification
        # off settles plain http and sends the request again
        probing = self._scheme is None and not path.startswith(("http://", "https://"))
        url = self._url(path)
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        authz = self._authorization(scope)
        if authz:
            req.add_header("Authorization", authz)
        try:
            resp = self._opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if probing:
                self._scheme = "https"
            if exc.code in ok:
                return exc
            if exc.code == 401 and retry_auth and self._challenge(exc.headers.get("WWW-Authenticate", ""), scope):
                exc.close()
                _rewind(data)
                return self._send(method, path, scope=scope, data=data, headers=headers, ok=ok, retry_auth=False)
            raise self._refused(exc, method, url) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            err = self._failed(exc, self.host)
            if probing and err.tls and not self.tls_verify:
                self._scheme = "http"
                _rewind(data)
                return self._send(method, path, scope=scope, data=data, headers=headers, ok=ok,
                                  retry_auth=retry_auth)
            raise err from None
        if probing:
            self._scheme = "https"
        if resp.status not in ok:
            resp.close()
            raise RegistryError(f"{self.host} answered HTTP {resp.status} to {method} {_path(url)}", status=resp.status)
        return resp

    def _failed(self, exc: BaseException, who: str) -> RegistryError:
        """A connection that failed, timed out, or got something that is not HTTP."""
        reason: Any = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            message = f"{who} did not answer within {self.timeout:g}s"
        elif isinstance(reason, ConnectionError) and not isinstance(reason, ConnectionRefusedError):
            message = f"{who} closed the connection ({reason})"
        elif isinstance(reason, http.client.HTTPException):
            message = f"{who} does not answer in HTTP ({type(reason).__name__}: {_clean(str(reason).strip())})"
        elif isinstance(reason, ValueError):
            message = f"{who}: bad URL ({reason})"
        else:
            message = f"cannot reach the registry {who}: {reason}"
        err = RegistryError(message, unreachable=True)
        err.tls = isinstance(reason, ssl.SSLError) or "SSL" in str(reason)
        return err

    def _refused(self, exc: urllib.error.HTTPError, method: str, url: str) -> RegistryError:
        """An HTTP status we did not expect: the registry's own error code and message (its JSON
        body), what the challenge said, never our request headers."""
        code, where = exc.code, f"{method} {_path(url)}"
        if 300 <= code < 400:
            exc.close()
            if "infinite loop" in str(exc.msg):
                return RegistryError(f"{self.host} redirected {where} in a loop (or too many times)", status=code)
            return RegistryError(f"{self.host} redirected {where} (HTTP {code}: {_clean(str(exc.msg))})", status=code)
        detail = ""
        try:
            errors = answers.parse(self._read(exc, "an error", 64 << 10), answers.ERRORS, "an error").get("errors")
            detail = _clean("; ".join(f"{e.get('code', '?')}: {e.get('message', '')}" for e in errors or []))
        except (RegistryError, AttributeError, ValueError):
            pass  # an error body we cannot read: the status says enough
        if code == 401:
            creds = self._credentials()
            challenge = exc.headers.get("WWW-Authenticate", "")
            if creds is None:
                message = f"{self.host} requires credentials for {where}"
            elif "insufficient_scope" in challenge:
                message = f"{self.host}: the credentials of {_whose(creds)} do not allow {where}"
            else:
                message = f"{self.host} refused the credentials of {_whose(creds)} for {where}"
        elif code == 403:
            message = f"{self.host} denied {where}"
        else:
            message = f"{self.host} answered HTTP {code} to {where}"
        return RegistryError(message + (f" ({detail})" if detail else ""), status=code)

    def _read(self, resp: Any, what: str, limit: int) -> bytes:
        """A whole (small) document: at most ``limit`` bytes, all of its Content-Length, within
        the timeout (a server that trickles a byte a second does not hold us for ever)."""
        try:
            length = int(resp.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if length > limit:
            resp.close()
            raise RegistryError(f"{what} from {self.host} is {length} bytes, more than the {limit} a registry "
                                "document may be")
        deadline = time.monotonic() + self.timeout
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = resp.read1(64 << 10)  # what has come: read() would wait for all 64 KiB
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise RegistryError(f"{what} from {self.host} is more than the {limit} bytes a registry "
                                        "document may be")
                if time.monotonic() > deadline:
                    raise RegistryError(f"{what} from {self.host} did not arrive within {self.timeout:g}s",
                                        unreachable=True)
                parts.append(chunk)
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(f"{what} from {self.host} was cut off ({_reason(exc)})", unreachable=True) from None
        finally:
            resp.close()
        if length >= 0 and size != length:
            raise RegistryError(f"{what} from {self.host} was cut off ({size} of {length} bytes)", unreachable=True)
        return b"".join(parts)

    def _document(self, path: str, scope: str, shape: answers.Shape, what: str, *,
                  headers: Optional[dict[str, str]] = None, ok: tuple[int, ...] = (200,)) -> tuple[Any, bytes, Any]:
        """GET a JSON document: (response, raw body, checked value); (response, b"", None) when
        the status is an expected non-200 one (404: no such repository or tag)."""
        resp = self._send("GET", path, scope=scope, headers=headers, ok=ok)
        if resp.status != 200:
            resp.close()
            return resp, b"", None
        raw = self._read(resp, what, DOC_LIMIT)
        return resp, raw, answers.parse(raw, shape, f"{what} from {self.host}")

    # -- authentication ------------------------------------------------------------------------
    def _credentials(self) -> Optional[auth.Credentials]:
        """Looked up once per client (a credential helper runs once per registry and run, not
        once per request); see :mod:`shlax_registry.credentials` for where from."""
        if self._found is _UNSET:
            self._found = auth.credentials(self.host)
        return self._found

    def _authorization(self, scope: Optional[str]) -> Optional[str]:
        key = scope or ""
        found = self._tokens.get(key) or self._tokens.get("")
        if found and key in self._tokens and self._clock() >= found[1] and self._bearer:
            # expired: a fresh token before the request rather than after its 401 (a blob upload
            # would be sent twice)
            try:
                self._fetch_token(key, key)
                found = self._tokens[key]
            except RegistryError:
                found = None  # the request's own 401 will say what is wrong
        if found:
            return f"Bearer {found[0]}"
        return self._basic

    def _challenge(self, header: str, scope: Optional[str]) -> bool:
        """Answer a 401: fetch a token (Bearer) or send credentials (Basic). False: we cannot
        (no challenge, an unknown scheme, no credentials for Basic)."""
        kind, _, params = header.strip().partition(" ")
        creds = self._credentials()
        if kind.lower() == "basic":
            if creds is None or creds.identity_token or self._basic:
                return False  # refused: _refused says whose credentials (a token is no password)
            self._basic = "Basic " + base64.b64encode(f"{creds.user}:{creds.secret}".encode()).decode()
            return True
        if kind.lower() != "bearer":
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"{self.host} asks for a token from {realm!r}, which is not an http(s) URL", status=401)
        self._bearer = (realm, fields.get("service", ""))
        self._fetch_token(scope or "", fields.get("scope") or scope)
        return True

    def _fetch_token(self, key: str, wanted: Optional[str]) -> None:
        """A token for ``wanted`` (space-separated scopes) from the token service of the last
        challenge, with our credentials if we have any; kept under ``key``.

        A password goes as Basic authentication on a GET; an identity token (Docker's OAuth2
        refresh token, from ``docker login`` to a registry that gives one, or a credential
        helper's ``<token>`` user) is traded in a POST, ``grant_type=refresh_token``: the token
        protocol's OAuth2 form, the one way a refresh token is accepted."""
        assert self._bearer is not None
        realm, service = self._bearer
        service_host = urllib.parse.urlsplit(realm).netloc
        scopes = (wanted or "").split()
        creds = self._credentials()
        if creds is not None and creds.identity_token:
            form = urllib.parse.urlencode([("grant_type", "refresh_token"), ("service", service),
                                           ("client_id", CLIENT_ID), ("refresh_token", creds.secret),
                                           ("scope", " ".join(scopes))]).encode()
            req = urllib.request.Request(realm, data=form, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        else:
            query = [("service", service)] + [("scope", s) for s in scopes]
            req = urllib.request.Request(realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query))
            if creds is not None:
                req.add_header("Authorization",
                               "Basic " + base64.b64encode(f"{creds.user}:{creds.secret}".encode()).decode())
        who = f"the token service {service_host} of {self.host}"
        try:
            resp = self._opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (401, 403):
                whose = f"the credentials of {_whose(creds)}" if creds else "anonymous access (no credentials)"
                raise RegistryError(f"{who} refused {whose} (HTTP {exc.code})", status=401) from None
            raise RegistryError(f"{who} answered HTTP {exc.code}", status=exc.code) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            raise self._failed(exc, who) from None
        data = answers.parse(self._read(resp, "the token", DOC_LIMIT), answers.TOKEN, f"the token from {who}")
        token = data.get("token") or data.get("access_token")
        seconds = data.get("expires_in") or TOKEN_SECONDS
        # refresh a little early: a request sent just before expiry must not arrive just after
        self._tokens[key] = (token, self._clock() + seconds - min(10.0, seconds / 4))

    # -- API -----------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise RegistryError unless the registry answers the v2 API."""
        self.scheme()

    def tags(self, repo: str) -> set[str]:
        """Every tag of ``repo`` (empty when the repository does not exist yet): one call per 1000."""
        scope = f"repository:{repo}:pull"
        found: set[str] = set()
        path: Optional[str] = f"/v2/{repo}/tags/list?n=1000"
        seen: set[str] = set()
        while path:
            if path in seen or len(seen) >= MAX_PAGES:
                raise RegistryError(f"{self.host} pages the tag list of {repo} in a loop")
            seen.add(path)
            resp, _raw, data = self._document(path, scope, answers.TAGS, f"the tag list of {repo}", ok=(200, 404))
            if data is None:
                return found
            found.update(data["tags"] or [])
            path = self._next_page(resp, path, repo)
        return found

    def _next_page(self, resp: Any, current: str, repo: str) -> Optional[str]:
        """The ``Link: <...>; rel="next"`` of a tag page, on this registry only (another host
        would get our token)."""
        m = re.search(r'<([^>]*)>\s*;\s*rel="?next"?', resp.headers.get("Link", "") or "")
        if not m:
            return None
        target = urllib.parse.urlsplit(urllib.parse.urljoin(self._url(current), m.group(1)))
        here = urllib.parse.urlsplit(self._url("/"))
        if (target.scheme, target.netloc) != (here.scheme, here.netloc):
            raise RegistryError(f"{self.host} sends the next page of the tag list of {repo} to another place "
                                f"({target.scheme}://{target.netloc}): refused")
        return target.path + (f"?{target.query}" if target.query else "")

    def has_blob(self, repo: str, digest: str) -> bool:
        resp = self._send("HEAD", f"/v2/{repo}/blobs/{_digest(digest)}", scope=f"repository:{repo}:pull",
                          ok=(200, 404))
        resp.close()
        return resp.status == 200

    def put_blob(self, repo: str, digest: str, source: Union[bytes, Path]) -> None:
        """Monolithic upload (POST then PUT ?digest=); the registry verifies the digest."""
        scope = f"repository:{repo}:pull,push"
        start = f"/v2/{repo}/blobs/uploads/"
        resp = self._send("POST", start, scope=scope, data=b"", ok=(202,))
        resp.close()
        where = resp.headers.get("Location")
        location = urllib.parse.urljoin(self._url(start), where or "")
        if not where or urllib.parse.urlsplit(location).scheme not in ("http", "https"):
            raise RegistryError(f"{self.host} started an upload to {repo} without an http(s) Location to send it to "
                                f"(Location: {where!r})")
        location += ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": _digest(digest)})
        if isinstance(source, Path):
            size = source.stat().st_size
            with source.open("rb") as f:
                self._send("PUT", location, scope=scope, data=f, ok=(201,),
                           headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}).close()
        else:
            self._send("PUT", location, scope=scope, data=source, ok=(201,),
                       headers={"Content-Type": "application/octet-stream"}).close()

    def get_blob(self, repo: str, digest: str, dest: Optional[Path] = None,
                 size: Optional[int] = None) -> Optional[bytes]:
        """Fetch a blob, checking its digest; into ``dest`` (streamed) or returned as bytes.

        ``size``, when the caller knows it (a manifest said), bounds what is read: a registry
        that sends more is cut off at once, not after filling the disk."""
        resp = self._send("GET", f"/v2/{repo}/blobs/{_digest(digest)}", scope=f"repository:{repo}:pull")
        algo, _, want = digest.partition(":")
        h = hashlib.new(algo)
        what = f"blob {digest[:19]} of {repo}"
        try:
            length = int(resp.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        limit = size if size is not None else (MEMORY_LIMIT if dest is None else None)
        if length >= 0 and ((size is not None and length != size) or (limit is not None and length > limit)):
            resp.close()
            raise RegistryError(f"{what} from {self.host} is {length} bytes, not the {size if size is not None else limit}"
                                f"{'' if size is not None else ' at most'} expected")
        tmp = dest.with_name(dest.name + ".part") if dest is not None else None
        parts: list[bytes] = []
        got = 0

        window = [time.monotonic(), 0]  # start of the current stretch of the timeout, bytes since

        def read() -> bytes:
            try:
                chunk = resp.read1(CHUNK)  # what has come: read() would wait for a whole CHUNK
            except (OSError, http.client.HTTPException) as exc:
                raise RegistryError(f"{what} from {self.host} was cut off ({_reason(exc)})", unreachable=True) from None
            # a blob may take long, but it must keep coming: at least PROGRESS bytes in every
            # stretch of the timeout (a server sending a byte a second never trips a socket timeout)
            window[1] += len(chunk)
            now = time.monotonic()
            if window[1] >= PROGRESS:
                window[:] = [now, 0]
            elif chunk and now - window[0] > self.timeout:
                raise RegistryError(f"{what} from {self.host} stalled (less than {PROGRESS >> 10} KiB in "
                                    f"{self.timeout:g}s)", unreachable=True)
            return chunk

        try:
            with (tmp.open("wb") if tmp is not None else _Null()) as out:
                while True:
                    chunk = read()
                    if not chunk:
                        break
                    got += len(chunk)
                    if limit is not None and got > limit:
                        raise RegistryError(f"{what} from {self.host} is larger than the {limit} bytes expected")
                    h.update(chunk)
                    if tmp is not None:
                        out.write(chunk)
                    else:
                        parts.append(chunk)
            if length >= 0 and got != length:
                raise RegistryError(f"{what} from {self.host} was cut off ({got} of {length} bytes)", unreachable=True)
            if h.hexdigest() != want:
                raise RegistryError(f"{what} from {self.host} does not match its digest")
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        finally:
            resp.close()
        if tmp is not None and dest is not None:
            tmp.replace(dest)
            return None
        return b"".join(parts)

    def get_manifest(self, repo: str, reference: str) -> Optional[tuple[dict[str, Any], str]]:
        """(manifest, its digest) or None when the tag does not exist."""
        _resp, raw, data = self._document(f"/v2/{repo}/manifests/{reference}", f"repository:{repo}:pull",
                                          answers.MANIFEST, f"the manifest {repo}:{reference}",
                                          headers={"Accept": MANIFEST_TYPES}, ok=(200, 404))
        if data is None:
            return None
        return data, "sha256:" + hashlib.sha256(raw).hexdigest()

    def descriptor(self, repo: str, reference: str) -> Optional[dict[str, Any]]:
        """The OCI descriptor (mediaType, digest, size) of a manifest, or None when there is none:
        what an artifact's ``subject`` names."""
        resp, raw, data = self._document(f"/v2/{repo}/manifests/{reference}", f"repository:{repo}:pull",
                                         answers.MANIFEST, f"the manifest {repo}:{reference}",
                                         headers={"Accept": MANIFEST_TYPES}, ok=(200, 404))
        if data is None:
            return None
        media_type = data.get("mediaType") or resp.headers.get("Content-Type", OCI_MANIFEST).split(";")[0]
        return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)}

    def referrers(self, repo: str, digest: str) -> Optional[list[dict[str, Any]]]:
        """The descriptors of the artifacts referring to ``digest`` (OCI 1.1 referrers API), or
        None when the registry does not serve that API (404): then the fallback tag
        ``sha256-HEX`` holds them (see shlax_plugins/sbom)."""
        _resp, _raw, data = self._document(f"/v2/{repo}/referrers/{_digest(digest)}", f"repository:{repo}:pull",
                                           answers.MANIFEST, f"the referrers of {repo}@{digest}",
                                           headers={"Accept": "application/vnd.oci.image.index.v1+json"},
                                           ok=(200, 404))
        if data is None:
            return None
        return list(data.get("manifests") or [])

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
        self._send("PUT", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull,push",
                   data=body, headers={"Content-Type": media_type}, ok=(201,)).close()
        return "sha256:" + hashlib.sha256(body).hexdigest()


class _Null:
    """A ``with`` target when a blob is read into memory rather than a file."""

    def __enter__(self) -> "_Null":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _rewind(data: Any) -> None:
    if hasattr(data, "seek"):
        data.seek(0)


def _digest(digest: str) -> str:
    """A digest about to go into a URL: sha256/sha512 hex, nothing else (it came from outside)."""
    if answers.DIGEST.check(digest, "digest") is not None:
        raise RegistryError(f"{digest[:80]!r} is not a sha256 or sha512 digest")
    return digest


def _path(url: str) -> str:
    """The path of a URL for messages (an upload's query carries the registry's state: noise)."""
    return urllib.parse.urlsplit(url).path or "/"


def _clean(text: str, limit: int = 200) -> str:
    """Text a registry chose, fit for a terminal line: control characters (escape sequences,
    newlines) shown escaped, at most ``limit`` characters."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return f"{len(exc.partial)} bytes, then the connection closed"
    return str(exc) or type(exc).__name__


def _whose(creds: auth.Credentials) -> str:
    """Who the credentials are, for messages: the user, or the identity token's source (never
    the secret)."""
    if creds.identity_token:
        return f"the identity token of {creds.source}" if creds.source else "an identity token"
    return f"user {creds.user!r}"
