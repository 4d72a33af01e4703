"""Build large, genuinely signed CRLs fast, for benchmarks and tests.

cryptography's CRL builder is quadratic in the entry count and asn1crypto needs ~80 s for a million
entries, so the revokedCertificates list is encoded here directly (each entry is a fixed
SEQUENCE { INTEGER serial, UTCTime }); asn1crypto assembles the rest and cryptography signs it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from asn1crypto import algos
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import Encoding

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def _integer(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def revoked_entries(serials: Iterable[int], when: dt.datetime) -> bytes:
    """The DER of a revokedCertificates SEQUENCE OF for `serials`, all revoked at `when`."""
    stamp = _tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x30, b"".join(_tlv(0x30, _integer(s) + stamp) for s in serials))


def signed_crl(
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    serials: Sequence[int],
    this_update: dt.datetime,
    next_update: dt.datetime | None,
    crl_number: int = 1,
    *,
    idp_urls: Sequence[str] = (),
    authority_key_identifier: bool = False,
) -> bytes:
    """A complete DER CRL by `issuer_cert` revoking `serials`.

    `idp_urls`: a critical IssuingDistributionPoint naming these URLs (a partition, as AWS Private CA
    writes them); `authority_key_identifier`: the issuer's SKI as the CRL's AKI (Private CA sets it).
    """
    if isinstance(issuer_key, rsa.RSAPrivateKey):  # noqa: SIM108
        algorithm = "sha256_rsa"
    else:
        algorithm = "sha256_ecdsa"
    sig_alg = algos.SignedDigestAlgorithm({"algorithm": algorithm})
    tbs: dict[str, object] = {
        "version": "v2",
        "signature": sig_alg,
        "issuer": asn1_x509.Name.load(issuer_cert.subject.public_bytes()),
        "this_update": asn1_x509.Time({"utc_time": this_update}),
        "crl_extensions": [{"extn_id": "crl_number", "critical": False, "extn_value": crl_number}],
    }
    extensions: list[dict[str, object]] = tbs["crl_extensions"]  # type: ignore[assignment]
    if authority_key_identifier:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        extensions.append(
            {"extn_id": "authority_key_identifier", "critical": False, "extn_value": {"key_identifier": ski}}
        )
    if idp_urls:
        names = [asn1_x509.GeneralName(name="uniform_resource_identifier", value=url) for url in idp_urls]
        extensions.append(
            {
                "extn_id": "issuing_distribution_point",
                "critical": True,
                "extn_value": {"distribution_point": {"full_name": names}},
            }
        )
    if next_update is not None:
        tbs["next_update"] = asn1_x509.Time({"utc_time": next_update})
    if serials:
        tbs["revoked_certificates"] = asn1_crl.RevokedCertificates.load(revoked_entries(serials, this_update))
    tbs_der = asn1_crl.TbsCertList(tbs).dump()
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        signature = issuer_key.sign(tbs_der, PKCS1v15(), hashes.SHA256())
    else:
        signature = issuer_key.sign(tbs_der, ec.ECDSA(hashes.SHA256()))
    outer = asn1_crl.CertificateList(
        {
            "tbs_cert_list": asn1_crl.TbsCertList.load(tbs_der),
            "signature_algorithm": sig_alg,
            "signature": signature,
        }
    )
    return outer.dump()


def _self_check() -> None:  # pragma: no cover - a quick manual check
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "crlgen")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = signed_crl(cert, key, [5, 7, 2**70], now, now + dt.timedelta(hours=1))
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(key.public_key())
    assert {e.serial_number for e in crl} == {5, 7, 2**70}
    assert crl.public_bytes(Encoding.DER) == der
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    url = "http://bucket.s3.us-east-1.amazonaws.com/crl/ca/part.crl"
    der = signed_crl(cert, key, [9], now, None, 7, idp_urls=[url], authority_key_identifier=True)
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(key.public_key())
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.full_name == [x509.UniformResourceIdentifier(url)]
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert crl.public_bytes(Encoding.DER) == der


if __name__ == "__main__":
    _self_check()
    print("ok")
