"""Loopback servers for the tests: an HTTP server for CRLs/OCSP, OpenSSL's OCSP responder, and moto's S3.

Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import boto3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from moto.server import ThreadedMotoServer

from pki import Credential, utcnow

LOOPBACK = "127.0.0.1"

# Builds a response body from the request body (e.g. an OCSP response for an OCSP request).
Responder = Callable[[bytes], bytes]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def refused_url(path: str = "/") -> str:
    """A loopback URL where nothing listens (connection refused)."""
    return f"http://{LOOPBACK}:{free_port()}{path}"


# --------------------------------------------------------------------------------------------- HTTP server
@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    hang: bool = False
    responder: Responder | None = None
    upstream: str | None = None
    etag: str | None = None  # when set, If-None-Match with this value is answered 304
    location: str | None = None  # a redirect target (with a 3xx status)
    trickle: float = 0.0  # seconds between single bytes of the whole answer (status line included)
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection closes


class FixtureHTTPServer:
    """``http.server`` in a thread on 127.0.0.1 with a port chosen by the OS.

    Paths are configured with ``set`` (static body/status), ``respond`` (body computed from the request body,
    for OCSP POSTs), ``proxy`` (forward to another loopback URL, e.g. an OpenSSL responder, so that every
    request is counted here) and ``hang`` (accept and never answer until teardown). Unknown paths give 404.
    Every request is counted per path, and every answer per route and status (``statuses``).
    """

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._counts: Counter[str] = Counter()
        self._not_modified: Counter[str] = Counter()
        self._statuses: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                route = server._lookup(path)
                if route is None:
                    self._reply(404, b"not found", "text/plain")
                    return
                if route.hang:
                    server._release.wait()
                    return
                if route.trickle:
                    raw = b"HTTP/1.0 200 OK\r\nContent-Type: application/pkix-crl\r\n\r\n" + route.body
                    for index in range(len(raw)):
                        if server._release.wait(route.trickle):
                            return
                        try:
                            self.wfile.write(raw[index : index + 1])
                            self.wfile.flush()
                        except OSError:
                            return
                    return
                if route.etag is not None and self.headers.get("If-None-Match") == route.etag:
                    with server._lock:
                        server._not_modified[path] += 1
                    server._answered(path, 304)
                    self.send_response(304)
                    self.send_header("ETag", route.etag)
                    self.end_headers()
                    return
                status, payload, content_type = route.status, route.body, route.content_type
                if route.responder is not None:
                    if self.command == "GET":  # OCSP over GET: base64 request in the last path segment
                        body = base64.b64decode(urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1]))
                    payload = route.responder(body)
                elif route.upstream is not None:
                    status, payload, content_type = _forward(
                        route.upstream, path, self.command, body, self.headers.get("Content-Type")
                    )
                self._reply(status, payload, content_type)

            def _reply(self, status: int, payload: bytes, content_type: str) -> None:
                server._answered(self.path.split("?", 1)[0], status)
                self.send_response(status)
                route = server._lookup(self.path.split("?", 1)[0], count=False)
                if route is not None and route.etag is not None:
                    self.send_header("ETag", route.etag)
                if route is not None and route.location is not None:
                    self.send_header("Location", route.location)
                self.send_header("Content-Type", content_type)
                if route is None or route.declare_length:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(OSError):  # a size-limited client hangs up early
                    self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fixture-http", daemon=True)
        self._thread.start()

    def _route_key(self, path: str) -> str | None:
        """The route serving ``path`` (the caller holds the lock)."""
        # Exact match first, then the longest route that is a path prefix (OCSP GET appends the request).
        if path in self._routes:
            return path
        prefixes = [p for p in self._routes if path.startswith(p.rstrip("/") + "/")]
        return max(prefixes, key=len) if prefixes else None

    def _lookup(self, path: str, count: bool = True) -> Route | None:
        with self._lock:
            key = self._route_key(path)
            if count:
                self._counts[key or path] += 1
            return self._routes.get(key) if key else None

    def _answered(self, path: str, status: int) -> None:
        with self._lock:
            self._statuses[(self._route_key(path) or path, status)] += 1

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def set(
        self,
        path: str,
        body: bytes = b"",
        *,
        status: int = 200,
        content_type: str = "application/octet-stream",
        etag: str | None = None,
    ) -> str:
        with self._lock:
            self._routes[path] = Route(status=status, body=body, content_type=content_type, etag=etag)
        return self.url(path)

    def respond(
        self, path: str, responder: Responder, *, content_type: str = "application/ocsp-response"
    ) -> str:
        with self._lock:
            self._routes[path] = Route(responder=responder, content_type=content_type)
        return self.url(path)

    def proxy(self, path: str, upstream: str) -> str:
        with self._lock:
            self._routes[path] = Route(upstream=upstream)
        return self.url(path)

    def redirect(self, path: str, location: str, *, status: int = 302) -> str:
        with self._lock:
            self._routes[path] = Route(status=status, location=location)
        return self.url(path)

    def trickle(self, path: str, body: bytes, *, interval: float = 1.0) -> str:
        """Answer one byte every ``interval`` seconds, from the status line on."""
        with self._lock:
            self._routes[path] = Route(body=body, trickle=interval)
        return self.url(path)

    def stream(self, path: str, body: bytes) -> str:
        """Answer ``body`` without a Content-Length."""
        with self._lock:
            self._routes[path] = Route(body=body, declare_length=False)
        return self.url(path)

    def hang(self, path: str) -> str:
        with self._lock:
            self._routes[path] = Route(hang=True)
        return self.url(path)

    def requests(self, path: str) -> int:
        with self._lock:
            return self._counts[path]

    def not_modified(self, path: str) -> int:
        """How many requests for ``path`` were answered 304 Not Modified."""
        with self._lock:
            return self._not_modified[path]

    def statuses(self) -> dict[tuple[str, int], int]:
        """How many answers each (route, status) got; unknown paths count under their own path (404).

        Hung requests and trickled answers are not included: they never get a status line of their own.
        """
        with self._lock:
            return dict(self._statuses)

    def total_requests(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._not_modified.clear()
            self._statuses.clear()

    def close(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _forward(
    upstream: str, path: str, method: str, body: bytes, content_type: str | None
) -> tuple[int, bytes, str]:
    url = upstream
    if method == "GET":
        # Keep whatever follows the route (the base64 request of an OCSP GET).
        url = upstream.rstrip("/") + "/" + path.rstrip("/").rsplit("/", 1)[-1]
    request = urllib.request.Request(url, data=body if method == "POST" else None, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


# --------------------------------------------------------------------------------------------- OpenSSL OCSP
class OpenSSLOCSPResponder:
    """``openssl ocsp`` as a responder for one CA, signing with ``signer``.

    Certificate statuses live in an index.txt that is rewritten atomically (new inode), which makes OpenSSL 3
    reload it on the next request. Certificates not in the index are answered ``unknown``.
    """

    def __init__(
        self, workdir: Path, label: str, ca: Credential, signer: Credential, *, nmin: int = 5
    ) -> None:
        self.label = label
        self.workdir = workdir / f"ocsp-{label}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.index = self.workdir / "index.txt"
        self.ca = ca
        self.signer = signer
        self._entries: dict[int, str] = {}
        self._version = 0
        self._write_index()
        (self.workdir / "index.txt.attr").write_text("unique_subject = no\n")
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}/"
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("the openssl CLI is needed for the OCSP responder")
        self._log = (self.workdir / "responder.log").open("wb")
        self.process = subprocess.Popen(
            [
                openssl,
                "ocsp",
                "-index",
                str(self.index),
                "-port",
                str(self.port),
                "-CA",
                str(ca.cert_path),
                "-rsigner",
                str(signer.cert_path),
                "-rkey",
                str(signer.key_path),
                "-nmin",
                str(nmin),
                "-ignore_err",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        try:
            self._wait_ready()
        except Exception:
            self.close()
            raise

    def _wait_ready(self, timeout: float = 10.0) -> None:
        # Do not probe the port: a connection closed without a request wedges the single-threaded responder.
        log = self.workdir / "responder.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"openssl ocsp exited: {log.read_text(errors='replace')}")
            if b"waiting for OCSP client connections" in log.read_bytes():
                return
            time.sleep(0.05)
        raise TimeoutError(f"openssl ocsp not ready after {timeout}s")

    def _write_index(self) -> None:
        tmp = self.index.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in self._entries.values()))
        # OpenSSL compares the index's mtime in whole seconds: give every version a distinct one.
        self._version += 1
        stamp = int(time.time()) + 100_000 + self._version
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, self.index)

    def _flush(self) -> None:
        """Make the responder reload now.

        It checks the index before waiting for the next connection, so a change made while it waits is only
        seen
        after one more request: send a throw-away one.
        """
        request = ocsp.OCSPRequestBuilder().add_certificate(self.ca.cert, self.ca.cert, hashes.SHA1()).build()
        post = urllib.request.Request(
            self.url,
            data=request.public_bytes(serialization.Encoding.DER),
            headers={"Content-Type": "application/ocsp-request"},
        )
        with urllib.request.urlopen(post, timeout=10) as response:
            response.read()

    @staticmethod
    def _time(value: Any) -> str:
        return str(value.strftime("%y%m%d%H%M%SZ"))

    def set_status(self, cert: Credential, status: str) -> None:
        """``status``: ``good`` (V), ``revoked`` (R) or ``unknown`` (absent from the index)."""
        self.set_statuses([cert], status)

    def set_statuses(self, certs: Iterable[Credential], status: str) -> None:
        """``set_status`` for many certificates at once, with a single index rewrite and reload."""
        if status not in ("good", "revoked", "unknown"):
            raise ValueError(status)
        revoked_at = self._time(utcnow())
        for cert in certs:
            expiry = self._time(cert.cert.not_valid_after_utc)
            serial = cert.serial_hex if len(cert.serial_hex) % 2 == 0 else "0" + cert.serial_hex
            subject = "/" + "/".join(a.rfc4514_string() for a in cert.cert.subject)
            if status == "good":
                self._entries[cert.serial] = f"V\t{expiry}\t\t{serial}\tunknown\t{subject}"
            elif status == "revoked":
                self._entries[cert.serial] = f"R\t{expiry}\t{revoked_at}\t{serial}\tunknown\t{subject}"
            else:
                self._entries.pop(cert.serial, None)
        self._write_index()
        self._flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# --------------------------------------------------------------------------------------------- S3 (moto)
class MotoS3:
    """moto's S3 in a thread on loopback, with one versioned bucket."""

    def __init__(self, bucket: str = "mtls-truststore") -> None:
        self.server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.client.create_bucket(Bucket=bucket)
        self.client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def put(self, key: str, body: bytes) -> str:
        """Upload a new version of ``key``; returns its VersionId."""
        return str(self.client.put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"])

    def delete_all_versions(self, key: str) -> None:
        listing = self.client.list_object_versions(Bucket=self.bucket, Prefix=key)
        for entry in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]:
            if entry["Key"] == key:
                self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=entry["VersionId"])

    def close(self) -> None:
        self.server.stop()


# ------------------------------------------------------------------------------------- stalling servers
StallMode = Literal["headers", "tls-silent", "tls-trickle"]


class StallingServer:
    """A raw TCP server on 127.0.0.1 that never finishes an answer, for deadline tests.

    ``mode``:
    - ``headers``: reads the request, then sends ``HTTP/1.1 200 OK`` and an endless header one byte
      every ``interval`` seconds (socket timeouts apply per recv, so this never trips them);
    - ``tls-silent``: accepts and never sends a byte (a TLS client waits for its ServerHello);
    - ``tls-trickle``: reads the ClientHello, then trickles a TLS record header announcing a 16 KiB
      handshake record and its body, one byte every ``interval``.
    With ``tls`` (a server-side context) ``headers`` runs after a real handshake.
    Counts connections and how many of them the client closed, i.e. how many fetches gave up.
    """

    def __init__(
        self, mode: StallMode = "headers", *, interval: float = 0.5, tls: ssl.SSLContext | None = None
    ) -> None:
        self.mode, self.interval, self.tls = mode, interval, tls
        self.connections = 0
        self.closed_by_client = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socketserver.ThreadingTCPServer((LOOPBACK, 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        scheme = "https" if mode != "headers" or tls is not None else "http"
        self.base_url = f"{scheme}://{LOOPBACK}:{self.port}"
        threading.Thread(target=self._server.serve_forever, name="stalling-server", daemon=True).start()

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def wait_closed(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` connections were closed by the client."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.closed_by_client >= count:
                    return True
            time.sleep(0.02)
        return False

    def _payload(self) -> Iterable[bytes]:
        if self.mode == "tls-trickle":
            yield from (bytes([b]) for b in b"\x16\x03\x03\x40\x00")  # handshake record, 16384 bytes
            while True:
                yield b"\x00"
        elif self.mode == "headers":
            yield from (bytes([b]) for b in b"HTTP/1.1 200 OK\r\nX-Trickle: ")
            while True:
                yield b"a"

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with server._lock:
                    server.connections += 1
                conn: socket.socket = self.request
                try:
                    if server.tls is not None:
                        conn.settimeout(10)
                        conn = server.tls.wrap_socket(conn, server_side=True)
                    if server.mode != "tls-silent":
                        conn.settimeout(10)
                        conn.recv(65536)  # the request or the ClientHello
                    conn.settimeout(None)
                    payload = iter(server._payload())
                    while not server._stop.is_set():
                        readable, _, _ = select.select([conn], [], [], server.interval)
                        if readable:
                            if not conn.recv(65536):
                                break  # the client hung up
                            continue
                        chunk = next(payload, b"")
                        if chunk:
                            conn.sendall(chunk)
                    else:
                        return  # closed by the test, not the client
                except OSError:  # includes ssl.SSLError: a reset or a cut handshake is a hang-up too
                    pass
                with server._lock:
                    server.closed_by_client += 1

        return Handler

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


class LoopbackRelay:
    """Listens on ``host`` (loopback, e.g. ``::1``) and pipes each connection to 127.0.0.1:``upstream_port``.

    Lets a test reach the IPv4-only fixture server through IPv6 addresses such as ``[::]``.
    """

    def __init__(self, host: str, upstream_port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        upstream = (LOOPBACK, upstream_port)

        class Server(socketserver.ThreadingTCPServer):
            address_family = family
            daemon_threads = True

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with socket.create_connection(upstream, timeout=10) as peer:
                    back = threading.Thread(target=_pipe, args=(peer, self.request), daemon=True)
                    back.start()
                    _pipe(self.request, peer)
                    back.join(10)

        self._server = Server((host, 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="loopback-relay", daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)
