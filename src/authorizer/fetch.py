"""HTTP(S) fetches of OCSP responses and CRLs, with every limit enforced here.

- http and https only, a few redirects at most, each hop re-checked;
- the host is resolved once and the connection goes to a resolved address that is not inside
  FETCH_BLOCKED_NETWORKS, judged also by any IPv4 address embedded in an IPv6 one (so neither a DNS
  answer nor a numeric shorthand such as http://0:port/ can point the authorizer at loopback or metadata);
- the deadline the caller gives bounds every phase: DNS (run off-thread, abandoned at the deadline), connect,
  TLS handshake, request, status line and headers, body. Socket timeouts apply per recv, so a server
  trickling a byte at a time never trips them: a watchdog shuts the socket down at the deadline instead;
- a per-request timeout for each operation, and a size cap enforced before and while reading.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from .fetch_rules import is_blocked_address, is_http_url
from .settings import FetchPolicy

_CHUNK = 256 * 1024
_USER_AGENT = "mtls-revocation-authorizer/0.1"
# getaddrinfo cannot be interrupted: a lookup that outlives its deadline is abandoned in its thread.
# This caps how many such threads can pile up while a resolver hangs (glibc gives up on its own).
_MAX_DNS_THREADS = 16

AddrInfo = tuple[socket.AddressFamily, Any]  # (family, sockaddr) as getaddrinfo gives them


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
        self._tls: ssl.SSLContext | None = None  # built on first use: loading the CA bundle takes ~30 ms

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
        guard = _Guard(deadline, lambda: self._timeout(deadline))
        conn: http.client.HTTPConnection
        if https:
            conn = _PinnedHTTPSConnection(address, host, port, guard, self._tls_context())
        else:
            conn = _PinnedHTTPConnection(address, host, port, guard)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": _USER_AGENT, "Accept": request.accept, "Connection": "close"}
        headers.update(request.headers)
        if request.body is not None:
            headers["Content-Type"] = request.content_type
        raw: http.client.HTTPResponse | None = None
        _WATCHDOG.watch(guard)
        try:
            guard.phase = "connect"
            conn.connect()
            guard.phase = "request"
            guard.refresh_timeout()
            conn.request("POST" if request.body is not None else "GET", path, request.body, headers)
            guard.phase = "headers"
            guard.refresh_timeout()
            raw = conn.getresponse()
            response_headers = {k.lower(): v for k, v in raw.getheaders()}
            guard.phase = "body"
            body = b"" if raw.status in (301, 302, 303, 304, 307, 308) else self._read(raw, guard, request)
            # A socket shut down by the watchdog reads as a clean end of stream (e.g. headers or a
            # body without Content-Length cut short): what was read then cannot be trusted.
            if guard.settle():
                raise FetchError("timeout", f"deadline reached during {guard.phase}")
            return Response(raw.status, body, response_headers)
        except FetchError:
            raise
        except UnicodeError as exc:  # a host or path that cannot go on the wire as it is
            raise FetchError("bad_url", f"{type(exc).__name__} during {guard.phase}") from exc
        except (OSError, http.client.HTTPException) as exc:
            if guard.settle() or isinstance(exc, TimeoutError):
                raise FetchError("timeout", f"timed out during {guard.phase}") from exc
            if isinstance(exc, ssl.SSLError):
                raise FetchError("tls", f"TLS error: {exc.reason or type(exc).__name__}") from exc
            raise FetchError("connect", f"{type(exc).__name__} during {guard.phase}") from exc
        finally:
            guard.settle()
            _WATCHDOG.forget(guard)
            if raw is not None:
                raw.close()
            conn.close()
            guard.close()

    def _read(self, raw: http.client.HTTPResponse, guard: _Guard, request: Request) -> bytes:
        length = raw.getheader("content-length")
        if length and length.isdigit() and int(length) > request.max_bytes:
            raise FetchError("too_large", f"declared {length} bytes, limit {request.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        while True:
            guard.refresh_timeout()  # each read gets only what is left of the budget
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

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:  # a race here only builds two equal contexts
            self._tls = ssl.create_default_context()
        return self._tls

    def _resolve(self, host: str, port: int, deadline: float) -> AddrInfo:
        infos = _getaddrinfo(host, port, self._timeout(deadline))
        for family, _type, _proto, _name, sockaddr in infos:
            if not is_blocked_address(str(sockaddr[0]), self._policy.blocked_networks):
                return family, sockaddr
        raise FetchError("blocked", "every address of the host is in a blocked network")


def _getaddrinfo(host: str, port: int, wait: float) -> list[Any]:
    """getaddrinfo, waiting at most `wait` seconds for a name to resolve."""
    try:  # numeric forms (127.1, 0x7f.1, 2130706433, [::]) never touch the resolver
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, ValueError):  # a name (or garbage, which the resolver will refuse too)
        pass
    if not _DNS_SLOTS.acquire(timeout=wait):
        raise FetchError("timeout", "timed out during dns: every resolver thread is busy")
    started = time.monotonic()
    future: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()

    def lookup() -> None:
        try:
            future.set_result(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # handed to the waiting fetch, never raised in this thread
            future.set_exception(exc)
        finally:
            _DNS_SLOTS.release()

    try:
        threading.Thread(target=lookup, name="fetch-dns", daemon=True).start()
    except RuntimeError as exc:  # no thread could be started
        _DNS_SLOTS.release()
        raise FetchError("dns", "could not start a resolver thread") from exc
    try:
        return future.result(timeout=max(0.0, wait - (time.monotonic() - started)))
    except TimeoutError as exc:
        raise FetchError("timeout", "timed out during dns") from exc
    except (OSError, ValueError) as exc:
        raise FetchError("dns", "name does not resolve") from exc


_DNS_SLOTS = threading.BoundedSemaphore(_MAX_DNS_THREADS)


class _Guard:
    """One connection's socket and deadline; the watchdog shuts the socket down at that deadline.

    The lock makes "shut down" and "finished, about to close" exclusive, so the watchdog never acts on a
    socket the fetch has closed (whose descriptor number may already belong to another socket).
    """

    def __init__(self, deadline: float, timeout: Callable[[], float]) -> None:
        self.deadline = deadline
        self.timeout = timeout  # min(per-operation timeout, what is left); raises FetchError at 0
        self.phase = "connect"  # for the error message: where the deadline hit
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._expired = False
        self._settled = False

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            if self._expired or self._settled:
                sock.close()
                raise TimeoutError("deadline reached")
            self._sock = sock

    def refresh_timeout(self) -> None:
        if self._sock is not None:
            self._sock.settimeout(self.timeout())

    def expire(self) -> None:
        """Called by the watchdog at the deadline."""
        with self._lock:
            if self._settled:
                return
            self._expired = True
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    # The plain socket call: SSLSocket.shutdown would also drop its SSL object from
                    # under the thread blocked in it; this only makes that thread's recv/send return.
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def settle(self) -> bool:
        """Stop the watchdog from touching the socket; True when it already shut it down."""
        with self._lock:
            self._settled = True
            return self._expired

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


class _Watchdog:
    """One daemon thread that expires guards at their deadlines (kept in a heap of in-flight fetches)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Guard]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, guard: _Guard) -> None:
        with self._cond:
            heapq.heappush(self._heap, (guard.deadline, next(self._ids), guard))
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)
                with contextlib.suppress(RuntimeError):  # none to be had: per-operation timeouts remain
                    thread.start()
                    self._thread = thread
            self._cond.notify()

    def forget(self, guard: _Guard) -> None:
        with self._cond:
            # Linear, but the heap only holds fetches in flight (as many as the callers run at once).
            kept = [entry for entry in self._heap if entry[2] is not guard]
            if len(kept) != len(self._heap):
                heapq.heapify(kept)
                self._heap = kept

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    heapq.heappop(self._heap)[2].expire()
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_WATCHDOG = _Watchdog()


def _connect(address: AddrInfo, guard: _Guard) -> socket.socket:
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    guard.attach(sock)  # from here on the deadline can cut it
    sock.settimeout(guard.timeout())  # connect is one operation: this bounds it
    sock.connect(sockaddr)
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an already vetted address while speaking HTTP to the URL's host."""

    def __init__(self, address: AddrInfo, host: str, port: int, guard: _Guard) -> None:
        super().__init__(host, port)
        self._address = address
        self._guard = guard

    def connect(self) -> None:
        self.sock = _connect(self._address, self._guard)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self, address: AddrInfo, host: str, port: int, guard: _Guard, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, context=context)
        self._address = address
        self._guard = guard
        self._tls_context = context

    def connect(self) -> None:
        sock = _connect(self._address, self._guard)
        # Handshake after attaching the TLS socket, so the watchdog can cut a trickled handshake too.
        tls = self._tls_context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        self._guard.phase = "tls"
        self._guard.attach(tls)
        self._guard.refresh_timeout()
        tls.do_handshake()
        self.sock = tls
