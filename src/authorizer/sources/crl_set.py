"""CRLs handed over rather than named by the certificate: S3 prefixes (AWS Private CA's bucket,
REVOCATION_CRL_S3_URI) or files (`check --crl`).

A CRL in the set applies to every certificate its CA issued, whether or not the certificate names
a distribution point; a partitioned CRL (an IssuingDistributionPoint with URLs) only to the
certificates whose distribution point it names. Each CRL is verified exactly as a fetched one is
(crl.parse_and_verify) when a certificate first needs it, against that certificate's issuer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import pem
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from .. import crl
from ..model import Answer, Source
from ..s3 import S3Error, S3Location, S3Reader
from ..settings import RevocationPolicy
from . import Held, Link, Need, SourceFailure
from .crl_distribution_point import crl_held

MAX_SET_OBJECTS = 1_000  # per location: Private CA writes one CRL per CA, or partitions of 1 MB


@dataclass(frozen=True, eq=False, slots=True)
class Candidate:
    """One object of the set that parses as a CRL: what matching needs, before any verification."""

    where: str  # s3://bucket/key or a file path
    etag: str
    der: bytes
    issuer: x509.Name
    idp_urls: frozenset[str] | None
    delta: bool


def candidate(where: str, etag: str, data: bytes) -> Candidate | None:
    """The object as a CRL candidate, or None when it is not a CRL at all (skipped, logged)."""
    try:
        der = data
        if data[:1] != b"\x30" and pem.detect(data):
            label, _, der = pem.unarmor(data)
            if label != "X509 CRL":
                return None
        parsed = x509.load_der_x509_crl(bytes(der))
        issuer = parsed.issuer
        idp_urls: frozenset[str] | None = None
        delta = False
        for ext in parsed.extensions:
            if ext.oid == ExtensionOID.DELTA_CRL_INDICATOR:
                delta = True
            elif isinstance(ext.value, x509.IssuingDistributionPoint) and ext.value.full_name:
                idp_urls = frozenset(
                    n.value for n in ext.value.full_name if isinstance(n, x509.UniformResourceIdentifier)
                )
    except Exception:  # not a CRL (Private CA's permission test object, a README, ...)
        return None
    return Candidate(where, etag, bytes(der), issuer, idp_urls, delta)


@dataclass(frozen=True, eq=False)
class Snapshot:
    by_issuer: dict[bytes, tuple[Candidate, ...]]  # issuer name DER -> its CRLs
    read_at: datetime
    skipped: tuple[str, ...] = ()


Lister = Callable[[Snapshot | None], Snapshot]


class CrlSet:
    """The set's current snapshot, re-read at most every `refresh_seconds`, in the background.

    Until the first read succeeds nothing is known, and every certificate's answer is unavailable
    (the CRL that revokes it may be in there). A failed re-read keeps the last snapshot.
    """

    def __init__(
        self,
        lister: Lister,
        refresh_seconds: float,
        now: Callable[[], datetime],
        on_error: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._lister = lister
        self._refresh = timedelta(seconds=refresh_seconds)
        self._now = now
        self._on_error = on_error
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self._next_read: datetime | None = None
        self._reading: threading.Event | None = None
        self.last_error = ""

    def snapshot(self, deadline: float) -> Snapshot | None:
        """The snapshot to use now, re-read when due; waits for a read only until `deadline`."""
        now = self._now()
        with self._lock:
            due = self._next_read is None or now >= self._next_read
            if due and self._reading is None:
                self._reading = threading.Event()
                threading.Thread(target=self._read, name="crl-set", daemon=True).start()
            reading = self._reading
        if reading is not None:
            reading.wait(max(0.0, deadline - time.monotonic()))
        return self._current

    def next_read(self) -> datetime:
        return self._next_read or self._now()

    def _read(self) -> None:
        try:
            snapshot = self._lister(self._current)
            seen = set(self._current.skipped) if self._current else set()
            for skipped in snapshot.skipped:
                if skipped not in seen:  # each once, not every minute
                    self._on_error(f"crl set object skipped: {skipped}")
            with self._lock:
                self._current = snapshot
            self.last_error = ""
        except Exception as exc:
            self.last_error = str(exc) or type(exc).__name__
            self._on_error(self.last_error + ("; keeping the last read" if self._current else ""))
        finally:
            with self._lock:
                self._next_read = self._now() + self._refresh
                reading, self._reading = self._reading, None
            if reading is not None:
                reading.set()


def s3_lister(reader: S3Reader, locations: Sequence[S3Location], now: Callable[[], datetime]) -> Lister:
    """List every location; GET only the objects whose ETag changed since the last snapshot."""

    def list_all(previous: Snapshot | None) -> Snapshot:
        known = {c.where: c for cs in (previous.by_issuer.values() if previous else ()) for c in cs}
        found: list[Candidate] = []
        skipped: list[str] = []
        for location in locations:
            for item in reader.list(location, MAX_SET_OBJECTS):
                where = f"s3://{location.bucket}/{item.key}"
                old = known.get(where)
                if old is not None and old.etag == item.etag:
                    found.append(old)
                    continue
                if item.size > reader.max_bytes:
                    skipped.append(f"{where}: larger than {reader.max_bytes} bytes")
                    continue
                try:
                    obj = reader.get(location.bucket, item.key)
                except S3Error as exc:
                    if old is None:
                        raise
                    skipped.append(f"{where}: {exc}; keeping the copy read before")
                    found.append(old)
                    continue
                parsed = candidate(where, obj.etag, obj.body)
                if parsed is None:
                    skipped.append(f"{where}: not a CRL")
                else:
                    found.append(parsed)
        return _snapshot(found, now(), skipped)

    return list_all


def file_lister(paths: Iterable[str], now: Callable[[], datetime]) -> Lister:
    """CRL files given on the command line (`check --crl`): read once, a bad one is an error."""
    paths = tuple(paths)

    def read(previous: Snapshot | None) -> Snapshot:
        if previous is not None:
            return previous
        found: list[Candidate] = []
        for path in paths:
            with open(path, "rb") as handle:
                parsed = candidate(path, "", handle.read())
            if parsed is None:
                raise ValueError(f"{path} is not a CRL")
            found.append(parsed)
        return _snapshot(found, now(), ())

    return read


def _snapshot(found: Iterable[Candidate], read_at: datetime, skipped: Iterable[str]) -> Snapshot:
    by_issuer: dict[bytes, list[Candidate]] = {}
    for item in found:
        by_issuer.setdefault(item.issuer.public_bytes(), []).append(item)
    return Snapshot({k: tuple(v) for k, v in by_issuer.items()}, read_at, tuple(skipped))


@dataclass(frozen=True, slots=True)
class _Arg:
    where: str
    point: crl.DistributionPoint


class CrlSetSource:
    """The revocation source over a CrlSet (one per configured set: S3 prefixes, or files)."""

    kind = Source.CRL

    def __init__(self, crls: CrlSet, policy: RevocationPolicy, now: Callable[[], datetime]) -> None:
        self._set = crls
        self._policy = policy
        self._now = now

    def needs(self, link: Link, deadline: float) -> Sequence[Need]:
        snapshot = self._set.snapshot(deadline)
        if snapshot is None:
            detail = "crl set could not be read" + (
                f": {self._set.last_error}" if self._set.last_error else ""
            )
            return [Need(self, link, ("crl-set-unread",), unusable=detail)]
        candidates = [
            c for c in snapshot.by_issuer.get(link.cert.crypto.issuer.public_bytes(), ()) if not c.delta
        ]
        if not candidates:
            return []
        points, _ = crl.distribution_points(link.cert)
        needs: list[Need] = []
        for item in candidates:
            key = ("crl-set", link.issuer.fingerprint, item.where)
            if item.idp_urls is None:
                needs.append(Need(self, link, key, _Arg(item.where, crl.DistributionPoint(()))))
                continue
            # A partition covers only the certificates whose distribution point it names (§5.2.5).
            point = next((p for p in points if item.idp_urls.intersection(p.urls)), None)
            if point is not None:
                needs.append(Need(self, link, key, _Arg(item.where, point)))
        if not needs:
            return [
                Need(
                    self,
                    link,
                    ("crl-set-no-partition",),
                    unusable="crl set: no partition covers the certificate's distribution point",
                )
            ]
        return needs

    def refresh(self, need: Need, held: Held | None, deadline: float) -> Held:
        arg: _Arg = need.arg
        snapshot = self._set.snapshot(deadline)
        current = next(
            (
                c
                for cs in (snapshot.by_issuer.values() if snapshot else ())
                for c in cs
                if c.where == arg.where
            ),
            None,
        )
        if current is None:
            raise SourceFailure("crl", f"{arg.where} is no longer in the crl set")
        now = self._now()
        refresh_at = min(self._set.next_read(), now + timedelta(seconds=self._policy.max_age_seconds))
        if held is not None and held.validators.get("etag") == current.etag and current.etag:
            return held.renewed(now, min(refresh_at, held.next_update or refresh_at))
        try:
            index = crl.parse_and_verify(current.der, need.link.issuer)
        except crl.CRLError as exc:  # forged, foreign or broken: ignored for this certificate, logged
            raise SourceFailure("invalid", f"crl {arg.where}: {exc}") from exc
        return crl_held(
            index,
            need.link.issuer.fingerprint,
            now,
            min(refresh_at, index.next_update or refresh_at),
            {"etag": current.etag, "url": arg.where},
        )

    def answer(self, need: Need, held: Held, now: datetime) -> Answer:
        arg: _Arg = need.arg
        return crl.lookup(held.data, need.link.cert, arg.point, now, self._policy)
