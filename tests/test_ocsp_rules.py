"""OCSP rules from the security review (issue 8): pointers, responder validity, critical extensions,
several SingleResponses, and the delegated responder's own revocation.

Each test names the RFC section it holds the code to. Unit tests drive ``authorizer.ocsp.verify_response``
with responses built by cryptography's OCSPResponseBuilder (edited with asn1crypto and re-signed where the
builder cannot express the case); the handler tests serve such responses from the loopback HTTP server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID

from authorizer import ocsp
from authorizer.certs import Cert, cert_from_der
from authorizer.freshness import StaleData
from authorizer.model import Answer, Status
from authorizer.settings import RevocationPolicy
from conftest import Authorizer, Configure, World
from pki import Credential, OCSPStatus, PrivateKey, utcnow

PRIVATE_OID = "1.3.6.1.4.1.55555.8"
POLICY = RevocationPolicy()
DAY = 86_400.0


# ============================================================================================ helpers
def sign(key: PrivateKey, data: bytes) -> bytes:
    """Sign as pki.ocsp_response does (SHA-256), so the signatureAlgorithm already in the response fits."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def resign(der: bytes, key: PrivateKey, mutate: Callable[[asn1_ocsp.ResponseData], None]) -> bytes:
    """The response with its ResponseData changed by ``mutate`` and signed again with ``key``."""
    basic = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
    tbs = asn1_ocsp.ResponseData.load(basic["tbs_response_data"].dump())
    mutate(tbs)
    tbs_der = tbs.dump(force=True)
    fields: dict[str, Any] = {
        "tbs_response_data": asn1_ocsp.ResponseData.load(tbs_der),
        "signature_algorithm": basic["signature_algorithm"],
        "signature": sign(key, tbs_der),
    }
    if basic["certs"].native is not None:
        fields["certs"] = basic["certs"]
    new_basic = asn1_ocsp.BasicOCSPResponse(fields)
    return asn1_ocsp.OCSPResponse(
        {
            "response_status": "successful",
            "response_bytes": {"response_type": "basic_ocsp_response", "response": new_basic},
        }
    ).dump()


def singles_of(der: bytes) -> list[asn1_ocsp.SingleResponse]:
    basic = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
    return [asn1_ocsp.SingleResponse.load(s.dump()) for s in basic["tbs_response_data"]["responses"]]


def combined(world: World, parts: Sequence[bytes], signer: Credential | None = None) -> bytes:
    """One response carrying the SingleResponses of ``parts`` in order (the first part's other fields)."""
    singles = [single for part in parts for single in singles_of(part)]

    def mutate(tbs: asn1_ocsp.ResponseData) -> None:
        tbs["responses"] = asn1_ocsp.Responses(singles)

    return resign(parts[0], (signer or world.ica).key, mutate)


def with_single_extension(der: bytes, key: PrivateKey, extension: dict[str, Any], index: int = 0) -> bytes:
    def mutate(tbs: asn1_ocsp.ResponseData) -> None:
        singles = [asn1_ocsp.SingleResponse.load(s.dump()) for s in tbs["responses"]]
        singles[index]["single_extensions"] = [extension]
        tbs["responses"] = asn1_ocsp.Responses(singles)

    return resign(der, key, mutate)


def with_response_extension(der: bytes, key: PrivateKey, extension: dict[str, Any]) -> bytes:
    def mutate(tbs: asn1_ocsp.ResponseData) -> None:
        existing = [asn1_ocsp.ResponseDataExtension.load(e.dump()) for e in tbs["response_extensions"]]
        tbs["response_extensions"] = [*existing, extension]

    return resign(der, key, mutate)


def unknown(critical: bool) -> dict[str, Any]:
    return {"extn_id": PRIVATE_OID, "critical": critical, "extn_value": b"\x05\x00"}  # NULL


def verify(
    world: World, leaf: Credential, der: bytes, policy: RevocationPolicy = POLICY, nonce: bytes | None = None
) -> tuple[Answer, Cert | None]:
    return ocsp.verify_response(
        der, cert_from_der(leaf.der), cert_from_der(world.ica.der), utcnow(), policy, nonce
    )


def static_ocsp_leaf(
    world: World, make: Callable[[Credential, bytes], bytes], **leaf_args: Any
) -> Credential:
    """A leaf (OCSP only) whose responder URL answers ``make(leaf, request_der)``."""
    path = world.path("static-ocsp-rules")
    holder: list[Credential] = []
    world.http.respond(path, lambda request: make(holder[0], request))
    leaf = world.leaf("ocsp rules client", ocsp_url=world.http.url(path), **leaf_args)
    holder.append(leaf)
    return leaf


def aia(*descriptions: tuple[x509.ObjectIdentifier, x509.GeneralName]) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess([x509.AccessDescription(m, loc) for m, loc in descriptions])


OCSP = AuthorityInformationAccessOID.OCSP
CA_ISSUERS = AuthorityInformationAccessOID.CA_ISSUERS
LDAP = "ldap://ldap.example.com/cn=OCSP,o=Example"


# ============================================================================ OCSP pointers (item 3)
UNUSABLE_AIA: dict[str, Callable[[World], x509.AuthorityInformationAccess]] = {
    "ldap": lambda w: aia((OCSP, x509.UniformResourceIdentifier(LDAP))),
    "directory_name": lambda w: aia((OCSP, x509.DirectoryName(w.ica.cert.subject))),
    "dns_name": lambda w: aia((OCSP, x509.DNSName("ocsp.example.com"))),
    "ldap_and_http_ca_issuers": lambda w: aia(
        (OCSP, x509.UniformResourceIdentifier(LDAP)),
        (CA_ISSUERS, x509.UniformResourceIdentifier("http://ca.example.com/ca.cer")),
    ),
}


@pytest.mark.parametrize("kind", sorted(UNUSABLE_AIA))
def test_rfc5280_4_2_2_1_ocsp_pointer_without_http_is_declared_but_unusable(world: World, kind: str) -> None:
    leaf = world.leaf(f"aia {kind}", issuer=world.private_ica, extensions=[UNUSABLE_AIA[kind](world)])
    cert = cert_from_der(leaf.der)
    assert ocsp.responders(cert) == ((), True)
    assert ocsp.responder_urls(cert) == ()


def test_rfc5280_4_2_2_1_mixed_ocsp_pointers_keep_their_http_urls(world: World) -> None:
    url = world.http.url("/ocsp/mixed")
    leaf = world.leaf(
        "aia mixed",
        extensions=[
            aia((OCSP, x509.UniformResourceIdentifier(LDAP)), (OCSP, x509.UniformResourceIdentifier(url)))
        ],
    )
    cert = cert_from_der(leaf.der)
    assert ocsp.responders(cert) == ((url,), False)
    assert ocsp.responder_urls(cert) == (url,)


@pytest.mark.parametrize("kind", ["no_aia", "ca_issuers_only"])
def test_rfc5280_4_2_2_1_no_ocsp_pointer_declares_nothing(world: World, kind: str) -> None:
    extensions = (
        [aia((CA_ISSUERS, x509.UniformResourceIdentifier("http://ca.example.com/ca.cer")))]
        if kind == "ca_issuers_only"
        else []
    )
    leaf = world.leaf(f"aia {kind}", issuer=world.private_ica, extensions=extensions)
    assert ocsp.responders(cert_from_der(leaf.der)) == ((), False)


def test_rfc5280_4_2_2_1_unusable_ocsp_pointer_denies_unavailable(
    authorizer: Authorizer, world: World
) -> None:
    """Needs revocation.py to use ocsp.responders: OCSP declared at ldap:// only gives no answer,
    which is not the same as declaring nothing."""
    leaf = world.leaf("ldap ocsp only", issuer=world.private_ica, ocsp_url=LDAP)
    authorizer.check("rest", leaf).expect(False, "revocation_unavailable", cert=leaf)
    assert world.http.total_requests() == 0


# ============================================================================ responder validity (item 9)
def responder_valid(world: World, *, not_before: dt.datetime, not_after: dt.datetime) -> Credential:
    return world.pki.ocsp_responder(
        "Dated OCSP Responder", world.ica, not_before=not_before, not_after=not_after
    )


@pytest.mark.parametrize(
    "window",
    [
        pytest.param((-30 * DAY, -3600.0), id="expired_an_hour_ago"),
        pytest.param((3600.0, 30 * DAY), id="not_yet_valid"),
    ],
)
def test_rfc6960_4_2_2_2_responder_outside_validity_refused_despite_stale_grace(
    world: World, window: tuple[float, float]
) -> None:
    """The stale grace covers thisUpdate/nextUpdate, never the signer's notBefore/notAfter."""
    now = utcnow()
    responder = responder_valid(
        world,
        not_before=now + dt.timedelta(seconds=window[0]),
        not_after=now + dt.timedelta(seconds=window[1]),
    )
    leaf = world.leaf("dated responder client")
    der = world.pki.ocsp_response(leaf, world.ica, responder=responder)
    with pytest.raises(ocsp.OCSPError, match="not signed by the issuer or a responder"):
        verify(world, leaf, der, RevocationPolicy(stale_grace_seconds=DAY))


@pytest.mark.parametrize(("skew", "accepted"), [(300.0, True), (0.0, False)])
def test_rfc6960_4_2_2_2_responder_validity_tolerates_only_the_clock_skew(
    world: World, skew: float, accepted: bool
) -> None:
    now = utcnow()
    responder = responder_valid(
        world, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(seconds=60)
    )
    leaf = world.leaf("just expired responder client")
    der = world.pki.ocsp_response(leaf, world.ica, responder=responder)
    policy = RevocationPolicy(clock_skew_seconds=skew, stale_grace_seconds=DAY)
    if accepted:
        assert verify(world, leaf, der, policy)[0].status is Status.GOOD
    else:
        with pytest.raises(ocsp.OCSPError):
            verify(world, leaf, der, policy)


def test_rfc6960_4_2_2_2_stale_grace_still_covers_the_response_itself(world: World) -> None:
    """Control: the grace does apply to a response past its nextUpdate (signed by a valid responder)."""
    leaf = world.leaf("stale response client")
    now = utcnow()
    der = world.pki.ocsp_response(
        leaf, world.ica, this_update=now - dt.timedelta(hours=3), next_update=now - dt.timedelta(hours=1)
    )
    answer, _ = verify(world, leaf, der, RevocationPolicy(stale_grace_seconds=DAY))
    assert (answer.status, answer.stale) == (Status.GOOD, True)


def test_rfc6960_4_2_2_2_expired_responder_denies_through_the_handler(
    configure: Configure, world: World
) -> None:
    now = utcnow()
    responder = responder_valid(
        world, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(hours=1)
    )
    leaf = static_ocsp_leaf(
        world,
        lambda leaf, req: world.pki.ocsp_response(leaf, world.ica, request_der=req, responder=responder),
    )
    authorizer = configure(REVOCATION_STALE_GRACE_SECONDS=str(int(DAY)))
    authorizer.check("rest", leaf).expect(False, "revocation_unavailable", cert=leaf)


# ============================================================================ critical extensions (item 11)
def test_rfc6960_4_4_unknown_critical_response_extension_is_refused(world: World) -> None:
    leaf = world.leaf("critical response extension client")
    der = with_response_extension(world.pki.ocsp_response(leaf, world.ica), world.ica.key, unknown(True))
    with pytest.raises(ocsp.OCSPError, match="critical"):
        verify(world, leaf, der)


def test_rfc6960_4_4_known_or_non_critical_response_extensions_are_accepted(world: World) -> None:
    leaf = world.leaf("response extensions client")
    request, nonce = ocsp.build_request(cert_from_der(leaf.der), cert_from_der(world.ica.der))
    der = world.pki.ocsp_response(leaf, world.ica, request_der=request)

    def nonce_critical(tbs: asn1_ocsp.ResponseData) -> None:
        (extension,) = tbs["response_extensions"]
        assert extension["extn_id"].native == "nonce"
        tbs["response_extensions"] = [
            {"extn_id": "nonce", "critical": True, "extn_value": extension["extn_value"].parsed}
        ]

    der = with_response_extension(resign(der, world.ica.key, nonce_critical), world.ica.key, unknown(False))
    assert verify(world, leaf, der, nonce=nonce)[0].status is Status.GOOD


@pytest.mark.parametrize(
    "extension",
    [
        pytest.param(unknown(True), id="private"),
        pytest.param(
            {
                "extn_id": "archive_cutoff",
                "critical": True,
                "extn_value": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            },
            id="archive_cutoff",
        ),
    ],
)
def test_rfc6960_4_4_critical_single_extension_not_understood_is_refused(
    world: World, extension: dict[str, Any]
) -> None:
    leaf = world.leaf("critical single extension client")
    der = with_single_extension(world.pki.ocsp_response(leaf, world.ica), world.ica.key, extension)
    with pytest.raises(ocsp.OCSPError, match="critical"):
        verify(world, leaf, der)


def test_rfc6960_4_4_critical_single_extension_on_another_single_refuses_the_response(world: World) -> None:
    leaf = world.leaf("critical other single client")
    parts = [
        world.pki.ocsp_response(leaf, world.ica),
        world.pki.ocsp_response(leaf, world.ica, for_serial=leaf.serial + 1),
    ]
    der = with_single_extension(combined(world, parts), world.ica.key, unknown(True), index=1)
    with pytest.raises(ocsp.OCSPError, match="critical"):
        verify(world, leaf, der)


def test_rfc6960_4_4_non_critical_single_extension_is_ignored(world: World) -> None:
    leaf = world.leaf("non-critical single extension client")
    der = with_single_extension(world.pki.ocsp_response(leaf, world.ica), world.ica.key, unknown(False))
    assert verify(world, leaf, der)[0].status is Status.GOOD


@pytest.mark.parametrize("where", ["response", "single"])
def test_rfc6960_4_4_unknown_critical_extension_denies_through_the_handler(
    authorizer: Authorizer, world: World, where: str
) -> None:
    add = with_response_extension if where == "response" else with_single_extension
    leaf = static_ocsp_leaf(
        world,
        lambda leaf, req: add(
            world.pki.ocsp_response(leaf, world.ica, request_der=req), world.ica.key, unknown(True)
        ),
    )
    authorizer.check("rest", leaf).expect(False, "revocation_unavailable", cert=leaf)


# ========================================================================= several SingleResponses (item 12)
@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (("good", "revoked"), Status.REVOKED),
        (("revoked", "good"), Status.REVOKED),
        (("good", "unknown", "revoked"), Status.REVOKED),
        (("unknown", "good"), Status.GOOD),
        (("good", "unknown"), Status.GOOD),
        (("unknown", "unknown"), Status.UNKNOWN),
    ],
)
def test_rfc6960_4_2_2_any_matching_revoked_single_response_wins(
    world: World, statuses: tuple[OCSPStatus, ...], expected: Status
) -> None:
    leaf = world.leaf("several singles client")
    der = combined(world, [world.pki.ocsp_response(leaf, world.ica, status=s) for s in statuses])
    assert verify(world, leaf, der)[0].status is expected


def test_rfc6960_4_2_2_revoked_single_for_another_certificate_does_not_count(world: World) -> None:
    leaf = world.leaf("other singles client")
    parts = [
        world.pki.ocsp_response(leaf, world.ica, status="revoked", for_serial=leaf.serial + 1),
        world.pki.ocsp_response(leaf, world.ica),
    ]
    assert verify(world, leaf, combined(world, parts))[0].status is Status.GOOD


def test_rfc6960_4_2_2_freshness_comes_from_the_single_response_used(world: World) -> None:
    leaf = world.leaf("singles freshness client")
    now = utcnow()
    good = world.pki.ocsp_response(leaf, world.ica, next_update=now + dt.timedelta(hours=1))
    revoked = world.pki.ocsp_response(
        leaf,
        world.ica,
        status="revoked",
        this_update=now - dt.timedelta(minutes=2),
        next_update=now + dt.timedelta(hours=3),
    )
    answer, _ = verify(world, leaf, combined(world, [good, revoked]))
    assert answer.status is Status.REVOKED
    assert (answer.this_update, answer.next_update, answer.fresh_until) == (
        now - dt.timedelta(minutes=2),
        now + dt.timedelta(hours=3),
        now + dt.timedelta(hours=3),
    )


def test_rfc6960_4_2_2_stale_revoked_single_never_falls_back_to_good(world: World) -> None:
    leaf = world.leaf("stale revoked single client")
    now = utcnow()
    revoked = world.pki.ocsp_response(
        leaf,
        world.ica,
        status="revoked",
        this_update=now - dt.timedelta(hours=3),
        next_update=now - dt.timedelta(hours=2),
    )
    with pytest.raises(StaleData):
        verify(world, leaf, combined(world, [world.pki.ocsp_response(leaf, world.ica), revoked]))


def test_rfc6960_4_2_2_good_then_revoked_single_denies_through_the_handler(
    authorizer: Authorizer, world: World
) -> None:
    leaf = static_ocsp_leaf(
        world,
        lambda leaf, req: combined(
            world,
            [
                world.pki.ocsp_response(leaf, world.ica, request_der=req),
                world.pki.ocsp_response(leaf, world.ica, request_der=req, status="revoked"),
            ],
        ),
    )
    authorizer.check("rest", leaf).expect(False, "revoked", cert=leaf, source="ocsp")


# ============================================================================ responder revocation (item 14)
def test_rfc6960_4_2_2_2_1_ca_signed_response_needs_no_responder_check(world: World) -> None:
    leaf = world.leaf("ca signed client")
    answer, responder = verify(world, leaf, world.pki.ocsp_response(leaf, world.ica))
    assert (answer.status, responder) == (Status.GOOD, None)


def test_rfc6960_4_2_2_2_1_nocheck_responder_needs_no_check(world: World) -> None:
    leaf = world.leaf("nocheck responder client")
    responder = world.pki.ocsp_responder("Nocheck OCSP Responder", world.ica)
    assert responder.cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    answer, to_check = verify(world, leaf, world.pki.ocsp_response(leaf, world.ica, responder=responder))
    assert (answer.status, to_check) == (Status.GOOD, None)


def test_rfc6960_4_2_2_2_1_responder_without_nocheck_is_returned_for_checking(world: World) -> None:
    leaf = world.leaf("checked responder client")
    responder = world.pki.ocsp_responder("Checked OCSP Responder", world.ica, nocheck=False)
    answer, to_check = verify(world, leaf, world.pki.ocsp_response(leaf, world.ica, responder=responder))
    assert answer.status is Status.GOOD
    assert to_check is not None and to_check.der == responder.der


@pytest.mark.parametrize(
    ("responder_crl", "expected"),
    [
        pytest.param("lists_responder", (False, "revocation_unavailable"), id="responder_revoked"),
        pytest.param("good", (True, "good"), id="responder_not_revoked"),
        pytest.param("broken", (False, "revocation_unavailable"), id="responder_crl_unavailable"),
        pytest.param(None, (True, "good"), id="responder_declares_no_crl"),
    ],
)
def test_rfc6960_4_2_2_2_1_responder_without_nocheck_is_checked_through_the_handler(
    authorizer: Authorizer, world: World, responder_crl: str | None, expected: tuple[bool, str]
) -> None:
    """Needs revocation.py to check the responder verify_response returns: through the CA's CRL the
    responder certificate declares; a revoked responder, or one whose CRL is unavailable, is not believed.
    """
    path, url = world.crl_url()
    responder = world.pki.ocsp_responder(
        "CRL-checked OCSP Responder", world.ica, nocheck=False, crl_urls=[url] if responder_crl else []
    )
    if responder_crl == "broken":
        world.http.set(path, b"unavailable", status=503, content_type="text/plain")
    elif responder_crl is not None:
        world.http.set(
            path, world.pki.crl(world.ica, [responder] if responder_crl == "lists_responder" else [])
        )
    leaf = static_ocsp_leaf(
        world,
        lambda leaf, req: world.pki.ocsp_response(leaf, world.ica, request_der=req, responder=responder),
    )
    authorizer.check("rest", leaf).expect(*expected, cert=leaf)
    if responder_crl is not None:
        assert world.http.requests(path) >= 1
