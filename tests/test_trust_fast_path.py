"""The fast road for a new client of a known CA (trust.PathValidator) never decides otherwise than
pyhanko-certvalidator would.

pyhanko validates a CA's path once, with its first client; each later client's path is checked by
cryptography's x509.verification and taken only when it ends on a CA path pyhanko accepted. The
property: for any leaf, the answer of a validator that has seen the CA (and may take the fast road)
equals the answer of a fresh one (which can only ask pyhanko). Leaves are generated: validity at and
beyond the clock-skew edges, forged and sibling signers, names that match only after RFC 5280 §7.1
normalisation, authority key identifiers naming another key, critical extensions pyhanko does not
support, policy constraints, a CA as the leaf, SHA-1. CA paths with name constraints or policy
constraints never take the fast road.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from authorizer.certs import Cert, InvalidCertificate, cert_from_der
from authorizer.trust import PathValidator, Untrusted, validator_for
from authorizer.truststore import Truststore, parse_truststore
from pki import PKI, Credential, name, new_key
from test_trust_anchors import reissue

SKEW = 300.0
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
POLICY_ARC = "1.3.6.1.4.1.55555.2"


class Setup:
    def __init__(self, directory: Path) -> None:
        self.pki = PKI(directory)
        self.root = self.pki.root("Fast Road Root CA")
        self.ica = self.pki.intermediate("Fast Road Issuing CA", self.root)
        # A sibling: the same name as the issuing CA, another key, outside the truststore.
        self.sibling_key = new_key()
        self.leaf_key = self.pki.leaf_key("rsa")
        self.keys = {"rsa": self.leaf_key, "ec": self.pki.leaf_key("ec"), "rsa-1024": rsa_1024()}
        self.truststore = truststore_of(self.root, self.ica)
        self.mutable = b""  # a good leaf's DER, for the byte mutations


def rsa_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def truststore_of(*creds: Credential) -> Truststore:
    return parse_truststore(b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in creds))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    made = Setup(tmp_path_factory.mktemp("fast-road"))
    made.mutable = leaf(made, extensions=[(many_policies(2), False)]).der
    return made


def leaf(
    setup: Setup,
    *,
    issuer: Credential | None = None,
    signer: rsa.RSAPrivateKey | None = None,
    issuer_name: x509.Name | None = None,
    not_before: dt.timedelta = dt.timedelta(days=-1),
    not_after: dt.timedelta = dt.timedelta(days=30),
    aki: str = "issuer",
    ca: bool | None = False,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
    key: rsa.RSAPrivateKey | None = None,
) -> Cert:
    issuer = issuer or setup.ica
    signer = signer or issuer.key  # type: ignore[assignment]
    key = key or setup.leaf_key  # type: ignore[assignment]
    assert signer is not None and key is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(name("fast road client", "Fast Road Clients"))
        .issuer_name(issuer_name or issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + not_before)
        .not_valid_after(NOW + not_after)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if aki == "issuer":
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    elif aki == "other":
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(setup.sibling_key.public_key()), critical=False
        )
    elif aki in ("serial", "other-serial"):
        serial = issuer.cert.serial_number + (aki == "other-serial")
        named = [x509.DirectoryName(setup.root.cert.subject)]
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(None, named, serial), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return cert_from_der(builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def outcome(validator: PathValidator, cert: Cert, moment: dt.datetime = NOW) -> tuple[str, ...] | None:
    """The path's fingerprints, leaf first, or None when untrusted."""
    try:
        return tuple(c.fingerprint for c in validator.validate(cert, moment, SKEW).certs)
    except Untrusted:
        return None


def warmed(setup: Setup, truststore: Truststore | None = None, first: Cert | None = None) -> PathValidator:
    """A validator that has seen one good client of the issuing CA: its CA path is known."""
    validator = PathValidator(truststore or setup.truststore)
    assert outcome(validator, first or leaf(setup)) is not None
    assert (validator.fast, validator.full) == (0, 1)
    return validator


def same_answer(
    setup: Setup, cert: Cert, truststore: Truststore | None = None
) -> tuple[tuple[str, ...] | None, bool]:
    """Both roads' answer for `cert`, asserted equal, and whether the fast road gave it."""
    fresh = PathValidator(truststore or setup.truststore)  # knows no CA path: pyhanko only
    expected = outcome(fresh, cert)
    assert fresh.fast == 0
    validator = warmed(setup, truststore)
    assert outcome(validator, cert) == expected
    return expected, validator.fast == 1


def test_a_new_client_of_a_known_ca_takes_the_fast_road(setup: Setup) -> None:
    validator = warmed(setup)
    second = leaf(setup)
    path = validator.validate(second, NOW, SKEW)
    assert (validator.fast, validator.full) == (1, 1)
    assert [c.fingerprint for c in path.certs[1:]] == [
        setup.ica.fingerprint_sha256,
        setup.root.fingerprint_sha256,
    ]
    assert path.leaf is second  # the caller's own certificate objects, anchor last
    assert path.certs[1] is setup.truststore.intermediates[0]
    assert path.certs[2] is setup.truststore.anchors[0]


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "expired-within-skew",
        "not-yet-valid",
        "not-yet-valid-within-skew",
        "forged-signature",
        "sibling-signer",
        "other-issuer-name",
        "issuer-name-case-rfc5280-7-1",
        "aki-names-another-key-rfc5280-4-2-1-1",
        "aki-names-issuer-by-serial",
        "aki-names-another-serial",
        "unknown-critical-extension-rfc5280-4-2",
        "critical-tls-feature",
        "leaf-requires-explicit-policy-rfc5280-6-1-5",
        "a-ca-as-the-leaf",
        "sha1-signature",
        "no-extensions",
        "many-policies",
    ],
)
def test_the_fast_road_answers_as_pyhanko(setup: Setup, case: str) -> None:
    policies = x509.CertificatePolicies(
        [x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None)]
    )
    cert = {
        "expired": lambda: leaf(setup, not_before=dt.timedelta(days=-3), not_after=dt.timedelta(hours=-1)),
        "expired-within-skew": lambda: leaf(setup, not_after=dt.timedelta(seconds=-60)),
        "not-yet-valid": lambda: leaf(setup, not_before=dt.timedelta(hours=1)),
        "not-yet-valid-within-skew": lambda: leaf(setup, not_before=dt.timedelta(seconds=60)),
        "forged-signature": lambda: cert_from_der(flip(leaf(setup).der)),
        "sibling-signer": lambda: leaf(setup, signer=setup.sibling_key, aki="none"),  # type: ignore[arg-type]
        "other-issuer-name": lambda: leaf(setup, issuer_name=name("Another Issuing CA"), aki="none"),
        "issuer-name-case-rfc5280-7-1": lambda: leaf(setup, issuer_name=name("FAST ROAD ISSUING CA")),
        "aki-names-another-key-rfc5280-4-2-1-1": lambda: leaf(setup, aki="other"),
        "aki-names-issuer-by-serial": lambda: leaf(setup, aki="serial"),
        "aki-names-another-serial": lambda: leaf(setup, aki="other-serial"),
        "unknown-critical-extension-rfc5280-4-2": lambda: leaf(
            setup, extensions=[(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True)]
        ),
        "critical-tls-feature": lambda: leaf(
            setup, extensions=[(x509.TLSFeature([x509.TLSFeatureType.status_request]), True)]
        ),
        "leaf-requires-explicit-policy-rfc5280-6-1-5": lambda: leaf(
            setup, extensions=[(x509.PolicyConstraints(0, None), True), (policies, False)]
        ),
        "a-ca-as-the-leaf": lambda: leaf(setup, ca=True),
        "sha1-signature": lambda: sha1(setup),
        "no-extensions": lambda: leaf(setup, ca=None, aki="none"),
        "many-policies": lambda: leaf(setup, extensions=[(many_policies(100), False)]),
    }[case]()
    answer, _ = same_answer(setup, cert)
    trusted = {"expired-within-skew", "not-yet-valid-within-skew", "issuer-name-case-rfc5280-7-1"}
    trusted |= {"a-ca-as-the-leaf", "no-extensions", "many-policies", "aki-names-issuer-by-serial"}
    # The outcomes themselves, so the comparison is not between two equally broken validators.
    if case in trusted:
        assert answer is not None, case
    else:
        assert answer is None, case


def flip(der: bytes) -> bytes:
    return der[:-1] + bytes([der[-1] ^ 0x01])


def many_policies(count: int) -> x509.CertificatePolicies:
    return x509.CertificatePolicies(
        [
            x509.PolicyInformation(x509.ObjectIdentifier(f"1.3.6.1.4.1.55555.2.{i}"), None)
            for i in range(count)
        ]
    )


def sha1(setup: Setup) -> Cert:
    """A leaf signed with SHA-1 (cryptography's builder refuses it; test_trust_anchors.reissue does not)."""
    good = leaf(setup)
    cred = Credential(good.crypto, setup.leaf_key, Path("unused"), Path("unused"))
    return cert_from_der(reissue(cred, setup.ica.key, digest=hashes.SHA1()).der)


# Validity windows around the clock-skew tolerance (SKEW = 300 s), as (notBefore, notAfter) from now.
WINDOWS = {
    "valid": (-86_400, 86_400 * 30),
    "expired": (-86_400 * 3, -7_200),
    "expired-inside-skew": (-86_400, -299),
    "expired-beyond-skew": (-86_400, -301),
    "future-inside-skew": (299, 86_400),
    "future-beyond-skew": (301, 86_400),
    "future": (7_200, 86_400),
}


EXTRAS = ["unknown", "tls-feature", "policy-constraints", "policies", "eku", "san", "key-usage"]


def weighted(common: str, *others: str) -> st.SearchStrategy[str]:
    """`common` half the time: most generated leaves should be worth validating."""
    return st.one_of(st.just(common), st.sampled_from([common, *others]))


@settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    window=weighted("valid", *WINDOWS),
    issuer=weighted("ica", "root"),
    signer=weighted("issuer", "sibling", "other-ca"),
    issuer_name=weighted("exact", "upper", "other"),
    aki=weighted("issuer", "other", "serial", "other-serial", "none"),
    ca=st.sampled_from([False, True, None]),
    extra=st.lists(
        st.sampled_from(
            ["unknown", "tls-feature", "policy-constraints", "policies", "eku", "san", "key-usage"]
        ),
        unique=True,
        max_size=3,
    ),
    critical=st.booleans(),
    key=weighted("rsa", "ec", "rsa-1024"),
)
def test_generated_leaves_get_pyhanko_s_answer(
    setup: Setup,
    window: str,
    issuer: str,
    signer: str,
    issuer_name: str,
    aki: str,
    ca: bool | None,
    extra: list[str],
    critical: bool,
    key: str,
) -> None:
    issuing = setup.ica if issuer == "ica" else setup.root
    other = setup.root if issuer == "ica" else setup.ica
    signing_key = {"issuer": issuing.key, "sibling": setup.sibling_key, "other-ca": other.key}[signer]
    named = {
        "exact": issuing.cert.subject,
        "upper": name(str(issuing.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value).upper()),
        "other": name("Another Issuing CA"),
    }[issuer_name]
    made = {
        "unknown": x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"),
        "tls-feature": x509.TLSFeature([x509.TLSFeatureType.status_request]),
        "policy-constraints": x509.PolicyConstraints(0, None),
        "policies": many_policies(3),
        "eku": x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
        "san": x509.SubjectAlternativeName([x509.DNSName("fast.clients.example.test")]),
        "key-usage": x509.KeyUsage(True, False, False, False, False, False, False, False, False),
    }
    not_before, not_after = WINDOWS[window]
    cert = leaf(
        setup,
        issuer=issuing,
        signer=signing_key,  # type: ignore[arg-type]
        issuer_name=named,
        not_before=dt.timedelta(seconds=not_before),
        not_after=dt.timedelta(seconds=not_after),
        aki=aki,
        ca=ca,
        extensions=[(made[e], critical) for e in extra],
        key=setup.keys[key],  # type: ignore[arg-type]
    )
    answer, fast = same_answer(setup, cert)
    event("trusted, fast road" if fast else "trusted, pyhanko" if answer else "untrusted")


def test_a_ca_path_with_name_constraints_never_takes_the_fast_road_rfc5280_4_2_1_10(
    setup: Setup,
) -> None:
    constrained = setup.pki.issue(
        "Constrained Issuing CA",
        issuer=setup.root,
        ca=True,
        path_length=0,
        extra_extensions=[
            x509.NameConstraints([x509.DNSName("inside.example.test")], None),
        ],
    )
    truststore = truststore_of(setup.root, constrained)
    inside = leaf(
        setup,
        issuer=constrained,
        extensions=[(x509.SubjectAlternativeName([x509.DNSName("a.inside.example.test")]), False)],
    )
    outside = leaf(
        setup,
        issuer=constrained,
        extensions=[(x509.SubjectAlternativeName([x509.DNSName("b.outside.example.test")]), False)],
    )
    validator = PathValidator(truststore)
    assert outcome(validator, inside) is not None
    assert outcome(validator, outside) is None
    assert outcome(validator, leaf(setup, issuer=constrained)) is not None  # no SAN; a DN outside no subtree
    assert validator.fast == 0


def test_a_ca_path_requiring_explicit_policy_never_takes_the_fast_road_rfc5280_6_1_5(setup: Setup) -> None:
    policy = x509.ObjectIdentifier("1.3.6.1.4.1.55555.3.1")
    policies = x509.CertificatePolicies([x509.PolicyInformation(policy, None)])
    strict = setup.pki.issue(
        "Explicit Policy Issuing CA",
        issuer=setup.root,
        ca=True,
        path_length=0,
        extra_extensions=[policies, x509.PolicyConstraints(0, None)],
    )
    truststore = truststore_of(setup.root, strict)
    validator = PathValidator(truststore)
    assert outcome(validator, leaf(setup, issuer=strict, extensions=[(policies, False)])) is not None
    assert outcome(validator, leaf(setup, issuer=strict)) is None  # no policy: the graph is empty
    assert validator.fast == 0


def test_an_expired_intermediate_ends_the_fast_road(setup: Setup) -> None:
    """cryptography checks every certificate's dates on each call; pyhanko confirms the refusal."""
    validator = warmed(setup)
    later = setup.ica.cert.not_valid_after_utc + dt.timedelta(days=1)
    long_lived = leaf(setup, not_after=later - NOW + dt.timedelta(days=30))
    assert outcome(validator, long_lived, later) is None
    assert validator.fast == 0


def test_a_sibling_ca_in_the_truststore_is_not_the_known_ca_path(setup: Setup) -> None:
    """Key rollover (RFC 5280 §3.2): two issuing CAs with one name; a client of the second one is
    pyhanko's to validate first, then its own CA path is known too."""
    sibling = setup.pki.issue(
        setup.ica.cert.subject, issuer=setup.root, ca=True, path_length=0, key=setup.sibling_key
    )
    truststore = truststore_of(setup.root, setup.ica, sibling)
    validator = warmed(setup, truststore)
    theirs = leaf(setup, issuer=sibling)
    path = validator.validate(theirs, NOW, SKEW)
    assert path.certs[1].fingerprint == sibling.fingerprint_sha256
    assert (validator.fast, validator.full) == (0, 2)
    validator.validate(leaf(setup, issuer=sibling), NOW, SKEW)
    validator.validate(leaf(setup), NOW, SKEW)
    assert (validator.fast, validator.full) == (2, 2)


def test_a_new_truststore_starts_with_no_known_ca_path(setup: Setup) -> None:
    first = truststore_of(setup.root, setup.ica)
    validator_for(first).validate(leaf(setup), NOW, SKEW)
    second = truststore_of(setup.root, setup.ica)
    validator = validator_for(second)
    assert validator is not validator_for(first)
    validator.validate(leaf(setup), NOW, SKEW)
    assert (validator.fast, validator.full) == (0, 1)


def test_a_ca_removed_from_the_truststore_is_untrusted_on_either_road(setup: Setup) -> None:
    """A new truststore version without the issuing CA: its clients are untrusted at once."""
    validator_for(setup.truststore).validate(leaf(setup), NOW, SKEW)  # the CA path known before
    without = parse_truststore(setup.root.cert.public_bytes(serialization.Encoding.PEM))
    validator = validator_for(without)
    assert outcome(validator, leaf(setup)) is None
    assert validator.fast == 0


@pytest.mark.parametrize("presented", ["the root", "the issuing CA"])
def test_a_truststore_certificate_presented_as_the_client_gets_pyhanko_s_answer(
    setup: Setup, presented: str
) -> None:
    """A client presenting a CA of the truststore itself (its key stolen): both roads, twice, give
    the same path, and never an error (an anchor has no CA path above it for the fast road)."""
    cred = setup.root if presented == "the root" else setup.ica
    fresh = PathValidator(setup.truststore)
    expected = outcome(fresh, cert_from_der(cred.der))
    assert outcome(fresh, cert_from_der(cred.der)) == expected
    validator = warmed(setup)
    assert outcome(validator, cert_from_der(cred.der)) == expected
    assert outcome(validator, cert_from_der(cred.der)) == expected


@settings(
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_leaves_get_pyhanko_s_answer(setup: Setup, data: st.DataObject) -> None:
    """Bytes of a good leaf changed anywhere (the TBS, the signature, lengths): whatever still parses
    is judged alike by both roads."""
    der = bytearray(setup.mutable)  # one leaf for every example: positions drawn depend on its length
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(der) - 1))
        der[at] = data.draw(st.integers(0, 255))
    try:
        cert = cert_from_der(bytes(der))
    except InvalidCertificate:
        event("does not parse")
        return
    answer, fast = same_answer(setup, cert)
    event("trusted, fast road" if fast else "trusted, pyhanko" if answer else "untrusted")
