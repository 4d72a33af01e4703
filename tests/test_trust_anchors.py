"""Trust anchors and the validated path (issue 8, items 15 and 16), through ``lambda_handler``.

- Item 15: the validated path is mapped back to the truststore certificates by identity, never by
  asn1crypto's re-serialisation, which does not give back every certificate byte for byte (a unique
  identifier's BIT STRING, RFC 5280 §4.1.2.8).
- Item 16: a root is an anchor by inclusion (RFC 5280 §6.1.1), whatever hash its self-signature uses
  (cryptography 50 refuses SHA-1 in verify_directly_issued_by). A self-issued certificate signed by another
  key (a key-rollover link, RFC 5280 §3.2, RFC 4210 §4.4) stays an intermediate, and everything below the
  anchor is still fully checked: a SHA-1 signature there is refused.

The unusual certificates are built here: asn1crypto sets the TBS fields, cryptography signs the TBS bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import replace

import pytest
from asn1crypto import algos, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from authorizer.certs import cert_from_der
from authorizer.trust import validate_path
from authorizer.truststore import parse_truststore
from conftest import Configure, Format, World
from pki import Credential, PrivateKey, name, pem_bundle

# Four unused bits, all zero: valid DER (X.690 §11.2.1), which cryptography accepts, but which asn1crypto's
# forced re-encoding rewrites (it keeps the bytes and drops the unused-bits count: 04 -> 00).
UNIQUE_ID = b"\x04\xab\xc0"


def reissue(
    cred: Credential,
    signer: PrivateKey,
    *,
    digest: hashes.HashAlgorithm | None = None,
    tbs_fields: Mapping[str, core.Asn1Value] | None = None,
) -> Credential:
    """``cred`` with TBS fields replaced and signed again by ``signer`` (RSA, PKCS#1 v1.5, ``digest``).

    cryptography's builder refuses SHA-1 and cannot write unique identifiers, so asn1crypto assembles
    the certificate; the signature over the TBS bytes is cryptography's.
    """
    assert isinstance(signer, rsa.RSAPrivateKey)
    digest = digest or hashes.SHA256()
    algorithm = algos.SignedDigestAlgorithm({"algorithm": f"{digest.name}_rsa", "parameters": core.Null()})
    tbs = asn1_x509.Certificate.load(cred.der)["tbs_certificate"].copy()
    tbs["signature"] = algorithm
    for field, value in (tbs_fields or {}).items():
        tbs[field] = value
    tbs_der = tbs.dump()
    der = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": algorithm,
            "signature_value": signer.sign(tbs_der, padding.PKCS1v15(), digest),
        }
    ).dump()
    return replace(cred, cert=x509.load_der_x509_certificate(der))


def unique_id(contents: bytes) -> core.OctetBitString:
    """A UniqueIdentifier BIT STRING with exactly these contents (unused-bits byte first)."""
    value = core.OctetBitString()
    value.contents = contents
    return value


# ============================================================================ item 15: unique identifiers
@pytest.mark.parametrize(
    ("holder", "field"),
    [("ica", "subject_unique_id"), ("ica", "issuer_unique_id"), ("leaf", "subject_unique_id")],
)
def test_unique_identifier_does_not_make_a_valid_path_untrusted_rfc5280_4_1_2_8(
    configure: Configure, world: World, fmt: Format, holder: str, field: str
) -> None:
    """RFC 5280 §4.1.2.8: v3 certificates may carry issuerUniqueID/subjectUniqueID, BIT STRINGs whose
    unused-bits byte asn1crypto does not re-encode as it was. The path must still map back to the
    truststore's certificates (item 15: it was refused as "a certificate outside the truststore")."""
    pki = world.pki
    root = pki.root("Unique ID Root CA")
    ica = pki.intermediate("Unique ID Issuing CA", root)
    if holder == "ica":
        ica = reissue(ica, root.key, tbs_fields={field: unique_id(UNIQUE_ID)})
    leaf = world.leaf("unique id client", issuer=ica)
    if holder == "leaf":
        leaf = reissue(leaf, ica.key, tbs_fields={field: unique_id(UNIQUE_ID)})
    odd = ica if holder == "ica" else leaf
    loaded = asn1_x509.Certificate.load(odd.der)
    assert loaded["tbs_certificate"][field].unused_bits == (0, 0, 0, 0)
    assert asn1_x509.Certificate.load(odd.der).dump(force=True) != odd.der  # what the mapping must not use

    authorizer = configure([root, ica])
    authorizer.check(fmt, leaf).expect(True, "no_revocation_info", cert=leaf, source="none")
    assert world.http.total_requests() == 0


def test_validated_path_is_the_truststore_certificates(world: World) -> None:
    """The path is made of the very certificates the authorizer parsed (and so of their DER)."""
    pki = world.pki
    root = pki.root("Identity Root CA")
    ica = reissue(
        pki.intermediate("Identity Issuing CA", root),
        root.key,
        tbs_fields={"subject_unique_id": unique_id(UNIQUE_ID)},
    )
    leaf = cert_from_der(world.leaf("identity client", issuer=ica).der)
    store = parse_truststore(pem_bundle([root, ica]))
    path = validate_path(leaf, store, dt.datetime.now(dt.UTC), 300)
    assert path.certs[0] is leaf
    assert path.certs[1] is store.intermediates[0] and path.certs[1].der == ica.der
    assert path.certs[2] is store.anchors[0] and path.certs[2].der == root.der


# ============================================================================ item 16: SHA-1 roots
def test_sha1_self_signed_root_is_an_anchor_rfc5280_6_1_1(
    configure: Configure, world: World, fmt: Format
) -> None:
    """RFC 5280 §6.1.1 (d): the trust anchor is an input to path validation; its self-signature is not
    checked. A root self-signed with SHA-1 (still in many truststores) as the only root must anchor the
    SHA-256 chain below it (item 16: it became an "intermediate" and every request was untrusted)."""
    pki = world.pki
    sha256_root = pki.root("Legacy SHA-1 Root CA")
    root = reissue(sha256_root, sha256_root.key, digest=hashes.SHA1())
    assert isinstance(root.cert.signature_hash_algorithm, hashes.SHA1)
    with pytest.raises(ValueError):  # why is_self_signed cannot rely on this any more
        root.cert.verify_directly_issued_by(root.cert)
    ica = pki.intermediate("Legacy Root Issuing CA", root)
    leaf = world.leaf("legacy root client", issuer=ica)

    store = parse_truststore(pem_bundle([root, ica]))
    assert [c.der for c in store.anchors] == [root.der]
    assert [c.der for c in store.intermediates] == [ica.der]

    authorizer = configure([root, ica])
    authorizer.check(fmt, leaf).expect(True, "no_revocation_info", cert=leaf, source="none")


@pytest.mark.parametrize("signed_with_sha1", ["intermediate", "leaf"])
def test_sha1_signature_below_the_anchor_is_refused_rfc5280_6_1_3(
    configure: Configure, world: World, fmt: Format, signed_with_sha1: str
) -> None:
    """RFC 5280 §6.1.3 (a)(1): every signature below the anchor is verified, and pyhanko refuses SHA-1
    ones (DisallowedAlgorithmError): accepting SHA-1 anchors must not accept SHA-1 anywhere else."""
    pki = world.pki
    root = pki.root("SHA-256 Root CA")
    ica = pki.intermediate("SHA-1 test Issuing CA", root)
    if signed_with_sha1 == "intermediate":
        ica = reissue(ica, root.key, digest=hashes.SHA1())
    leaf = world.leaf("sha-1 client", issuer=ica, crl=True)
    if signed_with_sha1 == "leaf":
        leaf = reissue(leaf, ica.key, digest=hashes.SHA1())
    authorizer = configure([root, ica])
    authorizer.check(fmt, leaf).expect(False, "untrusted", cert=leaf)
    assert world.http.total_requests() == 0


# ============================================================================ item 16: self-issued links
def test_key_rollover_links_stay_intermediates_rfc5280_3_2(world: World) -> None:
    """RFC 5280 §3.2 / RFC 4210 §4.4: after a CA key rollover the old and new self-signed roots share a
    name, and the OldWithNew / NewWithOld links are self-issued but signed by the other key. Only the two
    roots are anchors, whatever hash signs them; the links stay intermediates (their AKI is not their SKI)."""
    pki = world.pki
    subject = name("Rollover Root CA")
    old = pki.issue(subject, issuer=None, ca=True)
    new = pki.issue(subject, issuer=None, ca=True)
    old_with_new = pki.issue(subject, issuer=new, ca=True, key=old.key)
    new_with_old = pki.issue(subject, issuer=old, ca=True, key=new.key)
    sha1_old = reissue(old, old.key, digest=hashes.SHA1())
    sha1_new_with_old = reissue(new_with_old, old.key, digest=hashes.SHA1())
    for link in (old_with_new, new_with_old, sha1_new_with_old):
        assert link.cert.issuer == link.cert.subject
        aki = link.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = link.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier != ski.digest

    store = parse_truststore(pem_bundle([sha1_old, new, old_with_new, new_with_old, sha1_new_with_old]))
    assert {c.der for c in store.anchors} == {sha1_old.der, new.der}
    assert {c.der for c in store.intermediates} == {old_with_new.der, new_with_old.der, sha1_new_with_old.der}


def test_rollover_link_completes_a_path_to_the_old_root(
    configure: Configure, world: World, fmt: Format
) -> None:
    """A client under the new key, a truststore with only the old root and NewWithOld: the link is an
    intermediate on the path (RFC 5280 §6.1.4 (l): a self-issued certificate does not count towards the
    path length), and the old root anchors it."""
    pki = world.pki
    subject = name("Rolled-over Root CA")
    old = pki.issue(subject, issuer=None, ca=True)
    new = pki.issue(subject, issuer=None, ca=True)
    new_with_old = pki.issue(subject, issuer=old, ca=True, key=new.key)
    ica = pki.intermediate("Rolled-over Issuing CA", new)
    leaf = world.leaf("rolled-over client", issuer=ica)
    authorizer = configure([old, new_with_old, ica])
    authorizer.check(fmt, leaf).expect(True, "no_revocation_info", cert=leaf, source="none")


def test_uncheckable_self_signature_falls_back_to_key_identifiers_rfc5280_4_2_1_1(world: World) -> None:
    """When cryptography cannot compute a self-signature at all (md5WithRSA gets no padding from it), a
    self-issued certificate is an anchor when its authorityKeyIdentifier is absent or names its own key
    (RFC 5280 §4.2.1.1), and an intermediate when it names another key (a rollover link)."""
    pki = world.pki
    subject = name("MD5 Root CA")
    old = pki.issue(subject, issuer=None, ca=True)
    new = pki.issue(subject, issuer=None, ca=True)
    md5_root = reissue(old, old.key, digest=hashes.MD5())
    md5_link = reissue(pki.issue(subject, issuer=old, ca=True, key=new.key), old.key, digest=hashes.MD5())
    assert md5_root.cert.signature_algorithm_parameters is None
    store = parse_truststore(pem_bundle([md5_root, md5_link]))
    assert [c.der for c in store.anchors] == [md5_root.der]
    assert [c.der for c in store.intermediates] == [md5_link.der]
