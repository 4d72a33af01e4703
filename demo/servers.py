"""The demo's loopback servers: OpenSSL's OCSP responder, a CRL HTTP server, and S3 (moto).

Every server listens on a free port picked at start, and every client talks to 127.0.0.1 only.
Each class has ``start()`` / ``stop()``; ``stop()`` is safe to call twice and after a failed start.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from demo.pki import CA, Issued, openssl, openssl_binary

LOOPBACK = "127.0.0.1"
READY_SECONDS = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts connections on {LOOPBACK}:{port}") from None
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------- OCSP
class OCSPResponder:
    """``openssl ocsp`` answering for one CA from that CA's ``openssl ca`` index.txt.

    OpenSSL reloads the index when the file changes (``openssl ca -revoke`` replaces it), but it checks
    before it waits for the next connection: a change is seen from the second request after it. ``status``
    asks until the answer changes, so callers know the responder has reloaded.
    """

    def __init__(
        self, ca: CA, signer: Issued | None, logdir: Path, nmin: int = 1, port: int | None = None
    ) -> None:
        """``signer``: a delegated responder certificate, or None to sign with the CA itself."""
        self.ca = ca
        self.signer_cert = signer.cert_path if signer else ca.cert_path
        self.signer_key = signer.key_path if signer else ca.key_path
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}/"
        self.nmin = nmin
        self.log_path = logdir / f"ocsp-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # openssl ocsp's -port takes a number only and binds every interface; clients use 127.0.0.1.
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    openssl_binary(),
                    "ocsp",
                    "-index",
                    str(self.ca.index),
                    "-port",
                    str(self.port),
                    "-CA",
                    str(self.ca.cert_path),
                    "-rsigner",
                    str(self.signer_cert),
                    "-rkey",
                    str(self.signer_key),
                    "-nmin",
                    str(self.nmin),
                    "-ignore_err",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.ca.folder,
            )
        # Wait for its own "ready" line: a probe connection closed without a request can wedge it.
        deadline = time.monotonic() + READY_SECONDS
        while b"waiting for OCSP client connections" not in self.log_path.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"openssl ocsp exited: {self.log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise TimeoutError("openssl ocsp did not start")
            time.sleep(0.02)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def query(self, cert: Issued) -> str:
        """What the responder says about ``cert`` now: good, revoked or unknown (``openssl ocsp`` client)."""
        out = openssl(
            "ocsp",
            "-issuer",
            self.ca.cert_path,
            "-cert",
            cert.cert_path,
            "-url",
            self.url,
            "-VAfile",
            self.signer_cert,
            "-timeout",
            "5",
        )
        found = re.search(r":\s*(good|revoked|unknown)\b", out)
        if found is None:
            raise RuntimeError(f"unexpected openssl ocsp output: {out!r}")
        return found.group(1)

    def wait_for_status(self, cert: Issued, wanted: str, attempts: int = 5) -> str:
        status = ""
        for _ in range(attempts):
            status = self.query(cert)
            if status == wanted:
                break
        return status

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------------------------- CRL
class CRLServer:
    """Serves published CRLs in DER over HTTP, as an S3 bucket behind AWS Private CA's CDP would."""

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        files, lock, requests = self._files, self._lock, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    body = files.get(self.path)
                    requests[self.path] = requests.get(self.path, 0) + 1
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def publish(self, path: str, der: bytes) -> None:
        """Serve ``der`` at ``path`` from now on (replaces what was there)."""
        with self._lock:
            self._files[path] = der

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="crl-server", daemon=True)
        self._thread.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()


# --------------------------------------------------------------------------------------------- S3
class S3Server:
    """moto's S3 on loopback: the versioned truststore bucket, a private CRL bucket, the denylist."""

    def __init__(self, region: str) -> None:
        self.port = free_port()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self.region = region
        self._server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer  # imported here: it is slow to import

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines in the demo's output
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)
        self._server.start()
        wait_for_port(self.port)

    def client(self) -> Any:
        """A boto3 S3 client of this server (the demo's own credentials, as an operator's would be)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region)

    def create_bucket(self, bucket: str, versioned: bool = False) -> None:
        """A bucket with S3 Block Public Access on, as AWS recommends for a Private CA CRL bucket."""
        s3 = self.client()
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region})
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        if versioned:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Write ``key`` (replacing it); its ETag."""
        put = self.client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        return str(put["ETag"])

    def upload_truststore(self, bucket: str, key: str, body: bytes) -> str:
        """Create a versioned ``bucket``, put ``key`` and return the new object's VersionId."""
        self.create_bucket(bucket, versioned=True)
        s3 = self.client()
        put = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-pem-file")
        return str(put["VersionId"])

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
