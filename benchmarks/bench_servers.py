"""Loopback servers for the benchmark: a counting HTTP server for CRLs (ETag → 304) that also
fronts OpenSSL's OCSP responder as a proxy, the OpenSSL responder itself, and moto's S3.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
STATS_PATH = "/__stats"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class CountingServer:
    """Static CRLs by path (with a strong ETag and If-None-Match → 304) and a proxy path for OCSP.

    Every request except `GET /__stats` is counted as "<path> <status>"; `/__stats` returns the counts as
    JSON so that benchmark child processes can take deltas around each scenario.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, str]] = {}
        self._proxies: dict[str, tuple[str, int]] = {}
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer._get(self)

            def do_POST(self) -> None:
                outer._post(self)

        self._httpd = _Server((LOOPBACK, 0), Handler)
        self.port = int(self._httpd.server_address[1])
        self.base = f"http://{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="bench-http", daemon=True)
        self._thread.start()

    # --- configuration ------------------------------------------------------------------------------
    def add_file(self, path: str, body: bytes) -> str:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self._files[path] = (body, etag)
        return self.base + path

    def add_proxy(self, path: str, port: int) -> str:
        self._proxies[path] = (LOOPBACK, port)
        return self.base + path

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # --- handlers -----------------------------------------------------------------------------------
    def _count(self, path: str, status: int) -> None:
        with self._lock:
            self._counts[f"{path} {status}"] += 1

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if body:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                handler.wfile.write(body)

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        if path == STATS_PATH:
            self._send(handler, 200, json.dumps(self.counts()).encode(), {"Content-Type": "application/json"})
            return
        for prefix in self._proxies:
            if path == prefix or path.startswith(prefix + "/"):
                self._proxy(handler, prefix, None)
                return
        entry = self._files.get(path)
        if entry is None:
            self._count(path, 404)
            self._send(handler, 404, b"", {})
            return
        body, etag = entry
        if handler.headers.get("If-None-Match") == etag:
            self._count(path, 304)
            self._send(handler, 304, b"", {"ETag": etag})
            return
        self._count(path, 200)
        self._send(handler, 200, body, {"Content-Type": "application/pkix-crl", "ETag": etag})

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if path in self._proxies:
            self._proxy(handler, path, body)
            return
        self._count(path, 404)
        self._send(handler, 404, b"", {})

    def _proxy(self, handler: BaseHTTPRequestHandler, prefix: str, body: bytes | None) -> None:
        host, port = self._proxies[prefix]
        upstream_path = "/" + handler.path[len(prefix) :].lstrip("/")
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            headers = {"Content-Type": handler.headers.get("Content-Type", "application/ocsp-request")}
            conn.request("POST" if body is not None else "GET", upstream_path, body, headers)
            response = conn.getresponse()
            status, data = response.status, response.read()
            content_type = response.getheader("Content-Type", "application/ocsp-response")
        except OSError:
            status, data, content_type = 502, b"", "text/plain"
        finally:
            conn.close()
        self._count(prefix, status)
        self._send(handler, status, data, {"Content-Type": content_type})


class OpenSSLResponder:
    """`openssl ocsp -index index.txt -port PORT -CA ca.pem -rsigner ca.pem -rkey ca.key -nmin 60`."""

    def __init__(self, workdir: Path, ca_pem: Path, ca_key: Path, index_lines: list[str], nmin: int) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("the openssl CLI is needed for the OCSP responder")
        workdir.mkdir(parents=True, exist_ok=True)
        index = workdir / "index.txt"
        index.write_text("".join(line + "\n" for line in index_lines))
        (workdir / "index.txt.attr").write_text("unique_subject = no\n")
        self.port = free_port()
        self._log_path = workdir / "responder.log"
        self._log = self._log_path.open("wb")
        # OpenSSL 3.0's -port takes a number only and binds the wildcard address; every client here is local.
        self.process = subprocess.Popen(
            [
                openssl,
                "ocsp",
                "-index",
                str(index),
                "-port",
                str(self.port),
                "-CA",
                str(ca_pem),
                "-rsigner",
                str(ca_pem),
                "-rkey",
                str(ca_key),
                "-nmin",
                str(nmin),
                "-ignore_err",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
        try:
            self._wait_ready()
        except Exception:
            self.close()
            raise

    def _wait_ready(self, timeout: float = 10.0) -> None:
        # Never probe the port: a connection closed without a request wedges the single-threaded responder.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"openssl ocsp exited: {self._log_path.read_text(errors='replace')}")
            if b"waiting for OCSP client connections" in self._log_path.read_bytes():
                return
            time.sleep(0.05)
        raise TimeoutError(f"openssl ocsp not ready after {timeout}s")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class MotoS3:
    """moto's S3 on 127.0.0.1, with one versioned bucket holding the truststore."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)
        self._server.start()

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def upload_truststore(self, bucket: str, key: str, body: bytes) -> str:
        s3 = self.client()
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        return str(s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"])

    def close(self) -> None:
        self._server.stop()
