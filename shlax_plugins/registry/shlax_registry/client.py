"""The OCI distribution (registry HTTP API v2) over urllib: what shlax needs and no more.

Cheap existence checks are the point: one ``tags/list`` call tells which layer keys a cache
repository holds, and a ``HEAD`` per blob avoids uploading what is already there. Token
(``Bearer``) and ``Basic`` authentication follow the registry's ``WWW-Authenticate`` challenge;
credentials come from :mod:`shlax_registry.auth` and never appear in messages.

With ``tls_verify=False`` the client tries HTTPS without verification, then plain HTTP, like
buildah's ``--tls-verify=false``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

from shlax_registry import auth
from shlax_registry.errors import RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = ", ".join([OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.index.v1+json"])
CHUNK = 1 << 20


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Blob GETs may redirect to object storage: follow them, but without our Authorization."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


class Registry:
    """One registry host. Thread-safe enough for parallel blob uploads (tokens are idempotent)."""

    def __init__(self, host: str, *, tls_verify: bool = True, timeout: float = 30.0):
        self.host = host
        self.tls_verify = tls_verify
        self.timeout = timeout
        self._scheme: Optional[str] = None
        self._tokens: dict[str, str] = {}
        self._basic: Optional[str] = None
        self._built: Optional[urllib.request.OpenerDirector] = None

    @property
    def _opener(self) -> urllib.request.OpenerDirector:
        """Built on first use: loading the system CA store costs about 30 ms, and without TLS
        verification it is not loaded at all (a plain-HTTP cache registry never needs it)."""
        if self._built is None:
            if self.tls_verify:
                ctx = ssl.create_default_context()
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._built = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), _NoRedirect())
        return self._built

    # -- transport -----------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self._scheme or 'https'}://{self.host}{path}"

    def scheme(self) -> str:
        """https, or http when TLS verification is off and the registry speaks plain HTTP."""
        if self._scheme is None:
            self._send("GET", "/v2/", scope=None, ok=(200, 401))
        return self._scheme or "https"

    def _send(self, method: str, path: str, *, scope: Optional[str], data: Union[bytes, BinaryIO, None] = None,
              headers: Optional[dict[str, str]] = None, ok: tuple[int, ...] = (200,),
              retry_auth: bool = True) -> Any:
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
                if hasattr(data, "seek"):
                    data.seek(0)  # type: ignore[union-attr]
                return self._send(method, path, scope=scope, data=data, headers=headers, ok=ok, retry_auth=False)
            raise RegistryError(_describe(exc, method, self.host), status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            err = RegistryError(f"cannot reach the registry {self.host}: {reason}", unreachable=True)
            err.tls = isinstance(reason, ssl.SSLError) or "SSL" in str(reason)  # type: ignore[attr-defined]
            if probing and err.tls and not self.tls_verify:  # type: ignore[attr-defined]
                self._scheme = "http"
                if hasattr(data, "seek"):
                    data.seek(0)  # type: ignore[union-attr]
                return self._send(method, path, scope=scope, data=data, headers=headers, ok=ok,
                                  retry_auth=retry_auth)
            raise err from None
        if probing:
            self._scheme = "https"
        if resp.status not in ok:
            raise RegistryError(f"{method} {self.host}: unexpected HTTP {resp.status}", status=resp.status)
        return resp

    def _authorization(self, scope: Optional[str]) -> Optional[str]:
        if scope and scope in self._tokens:
            return f"Bearer {self._tokens[scope]}"
        if self._tokens.get(""):
            return f"Bearer {self._tokens['']}"
        return self._basic

    def _challenge(self, header: str, scope: Optional[str]) -> bool:
        """Answer a 401: fetch a token (Bearer) or send credentials (Basic). False: cannot."""
        kind, _, params = header.partition(" ")
        creds = auth.credentials(self.host)
        if kind.lower() == "basic":
            if creds is None or self._basic:
                return False
            self._basic = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            return True
        if kind.lower() != "bearer":
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.get("realm")
        if not realm:
            return False
        query = {"service": fields.get("service", "")}
        wanted = fields.get("scope") or scope
        if wanted:
            query["scope"] = wanted
        req = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(query)}")
        if creds:
            req.add_header("Authorization",
                           "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode())
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                body = json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            return False
        token = body.get("token") or body.get("access_token")
        if not token:
            return False
        self._tokens[scope or ""] = token
        return True

    # -- API -----------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise RegistryError unless the registry answers the v2 API."""
        self.scheme()

    def tags(self, repo: str) -> set[str]:
        """Every tag of ``repo`` (empty when the repository does not exist yet): one call per 1000."""
        scope = f"repository:{repo}:pull"
        found: set[str] = set()
        path: Optional[str] = f"/v2/{repo}/tags/list?n=1000"
        while path:
            resp = self._send("GET", path, scope=scope, ok=(200, 404))
            if resp.status == 404:
                return found
            body = json.loads(resp.read() or b"{}")
            found.update(body.get("tags") or [])
            m = re.search(r'<([^>]+)>;\s*rel="next"', resp.headers.get("Link", ""))
            path = m.group(1) if m else None
        return found

    def has_blob(self, repo: str, digest: str) -> bool:
        resp = self._send("HEAD", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull", ok=(200, 404))
        return resp.status == 200

    def put_blob(self, repo: str, digest: str, source: Union[bytes, Path]) -> None:
        """Monolithic upload (POST then PUT ?digest=); the registry verifies the digest."""
        scope = f"repository:{repo}:pull,push"
        resp = self._send("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, data=b"", ok=(202,))
        location = urllib.parse.urljoin(self._url(f"/v2/{repo}/blobs/uploads/"), resp.headers["Location"])
        location += ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        if isinstance(source, Path):
            size = source.stat().st_size
            with source.open("rb") as f:
                self._send("PUT", location, scope=scope, data=f, ok=(201,),
                           headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        else:
            self._send("PUT", location, scope=scope, data=source, ok=(201,),
                       headers={"Content-Type": "application/octet-stream"})

    def get_blob(self, repo: str, digest: str, dest: Optional[Path] = None) -> Optional[bytes]:
        """Fetch a blob, checking its digest; into ``dest`` (streamed) or returned as bytes."""
        resp = self._send("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull")
        algo, _, want = digest.partition(":")
        h = hashlib.new(algo)
        if dest is None:
            data = resp.read()
            h.update(data)
            if h.hexdigest() != want:
                raise RegistryError(f"blob {digest} from {self.host} does not match its digest")
            return data
        tmp = dest.with_name(dest.name + ".part")
        with tmp.open("wb") as f:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != want:
            tmp.unlink()
            raise RegistryError(f"blob {digest} from {self.host} does not match its digest")
        tmp.replace(dest)
        return None

    def get_manifest(self, repo: str, reference: str) -> Optional[tuple[dict[str, Any], str]]:
        """(manifest, its digest) or None when the tag does not exist."""
        resp = self._send("GET", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull",
                          headers={"Accept": MANIFEST_TYPES}, ok=(200, 404))
        if resp.status == 404:
            return None
        body = resp.read()
        return json.loads(body), "sha256:" + hashlib.sha256(body).hexdigest()

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
        self._send("PUT", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull,push",
                   data=body, headers={"Content-Type": media_type}, ok=(201,))
        return "sha256:" + hashlib.sha256(body).hexdigest()


def _describe(exc: urllib.error.HTTPError, method: str, host: str) -> str:
    """The registry's own error code and message (its JSON body), never our request headers."""
    detail = ""
    try:
        body = json.loads(exc.read() or b"{}")
        errors = body.get("errors") or []
        if errors:
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, OSError, AttributeError):
        pass
    if exc.code == 401:
        detail = detail or "authentication required"
    elif exc.code == 403:
        detail = detail or "access denied"
    return f"{host} answered HTTP {exc.code} to {method}" + (f" ({detail})" if detail else "")


