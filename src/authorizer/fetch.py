"""HTTP(S) fetches of OCSP responses and CRLs, with every limit enforced here.

- http and https only, a few redirects at most, each hop re-checked;
- the host is resolved once and the connection goes to a resolved address that is not inside
  FETCH_BLOCKED_NETWORKS (so a DNS answer cannot point the authorizer at loopback or metadata);
- a per-request timeout, an overall deadline checked between reads (a server trickling bytes
  cannot hold the invocation), and a size cap enforced before and while reading.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from .fetch_rules import is_http_url
from .settings import FetchPolicy

_CHUNK = 256 * 1024
_USER_AGENT = "mtls-revocation-authorizer/0.1"


class FetchError(Exception):
    """A fetch that gave no usable body; `kind` names the failure for logs and metrics."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes | None = None  # POST when set
    content_type: str = ""
    accept: str = "*/*"
    max_bytes: int = 1024 * 1024
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. conditional GET validators


Progress = Callable[[str, int, int | None], None]  # (url, bytes so far, declared length)


class Fetcher:
    def __init__(self, policy: FetchPolicy, progress: Progress | None = None) -> None:
        self._policy = policy
        self._progress = progress

    def fetch(self, request: Request, deadline: float) -> Response:
        """Perform `request`, following redirects, finishing before `deadline` (time.monotonic())."""
        url = request.url
        for _hop in range(self._policy.max_redirects + 1):
            response = self._once(request, url, deadline)
            location = response.headers.get("location")
            if response.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                if request.body is not None and response.status not in (307, 308):
                    raise FetchError("redirect", "a POST redirected to a GET")
                continue
            if response.status not in (200, 304):
                raise FetchError("http_status", f"HTTP {response.status}")
            return response
        raise FetchError("redirect", "too many redirects")

    def _once(self, request: Request, url: str, deadline: float) -> Response:
        if not is_http_url(url):
            raise FetchError("bad_url", "only http and https URLs are fetched")
        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme.lower() == "https"
        try:
            port = parts.port or (443 if https else 80)
        except ValueError as exc:
            raise FetchError("bad_url", "bad port") from exc
        address = self._resolve(host, port, deadline)
        timeout = self._timeout(deadline)
        conn: http.client.HTTPConnection
        if https:
            conn = _PinnedHTTPSConnection(address, host, port, timeout=timeout)
        else:
            conn = _PinnedHTTPConnection(address, host, port, timeout=timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": _USER_AGENT, "Accept": request.accept, "Connection": "close"}
        headers.update(request.headers)
        if request.body is not None:
            headers["Content-Type"] = request.content_type
        try:
            conn.request("POST" if request.body is not None else "GET", path, request.body, headers)
            sock = conn.sock  # kept: the response owns the socket once the connection closes
            raw = conn.getresponse()
            response_headers = {k.lower(): v for k, v in raw.getheaders()}
            body = (
                b""
                if raw.status in (301, 302, 303, 304, 307, 308)
                else self._read(raw, sock, request, deadline)
            )
            return Response(raw.status, body, response_headers)
        except FetchError:
            raise
        except TimeoutError as exc:
            raise FetchError("timeout", "timed out") from exc
        except ssl.SSLError as exc:
            raise FetchError("tls", f"TLS error: {exc.reason or type(exc).__name__}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError("connect", f"{type(exc).__name__}") from exc
        finally:
            conn.close()

    def _read(
        self, raw: http.client.HTTPResponse, sock: socket.socket, request: Request, deadline: float
    ) -> bytes:
        length = raw.getheader("content-length")
        if length and length.isdigit() and int(length) > request.max_bytes:
            raise FetchError("too_large", f"declared {length} bytes, limit {request.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        while True:
            sock.settimeout(self._timeout(deadline))  # each read gets only what is left of the budget
            chunk = raw.read1(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > request.max_bytes:
                raise FetchError("too_large", f"more than {request.max_bytes} bytes")
            chunks.append(chunk)
            if self._progress is not None:
                self._progress(request.url, size, int(length) if length and length.isdigit() else None)

    def _timeout(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timeout", "time budget exhausted")
        return min(self._policy.timeout_seconds, remaining)

    def _resolve(self, host: str, port: int, deadline: float) -> str:
        self._timeout(deadline)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise FetchError("dns", "name does not resolve") from exc
        blocked = self._policy.blocked_networks
        for info in infos:
            address = str(info[4][0]).split("%", 1)[0]
            ip = ipaddress.ip_address(address)
            mapped = getattr(ip, "ipv4_mapped", None)
            if not any(candidate in net for net in blocked for candidate in (ip, mapped) if candidate):
                return address
        raise FetchError("blocked", "every address of the host is in a blocked network")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an already vetted address while speaking HTTP to the URL's host."""

    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
