"""CRL rules from the security review (issue 8): distribution points, entry extensions, serial encoding.

Each test names the RFC 5280 section it holds the code to. Tests through ``lambda_handler`` use the test
PKI and the loopback HTTP server; the unit tests drive ``authorizer.crl`` where the handler cannot reach.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterable
from dataclasses import replace

import pytest
from asn1crypto import core as asn1_core
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from authorizer import crl
from authorizer.certs import Cert, cert_from_der
from conftest import Authorizer, World, make_event
from pki import Credential, PrivateKey, name, utcnow

PRIVATE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.7")
OTHER_CA = name("Some Other CA")


# ============================================================================================ helpers
def sign(key: PrivateKey, data: bytes) -> bytes:
    """Sign as the builders in pki.py do (SHA-256), so the outer signatureAlgorithm still fits."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def resign_crl(der: bytes, key: PrivateKey, mutate: Callable[[asn1_crl.TbsCertList], None]) -> bytes:
    """The CRL with its tbsCertList changed by ``mutate`` (through asn1crypto) and signed again."""
    outer = asn1_crl.CertificateList.load(der)
    tbs = asn1_crl.TbsCertList.load(outer["tbs_cert_list"].dump())
    mutate(tbs)
    tbs_der = tbs.dump(force=True)
    return asn1_crl.CertificateList(
        {
            "tbs_cert_list": asn1_crl.TbsCertList.load(tbs_der),
            "signature_algorithm": outer["signature_algorithm"],
            "signature": sign(key, tbs_der),
        }
    ).dump()


def with_serial(cred: Credential, issuer: Credential, serial: int) -> Credential:
    """``cred`` with another serial number, re-signed by ``issuer``.

    cryptography's CertificateBuilder refuses serials below 1, so the TBSCertificate is edited with
    asn1crypto and the new bytes signed with the issuer's key through cryptography.
    """
    outer = asn1_x509.Certificate.load(cred.der)
    tbs = asn1_x509.TbsCertificate.load(outer["tbs_certificate"].dump())
    tbs["serial_number"] = serial
    tbs_der = tbs.dump(force=True)
    der = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": outer["signature_algorithm"],
            "signature_value": sign(issuer.key, tbs_der),
        }
    ).dump()
    with warnings.catch_warnings():  # cryptography deprecates non-positive serials; the handler must cope
        warnings.simplefilter("ignore")
        cert = x509.load_der_x509_certificate(der)
        assert cert.serial_number == serial
    return replace(cred, cert=cert)


def list_serials(der: bytes, key: PrivateKey, serials: Iterable[int]) -> bytes:
    """The CRL's entries given these serial numbers (cryptography's builder refuses negative ones)."""
    new = list(serials)

    def mutate(tbs: asn1_crl.TbsCertList) -> None:
        entries = tbs["revoked_certificates"]
        assert len(entries) == len(new)
        for entry, serial in zip(entries, new, strict=True):
            entry["user_certificate"] = serial

    return resign_crl(der, key, mutate)


def entry(
    serial: int, *extensions: tuple[x509.ExtensionType, bool], when: dt.datetime | None = None
) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(serial)
        .revocation_date(when or utcnow() - dt.timedelta(hours=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.build()


def unknown_extension() -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(PRIVATE_OID, b"\x05\x00")  # an OID this checker does not know, NULL


def hold() -> tuple[x509.ExtensionType, bool]:
    return x509.CRLReason(x509.ReasonFlags.certificate_hold), False


def certificate_issuer(issuer: x509.Name) -> tuple[x509.ExtensionType, bool]:
    return x509.CertificateIssuer([x509.DirectoryName(issuer)]), True  # always critical (5.3.3)


def issuer_of(world: World) -> Cert:
    return cert_from_der(world.ica.der)


def cdp(*points: x509.DistributionPoint) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(list(points))


def point(
    *names: x509.GeneralName,
    relative: x509.RelativeDistinguishedName | None = None,
    reasons: frozenset[x509.ReasonFlags] | None = None,
    crl_issuer: list[x509.GeneralName] | None = None,
) -> x509.DistributionPoint:
    return x509.DistributionPoint(list(names) or None, relative, reasons, crl_issuer)


def uri(value: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(value)


LDAP = "ldap://ldap.example.com/cn=Issuing%20CA,o=Example?certificateRevocationList;binary"

# Distribution points that declare a CRL this checker cannot fetch or serve (RFC 5280 4.2.1.13).
UNUSABLE_POINTS: dict[str, Callable[[World], x509.DistributionPoint]] = {
    "ldap_only": lambda w: point(uri(LDAP)),
    "file_only": lambda w: point(uri("file:///var/crl/ca.crl")),
    "directory_name": lambda w: point(x509.DirectoryName(w.ica.cert.subject)),
    "relative_name": lambda w: point(
        relative=x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "CRL1")])
    ),
    "crl_issuer_only": lambda w: point(crl_issuer=[x509.DirectoryName(OTHER_CA)]),
    "crl_issuer_with_http": lambda w: point(
        uri(w.http.url("/crl/indirect.crl")), crl_issuer=[x509.DirectoryName(OTHER_CA)]
    ),
    "reasons_with_http": lambda w: point(
        uri(w.http.url("/crl/some-reasons.crl")), reasons=frozenset({x509.ReasonFlags.key_compromise})
    ),
}


# ============================================================================ distribution points (item 3)
@pytest.mark.parametrize("kind", sorted(UNUSABLE_POINTS))
def test_rfc5280_4_2_1_13_unusable_distribution_point_is_declared_not_absent(world: World, kind: str) -> None:
    leaf = world.leaf(f"cdp {kind}", issuer=world.private_ica, extensions=[cdp(UNUSABLE_POINTS[kind](world))])
    assert crl.distribution_points(cert_from_der(leaf.der)) == ((), True)


@pytest.mark.parametrize("kind", sorted(UNUSABLE_POINTS))
def test_rfc5280_4_2_1_13_unusable_distribution_point_denies_unavailable(
    authorizer: Authorizer, world: World, kind: str
) -> None:
    """A CRL declared where it cannot be fetched is no answer: revocation_unavailable (Deny by default),
    never no_revocation_info (Allow by default). The private CA declares nothing itself."""
    leaf = world.leaf(f"cdp {kind}", issuer=world.private_ica, extensions=[cdp(UNUSABLE_POINTS[kind](world))])
    authorizer.check("rest", leaf).expect(False, "revocation_unavailable", cert=leaf)
    assert world.http.total_requests() == 0


def test_rfc5280_4_2_1_13_mixed_point_keeps_only_its_http_urls(world: World) -> None:
    http_url = world.http.url("/crl/mixed.crl")
    leaf = world.leaf(
        "cdp mixed", extensions=[cdp(point(uri(LDAP), x509.DirectoryName(OTHER_CA), uri(http_url)))]
    )
    assert crl.distribution_points(cert_from_der(leaf.der)) == ((crl.DistributionPoint((http_url,)),), False)


def test_rfc5280_4_2_1_13_usable_and_unusable_points_are_both_reported(world: World) -> None:
    http_url = world.http.url("/crl/usable.crl")
    leaf = world.leaf("cdp two points", extensions=[cdp(point(uri(LDAP)), point(uri(http_url)))])
    assert crl.distribution_points(cert_from_der(leaf.der)) == ((crl.DistributionPoint((http_url,)),), True)


@pytest.mark.parametrize("revoked", [False, True])
def test_rfc5280_4_2_1_13_mixed_point_is_served_by_its_http_url(
    authorizer: Authorizer, world: World, revoked: bool
) -> None:
    path, url = world.crl_url()
    leaf = world.leaf("cdp mixed served", extensions=[cdp(point(uri(LDAP), uri(url)))])
    world.http.set(path, world.pki.crl(world.ica, [leaf] if revoked else []))
    expected = (False, "revoked") if revoked else (True, "good")
    authorizer.check("rest", leaf).expect(*expected, cert=leaf, source="crl")
    assert world.http.requests(path) == 1


# ============================================================================ entry extensions (item 10)
def test_rfc5280_5_3_unknown_critical_entry_extension_refuses_the_crl(world: World) -> None:
    der = world.pki.crl(world.ica, entries=[entry(11), entry(12, (unknown_extension(), True))])
    with pytest.raises(crl.CRLError, match="critical"):
        crl.parse_and_verify(der, issuer_of(world))


def test_rfc5280_5_3_unknown_critical_entry_extension_denies_through_the_handler(
    authorizer: Authorizer, world: World
) -> None:
    path, url = world.crl_url()
    leaf = world.leaf("crl with critical entry extension", crl_urls=[url])
    world.http.set(
        path, world.pki.crl(world.ica, entries=[entry(leaf.serial + 1, (unknown_extension(), True))])
    )
    authorizer.check("rest", leaf).expect(False, "revocation_unavailable", cert=leaf)
    assert world.http.requests(path) >= 1


def test_rfc5280_5_3_known_or_non_critical_entry_extensions_are_accepted(world: World) -> None:
    entries = [
        entry(21, (x509.CRLReason(x509.ReasonFlags.key_compromise), True)),  # critical but understood
        entry(22, (x509.InvalidityDate(dt.datetime(2024, 1, 1)), True)),
        entry(23, (unknown_extension(), False)),  # not understood, not critical: ignored
        entry(24, certificate_issuer(world.ica.cert.subject)),
    ]
    index = crl.parse_and_verify(world.pki.crl(world.ica, entries=entries), issuer_of(world))
    assert set(index.revoked) == {crl.serial_key(s) for s in (21, 22, 23, 24)}
    assert index.entries == 4
    assert index.holds == frozenset()


def test_rfc5280_5_3_3_entries_under_another_certificate_issuer_are_not_this_cas(world: World) -> None:
    """certificateIssuer names the issuer of this and every following entry (until the next one)."""
    entries = [
        entry(31),
        entry(32, certificate_issuer(OTHER_CA)),  # another CA's certificate
        entry(33),  # inherits: still the other CA's
        entry(34, (x509.CRLReason(x509.ReasonFlags.key_compromise), False)),  # inherits too
        entry(35, certificate_issuer(world.ica.cert.subject)),  # back to the CRL issuer
        entry(36),
    ]
    der = world.pki.crl(world.ica, entries=entries)
    assert [r.serial_number for r in x509.load_der_x509_crl(der)] == [31, 32, 33, 34, 35, 36]  # order kept
    index = crl.parse_and_verify(der, issuer_of(world))
    assert set(index.revoked) == {crl.serial_key(s) for s in (31, 35, 36)}


def test_rfc5280_5_3_3_certificate_issuer_matches_the_crl_issuer_by_name_comparison(world: World) -> None:
    """RFC 5280 7.1: names compare case-insensitively, so a differently-cased issuer is the CRL issuer."""
    subject = world.ica.cert.subject
    shouted = x509.Name(
        [x509.NameAttribute(a.oid, a.value.upper() if isinstance(a.value, str) else a.value) for a in subject]
    )
    assert shouted != subject
    index = crl.parse_and_verify(
        world.pki.crl(world.ica, entries=[entry(41, certificate_issuer(shouted)), entry(42)]),
        issuer_of(world),
    )
    assert set(index.revoked) == {crl.serial_key(41), crl.serial_key(42)}


@pytest.mark.parametrize("listed_as", ["other_ca", "inherits_other_ca", "crl_issuer"])
def test_rfc5280_5_3_3_certificate_issuer_through_the_handler(
    authorizer: Authorizer, world: World, listed_as: str
) -> None:
    path, url = world.crl_url()
    leaf = world.leaf("crl with certificate issuer", crl_urls=[url])
    entries = {
        "other_ca": [entry(leaf.serial, certificate_issuer(OTHER_CA))],
        "inherits_other_ca": [entry(leaf.serial + 1, certificate_issuer(OTHER_CA)), entry(leaf.serial)],
        "crl_issuer": [
            entry(leaf.serial + 1, certificate_issuer(OTHER_CA)),
            entry(leaf.serial, certificate_issuer(world.ica.cert.subject)),
        ],
    }[listed_as]
    world.http.set(path, world.pki.crl(world.ica, entries=entries))
    expected = (False, "revoked") if listed_as == "crl_issuer" else (True, "good")
    authorizer.check("rest", leaf).expect(*expected, cert=leaf, source="crl")


def test_rfc5280_5_3_1_holds_record_certificate_hold_entries(world: World) -> None:
    entries = [
        entry(51, hold()),
        entry(52, (x509.CRLReason(x509.ReasonFlags.key_compromise), False)),
        entry(53, (x509.CRLReason(x509.ReasonFlags.certificate_hold), True)),  # critical: still understood
        entry(54, hold(), (x509.InvalidityDate(dt.datetime(2024, 1, 1)), False)),
        entry(55),
        entry(56, certificate_issuer(OTHER_CA), hold()),  # another CA's hold: not this CA's entry at all
    ]
    index = crl.parse_and_verify(world.pki.crl(world.ica, entries=entries), issuer_of(world))
    assert index.holds == {crl.serial_key(s) for s in (51, 53, 54)}
    assert index.holds <= index.revoked
    assert set(index.revoked) == {crl.serial_key(s) for s in (51, 52, 53, 54, 55)}


def test_rfc5280_5_2_3_crl_number_and_this_update_are_kept(world: World) -> None:
    this_update = utcnow() - dt.timedelta(minutes=7)
    der = world.pki.crl(world.ica, crl_number=2**70 + 5, this_update=this_update)
    index = crl.parse_and_verify(der, issuer_of(world))
    assert (index.crl_number, index.this_update) == (2**70 + 5, this_update)


def test_rfc5280_5_2_3_crl_without_crl_number(world: World) -> None:
    now = utcnow()
    der = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(world.ica.cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=1))
        .sign(world.ica.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    assert crl.parse_and_verify(der, issuer_of(world)).crl_number is None


def test_rfc5280_5_3_entry_walk_handles_long_entries_and_many_extensions(world: World) -> None:
    """Entries with long-form lengths and several extensions: only the extension check decides."""
    filler = x509.UnrecognizedExtension(PRIVATE_OID, b"\x04\x81\xc8" + b"\x01\x01" * 100)  # 200-byte octets
    entries = [entry(61 + i, (filler, False), hold()) for i in range(3)] + [entry(70, (filler, False))]
    index = crl.parse_and_verify(world.pki.crl(world.ica, entries=entries), issuer_of(world))
    assert index.holds == {crl.serial_key(s) for s in (61, 62, 63)}
    assert index.entries == 4


def test_rfc5280_5_3_pattern_bytes_inside_serials_do_not_confuse_the_walk(world: World) -> None:
    """The scan for critical flags / certificateIssuer / holds runs over whole entries: the same bytes
    inside a serial number only cause a harmless parse of that entry."""
    tricky = [0x0101FF01, 0x06_03_55_1D_1D_01, 0x0A_01_06, 0x0A_01_06_01]
    entries = [
        entry(tricky[0]),
        entry(tricky[1], (x509.CRLReason(x509.ReasonFlags.key_compromise), False)),
        entry(tricky[2]),
        entry(tricky[3], hold()),
    ]
    index = crl.parse_and_verify(world.pki.crl(world.ica, entries=entries), issuer_of(world))
    assert set(index.revoked) == {crl.serial_key(s) for s in tricky}
    assert index.holds == {crl.serial_key(tricky[3])}


# ============================================================================ serial encoding (item 13)
BOUNDARY_SERIALS = [
    -(2**159),
    -32769,
    -32768,
    -32767,
    -129,
    -128,
    -127,
    -2,
    -1,
    0,
    1,
    127,
    128,
    255,
    256,
    32767,
    32768,
    2**159,
]


@pytest.mark.parametrize("serial", BOUNDARY_SERIALS)
def test_rfc5280_4_1_2_2_serial_key_is_the_minimal_der_integer(serial: int) -> None:
    """X.690 8.3.2: minimal two's complement; asn1crypto's encoder is the reference."""
    assert crl.serial_key(serial) == asn1_core.Integer(serial).contents


@pytest.mark.parametrize("serial", [-128, -32768, -(2**63)])
def test_rfc5280_4_1_2_2_negative_serial_found_in_crl_index(world: World, serial: int) -> None:
    der = list_serials(world.pki.crl(world.ica, [5]), world.ica.key, [serial])
    index = crl.parse_and_verify(der, issuer_of(world))
    assert crl.serial_key(serial) in index.revoked


@pytest.mark.parametrize("serial", [-128, -32768])
@pytest.mark.parametrize("listed", [True, False])
def test_rfc5280_4_1_2_2_negative_serial_leaf_revoked_through_the_handler(
    authorizer: Authorizer, world: World, serial: int, listed: bool
) -> None:
    """RFC 5280 4.1.2.2 asks for graceful handling of negative serials: one the CRL lists is revoked."""
    path, url = world.crl_url()
    leaf = with_serial(world.pki.leaf("negative serial", world.ica, crl_urls=[url]), world.ica, serial)
    other = serial - 1 if listed else serial + 1
    # An entry one apart ensures the neighbouring encodings do not collide either.
    world.http.set(
        path,
        list_serials(
            world.pki.crl(world.ica, [5, 6]),
            world.ica.key,
            [other, serial] if listed else [other, serial - 1],
        ),
    )
    decision = authorizer.decide("rest", make_event("rest", leaf.pem))
    expected = (False, "revoked") if listed else (True, "good")
    decision.expect(*expected, source="crl")
    assert world.http.requests(path) == 1
