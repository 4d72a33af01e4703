"""Certificate loading: one object carrying both library views of a certificate.

pyhanko-certvalidator works on asn1crypto certificates; OCSP and CRL checks use cryptography's.
Both are parsed from the same DER once, here.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

MAX_PEM_CHARS = 64 * 1024  # a client certificate is a few KB; refuse anything absurd before parsing

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


class InvalidCertificate(ValueError):
    """The input is not a parseable X.509 certificate."""


@dataclass(frozen=True, eq=False)
class Cert:
    der: bytes
    crypto: x509.Certificate
    asn1: asn1_x509.Certificate = field(repr=False)
    fingerprint: str  # SHA-256 of the DER, lowercase hex

    @functools.cached_property
    def serial_hex(self) -> str:
        return format(self.crypto.serial_number, "x")

    @functools.cached_property
    def subject(self) -> str:
        return self.crypto.subject.rfc4514_string()

    @functools.cached_property
    def issuer(self) -> str:
        return self.crypto.issuer.rfc4514_string()

    @functools.cached_property
    def is_ca(self) -> bool:
        try:
            return self.crypto.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False

    @functools.cached_property
    def is_self_signed(self) -> bool:
        """Self-signed in RFC 5280's sense (§3.2, §6.1): self-issued and signed by its own key.

        Such a certificate in the truststore is an anchor, trusted by inclusion (§6.1.1): the hash in
        its self-signature does not matter, and pyhanko never checks an anchor's own signature. So the
        signature is checked with the key's primitive, not verify_directly_issued_by, which refuses SHA-1
        and would turn old roots into intermediates (leaving no anchor). A self-issued certificate signed
        by another key (a key-rollover link, §3.2) fails this check and stays an intermediate.
        """
        if self.crypto.issuer != self.crypto.subject:
            return False
        try:
            signed_by_own_key = _signed_by_own_key(self.crypto)
            if signed_by_own_key is None:  # an algorithm cryptography cannot compute (MD2, MD5, ...)
                return _key_ids_name_own_key(self.crypto)
            return signed_by_own_key
        except Exception:  # never let an odd certificate break the truststore parse
            return False


def _signed_by_own_key(cert: x509.Certificate) -> bool | None:
    """Whether the certificate's signature verifies under its own public key, whatever the hash;
    None when cryptography cannot check that signature algorithm at all."""
    try:
        key = cert.public_key()
        parameters = cert.signature_algorithm_parameters
        digest = cert.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError):
        return None
    signature, tbs = cert.signature, cert.tbs_certificate_bytes
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if isinstance(parameters, ec.ECDSA):  # an RSA key cannot have made it: another key did
                return False
            if not isinstance(parameters, padding.PKCS1v15 | padding.PSS) or digest is None:
                return None  # e.g. md5WithRSA, for which cryptography gives no padding
            key.verify(signature, tbs, parameters, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if isinstance(parameters, padding.PKCS1v15 | padding.PSS):
                return False
            if not isinstance(parameters, ec.ECDSA):
                return None
            key.verify(signature, tbs, parameters)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, tbs)
        elif isinstance(key, dsa.DSAPublicKey) and digest is not None:
            key.verify(signature, tbs, digest)
        else:
            return None
    except InvalidSignature:
        return False
    except (UnsupportedAlgorithm, ValueError, TypeError):
        return None
    return True


def _key_ids_name_own_key(cert: x509.Certificate) -> bool:
    """Fallback when the self-signature cannot be computed: a root's authorityKeyIdentifier is absent or
    names its own key (RFC 5280 §4.2.1.1); a rollover link's names the other key."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    if aki.key_identifier is None:
        return True
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return False
    return aki.key_identifier == ski.digest


def cert_from_der(der: bytes) -> Cert:
    try:
        crypto = x509.load_der_x509_certificate(der)
        asn1 = asn1_x509.Certificate.load(der)
        # cryptography parses the whole DER strictly; touching the extensions and names makes a
        # malformed body fail here (invalid_request), not mid-validation.
        _ = crypto.extensions, crypto.subject, crypto.issuer, asn1["tbs_certificate"]
    except Exception as exc:
        raise InvalidCertificate(f"not an X.509 certificate: {type(exc).__name__}") from exc
    return Cert(der=der, crypto=crypto, asn1=asn1, fingerprint=hashlib.sha256(der).hexdigest())


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Split text into its PEM blocks as (label, DER); a block that does not decode gets empty DER."""
    blocks = []
    for match in _PEM_BLOCK.finditer(data):
        try:
            label, _headers, der = pem.unarmor(match.group(0))
        except (ValueError, TypeError):
            label, der = match.group(1).decode("ascii", "replace"), b""
        blocks.append((label, der))
    return blocks


def load_client_cert(text: str) -> Cert:
    """Parse the client certificate PEM from the event (the first CERTIFICATE block)."""
    if len(text) > MAX_PEM_CHARS:
        raise InvalidCertificate("certificate PEM too large")
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise InvalidCertificate("certificate PEM is not ASCII") from exc
    for label, der in pem_blocks(data):
        if label == "CERTIFICATE":
            if not der:
                raise InvalidCertificate("certificate PEM does not decode")
            return cert_from_der(der)
    raise InvalidCertificate("no CERTIFICATE block")
