"""A throw-away PKI generated at test time with ``cryptography``.

``PKI`` mints certificates (roots, intermediates, leaves, OCSP responders), CRLs (complete, sharded,
partitioned with an IssuingDistributionPoint) and OCSP responses (for the deliberately broken ones the
OpenSSL responder cannot produce: stale, bad signature, wrong CertID, ...). Every certificate and key is
also written as PEM to the PKI's directory so the OpenSSL CLI can use them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

KeyType = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
OCSPStatus = Literal["good", "revoked", "unknown"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def name(common_name: str, organization: str = "Revocation Test PKI") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def new_key(key_type: KeyType = "rsa") -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def flip_last_byte(der: bytes) -> bytes:
    """Corrupt a signature that sits at the end of a DER structure (certificate, CRL, OCSP response)."""
    return der[:-1] + bytes([der[-1] ^ 0x01])


def key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Credential:
    """A certificate with its private key and the PEM files written for them."""

    cert: x509.Certificate
    key: PrivateKey
    cert_path: Path
    key_path: Path

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def issuer(self) -> str:
        return self.cert.issuer.rfc4514_string()

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def serial_hex(self) -> str:
        return format(self.cert.serial_number, "X")

    @property
    def fingerprint_sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def colon_serial(self) -> str:
        """The serial as API Gateway shows it: colon-separated lower-case hex bytes."""
        raw = self.cert.serial_number.to_bytes((self.cert.serial_number.bit_length() + 7) // 8, "big")
        return ":".join(f"{b:02x}" for b in raw)


class PKI:
    """Builder for certificates, CRLs and OCSP responses. All times are relative to ``utcnow()``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._shared_leaf_keys: dict[KeyType, PrivateKey] = {}
        self._counter = itertools.count(1)

    # ----------------------------------------------------------------------------- certificates
    def _write(self, label: str, cert: x509.Certificate, key: PrivateKey) -> Credential:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower() or "cert"
        stem = self.directory / f"{next(self._counter):04d}-{slug}"
        cert_path = stem.with_suffix(".pem")
        key_path = stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Credential(cert=cert, key=key, cert_path=cert_path, key_path=key_path)

    def leaf_key(self, key_type: KeyType) -> PrivateKey:
        """Leaves share one key per type: generating RSA keys is the slow part of minting."""
        if key_type not in self._shared_leaf_keys:
            self._shared_leaf_keys[key_type] = new_key(key_type)
        return self._shared_leaf_keys[key_type]

    def issue(
        self,
        subject: x509.Name | str,
        *,
        issuer: Credential | None,
        ca: bool,
        key: PrivateKey | None = None,
        key_type: KeyType = "rsa",
        path_length: int | None = None,
        ocsp_url: str | None = None,
        crl_urls: Sequence[str] = (),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        usage: x509.KeyUsage | None = None,
        ekus: Sequence[x509.ObjectIdentifier] | None = None,
        serial: int | None = None,
        issuer_name: x509.Name | None = None,
        extra_extensions: Iterable[x509.ExtensionType] = (),
    ) -> Credential:
        """Mint one certificate. ``issuer=None`` makes it self-signed.

        ``issuer_name`` overrides the issuer DN written into the certificate (for impostors).
        """
        subject_name = name(subject) if isinstance(subject, str) else subject
        if key is None:
            key = new_key(key_type)
        now = utcnow()
        signing_key = key if issuer is None else issuer.key
        if issuer_name is None:
            issuer_name = subject_name if issuer is None else issuer.cert.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject_name)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=1))
            .not_valid_after(not_after or now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if usage is None:
            usage = (
                key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True)
                if ca
                else key_usage(digital_signature=True)
            )
        builder = builder.add_extension(usage, critical=True)
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
            )
        if ocsp_url:
            builder = builder.add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
                        )
                    ]
                ),
                critical=False,
            )
        if crl_urls:
            builder = builder.add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            full_name=[x509.UniformResourceIdentifier(url) for url in crl_urls],
                            relative_name=None,
                            reasons=None,
                            crl_issuer=None,
                        )
                    ]
                ),
                critical=False,
            )
        for extension in extra_extensions:
            builder = builder.add_extension(extension, critical=False)
        cert = builder.sign(signing_key, hashes.SHA256())
        return self._write(subject_name.rfc4514_string(), cert, key)

    def root(
        self, common_name: str, *, key_type: KeyType = "rsa", subject: x509.Name | None = None
    ) -> Credential:
        return self.issue(subject or name(common_name), issuer=None, ca=True, key_type=key_type)

    def intermediate(
        self,
        common_name: str,
        issuer: Credential,
        *,
        key_type: KeyType = "rsa",
        ocsp_url: str | None = None,
        crl_urls: Sequence[str] = (),
        path_length: int | None = 0,
    ) -> Credential:
        return self.issue(
            common_name,
            issuer=issuer,
            ca=True,
            key_type=key_type,
            ocsp_url=ocsp_url,
            crl_urls=crl_urls,
            path_length=path_length,
        )

    def leaf(
        self,
        common_name: str,
        issuer: Credential,
        *,
        key_type: KeyType = "rsa",
        ocsp_url: str | None = None,
        crl_urls: Sequence[str] = (),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        ca: bool = False,
        issuer_name: x509.Name | None = None,
        extensions: Iterable[x509.ExtensionType] = (),
    ) -> Credential:
        """A client certificate: keyUsage digitalSignature (+ keyEncipherment for RSA), EKU clientAuth.

        ``extensions``: more (non-critical) extensions, e.g. a hand-made CRLDistributionPoints.
        """
        usage = key_usage(digital_signature=True, key_encipherment=key_type == "rsa")
        slug = re.sub(r"[^a-z0-9]+", "-", common_name.lower()).strip("-") or "client"
        return self.issue(
            name(common_name, "Revocation Test Clients"),
            issuer=issuer,
            ca=ca,
            key=self.leaf_key(key_type),
            ocsp_url=ocsp_url,
            crl_urls=crl_urls,
            not_before=not_before,
            not_after=not_after,
            usage=usage,
            ekus=[ExtendedKeyUsageOID.CLIENT_AUTH],
            issuer_name=issuer_name,
            extra_extensions=[
                x509.SubjectAlternativeName([x509.DNSName(f"{slug}.clients.example.test")]),
                *extensions,
            ],
        )

    def ocsp_responder(
        self,
        common_name: str,
        issuer: Credential,
        *,
        ocsp_signing_eku: bool = True,
        nocheck: bool | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        crl_urls: Sequence[str] = (),
    ) -> Credential:
        """A delegated OCSP responder (issued by ``issuer``), with or without the OCSPSigning EKU.

        ``nocheck``: carry id-pkix-ocsp-nocheck (default: when it has the EKU); ``not_before``/``not_after``:
        its validity (default: as ``issue``); ``crl_urls``: a CRL distribution point for its own revocation.
        """
        if nocheck is None:
            nocheck = ocsp_signing_eku
        return self.issue(
            common_name,
            issuer=issuer,
            ca=False,
            key_type="ec",
            usage=key_usage(digital_signature=True),
            ekus=[ExtendedKeyUsageOID.OCSP_SIGNING]
            if ocsp_signing_eku
            else [ExtendedKeyUsageOID.CLIENT_AUTH],
            extra_extensions=[x509.OCSPNoCheck()] if nocheck else [],
            not_before=not_before,
            not_after=not_after,
            crl_urls=crl_urls,
        )

    # ----------------------------------------------------------------------------- CRLs
    def crl(
        self,
        issuer: Credential,
        revoked: Iterable[Credential | int] = (),
        *,
        this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        signing_key: PrivateKey | None = None,
        issuer_name: x509.Name | None = None,
        idp: x509.IssuingDistributionPoint | None = None,
        crl_number: int = 1,
        entries: Iterable[x509.RevokedCertificate] = (),
    ) -> bytes:
        """A DER CRL by ``issuer`` (fresh by default), listing ``revoked`` (credentials or serials).

        ``entries``: ready-made entries (with entry extensions, say), listed after ``revoked`` in order.
        """
        now = utcnow()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer_name or issuer.cert.subject)
            .last_update(this_update or now - dt.timedelta(minutes=5))
            .next_update(next_update or now + dt.timedelta(days=1))
            .add_extension(x509.CRLNumber(crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
            )
        )
        if idp is not None:
            builder = builder.add_extension(idp, critical=True)
        for entry in revoked:
            serial = entry.serial if isinstance(entry, Credential) else entry
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - dt.timedelta(hours=1))
                .build()
            )
        for revoked_certificate in entries:
            builder = builder.add_revoked_certificate(revoked_certificate)
        crl = builder.sign(signing_key or issuer.key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.DER)

    @staticmethod
    def idp(
        url: str | None = None,
        *,
        only_ca_certs: bool = False,
        only_user_certs: bool = False,
    ) -> x509.IssuingDistributionPoint:
        return x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(url)] if url else None,
            relative_name=None,
            only_contains_user_certs=only_user_certs,
            only_contains_ca_certs=only_ca_certs,
            only_some_reasons=None,
            indirect_crl=False,
            only_contains_attribute_certs=False,
        )

    # ----------------------------------------------------------------------------- OCSP responses
    @staticmethod
    def ocsp_response(
        cert: Credential,
        issuer: Credential,
        *,
        request_der: bytes | None = None,
        status: OCSPStatus = "good",
        responder: Credential | None = None,
        this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        omit_next_update: bool = False,
        for_serial: int | None = None,
        corrupt_signature: bool = False,
    ) -> bytes:
        """A signed OCSP response about ``cert``.

        It answers ``request_der`` faithfully (same CertID hash algorithm, nonce
        echoed) unless told otherwise:
        ``for_serial`` answers for another certificate; ``responder`` signs as a delegated
        responder (default: the
        issuer itself, without certificates attached so the signature is the last thing in the DER);
        ``corrupt_signature`` flips a bit of that signature.
        """
        now = utcnow()
        algorithm: hashes.HashAlgorithm = hashes.SHA1()
        nonce: bytes | None = None
        if request_der:
            request = ocsp.load_der_ocsp_request(request_der)
            algorithm = request.hash_algorithm
            try:
                nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            except x509.ExtensionNotFound:
                nonce = None
        subject_cert = cert.cert
        if for_serial is not None:
            # Same issuer and key, other serial number: only the CertID's serial differs.
            subject_cert = (
                x509.CertificateBuilder()
                .subject_name(cert.cert.subject)
                .issuer_name(cert.cert.issuer)
                .public_key(cert.cert.public_key())
                .serial_number(for_serial)
                .not_valid_before(cert.cert.not_valid_before_utc)
                .not_valid_after(cert.cert.not_valid_after_utc)
                .sign(issuer.key, hashes.SHA256())
            )
        cert_status = {
            "good": ocsp.OCSPCertStatus.GOOD,
            "revoked": ocsp.OCSPCertStatus.REVOKED,
            "unknown": ocsp.OCSPCertStatus.UNKNOWN,
        }[status]
        revoked = status == "revoked"
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=subject_cert,
            issuer=issuer.cert,
            algorithm=algorithm,
            cert_status=cert_status,
            this_update=this_update or now - dt.timedelta(minutes=1),
            next_update=None if omit_next_update else (next_update or now + dt.timedelta(hours=1)),
            revocation_time=now - dt.timedelta(hours=1) if revoked else None,
            revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
        )
        signer = responder or issuer
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
        if responder is not None:
            builder = builder.certificates([responder.cert])
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        der = builder.sign(signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        if corrupt_signature:
            if responder is not None:
                raise ValueError(
                    "corrupt_signature needs an issuer-signed response (no certificates attached)"
                )
            der = flip_last_byte(der)
        return der


def pem_bundle(
    credentials: Iterable[Credential],
    *,
    newline: str = "\n",
    blank_lines: int = 0,
    trailing_newline: bool = True,
) -> bytes:
    """Concatenate certificates as a truststore file, with the given line ending and spacing."""
    blocks = [c.pem.strip("\n").replace("\n", newline) for c in credentials]
    body = (newline * (blank_lines + 1)).join(blocks)
    if trailing_newline:
        body += newline
    return body.encode()
