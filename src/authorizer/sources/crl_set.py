"""CRLs handed over rather than named by the certificate: S3 prefixes (AWS Private CA's bucket,
REVOCATION_CRL_S3_URI) or files (`check --crl`).

A CRL in the set applies to every certificate its CA issued, whether or not the certificate names
a distribution point; a partitioned CRL (an IssuingDistributionPoint with URLs) only to the
certificates whose distribution point it names. Each CRL is verified exactly as a fetched one is
(crl.parse_and_verify) when a certificate first needs it, against that certificate's issuer.

A delta CRL in the set (RFC 5280 §5.2.4) is combined with the base of the same issuer and scope; a
base or certificate that declares a delta (FreshestCRL) answers only with one, taken from the set
or fetched from the FreshestCRL's URL. A distribution point of any name form (directoryName,
nameRelativeToCRLIssuer, ldap://) is served by a CRL whose IDP names it (§6.3.3 (b)); an indirect
CRL by the cRLIssuer it names (§5.2.5); CRLs partitioned by reason answer together (§6.3.3 (d)).
Certificates in an S3 set (DER or PEM objects) are candidate CRL signers (§6.3.3 (f)); a CRL such a
signer (or any certificate other than the issuer) signed is used only when that signer's own
revocation checks out, as for a fetched CRL (CrlDistributionPointSource.signer_failure).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import pem
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from .. import crl
from ..certs import Cert, InvalidCertificate, cert_from_der
from ..model import Answer, Source
from ..s3 import S3Error, S3Location, S3Reader
from ..settings import RevocationPolicy
from . import Held, Link, Need, SourceFailure
from .crl_distribution_point import CrlDistributionPointSource, answer_with, crl_held, verify
from .index import IndexStore

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
    header: crl.CrlHeader | None = None  # unverified: for matching only
    indexed: bool = False  # the shared index holds this very version (then `der` is only its skeleton)


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
        header = crl.header(parsed)
    except Exception:  # not a CRL (Private CA's permission test object, a README, ...)
        return None
    return Candidate(where, etag, bytes(der), issuer, idp_urls, delta, header)


def certificate(data: bytes) -> Cert | None:
    """The object as a certificate (a CRL signer a set may provide, §6.3.3 (f)), or None."""
    try:
        der = data
        if data[:1] != b"\x30" and pem.detect(data):
            label, _, der = pem.unarmor(data)
            if label != "CERTIFICATE":
                return None
        return cert_from_der(bytes(der))
    except (InvalidCertificate, ValueError, TypeError):
        return None


ScopeKey = tuple[bytes, crl.NameKey | None]  # (issuer name DER, one IDP name, or None: no IDP name)


@dataclass(frozen=True, eq=False)
class Snapshot:
    by_where: dict[str, Candidate]  # every CRL of the set, by its s3:// object or file path
    read_at: datetime
    skipped: tuple[str, ...] = ()
    certs: tuple[Cert, ...] = ()  # certificates in the set: candidate CRL signers, never anchors
    # The same CRLs by issuer and each name their IDP gives (a CRL without an IDP name under None), so
    # that a certificate meets only the partitions that can cover it (crl.matches), not all 400.
    by_scope: dict[ScopeKey, tuple[Candidate, ...]] = dataclasses.field(default_factory=dict)
    issuers: frozenset[bytes] = frozenset()  # the issuer name DERs the set holds CRLs of

    def covering(
        self, issuers: Iterable[x509.Name], points: Iterable[crl.DistributionPoint]
    ) -> list[Candidate]:
        """The CRLs of these issuers without an IDP name or with one the points name, each once."""
        names: list[crl.NameKey | None] = [None, *sorted({n for p in points for n in crl.point_names(p)})]
        ders = [issuer.public_bytes() for issuer in issuers]
        return list(dict.fromkeys(c for d in ders for n in names for c in self.by_scope.get((d, n), ())))


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


def s3_lister(
    reader: S3Reader,
    locations: Sequence[S3Location],
    now: Callable[[], datetime],
    index: IndexStore | None = None,
) -> Lister:
    """List every location; GET only the objects whose ETag changed since the last snapshot, and of
    those, where the shared index holds this very version, its index instead of the CRL (matched
    from the indexer's manifest of the set when it names that version, else from the index header)."""

    def list_all(previous: Snapshot | None) -> Snapshot:
        known = previous.by_where if previous else {}
        found: list[Candidate] = []
        skipped: list[str] = []
        certs: list[Cert] = []
        for location in locations:
            manifest = index.set_entries(str(location)) if index is not None else {}
            for item in reader.list(location, MAX_SET_OBJECTS):
                where = f"s3://{location.bucket}/{item.key}"
                old = known.get(where)
                if old is not None and old.etag == item.etag:
                    found.append(old)
                    continue
                listed = manifest.get(where)
                skeleton = listed[1] if listed is not None and item.etag and listed[0] == item.etag else None
                if skeleton is None and index is not None:
                    skeleton = index.indexed_header(where, item.etag)
                if skeleton is not None and (parsed := candidate(where, item.etag, skeleton)) is not None:
                    found.append(dataclasses.replace(parsed, indexed=True))
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
                if parsed is not None:
                    found.append(parsed)
                elif (cert := certificate(obj.body)) is not None and len(certs) < MAX_SET_OBJECTS:
                    certs.append(cert)
                else:
                    skipped.append(f"{where}: not a CRL")
        return _snapshot(found, now(), skipped, certs)

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


def _snapshot(
    found: Iterable[Candidate], read_at: datetime, skipped: Iterable[str], certs: Iterable[Cert] = ()
) -> Snapshot:
    by_where = {item.where: item for item in found}
    by_scope: dict[ScopeKey, list[Candidate]] = {}
    for item in by_where.values():
        names = item.header.idp_names if item.header is not None else None
        for name in names if names is not None else (None,):
            by_scope.setdefault((item.issuer.public_bytes(), name), []).append(item)
    return Snapshot(
        by_where,
        read_at,
        tuple(skipped),
        tuple(certs),
        {k: tuple(v) for k, v in by_scope.items()},
        frozenset(item.issuer.public_bytes() for item in by_where.values()),
    )


@dataclass(frozen=True, slots=True)
class _Arg:
    where: str
    point: crl.DistributionPoint
    role: str = "base"  # as PointArg's: "base", "delta" or "part"


class CrlSetSource:
    """The revocation source over a CrlSet (one per configured set: S3 prefixes, or files).

    `deltas`: the distribution point source, which fetches a declared delta the set does not hold.
    """

    kind = Source.CRL

    def __init__(
        self,
        crls: CrlSet,
        policy: RevocationPolicy,
        now: Callable[[], datetime],
        deltas: CrlDistributionPointSource | None = None,
        index: IndexStore | None = None,
    ) -> None:
        self._index = index
        self._set = crls
        self._policy = policy
        self._now = now
        self._deltas = deltas

    def certificates(self) -> tuple[Cert, ...]:
        """The certificates of the last snapshot (no read is waited for)."""
        current = self._set._current
        return current.certs if current is not None else ()

    def needs(self, link: Link, deadline: float) -> Sequence[Need]:
        snapshot = self._set.snapshot(deadline)
        if snapshot is None:
            detail = "crl set could not be read" + (
                f": {self._set.last_error}" if self._set.last_error else ""
            )
            return [Need(self, link, ("crl-set-unread",), unusable=detail)]
        points, _ = crl.all_points(link.cert)
        issuers = [link.cert.crypto.issuer, *(p.crl_issuer for p in points if p.crl_issuer is not None)]
        if not any(name.public_bytes() in snapshot.issuers for name in issuers):
            return []  # the set holds nothing of this CA: not a source for it
        found = snapshot.covering(issuers, points)
        bases = [c for c in found if not c.delta]
        deltas = [c for c in found if c.delta]
        whole: list[Need] = []
        partial: list[Need] = []
        for item in bases:
            point = self._point_for(item, link, points)
            if point is None:
                continue
            need = Need(self, link, ("crl-set", link.issuer.fingerprint, item.where), _Arg(item.where, point))
            reasons = item.header.reasons if item.header else None
            if reasons is not None or point.reasons is not None:
                partial.append(Need(self, link, need.key, _Arg(item.where, point, "part")))
                continue
            delta = self._delta_for(item, point, link, deltas, need.key)
            whole.append(Need(self, link, need.key, need.arg, with_data=(delta,) if delta else ()))
        if partial:
            first, *rest = partial
            whole.append(Need(self, link, first.key, first.arg, with_data=tuple(rest)))
        if whole:
            return whole
        if deltas and not bases:  # PKITS 4.15.1: a delta is never a complete CRL (§5.2.4)
            detail = "crl set: only a delta CRL for this issuer, no base CRL"
            return [Need(self, link, ("crl-set-delta-only",), unusable=detail)]
        detail = "crl set: no partition covers the certificate's distribution point"
        return [Need(self, link, ("crl-set-no-partition",), unusable=detail)]

    def _point_for(
        self, item: Candidate, link: Link, points: Sequence[crl.DistributionPoint]
    ) -> crl.DistributionPoint | None:
        """The certificate's distribution point this CRL serves (§6.3.3 (b)), or None. A direct CRL
        without an IDP name serves every certificate of its issuer (AWS Private CA's complete CRL)."""
        idp = item.header.idp_names if item.header else None
        if item.issuer == link.cert.crypto.issuer:
            if idp is None:  # complete for every reason and every certificate of the issuer
                return crl.DistributionPoint(())
            return next((p for p in points if p.crl_issuer is None and crl.matches(idp, p)), None)
        # An indirect CRL (§5.2.5): the point whose cRLIssuer names its issuer.
        return next((p for p in points if p.crl_issuer == item.issuer and crl.matches(idp, p)), None)

    def _delta_for(
        self,
        base: Candidate,
        point: crl.DistributionPoint,
        link: Link,
        deltas: Sequence[Candidate],
        base_key: Hashable,
    ) -> Need | None:
        """The delta the base's answer rests on (§5.2.4): the newest of the same issuer and scope in
        the set; else the declared one, fetched; None when none is declared or held."""
        if not self._policy.use_delta_crls or base.header is None:
            return None
        scope = base.header.scope()
        same = [d for d in deltas if d.issuer == base.issuer and d.header and d.header.scope() == scope]
        if same:
            newest = max(same, key=lambda d: d.header.crl_number or 0 if d.header else 0)
            key = ("crl-set-delta", link.issuer.fingerprint, newest.where)
            where = crl.DistributionPoint((), crl_issuer=point.crl_issuer)
            return Need(self, link, key, _Arg(newest.where, where, "delta"))
        declared = base.header.freshest_declared or crl.freshest_points(link.cert)[1]
        if not declared:
            return None
        if self._deltas is not None:
            need = self._deltas.delta_need(link, base_key, base.header.freshest_urls, point.crl_issuer)
            if need is not None:
                return need
        detail = "crl set: the delta CRL declared (FreshestCRL) is not in the set"
        return Need(self, link, ("crl-unusable", detail), None, unusable=detail)

    def refresh(self, need: Need, held: Held | None, deadline: float) -> Held:
        arg: _Arg = need.arg
        snapshot = self._set.snapshot(deadline)
        current = snapshot.by_where.get(arg.where) if snapshot else None
        if current is None:
            raise SourceFailure("crl", f"{arg.where} is no longer in the crl set")
        now = self._now()
        refresh_at = min(self._set.next_read(), now + timedelta(seconds=self._policy.max_age_seconds))
        certs = snapshot.certs if snapshot else ()
        if held is not None and held.validators.get("etag") == current.etag and current.etag:
            self._check_signer(need, held.data, arg.where, deadline, certs)
            return held.renewed(now, min(refresh_at, held.next_update or refresh_at))
        try:
            index = (
                self._index.load(arg.where, current.etag, need.link.issuer)
                if self._index is not None and current.indexed
                else None
            )
            if index is None:
                der = current.der
                if current.indexed:  # listed through its index, which cannot be used: read the CRL
                    location = S3Location.parse(arg.where)
                    der = self._index.read(location.bucket, location.key) if self._index else b""
                index = verify(der, need.link, arg.point, arg.role == "delta", self._policy, now, certs)
        except S3Error as exc:
            raise SourceFailure("s3", f"crl {arg.where}: {exc}") from exc
        except crl.CRLError as exc:  # forged, foreign or broken: ignored for this certificate, logged
            raise SourceFailure("invalid", f"crl {arg.where}: {exc}") from exc
        self._check_signer(need, index, arg.where, deadline, certs)
        return crl_held(
            index,
            need.link.issuer.fingerprint,
            now,
            min(refresh_at, index.next_update or refresh_at),
            {"etag": current.etag, "url": arg.where},
        )

    def _check_signer(
        self, need: Need, index: crl.CrlIndex, where: str, deadline: float, certs: Sequence[Cert]
    ) -> None:
        """Raise when the CRL's signer, other than the issuer, must not be trusted (§6.3.3 (f)): checked
        by the distribution point source; without one, such a CRL is not used (fail closed)."""
        if not index.signer or index.signer == need.link.issuer.fingerprint:
            return
        if self._deltas is None:
            detail = "CRL signer certificate's revocation cannot be checked"
            raise SourceFailure("signer", f"crl {where}: {detail}")
        failure = self._deltas.signer_failure(need, index, where, deadline, certs)
        if failure is not None:
            raise failure

    def answer(self, need: Need, held: Held, now: datetime) -> Answer:
        arg: _Arg = need.arg
        return crl.lookup(held.data, need.link.cert, arg.point, now, self._policy)

    def answer_with(self, need: Need, held: Held, extra: Sequence[Held | None], now: datetime) -> Answer:
        return answer_with(need, held, extra, now, self._policy)


__all__ = ["Candidate", "CrlSet", "CrlSetSource", "Snapshot", "candidate", "certificate"]
