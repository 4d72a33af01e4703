"""The shared revocation index, as the CRL sources read it (REVOCATION_INDEX_S3_URI).

A CRL source asks here first: a fresh index of the CRL it needs, verified once by the indexer,
costs a container one S3 read and a few milliseconds instead of a download and a parse. Anything
else (missing, stale, corrupt, for another issuer, older than data already held) is None, and the
source fetches the CRL itself: correctness never depends on the indexer running. A missing index
is requested once per container, by writing the source's name under the write-only `requests/`
prefix that the indexer reads.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from .. import crl_index
from ..certs import Cert
from ..crl import CrlIndex
from ..s3 import S3Error, S3Location, S3Reader
from ..settings import RevocationPolicy
from . import Held

MAX_INDEX_BYTES = 512 * 1024 * 1024  # 10M serials of 21 bytes; a partition is far smaller
MAX_REQUESTS = 1_000  # per container: what it asks the indexer for


class IndexStore:
    def __init__(
        self,
        reader: S3Reader,
        location: S3Location,
        refresh_seconds: float,
        policy: RevocationPolicy,
        now: Callable[[], datetime],
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._reader = reader
        self._location = location
        self._refresh = timedelta(seconds=refresh_seconds)
        self._skew = timedelta(seconds=policy.clock_skew_seconds)
        self._now = now
        self._log = log
        self._requested: set[str] = set()
        self._sets: dict[str, tuple[str, dict[str, tuple[str, bytes]]]] = {}  # location -> ETag, entries
        self._lock = threading.Lock()

    def key(self, source: str) -> str:
        return crl_index.object_key(self._location.key, source)

    def held(
        self,
        source: str,
        issuer: Cert,
        held: Held | None,
        make: Callable[[CrlIndex, datetime, datetime, dict[str, str]], Held],
    ) -> Held | None:
        """A Held from the index of the CRL at `source`, or None to fall back to the CRL itself.

        `held` is what the caller holds now: an unchanged index (same ETag) renews it, an index
        older than it is never used. `make` builds the Held the way the caller's source does.
        """
        etag = held.validators.get("index-etag", "") if held is not None else ""
        try:
            obj = self._reader.get(self._location.bucket, self.key(source), etag)
        except S3Error as exc:
            # Without s3:ListBucket (the authorizer has none on the index), S3 answers a missing
            # object with AccessDenied rather than NoSuchKey.
            if "NoSuchKey" in str(exc) or "AccessDenied" in str(exc):
                self._ask(source, issuer)
            else:
                self._log(f"index for {source} not read: {exc}")
            return None
        now = self._now()
        if not obj.changed and held is not None:
            return held.renewed(now, self._refresh_at(held.next_update, now))
        try:
            header, index = crl_index.decode(obj.body, issuer.crypto.subject)
        except crl_index.CorruptIndex as exc:
            self._log(f"index for {source} refused: {exc}")
            return None
        if header.issuer_fingerprint != issuer.fingerprint or header.source != source:
            self._log(f"index for {source} refused: it is for another issuer or source")
            return None
        if index.next_update is not None and index.next_update < now - self._skew:
            self._ask(source, issuer)  # stale: the indexer is behind; the CRL itself may be newer
            return None
        fresh = make(
            index,
            now,
            self._refresh_at(index.next_update, now),
            {"index-etag": obj.etag, "source": "index"},
        )
        if held is not None and fresh.is_older_than(held):
            return None  # never older than data this container already holds
        return fresh

    def indexed_header(self, source: str, etag: str) -> bytes | None:
        """The skeleton CRL of the index of the S3 object `source`, when the index was built from the
        object as it is now (`etag`): a CRL set lists with it instead of downloading the CRL. Reads
        only the header (a byte range), so listing many partitions stays cheap."""
        if not etag:
            return None
        try:
            head = self._reader.client().get_object(
                Bucket=self._location.bucket,
                Key=self.key(source),
                Range=f"bytes=0-{crl_index.HEADER_SPAN - 1}",
            )
            header, _ = crl_index.read_header(head["Body"].read(crl_index.HEADER_SPAN))
        except (crl_index.CorruptIndex, Exception):  # missing, unreadable, not an index: read the CRL
            return None
        if header.source != source or header.source_etag != etag or not header.skeleton:
            return None
        return header.skeleton

    def set_entries(self, location: str) -> dict[str, tuple[str, bytes]]:
        """The indexer's manifest of the CRL set at `location`: each object it indexed, with the ETag
        it indexed and the index's skeleton ({} when there is none yet: the lister reads headers
        one by one). Re-read only when its ETag changed."""
        etag, entries = self._sets.get(location, ("", {}))
        try:
            obj = self._reader.get(
                self._location.bucket, crl_index.set_key(self._location.key, location), etag
            )
        except S3Error:
            return {}
        if not obj.changed:
            return entries
        try:
            entries = crl_index.decode_set(obj.body, location)
        except crl_index.CorruptIndex as exc:
            self._log(f"CRL set manifest for {location} refused: {exc}")
            return {}
        self._sets[location] = (obj.etag, entries)
        return entries

    def load(self, source: str, etag: str, issuer: Cert) -> CrlIndex | None:
        """The whole index of the S3 object `source` (version `etag`) for `issuer`, or None."""
        try:
            obj = self._reader.get(self._location.bucket, self.key(source))
            header, index = crl_index.decode(obj.body, issuer.crypto.subject)
        except (S3Error, crl_index.CorruptIndex) as exc:
            self._log(f"index for {source} not used: {exc}")
            return None
        if (
            header.source != source
            or header.source_etag != etag
            or header.issuer_fingerprint != issuer.fingerprint
        ):
            return None
        return index

    def read(self, bucket: str, key: str) -> bytes:
        """An object of a CRL set, read with the role (the fallback when its index cannot be used)."""
        return self._reader.get(bucket, key).body

    def _refresh_at(self, next_update: datetime | None, now: datetime) -> datetime:
        refresh = now + self._refresh
        return min(refresh, next_update) if next_update is not None and next_update > now else refresh

    def _ask(self, source: str, issuer: Cert) -> None:
        """Ask the indexer to index `source`: once per container, never blocking the answer."""
        with self._lock:
            if source in self._requested or len(self._requested) >= MAX_REQUESTS:
                return
            self._requested.add(source)
        body = json.dumps({"source": source, "issuerFingerprint": issuer.fingerprint}).encode()
        name = hashlib.sha256(source.encode()).hexdigest()
        try:
            self._reader.client().put_object(
                Bucket=self._location.bucket, Key=f"{self._location.key}requests/{name}.json", Body=body
            )
        except Exception as exc:  # a lost request only delays indexing until the next ask
            self._log(f"index request for {source} not written: {type(exc).__name__}")
