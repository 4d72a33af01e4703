"""OCSP (RFC 6960): build a request and verify a response, with no I/O.

cryptography parses requests and responses and computes CertID hashes; pyhanko-certvalidator's
signature validator checks the signature over the response's to-be-signed bytes as received.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, OCSPExtensionOID
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator

from .certs import Cert, cert_from_der
from .fetch_rules import is_http_url
from .freshness import StaleData, usable_until
from .model import Answer, Source, Status
from .settings import RevocationPolicy

_SIGNATURES = DefaultSignatureValidator()


class OCSPError(ValueError):
    """The response gives no verified answer."""


# Extensions this checker understands (RFC 6960 section 4.4); any other critical one refuses the response.
_KNOWN_RESPONSE_EXTENSIONS = frozenset({OCSPExtensionOID.NONCE})
# None: a singleExtension (CRL references, archive cutoff, ...) changes nothing this checker does, so a
# critical one asks for handling it does not have.
_KNOWN_SINGLE_EXTENSIONS: frozenset[str] = frozenset()


def responders(cert: Cert) -> tuple[tuple[str, ...], bool]:
    """The http(s) OCSP responders the certificate's AIA names, and whether it names OCSP
    responders none of which this checker can use (ldap://, a directoryName, ...).

    RFC 5280 section 4.2.2.1: an OCSP access description declares that OCSP is available; one that
    cannot be fetched is declared but unusable, not absent.
    """
    try:
        aia = cert.crypto.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return (), False
    locations = [
        desc.access_location for desc in aia if desc.access_method == AuthorityInformationAccessOID.OCSP
    ]
    urls = tuple(
        location.value
        for location in locations
        if isinstance(location, x509.UniformResourceIdentifier) and is_http_url(location.value)
    )
    return urls, bool(locations) and not urls


def responder_urls(cert: Cert) -> tuple[str, ...]:
    """The http(s) OCSP responders only (see `responders`)."""
    return responders(cert)[0]


def build_request(cert: Cert, issuer: Cert) -> tuple[bytes, bytes]:
    """A DER OCSP request for `cert` with a fresh nonce; returns (request, nonce)."""
    nonce = os.urandom(16)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(
            cert.crypto, issuer.crypto, hashes.SHA1()
        )  # SHA-1 CertID: what every responder knows
        .add_extension(x509.OCSPNonce(nonce), critical=False)
        .build()
    )
    return request.public_bytes(Encoding.DER), nonce


def verify_response(
    der: bytes, cert: Cert, issuer: Cert, now: datetime, policy: RevocationPolicy, nonce: bytes | None = None
) -> tuple[Answer, Cert | None]:
    """Check a DER OCSP response about `cert` issued by `issuer`; raises OCSPError or StaleData only.

    Returns the answer and the delegated responder certificate whose own revocation the caller must
    still check (RFC 6960 section 4.2.2.2.1), or None when the CA signed the response itself or
    the responder certificate carries id-pkix-ocsp-nocheck.
    """
    try:
        return _verify_response(der, cert, issuer, now, policy, nonce)
    except (OCSPError, StaleData):
        raise
    except Exception as exc:  # lazily parsed parts of malformed input raise all sorts of errors
        raise OCSPError(f"response is malformed: {type(exc).__name__}") from exc


def _verify_response(
    der: bytes, cert: Cert, issuer: Cert, now: datetime, policy: RevocationPolicy, nonce: bytes | None
) -> tuple[Answer, Cert | None]:
    try:
        response = ocsp.load_der_ocsp_response(der)
    except Exception as exc:  # malformed input may raise more than ValueError
        raise OCSPError("response does not parse") from exc
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OCSPError(f"responder said {response.response_status.name.lower()}")
    signer = _authorised_signer(response, issuer, now, policy)
    basic = _check_signature(der, signer)
    _check_critical_extensions(response, basic)
    _check_nonce(response, nonce)
    single = _single_response_for(response, cert, issuer)
    fresh_until, stale = usable_until(single.this_update_utc, single.next_update_utc, now, policy)
    status = {
        ocsp.OCSPCertStatus.GOOD: Status.GOOD,
        ocsp.OCSPCertStatus.REVOKED: Status.REVOKED,
    }.get(single.certificate_status, Status.UNKNOWN)
    # certificateHold is the one revocation a later answer may lift (RFC 5280 §5.3.1).
    hold = status is Status.REVOKED and single.revocation_reason is x509.ReasonFlags.certificate_hold
    answer = Answer(
        status,
        Source.OCSP,
        fresh_until,
        "ocsp revoked (certificateHold)" if hold else f"ocsp {status.value}",
        stale,
        single.this_update_utc,
        single.next_update_utc,
        hold,
    )
    return answer, None if signer is issuer or _has_nocheck(signer) else signer


def _single_response_for(response: ocsp.OCSPResponse, cert: Cert, issuer: Cert) -> ocsp.OCSPSingleResponse:
    """The SingleResponse the answer rests on: any matching revoked one wins over good ones, a good one
    only counts when no match is revoked, and otherwise the answer is unknown."""
    matches = _matching_responses(response, cert, issuer)
    if not matches:
        raise OCSPError("no response matches the certificate's CertID")
    for wanted in (ocsp.OCSPCertStatus.REVOKED, ocsp.OCSPCertStatus.GOOD):
        for single in matches:
            if single.certificate_status == wanted:
                return single
    return matches[0]


def _matching_responses(
    response: ocsp.OCSPResponse, cert: Cert, issuer: Cert
) -> list[ocsp.OCSPSingleResponse]:
    matches = []
    for single in response.responses:
        if single.serial_number != cert.crypto.serial_number:
            continue
        # Let cryptography compute the CertID hashes with the algorithm the responder chose.
        expected = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(cert.crypto, issuer.crypto, single.hash_algorithm)
            .build()
        )
        if (single.issuer_name_hash, single.issuer_key_hash) == (
            expected.issuer_name_hash,
            expected.issuer_key_hash,
        ):
            matches.append(single)
    return matches


def _is_responder(candidate: x509.Certificate, response: ocsp.OCSPResponse) -> bool:
    try:
        if response.responder_key_hash is not None:
            key_id = x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest
            return key_id == response.responder_key_hash
        return candidate.subject == response.responder_name
    except Exception:  # the certs field is unsigned: a malformed certificate there is simply not the signer
        return False


def _authorised_signer(
    response: ocsp.OCSPResponse, issuer: Cert, now: datetime, policy: RevocationPolicy
) -> Cert:
    """The issuing CA itself, or a delegated responder that CA issued with the OCSPSigning EKU."""
    if _is_responder(issuer.crypto, response):
        return issuer
    for candidate in response.certificates:
        if not _is_responder(candidate, response):
            continue
        try:
            candidate.verify_directly_issued_by(issuer.crypto)
            eku = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            continue
        # RFC 6960 section 4.2.2.2: the responder certificate must be valid now. Only the clock skew
        # applies; the stale grace is about thisUpdate/nextUpdate, never about a signer's validity.
        skew = timedelta(seconds=policy.clock_skew_seconds)
        if not candidate.not_valid_before_utc - skew <= now <= candidate.not_valid_after_utc + skew:
            continue
        return cert_from_der(candidate.public_bytes(Encoding.DER))
    raise OCSPError("response is not signed by the issuer or a responder it authorised")


def _check_signature(der: bytes, signer: Cert) -> asn1_ocsp.BasicOCSPResponse:
    try:
        basic = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
        _SIGNATURES.validate_signature(
            basic["signature"].native,
            basic["tbs_response_data"].dump(),  # the bytes as received, not a re-encoding
            signer.asn1.public_key,
            basic["signature_algorithm"],
        )
    except Exception as exc:
        raise OCSPError("response signature does not verify") from exc
    if not isinstance(basic, asn1_ocsp.BasicOCSPResponse):
        raise OCSPError("response is not a basic OCSP response")
    return basic


def _check_critical_extensions(response: ocsp.OCSPResponse, basic: asn1_ocsp.BasicOCSPResponse) -> None:
    """RFC 6960 section 4.4: a response with a critical extension this checker does not understand,
    in responseExtensions or any singleExtensions, is not used."""
    for ext in response.extensions:
        if ext.critical and ext.oid not in _KNOWN_RESPONSE_EXTENSIONS:
            raise OCSPError(f"response has an unsupported critical extension {ext.oid.dotted_string}")
    for single in basic["tbs_response_data"]["responses"]:
        unknown = single.critical_extensions - _KNOWN_SINGLE_EXTENSIONS
        if unknown:
            raise OCSPError(f"single response has an unsupported critical extension {sorted(unknown)[0]}")


def _has_nocheck(responder: Cert) -> bool:
    """RFC 6960 section 4.2.2.2.1: with id-pkix-ocsp-nocheck the responder's revocation is not checked."""
    try:
        responder.crypto.extensions.get_extension_for_class(x509.OCSPNoCheck)
    except x509.ExtensionNotFound:
        return False
    return True


def _check_nonce(response: ocsp.OCSPResponse, nonce: bytes | None) -> None:
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return  # responders may serve pre-produced responses without a nonce (RFC 5019)
    if nonce is not None and echoed != nonce:
        raise OCSPError("response nonce does not match the request")
