"""CRLs (RFC 5280 section 5 and 6.3): verify once into an index, then answer look-ups, with no I/O.

A CRL is verified when it arrives (signature over the to-be-signed bytes as received, issuer name,
signer's cRLSign usage, extensions and scope), then kept as a `CrlIndex`: its metadata and a set
of revoked serials, so a look-up costs the same whatever the CRL's size.

Beyond a complete CRL signed by the certificate's issuer, this handles (see docs/crl-features.md):
delta CRLs combined with their base (§5.2.4, §6.3.3 (c), (g)-(j)); a CRL signed by another key or
certificate of the CA (§6.3.3 (f), the caller finds and path-validates the candidates); distribution
point names of every form matched against the IssuingDistributionPoint (§6.3.3 (b)); indirect CRLs
(§5.2.5, §5.3.3) and reason-partitioned CRLs (§6.3.3 (d), reasons_mask).
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime

from asn1crypto import crl as asn1_crl
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import ExtensionOID
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator

from .certs import Cert
from .fetch_rules import is_http_url
from .freshness import usable_until
from .model import Answer, Source, Status
from .settings import RevocationPolicy

_SIGNATURES = DefaultSignatureValidator()

# Extensions a complete base CRL may carry that this checker understands.
_KNOWN_CRL_EXTENSIONS = {
    ExtensionOID.CRL_NUMBER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.ISSUING_DISTRIBUTION_POINT,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    ExtensionOID.FRESHEST_CRL,
    ExtensionOID.DELTA_CRL_INDICATOR,  # accepted only where a delta CRL is asked for
}

# RFC 5280 §5.3.1 / §4.2.1.13: the reasons a distribution point or onlySomeReasons can name. A
# certificate is good only when the CRLs in hand cover every one of them (§6.3.3, reasons_mask).
ALL_REASONS: frozenset[x509.ReasonFlags] = frozenset(
    {
        x509.ReasonFlags.key_compromise,
        x509.ReasonFlags.ca_compromise,
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
        x509.ReasonFlags.certificate_hold,
        x509.ReasonFlags.privilege_withdrawn,
        x509.ReasonFlags.aa_compromise,
    }
)

# A general name in a comparable form: ("uri", value), ("dn", normalised name), or (type, repr).
NameKey = tuple[str, str]


# crlEntryExtensions this checker understands (RFC 5280 section 5.3); any other critical one refuses the CRL.
_KNOWN_ENTRY_EXTENSIONS = frozenset({"crl_reason", "invalidity_date", "certificate_issuer"})

# Byte patterns the fast walk looks for; only an entry containing one is parsed (by asn1crypto). cryptography
# has already parsed the whole CRL as strict DER, so each is encoded exactly so wherever it occurs.
_CRITICAL_TRUE = b"\x01\x01\xff"  # BOOLEAN TRUE: the only DER form of critical (FALSE is the omitted default)
_CERTIFICATE_ISSUER_OID = b"\x06\x03\x55\x1d\x1d"  # 2.5.29.29
_HOLD_VALUE = b"\x0a\x01\x06"  # ENUMERATED 6, reasonCode certificateHold (whose OID the parse checks)
_REMOVE_VALUE = b"\x0a\x01\x08"  # ENUMERATED 8, reasonCode removeFromCRL (delta CRLs, §5.3.1)
_ENTRY_PATTERNS = (_CRITICAL_TRUE, _CERTIFICATE_ISSUER_OID, _HOLD_VALUE, _REMOVE_VALUE)
_TIME_TAGS = (0x17, 0x18)  # UTCTime, GeneralizedTime
_MEMO_LIMIT = 1024  # distinct extension encodings whose parse is remembered (holds usually share one)


class CRLError(ValueError):
    """The CRL gives no verified answer for this certificate."""


@dataclass(frozen=True, slots=True)
class DistributionPoint:
    """One CRL distribution point of a certificate: its http(s) URLs, tried in order.

    The other fields (not compared: two points are the same point by their URLs) carry what
    RFC 5280 §6.3.3 (b) and (d) match on: every name of the point (full names of any kind, or the
    nameRelativeToCRLIssuer expanded against the CRL issuer), the cRLIssuer of an indirect CRL, and
    the reasons the point covers (None: all).
    """

    urls: tuple[str, ...]
    names: frozenset[NameKey] = field(default=frozenset(), compare=False)
    crl_issuer: x509.Name | None = field(default=None, compare=False)
    reasons: frozenset[x509.ReasonFlags] | None = field(default=None, compare=False)


def distribution_points(cert: Cert) -> tuple[tuple[DistributionPoint, ...], bool]:
    """The usable distribution points, and whether the certificate declares CRLs it cannot use.

    RFC 5280 section 4.2.1.13: a point that names no http(s) URL (only ldap://, file://, a
    directoryName, a nameRelativeToCRLIssuer, or no name at all) still declares that revocation
    information exists, so it counts as declared but unusable, as does a point this checker cannot
    serve on its own (indirect `cRLIssuer`, partial `reasons`; see `all_points` for those). Of a
    point that mixes schemes, only the http(s) URLs are kept.
    """
    points, malformed = all_points(cert)
    usable = tuple(p for p in points if p.urls and p.crl_issuer is None and p.reasons is None)
    return usable, malformed or len(usable) < len(points)


def all_points(cert: Cert) -> tuple[tuple[DistributionPoint, ...], bool]:
    """Every distribution point of the certificate with all it names (§4.2.1.13), and whether one
    was malformed (neither a name nor a cRLIssuer, a cRLIssuer that is no directoryName)."""
    try:
        cdp = cert.crypto.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return (), False
    return _points(cdp, cert.crypto.issuer)


def freshest_points(cert: Cert) -> tuple[tuple[DistributionPoint, ...], bool]:
    """The certificate's FreshestCRL points (§4.2.1.15: where its delta CRLs are), and whether it
    declares any at all."""
    try:
        ext = cert.crypto.extensions.get_extension_for_oid(ExtensionOID.FRESHEST_CRL).value
    except x509.ExtensionNotFound:
        return (), False
    assert isinstance(ext, x509.FreshestCRL)
    points, _ = _points(ext, cert.crypto.issuer)
    return points, True


def _points(
    cdp: Iterable[x509.DistributionPoint], cert_issuer: x509.Name
) -> tuple[tuple[DistributionPoint, ...], bool]:
    points: list[DistributionPoint] = []
    malformed = False
    for point in cdp:
        crl_issuer: x509.Name | None = None
        if point.crl_issuer:
            directory = [n.value for n in point.crl_issuer if isinstance(n, x509.DirectoryName)]
            if not directory:
                malformed = True
                continue
            # A cRLIssuer naming the certificate's own issuer is a direct CRL after all.
            crl_issuer = None if directory[0] == cert_issuer else directory[0]
        if not point.full_name and point.relative_name is None and not point.crl_issuer:
            malformed = True  # §4.2.1.13: a point names a distributionPoint or a cRLIssuer
            continue
        names: set[NameKey] = set()
        for general in point.full_name or ():
            names.add(name_key(general))
        if point.relative_name is not None:  # relative to the CRL issuer (§4.2.1.13)
            names.add(_relative_key(crl_issuer or cert_issuer, point.relative_name))
        urls = tuple(
            n.value
            for n in point.full_name or ()
            if isinstance(n, x509.UniformResourceIdentifier) and is_http_url(n.value)
        )
        reasons = frozenset(point.reasons) & ALL_REASONS if point.reasons else None
        points.append(DistributionPoint(urls, frozenset(names), crl_issuer, reasons))
    return tuple(points), malformed


def name_key(general: x509.GeneralName) -> NameKey:
    """A general name in the form names are compared in (X.500 names by RFC 5280 §7.1 rules)."""
    if isinstance(general, x509.DirectoryName):
        return _dn_key(general.value)
    if isinstance(general, x509.UniformResourceIdentifier):
        return ("uri", general.value)
    return (type(general).__name__, repr(general.value))


def _dn_key(value: x509.Name) -> NameKey:
    return ("dn", asn1_x509.Name.load(value.public_bytes()).hashable)


def _relative_key(base: x509.Name, rdn: x509.RelativeDistinguishedName) -> NameKey:
    return _dn_key(x509.Name([*base.rdns, rdn]))


@dataclass(frozen=True, slots=True)
class ForeignEntries:
    """The entries of an indirect CRL about the certificates of another issuer (§5.3.3)."""

    issuer: NameKey
    revoked: frozenset[bytes]
    holds: frozenset[bytes]
    removed: frozenset[bytes]


@dataclass(frozen=True, eq=False)
class CrlIndex:
    """A verified CRL reduced to what look-ups need.

    `revoked` holds only entries about certificates of the CRL issuer itself: an entry under a
    certificateIssuer naming someone else (RFC 5280 section 5.3.3) is left out, or kept in `foreign`
    when the CRL is indirect (§5.2.5). `crl_number` and `this_update` let a caller refuse a CRL older
    than one it already used (anti-rollback); `holds` lets it tell a certificateHold, which may be
    lifted, from a permanent revocation (section 5.3.1). `delta_base` is set on a delta CRL (its
    BaseCRLNumber, §5.2.4), whose removeFromCRL entries are in `removed`.
    """

    issuer: x509.Name
    this_update: datetime  # thisUpdate (section 5.1.2.4)
    next_update: datetime | None
    idp_urls: frozenset[str] | None  # the IssuingDistributionPoint's full names, when it has any
    only_user_certs: bool
    only_ca_certs: bool
    revoked: AbstractSet[bytes]  # never mutated; each entry's serial as its DER INTEGER contents
    entries: int  # len(revoked)
    crl_number: int | None = None  # the CRLNumber extension (section 5.2.3), when present
    holds: frozenset[bytes] = frozenset()  # serial keys in `revoked` whose reasonCode is certificateHold
    # --- issue 10 (all defaulted: an index built elsewhere reads as a plain complete CRL) ----------
    idp_names: frozenset[NameKey] | None = None  # every IDP name (§5.2.5), relative names expanded
    reasons: frozenset[x509.ReasonFlags] | None = None  # onlySomeReasons; None: every reason
    indirect: bool = False  # IDP indirectCRL (§5.2.5)
    delta_base: int | None = None  # DeltaCRLIndicator's BaseCRLNumber: a delta CRL (§5.2.4)
    removed: frozenset[bytes] = frozenset()  # removeFromCRL entries of a delta CRL (§5.3.1)
    freshest_urls: tuple[str, ...] = ()  # the CRL's FreshestCRL http(s) URLs (§5.2.6)
    freshest_declared: bool = False  # whether the CRL has a FreshestCRL extension at all
    foreign: tuple[ForeignEntries, ...] = ()  # an indirect CRL's entries about other issuers
    aki: bytes | None = None  # authorityKeyIdentifier keyIdentifier (§6.3.3 (c)(3))
    signer: str = ""  # fingerprint of the certificate whose key verified the signature

    @property
    def is_delta(self) -> bool:
        return self.delta_base is not None

    def idp_keys(self) -> frozenset[NameKey] | None:
        """The IDP's names as compared (from `idp_urls` for an index built without `idp_names`)."""
        if self.idp_names is not None:
            return self.idp_names
        return None if self.idp_urls is None else frozenset(("uri", u) for u in self.idp_urls)

    def scope(self) -> tuple[object, ...]:
        """What a complete CRL and its delta must share (§5.2.4, §6.3.3 (c)(2)), and what anti-rollback
        orders data within (§5.2.3)."""
        return _scope(self.idp_keys(), self.only_user_certs, self.only_ca_certs, self.reasons, self.indirect)


def _scope(
    keys: frozenset[NameKey] | None,
    only_user: bool,
    only_ca: bool,
    reasons: frozenset[x509.ReasonFlags] | None,
    indirect: bool,
) -> tuple[object, ...]:
    return (
        tuple(sorted(keys)) if keys is not None else None,
        only_user,
        only_ca,
        tuple(sorted(r.value for r in reasons)) if reasons is not None else None,
        indirect,
    )


@dataclass(frozen=True, slots=True)
class CrlHeader:
    """What a CRL says about itself before it is verified: enough to match it to a certificate and
    to its base or delta (a CRL set's candidates). Never trusted for an answer."""

    issuer: x509.Name
    idp_urls: frozenset[str] | None
    idp_names: frozenset[NameKey] | None
    only_user_certs: bool
    only_ca_certs: bool
    reasons: frozenset[x509.ReasonFlags] | None
    indirect: bool
    crl_number: int | None
    delta_base: int | None
    freshest_urls: tuple[str, ...]
    freshest_declared: bool

    def scope(self) -> tuple[object, ...]:
        return _scope(self.idp_names, self.only_user_certs, self.only_ca_certs, self.reasons, self.indirect)


def header(parsed: x509.CertificateRevocationList) -> CrlHeader:
    """The unverified header of a parsed CRL; raises on extensions that do not parse."""
    idp: x509.IssuingDistributionPoint | None = None
    number: int | None = None
    base: int | None = None
    freshest: tuple[str, ...] = ()
    declared = False
    for ext in parsed.extensions:
        value = ext.value
        if isinstance(value, x509.IssuingDistributionPoint):
            idp = value
        elif isinstance(value, x509.DeltaCRLIndicator):
            base = value.crl_number
        elif isinstance(value, x509.CRLNumber):
            number = value.crl_number
        elif isinstance(value, x509.FreshestCRL):
            declared = True
            freshest = tuple(
                n.value
                for point in value
                for n in point.full_name or ()
                if isinstance(n, x509.UniformResourceIdentifier) and is_http_url(n.value)
            )
    return CrlHeader(
        issuer=parsed.issuer,
        idp_urls=_idp_urls(idp),
        idp_names=_idp_names(idp, parsed.issuer),
        only_user_certs=bool(idp and idp.only_contains_user_certs),
        only_ca_certs=bool(idp and idp.only_contains_ca_certs),
        reasons=frozenset(idp.only_some_reasons) & ALL_REASONS if idp and idp.only_some_reasons else None,
        indirect=bool(idp and idp.indirect_crl),
        crl_number=number,
        delta_base=base,
        freshest_urls=freshest if base is None else (),
        freshest_declared=declared and base is None,
    )


def matches(idp_names: frozenset[NameKey] | None, point: DistributionPoint) -> bool:
    """§6.3.3 (b)(2)(i) as a predicate (see `_match_names`)."""
    return idp_names is None or not idp_names.isdisjoint(point_names(point))


def point_names(point: DistributionPoint) -> frozenset[NameKey]:
    """The names a CRL's IDP must share with this distribution point to cover it (`matches`)."""
    names = point.names or frozenset(("uri", u) for u in point.urls)
    if not names and point.crl_issuer is not None:
        names = frozenset({_dn_key(point.crl_issuer)})
    return names


# Finds candidate signers of a CRL other than the certificate's issuer, by the CRL's issuer name
# (§6.3.3 (f)): every one returned must already have a validated path to the same anchor.
SignerFinder = Callable[[x509.Name], Sequence[Cert]]


def parse_and_verify(
    data: bytes,
    issuer: Cert,
    *,
    signers: SignerFinder | None = None,
    crl_issuer: x509.Name | None = None,
    delta: bool = False,
) -> CrlIndex:
    """Verify a DER (or PEM) CRL as issued by `issuer` and index it; raises CRLError only.

    `crl_issuer`: the name the CRL must be issued under when it is not the issuer's (an indirect
    CRL, §5.2.5); `signers`: where to look for the CRL's signer when `issuer`'s key did not sign it;
    `delta`: a delta CRL is wanted (and only then accepted, §5.2.4).
    """
    try:
        return _parse_and_verify(data, issuer, signers, crl_issuer, delta)
    except CRLError:
        raise
    except Exception as exc:  # lazily parsed parts of malformed input raise all sorts of errors
        raise CRLError(f"CRL is malformed: {type(exc).__name__}") from exc


def _parse_and_verify(
    data: bytes, issuer: Cert, signers: SignerFinder | None, crl_issuer: x509.Name | None, delta: bool
) -> CrlIndex:
    der = _to_der(data)
    try:
        crl = x509.load_der_x509_crl(der)
    except Exception as exc:  # ValueError, InvalidVersion and whatever else malformed input raises
        raise CRLError("CRL does not parse") from exc
    expected = crl_issuer if crl_issuer is not None else issuer.crypto.subject
    if crl.issuer != expected:
        raise CRLError("CRL is not issued by the certificate's issuer")
    idp, crl_number, ext = _check_extensions(crl, delta)
    signer, tbs = _verify_signer(der, crl.issuer, issuer, signers)
    revoked, holds, removed, foreign = _serial_index(
        tbs, expected=len(crl), indirect=bool(idp and idp.indirect_crl), delta=delta
    )
    return CrlIndex(
        issuer=crl.issuer,
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        idp_urls=_idp_urls(idp),
        only_user_certs=bool(idp and idp.only_contains_user_certs),
        only_ca_certs=bool(idp and idp.only_contains_ca_certs),
        revoked=revoked,
        entries=len(revoked),
        crl_number=crl_number,
        holds=holds,
        idp_names=_idp_names(idp, crl.issuer),
        reasons=frozenset(idp.only_some_reasons) & ALL_REASONS if idp and idp.only_some_reasons else None,
        indirect=bool(idp and idp.indirect_crl),
        delta_base=ext.delta_base,
        removed=removed,
        freshest_urls=ext.freshest_urls,
        freshest_declared=ext.freshest_declared,
        foreign=foreign,
        aki=ext.aki,
        signer=signer.fingerprint,
    )


def _verify_signer(
    der: bytes, name: x509.Name, issuer: Cert, signers: SignerFinder | None
) -> tuple[Cert, asn1_crl.TbsCertList]:
    """The certificate whose key signed the CRL: the issuer's, else one the finder offers (§6.3.3
    (f): same name, cRLSign, validated path; a CA's separate CRL-signing key or its other key after
    a rollover). Every candidate must allow signing CRLs (§4.2.1.3)."""
    outer = asn1_crl.CertificateList.load(der)
    no_crl_sign = bad_signature = 0
    candidates: Iterable[Cert] = [issuer] if issuer.crypto.subject == name else []
    tried: set[str] = set()
    for round_ in (0, 1):
        if round_ == 1:
            if signers is None:
                break
            candidates = signers(name)
        for candidate in candidates:
            if candidate.fingerprint in tried or candidate.crypto.subject != name:
                continue
            tried.add(candidate.fingerprint)
            if not may_sign_crls(candidate):
                no_crl_sign += 1
                continue
            try:
                tbs = _check_signature(outer, candidate)
            except CRLError:
                bad_signature += 1
                continue
            return candidate, tbs
    if no_crl_sign and not bad_signature:
        raise CRLError("issuer's key usage does not allow signing CRLs")
    raise CRLError("CRL signature does not verify")


@dataclass(frozen=True, slots=True)
class Coverage:
    """What one CRL (with its delta, if any) says about a certificate: for combining partitions."""

    status: Status
    hold: bool
    covered: frozenset[x509.ReasonFlags]  # the interim reasons mask (§6.3.3 (d))
    fresh_until: datetime
    stale: bool


def evaluate(
    index: CrlIndex,
    cert: Cert,
    point: DistributionPoint,
    now: datetime,
    policy: RevocationPolicy,
    delta: CrlIndex | None = None,
) -> Coverage:
    """The CRL's (and its delta's) statement about `cert` reached through `point`: RFC 5280 §6.3.3
    (b) scope and names, (c) the delta, (d) the reasons covered, (i)/(j) the entries. Raises
    CRLError/StaleData when the CRL cannot be used for this certificate."""
    if index.is_delta:
        raise CRLError("a delta CRL cannot stand in for a complete CRL")
    expected = point.crl_issuer if point.crl_issuer is not None else cert.crypto.issuer
    if index.issuer != expected:
        raise CRLError("CRL is not issued by the certificate's issuer")
    direct = index.issuer == cert.crypto.issuer
    if not direct and not index.indirect:  # §6.3.3 (b)(2)(iv), PKITS 4.14.27
        raise CRLError("CRL of another issuer is not marked indirect")
    if index.only_user_certs and cert.is_ca:
        raise CRLError("CRL covers end-entity certificates only")
    if index.only_ca_certs and not cert.is_ca:
        raise CRLError("CRL covers CA certificates only")
    _match_names(index, point)
    fresh_until, stale = usable_until(index.this_update, index.next_update, now, policy)
    serial = serial_key(cert.crypto.serial_number)
    revoked, holds, _ = _entries_for(index, cert, direct)
    status = Status.REVOKED if serial in revoked else Status.GOOD
    hold = status is Status.REVOKED and serial in holds
    if delta is not None:
        _check_delta(index, delta)
        delta_until, delta_stale = usable_until(delta.this_update, delta.next_update, now, policy)
        fresh_until, stale = min(fresh_until, delta_until), stale or delta_stale
        d_revoked, d_holds, d_removed = _entries_for(delta, cert, direct)
        if serial in d_revoked:  # §6.3.3 (i): the delta's entry wins
            status, hold = Status.REVOKED, serial in d_holds
        elif serial in d_removed and (status is Status.GOOD or hold):  # removeFromCRL lifts a hold only
            status, hold = Status.GOOD, False
    covered = ALL_REASONS
    if point.reasons is not None:
        covered = covered & point.reasons
    if index.reasons is not None:
        covered = covered & index.reasons
    return Coverage(status, hold, covered, fresh_until, stale)


def combine(parts: Sequence[Coverage | BaseException]) -> Answer:
    """One answer from the CRLs in hand for a certificate (§6.3.3: revoked by any; good only once the
    union of their reasons masks is every reason); raises CRLError/StaleData otherwise."""
    usable = [p for p in parts if isinstance(p, Coverage)]
    for part in usable:
        if part.status is Status.REVOKED:
            detail = "crl revoked (certificateHold)" if part.hold else "crl revoked"
            return Answer(Status.REVOKED, Source.CRL, part.fresh_until, detail, part.stale, hold=part.hold)
    covered: frozenset[x509.ReasonFlags] = frozenset().union(*(p.covered for p in usable))
    if usable and covered >= ALL_REASONS:
        fresh_until = min(p.fresh_until for p in usable)
        return Answer(Status.GOOD, Source.CRL, fresh_until, "crl good", any(p.stale for p in usable))
    errors = [p for p in parts if isinstance(p, BaseException)]
    if errors and not usable:
        raise errors[0]
    missing = ", ".join(sorted(r.value for r in ALL_REASONS - covered))
    raise CRLError(f"the CRLs in hand cover only some revocation reasons (missing {missing})")


def lookup(
    index: CrlIndex,
    cert: Cert,
    point: DistributionPoint,
    now: datetime,
    policy: RevocationPolicy,
    delta: CrlIndex | None = None,
) -> Answer:
    """The CRL's answer for `cert`, reached through distribution point `point`; raises CRLError/StaleData.
    A CRL that covers only some reasons can say revoked, never good (see `combine`)."""
    return combine([evaluate(index, cert, point, now, policy, delta)])


def _match_names(index: CrlIndex, point: DistributionPoint) -> None:
    """§6.3.3 (b)(2)(i): when the IDP names a distribution point, one of its names matches one of the
    point's names, or (a point with only a cRLIssuer) one of the cRLIssuer names."""
    if not matches(index.idp_keys(), point):
        raise CRLError("CRL's issuing distribution point does not match the certificate's")


def _entries_for(
    index: CrlIndex, cert: Cert, direct: bool
) -> tuple[AbstractSet[bytes], frozenset[bytes], frozenset[bytes]]:
    if direct:
        return index.revoked, index.holds, index.removed
    wanted = _dn_key(cert.crypto.issuer)
    for group in index.foreign:
        if group.issuer == wanted:
            return group.revoked, group.holds, group.removed
    return frozenset(), frozenset(), frozenset()


def _check_delta(base: CrlIndex, delta: CrlIndex) -> None:
    """RFC 5280 §5.2.4 and §6.3.3 (c): a delta combines with a complete CRL of the same issuer, scope
    and key, whose number is at least the delta's BaseCRLNumber and below the delta's own number."""
    if not delta.is_delta or delta.delta_base is None:
        raise CRLError("delta CRL has no DeltaCRLIndicator")
    if delta.issuer != base.issuer:
        raise CRLError("delta CRL is of another issuer than its base")
    if delta.scope() != base.scope():
        raise CRLError("delta CRL's scope differs from its base CRL's")
    if delta.aki != base.aki:
        raise CRLError("delta CRL is signed by another key than its base CRL")
    if base.crl_number is None or delta.crl_number is None:
        raise CRLError("a base CRL and its delta need CRL numbers")
    if delta.delta_base > base.crl_number:
        raise CRLError(
            f"delta CRL {delta.crl_number} is for base CRL {delta.delta_base}, newer than the base in hand"
            f" ({base.crl_number})"
        )
    if delta.crl_number <= base.crl_number:
        raise CRLError(f"delta CRL {delta.crl_number} is not newer than its base CRL ({base.crl_number})")


def _to_der(data: bytes) -> bytes:
    # A DER CRL starts with a SEQUENCE tag; only then is a (possibly huge) body not scanned for PEM.
    if data[:1] != b"\x30" and pem.detect(data):
        try:
            label, _, der = pem.unarmor(data)
        except ValueError as exc:
            raise CRLError("CRL PEM does not decode") from exc
        if label != "X509 CRL":
            raise CRLError(f"expected a CRL, got {label}")
        return bytes(der)
    return data


def may_sign_crls(cert: Cert) -> bool:
    """§4.2.1.3: a certificate with a keyUsage must assert cRLSign to sign CRLs."""
    try:
        usage = cert.crypto.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(usage.crl_sign)


def _check_signature(outer: asn1_crl.CertificateList, signer: Cert) -> asn1_crl.TbsCertList:
    try:
        tbs = outer["tbs_cert_list"]
        _SIGNATURES.validate_signature(
            outer["signature"].native,
            tbs.dump(),  # as received: re-encoding a million entries would cost seconds
            signer.asn1.public_key,
            outer["signature_algorithm"],
        )
    except Exception as exc:
        raise CRLError("CRL signature does not verify") from exc
    return tbs


def serial_key(serial: int) -> bytes:
    """A serial number as the contents of its DER INTEGER, the form the index holds.

    Minimal two's complement (X.690 section 8.3.2). Negative serials break RFC 5280 but must be
    handled gracefully (section 4.1.2.2): -2**(8k-1) (e.g. -128 = 0x80) needs k bytes, not k + 1.
    """
    magnitude = serial if serial >= 0 else ~serial  # bits needed besides the sign bit
    return serial.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


def _serial_index(
    tbs: asn1_crl.TbsCertList, expected: int, indirect: bool = False, delta: bool = False
) -> tuple[AbstractSet[bytes], frozenset[bytes], frozenset[bytes], tuple[ForeignEntries, ...]]:
    """The set of this CA's revoked serials, those on certificateHold, those a delta CRL removes
    (removeFromCRL), and an indirect CRL's entries about other issuers, read straight from the DER
    of revokedCertificates.

    Measured on a 1,000,000-entry CRL: cryptography's per-entry objects take 1.95 s, asn1crypto's
    parser 3.6 s, this walk 1.1 s. It runs only after cryptography has parsed the whole CRL and the
    signature has verified, checks every tag it relies on, and must find exactly as many entries as
    cryptography counted; anything else refuses the CRL. Entry extensions are looked at only where a
    scan of the whole list (at C speed) found a critical flag, the certificateIssuer OID or a
    possible certificateHold or removeFromCRL; only those entries are parsed. A reason code the scan
    cannot see (not DER) cannot occur: cryptography would have refused the CRL. Measured here on
    1,000,000 entries with or without a reasonCode each: the scan and checks add about 0.1 s to the walk.
    """
    data = tbs["revoked_certificates"].contents or b""
    reader = _EntryReader(tbs["issuer"])
    serials: set[bytes] = set()
    holds: set[bytes] = set()
    removed: set[bytes] = set()
    foreign: dict[NameKey, tuple[set[bytes], set[bytes], set[bytes]]] = {}
    add = serials.add
    hits = heapq.merge(*(_offsets(data, pattern) for pattern in _ENTRY_PATTERNS))
    hit = next(hits, _NO_HIT)
    pos, size, count = 0, len(data), 0
    ours = True  # RFC 5280 section 5.3.3: the CRL issuer's entries, until a certificateIssuer names another
    other: NameKey | None = None  # the other issuer named, when it is a directoryName
    try:
        while pos < size:
            start = pos
            if data[pos] != 0x30:  # each entry is a SEQUENCE
                raise CRLError("malformed revoked certificate entry")
            length = data[pos + 1]
            if length < 0x80:
                pos, end = pos + 2, pos + 2 + length
            else:
                width = length & 0x7F
                end = pos + 2 + width + int.from_bytes(data[pos + 2 : pos + 2 + width], "big")
                pos += 2 + width
            serial_length = data[pos + 1]
            if data[pos] != 0x02 or serial_length >= 0x80 or pos + 2 + serial_length > end:
                raise CRLError("malformed revoked certificate serial")
            serial = data[pos + 2 : pos + 2 + serial_length]
            reason: str | None = None
            if hit < end:  # a pattern somewhere in this entry: read its extensions, if it has any
                while hit < end:
                    hit = next(hits, _NO_HIT)
                when = pos + 2 + serial_length  # revocationDate, then crlEntryExtensions when present
                extensions = when + 2 + data[when + 1]
                if data[when] not in _TIME_TAGS or data[when + 1] >= 0x80 or extensions > end:
                    raise CRLError("malformed revocation date")
                if extensions < end:
                    issuer_is_crl_issuer, named, reason = reader.read(data, start, extensions, end)
                    if issuer_is_crl_issuer is not None:
                        ours, other = issuer_is_crl_issuer, named
            if ours:
                if delta and reason == "remove_from_crl":
                    removed.add(serial)  # §5.3.1: no longer listed, not revoked
                else:
                    add(serial)
                    if reason == "certificate_hold":
                        holds.add(serial)
            elif indirect and other is not None:
                group = foreign.setdefault(other, (set(), set(), set()))
                if delta and reason == "remove_from_crl":
                    group[2].add(serial)
                else:
                    group[0].add(serial)
                    if reason == "certificate_hold":
                        group[1].add(serial)
            pos, count = end, count + 1
    except IndexError as exc:
        raise CRLError("truncated revoked certificates list") from exc
    if pos != size or count != expected:
        raise CRLError("revoked certificates list does not match the parsed CRL")
    groups = tuple(
        ForeignEntries(key, frozenset(r), frozenset(h), frozenset(m)) for key, (r, h, m) in foreign.items()
    )
    # serials not copied into a frozenset: that would double the peak memory
    return serials, frozenset(holds), frozenset(removed), groups


_NO_HIT = sys.maxsize


def _offsets(data: bytes, pattern: bytes) -> Iterator[int]:
    at = data.find(pattern)
    while at >= 0:
        yield at
        at = data.find(pattern, at + 1)


class _EntryReader:
    """Reads the extensions of single CRL entries with asn1crypto, remembering results by encoding."""

    def __init__(self, crl_issuer: asn1_x509.Name) -> None:
        self._crl_issuer = crl_issuer
        self._memo: dict[bytes, tuple[bool | None, NameKey | None, str | None]] = {}

    def read(
        self, data: bytes, start: int, extensions: int, end: int
    ) -> tuple[bool | None, NameKey | None, str | None]:
        """(whether a certificateIssuer names the CRL issuer, None without one; the other issuer it
        names, as a directoryName; the entry's reasonCode)."""
        key = data[extensions:end]
        known = self._memo.get(key)
        if known is not None:
            return known
        entry = asn1_crl.RevokedCertificate.load(data[start:end])
        unknown = entry.critical_extensions - _KNOWN_ENTRY_EXTENSIONS
        if unknown:  # RFC 5280 section 5.3: a CRL with an unrecognised critical entry extension is not used
            raise CRLError(f"CRL entry has an unsupported critical extension {sorted(unknown)[0]}")
        names = entry.certificate_issuer_value
        # Section 5.3.3: this entry and the ones after it are about certificates of the issuer named.
        issuer_is_crl_issuer: bool | None = None
        named: NameKey | None = None
        if names is not None:
            directory = [name.chosen for name in names if name.name == "directory_name"]
            issuer_is_crl_issuer = any(d == self._crl_issuer for d in directory)
            named = ("dn", directory[0].hashable) if directory else None
        reason = entry.crl_reason_value
        result = issuer_is_crl_issuer, named, None if reason is None else str(reason.native)
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[key] = result
        return result


@dataclass(frozen=True, slots=True)
class _Extensions:
    delta_base: int | None = None
    freshest_urls: tuple[str, ...] = ()
    freshest_declared: bool = False
    aki: bytes | None = None


def _check_extensions(
    crl: x509.CertificateRevocationList, delta: bool = False
) -> tuple[x509.IssuingDistributionPoint | None, int | None, _Extensions]:
    """The IssuingDistributionPoint, CRLNumber and what deltas need, after refusing what this CRL
    must not carry (a DeltaCRLIndicator where a complete CRL is wanted, and the reverse)."""
    idp: x509.IssuingDistributionPoint | None = None
    crl_number: int | None = None
    delta_base: int | None = None
    freshest: tuple[str, ...] = ()
    declared = False
    aki: bytes | None = None
    for ext in crl.extensions:
        if ext.oid == ExtensionOID.DELTA_CRL_INDICATOR:
            if not delta:
                raise CRLError("a delta CRL cannot stand in for a complete CRL")
            assert isinstance(ext.value, x509.DeltaCRLIndicator)
            delta_base = ext.value.crl_number
        elif ext.oid == ExtensionOID.ISSUING_DISTRIBUTION_POINT:
            idp = ext.value
        elif isinstance(ext.value, x509.CRLNumber):
            crl_number = ext.value.crl_number
        elif isinstance(ext.value, x509.FreshestCRL):
            # §5.2.6: where this complete CRL's deltas are (never in a delta itself: ignored there).
            if not delta:
                declared = True
                freshest = tuple(
                    n.value
                    for point in ext.value
                    for n in point.full_name or ()
                    if isinstance(n, x509.UniformResourceIdentifier) and is_http_url(n.value)
                )
        elif isinstance(ext.value, x509.AuthorityKeyIdentifier):
            aki = ext.value.key_identifier
        elif ext.critical and ext.oid not in _KNOWN_CRL_EXTENSIONS:
            raise CRLError(f"CRL has an unsupported critical extension {ext.oid.dotted_string}")
    if delta and delta_base is None:
        raise CRLError("not a delta CRL (no DeltaCRLIndicator)")
    if idp is not None and idp.only_contains_attribute_certs:
        raise CRLError("CRL covers attribute certificates only")
    return idp, crl_number, _Extensions(delta_base, freshest, declared, aki)


def _idp_urls(idp: x509.IssuingDistributionPoint | None) -> frozenset[str] | None:
    if idp is None or not idp.full_name:
        return None
    return frozenset(n.value for n in idp.full_name if isinstance(n, x509.UniformResourceIdentifier))


def _idp_names(idp: x509.IssuingDistributionPoint | None, crl_issuer: x509.Name) -> frozenset[NameKey] | None:
    """The IDP's distribution point names (§5.2.5): its full names, or its relative name expanded
    against the CRL issuer; None when it names none."""
    if idp is None:
        return None
    if idp.full_name:
        return frozenset(name_key(n) for n in idp.full_name)
    if idp.relative_name is not None:
        return frozenset({_relative_key(crl_issuer, idp.relative_name)})
    return None
