"""The truststore: parsing the same `truststore.pem` API Gateway uses, and loading it from S3.

Self-signed certificates are trust anchors, whatever hash their self-signature uses (anchors are
trusted by inclusion, RFC 5280 §6.1.1; see Cert.is_self_signed); every other certificate, including a
self-issued key-rollover link, is an intermediate, so it is checked for revocation like the leaf (the
proof of concept made them all anchors).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .certs import Cert, InvalidCertificate, cert_from_der, pem_blocks

MAX_TRUSTSTORE_BYTES = 8 * 1024 * 1024


class TruststoreError(Exception):
    """No usable truststore: the reason is safe to log."""


@dataclass(frozen=True, eq=False)
class Truststore:
    anchors: tuple[Cert, ...]
    intermediates: tuple[Cert, ...]
    version: str
    skipped: tuple[str, ...] = ()  # why each unusable PEM block was skipped


def parse_truststore(data: bytes, version: str = "") -> Truststore:
    """Parse concatenated PEM certificates (LF or CRLF, blank lines, any trailing newline)."""
    anchors: list[Cert] = []
    intermediates: list[Cert] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for index, (label, der) in enumerate(pem_blocks(data), start=1):
        if label != "CERTIFICATE":
            skipped.append(f"block {index}: {label} is not a certificate")
            continue
        try:
            cert = cert_from_der(der)
        except InvalidCertificate as exc:
            skipped.append(f"block {index}: {exc}")
            continue
        if cert.fingerprint in seen:
            continue
        seen.add(cert.fingerprint)
        (anchors if cert.is_self_signed else intermediates).append(cert)
    if not anchors:
        raise TruststoreError(
            f"truststore version {version or 'latest'} holds no self-signed certificate to anchor trust"
            + (f" ({'; '.join(skipped)})" if skipped else "")
        )
    return Truststore(tuple(anchors), tuple(intermediates), version, tuple(skipped))


class S3TruststoreLoader:
    """Keeps the parsed truststore for the container's life, re-reading only when the version changes.

    With `version` pinned it is read once. Unpinned, the latest version is looked up at most every
    `refresh_seconds`; a failed look-up keeps the last good truststore.
    """

    def __init__(
        self,
        bucket: str,
        key: str,
        version: str,
        refresh_seconds: float,
        retry_seconds: float,
        client_factory: Callable[[], Any],
        clock: Callable[[], float] = time.monotonic,
        on_load: Callable[[Truststore], None] = lambda _: None,
        on_error: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._bucket, self._key, self._version = bucket, key, version
        self._refresh_seconds, self._retry = refresh_seconds, retry_seconds
        self._client_factory = client_factory
        self._client: Any = None
        self._clock = clock
        self._on_load, self._on_error = on_load, on_error
        self._lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="truststore")
        self._pending: concurrent.futures.Future[Truststore] | None = None
        self._current: Truststore | None = None
        self._next_check = 0.0
        self._last_error = ""

    def get(self, deadline: float | None = None) -> Truststore:
        """The truststore to use now; raises TruststoreError when none could be loaded (by `deadline`,
        a time.monotonic() value: a slow S3 read goes on in the background for later requests)."""
        now = self._clock()
        if self._current is not None and (self._version or now < self._next_check):
            return self._current
        if self._current is None and now < self._next_check:
            raise TruststoreError(self._last_error)
        with self._lock:
            if self._pending is None or self._pending.done():
                self._pending = self._executor.submit(self._reload, now)
            pending = self._pending
        try:
            return pending.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            if self._current is not None:  # a slow refresh never holds up requests: keep the last good
                return self._current
            raise TruststoreError("the truststore could not be read within the time budget") from None

    def _reload(self, now: float) -> Truststore:
        try:
            loaded = self._load_if_changed()
            if loaded is not self._current:
                self._on_load(loaded)
            self._current = loaded
            self._next_check = now + self._refresh_seconds
        except Exception as exc:
            self._last_error = _describe(exc, self._bucket, self._key, self._version)
            self._next_check = now + (self._refresh_seconds if self._current else self._retry)
            self._on_error(self._last_error + ("; keeping the last good truststore" if self._current else ""))
            if self._current is None:
                raise TruststoreError(self._last_error) from exc
        return self._current

    def _s3(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _load_if_changed(self) -> Truststore:
        if not self._bucket:
            raise TruststoreError("TRUSTSTORE_BUCKET is not set")
        args: dict[str, str] = {"Bucket": self._bucket, "Key": self._key}
        if self._version:
            args["VersionId"] = self._version
        elif self._current is not None:
            head = self._s3().head_object(**args)
            if _version_of(head) == self._current.version:
                return self._current
        obj = self._s3().get_object(**args)
        if int(obj.get("ContentLength") or 0) > MAX_TRUSTSTORE_BYTES:
            raise TruststoreError(f"truststore larger than {MAX_TRUSTSTORE_BYTES} bytes")
        body = obj["Body"].read(MAX_TRUSTSTORE_BYTES + 1)
        if len(body) > MAX_TRUSTSTORE_BYTES:
            raise TruststoreError(f"truststore larger than {MAX_TRUSTSTORE_BYTES} bytes")
        return parse_truststore(body, _version_of(obj))


def _version_of(response: dict[str, Any]) -> str:
    # Unversioned buckets report "null" (or nothing); the ETag still tells contents apart.
    version = response.get("VersionId")
    return str(version) if version and version != "null" else str(response.get("ETag", ""))


def _describe(exc: Exception, bucket: str, key: str, version: str) -> str:
    if isinstance(exc, TruststoreError):
        return str(exc)
    where = f"s3://{bucket}/{key}" + (f"?versionId={version}" if version else "")
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return f"cannot read truststore {where}: {code or type(exc).__name__}"
