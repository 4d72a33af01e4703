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
from cryptography.exceptions import InvalidSignature

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
        if self.crypto.issuer != self.crypto.subject:
            return False
        try:
            self.crypto.verify_directly_issued_by(self.crypto)
        except (ValueError, TypeError, InvalidSignature, x509.UnsupportedGeneralNameType):
            return False
        except Exception:  # unsupported key types and the like: not an anchor we can use
            return False
        return True


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
