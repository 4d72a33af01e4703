"""CRL processing to RFC 5280 §6.3 (issue 10), built as the public path-validation conformance suites
build their CRL sections: NIST PKITS §4.4 (Basic Certificate Revocation), §4.5 (Self-Issued
Certificates: key rollover, CRL-signing keys), §4.14 (Distribution Points) and §4.15 (Delta-CRLs).

Each test generates its PKI, names the PKITS case it mirrors (or the RFC 5280 section where PKITS
has none), and puts the valid and the invalid variant side by side. Through `lambda_handler`, with
CRLs served by the loopback HTTP server or read from a moto S3 CRL set.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from conftest import Configure, World
from pki import PKI, Credential, PrivateKey, key_usage, name, new_key, utcnow
from servers import MotoS3
from test_cache_rules import Clock, clock  # noqa: F401  (fixture)

HOUR = dt.timedelta(hours=1)
R = x509.ReasonFlags
_names = itertools.count(1)
_buckets = itertools.count(1)


# ============================================================================================ the PKI
@dataclass(frozen=True)
class Ca:
    pki: PKI
    root: Credential
    ica: Credential  # "Conformance CA": declares nothing itself, so only the leaf is decided

    @property
    def trusted(self) -> list[Credential]:
        return [self.root, self.ica]


@pytest.fixture(scope="module")
def ca(pki: PKI) -> Ca:
    root = pki.root("Conformance Root", key_type="ec")
    ica = pki.issue("Conformance CA", issuer=root, ca=True, key_type="ec", path_length=0)
    return Ca(pki, root, ica)


@pytest.fixture(autouse=True)
def _checker_gets_the_truststore(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until app.py passes it (`runtime.checker.check(path, truststore.version, deadline,
    truststore=truststore)`), hand the checker the truststore the path was validated against."""
    from authorizer import app, revocation

    original = revocation.RevocationChecker.check

    def check(self: Any, path: Any, version: str, deadline: float, truststore: Any = None) -> Any:
        if truststore is None and app._runtime is not None:
            truststore = app._runtime.truststore.get(deadline)
        return original(self, path, version, deadline, truststore=truststore)

    monkeypatch.setattr(revocation.RevocationChecker, "check", check)


def entry(serial: int, reason: x509.ReasonFlags | None = None, issuer: x509.Name | None = None) -> Any:
    builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(utcnow() - HOUR)
    if reason is not None:
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
    if issuer is not None:  # §5.3.3: always critical
        builder = builder.add_extension(x509.CertificateIssuer([x509.DirectoryName(issuer)]), critical=True)
    return builder.build()


def make_crl(
    issuer: x509.Name,
    key: PrivateKey,
    entries: Iterable[Any] = (),
    *,
    number: int = 1,
    delta_base: int | None = None,
    idp: x509.IssuingDistributionPoint | None = None,
    freshest: Sequence[str] = (),
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
) -> bytes:
    """A CRL as a CA publishes it: CRLNumber, the signing key's AKI, and what the test asks for."""
    now = utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(this_update or now - dt.timedelta(minutes=5))
        .next_update(next_update or now + 24 * HOUR)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)  # type: ignore[arg-type]
    )
    if delta_base is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_base), critical=True)
    if idp is not None:
        builder = builder.add_extension(idp, critical=True)
    if freshest:
        builder = builder.add_extension(x509.FreshestCRL([dp(*freshest)]), critical=False)
    for item in entries:
        builder = builder.add_revoked_certificate(item)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


def dp(
    *urls: str,
    names: Sequence[x509.GeneralName] = (),
    relative: x509.RelativeDistinguishedName | None = None,
    reasons: Iterable[x509.ReasonFlags] | None = None,
    crl_issuer: x509.Name | None = None,
) -> x509.DistributionPoint:
    full = [*(x509.UniformResourceIdentifier(u) for u in urls), *names] or None
    return x509.DistributionPoint(
        full,
        relative,
        frozenset(reasons) if reasons is not None else None,
        [x509.DirectoryName(crl_issuer)] if crl_issuer is not None else None,
    )


def idp(
    *urls: str,
    names: Sequence[x509.GeneralName] = (),
    relative: x509.RelativeDistinguishedName | None = None,
    reasons: Iterable[x509.ReasonFlags] | None = None,
    indirect: bool = False,
) -> x509.IssuingDistributionPoint:
    full = [*(x509.UniformResourceIdentifier(u) for u in urls), *names] or None
    return x509.IssuingDistributionPoint(
        full_name=full,
        relative_name=relative,
        only_contains_user_certs=False,
        only_contains_ca_certs=False,
        only_some_reasons=frozenset(reasons) if reasons is not None else None,
        indirect_crl=indirect,
        only_contains_attribute_certs=False,
    )


def leaf(
    ca: Ca, *points: x509.DistributionPoint, freshest: Sequence[str] = (), issuer: Credential | None = None
) -> Credential:
    extensions: list[x509.ExtensionType] = []
    if points:
        extensions.append(x509.CRLDistributionPoints(list(points)))
    if freshest:
        extensions.append(x509.FreshestCRL([dp(*freshest)]))
    return ca.pki.leaf(f"conformance-{next(_names)}", issuer or ca.ica, key_type="ec", extensions=extensions)


def details(caplog: pytest.LogCaptureFixture) -> str:
    return " | ".join(str(getattr(r, "detail", "")) for r in caplog.records if hasattr(r, "detail"))


@pytest.fixture
def bucket(s3: MotoS3) -> str:
    bucket_name = f"conformance-crls-{next(_buckets)}"
    s3.client.create_bucket(Bucket=bucket_name)
    return bucket_name


def put(s3: MotoS3, bucket: str, key: str, body: bytes) -> None:
    s3.client.put_object(Bucket=bucket, Key=key, Body=body)


# ======================================================================= §4.15 Delta-CRLs (RFC 5280 §5.2.4)
@dataclass
class DeltaCase:
    leaf: Credential
    base_path: str
    delta_path: str


@pytest.fixture
def delta_case(world: World, ca: Ca) -> DeltaCase:
    """A leaf whose CDP names the base CRL and whose FreshestCRL names the delta (Microsoft AD CS)."""
    base_path, base_url = world.crl_url()
    delta_path, delta_url = world.crl_url()
    return DeltaCase(leaf(ca, dp(base_url), freshest=[delta_url]), base_path, delta_path)


def publish(
    world: World, ca: Ca, case: DeltaCase, base: Iterable[Any], delta: Iterable[Any], **kw: Any
) -> None:
    base_number, delta_number, delta_base = kw.get("numbers", (10, 11, 10))
    world.http.set(case.base_path, make_crl(ca.ica.cert.subject, ca.ica.key, base, number=base_number))
    world.http.set(
        case.delta_path,
        make_crl(
            ca.ica.cert.subject,
            ca.ica.key,
            delta,
            number=delta_number,
            delta_base=delta_base,
            next_update=kw.get("delta_next_update"),
            this_update=kw.get("delta_this_update"),
        ),
    )


def test_pkits_4_15_1_invalid_delta_crl_indicator_no_base(configure: Configure, world: World, ca: Ca) -> None:
    """Only a delta CRL is served where the complete CRL should be: it never stands in for one."""
    path, url = world.crl_url()
    cert = leaf(ca, dp(url))
    world.http.set(path, make_crl(ca.ica.cert.subject, ca.ica.key, number=11, delta_base=10))
    configure(truststore=ca.trusted).check("rest", cert).expect(False, "revocation_unavailable", cert, "crl")


def test_pkits_4_15_2_valid_delta_crl(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase
) -> None:
    publish(world, ca, delta_case, [], [])
    configure(truststore=ca.trusted).check("rest", delta_case.leaf).expect(
        True, "good", delta_case.leaf, "crl"
    )
    assert world.http.requests(delta_case.delta_path) == 1


def test_pkits_4_15_3_invalid_delta_crl_revoked_on_base(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase
) -> None:
    publish(world, ca, delta_case, [entry(delta_case.leaf.serial, R.key_compromise)], [])
    configure(truststore=ca.trusted).check("rest", delta_case.leaf).expect(
        False, "revoked", delta_case.leaf, "crl"
    )


@pytest.mark.parametrize("mode, expected", [(None, (False, "revoked")), ("ignore", (True, "good"))])
def test_pkits_4_15_4_invalid_delta_crl_revoked_on_delta(
    configure: Configure,
    world: World,
    ca: Ca,
    delta_case: DeltaCase,
    mode: str | None,
    expected: tuple[bool, str],
) -> None:
    """Revoked since the last base CRL: denied, unless base-only mode (REVOCATION_DELTA_CRL=ignore)."""
    publish(world, ca, delta_case, [], [entry(delta_case.leaf.serial, R.key_compromise)])
    authz = configure(truststore=ca.trusted, REVOCATION_DELTA_CRL=mode)
    authz.check("rest", delta_case.leaf).expect(*expected, delta_case.leaf, "crl")
    assert world.http.requests(delta_case.delta_path) == (0 if mode == "ignore" else 1)


def test_pkits_4_15_5_valid_delta_crl_remove_from_crl_lifts_a_hold(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase
) -> None:
    serial = delta_case.leaf.serial
    publish(world, ca, delta_case, [entry(serial, R.certificate_hold)], [entry(serial, R.remove_from_crl)])
    configure(truststore=ca.trusted).check("rest", delta_case.leaf).expect(
        True, "good", delta_case.leaf, "crl"
    )


def test_pkits_4_15_6_invalid_delta_crl_hold_on_base_revoked_on_delta(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase
) -> None:
    serial = delta_case.leaf.serial
    publish(world, ca, delta_case, [entry(serial, R.certificate_hold)], [entry(serial, R.key_compromise)])
    configure(truststore=ca.trusted).check("rest", delta_case.leaf).expect(
        False, "revoked", delta_case.leaf, "crl"
    )


def test_pkits_4_15_7_valid_delta_crl_remove_from_crl_not_on_base(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase
) -> None:
    publish(world, ca, delta_case, [], [entry(delta_case.leaf.serial, R.remove_from_crl)])
    configure(truststore=ca.trusted).check("rest", delta_case.leaf).expect(
        True, "good", delta_case.leaf, "crl"
    )


def test_rfc5280_5_3_1_remove_from_crl_does_not_lift_a_permanent_revocation(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase
) -> None:
    serial = delta_case.leaf.serial
    publish(world, ca, delta_case, [entry(serial, R.key_compromise)], [entry(serial, R.remove_from_crl)])
    configure(truststore=ca.trusted).check("rest", delta_case.leaf).expect(
        False, "revoked", delta_case.leaf, "crl"
    )


@pytest.mark.parametrize("listed", [False, True])
def test_rfc5280_5_2_4_delta_newer_than_its_base_on_an_older_base_number_combines(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase, listed: bool
) -> None:
    """Base #10 in hand; delta #12 built on base #9 (§5.2.4 (c), (d): 9 <= 10 < 12): combined."""
    entries = [entry(delta_case.leaf.serial, R.superseded)] if listed else []
    publish(world, ca, delta_case, [], entries, numbers=(10, 12, 9))
    expected = (False, "revoked") if listed else (True, "good")
    configure(truststore=ca.trusted).check("rest", delta_case.leaf).expect(*expected, delta_case.leaf, "crl")


@pytest.mark.parametrize(
    "numbers, expected",
    [
        ((10, 11, 10), (True, "good")),  # the control
        ((10, 12, 11), (False, "revocation_unavailable")),  # a delta for a newer base than the one in hand
        ((10, 10, 9), (False, "revocation_unavailable")),  # a delta no newer than the base
    ],
)
def test_rfc5280_5_2_4_delta_for_a_different_base_is_refused(
    configure: Configure,
    world: World,
    ca: Ca,
    delta_case: DeltaCase,
    numbers: tuple[int, int, int],
    expected: tuple[bool, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    publish(world, ca, delta_case, [], [], numbers=numbers)
    configure(truststore=ca.trusted).check("rest", delta_case.leaf).expect(*expected, delta_case.leaf, "crl")
    if not expected[0]:
        assert "delta CRL" in details(caplog)


@pytest.mark.parametrize("stale", [False, True])
def test_rfc5280_6_3_3_stale_delta_crl_is_unavailable(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase, stale: bool
) -> None:
    """A delta past its nextUpdate gives no answer (PKITS 4.15.10's point), though the base is current."""
    now = utcnow()
    when = dict(delta_this_update=now - 3 * HOUR, delta_next_update=now - HOUR) if stale else {}
    publish(world, ca, delta_case, [], [], **when)
    expected = (False, "revocation_unavailable") if stale else (True, "good")
    configure(truststore=ca.trusted).check("rest", delta_case.leaf).expect(*expected, delta_case.leaf, "crl")


@pytest.mark.parametrize(
    "mode, expected", [(None, (False, "revocation_unavailable")), ("ignore", (True, "good"))]
)
def test_rfc5280_5_2_4_declared_delta_that_cannot_be_had_is_unavailable(
    configure: Configure,
    world: World,
    ca: Ca,
    delta_case: DeltaCase,
    mode: str | None,
    expected: tuple[bool, str],
) -> None:
    world.http.set(delta_case.base_path, make_crl(ca.ica.cert.subject, ca.ica.key, number=10))
    world.http.set(delta_case.delta_path, b"gone", status=404, content_type="text/plain")
    authz = configure(truststore=ca.trusted, REVOCATION_DELTA_CRL=mode)
    authz.check("rest", delta_case.leaf).expect(*expected, delta_case.leaf, "crl")


@pytest.mark.parametrize("listed", [False, True])
def test_rfc5280_5_2_6_freshest_crl_of_the_base_crl_is_followed(
    configure: Configure, world: World, ca: Ca, listed: bool
) -> None:
    """The certificate names only the base; the base CRL's FreshestCRL names the delta: the first
    request already answers from both."""
    base_path, base_url = world.crl_url()
    delta_path, delta_url = world.crl_url()
    cert = leaf(ca, dp(base_url))
    world.http.set(base_path, make_crl(ca.ica.cert.subject, ca.ica.key, number=10, freshest=[delta_url]))
    entries = [entry(cert.serial, R.key_compromise)] if listed else []
    world.http.set(delta_path, make_crl(ca.ica.cert.subject, ca.ica.key, entries, number=11, delta_base=10))
    expected = (False, "revoked") if listed else (True, "good")
    configure(truststore=ca.trusted).check("rest", cert).expect(*expected, cert, "crl")
    assert world.http.requests(delta_path) == 1


def test_rfc5280_5_2_4_delta_of_another_scope_is_refused(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase
) -> None:
    world.http.set(delta_case.base_path, make_crl(ca.ica.cert.subject, ca.ica.key, number=10))
    other_scope = idp("http://elsewhere.example/partition.crl")
    world.http.set(
        delta_case.delta_path,
        make_crl(ca.ica.cert.subject, ca.ica.key, number=11, delta_base=10, idp=other_scope),
    )
    cert = delta_case.leaf
    configure(truststore=ca.trusted).check("rest", cert).expect(False, "revocation_unavailable", cert, "crl")


def test_rfc5280_5_2_3_older_delta_crl_is_refused_after_a_newer_one(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase, clock: Clock
) -> None:
    """Deltas are their own anti-rollback scope, ordered by cRLNumber: a replayed older delta that no
    longer lists a hold cannot lift it; a newer one can."""
    authz = configure(truststore=ca.trusted, CLOCK_SKEW_SECONDS="0", REVOCATION_CACHE_MAX_AGE_SECONDS="600")
    authz.app.reset(clock=clock)
    cert = delta_case.leaf

    def at(number: int, entries: list[Any]) -> bytes:
        return make_crl(
            ca.ica.cert.subject,
            ca.ica.key,
            entries,
            number=number,
            delta_base=10,
            this_update=clock.now - dt.timedelta(minutes=1),
            next_update=clock.now + 24 * HOUR,
        )

    world.http.set(
        delta_case.base_path,
        make_crl(
            ca.ica.cert.subject,
            ca.ica.key,
            number=10,
            this_update=clock.now - HOUR,
            next_update=clock.now + 48 * HOUR,
        ),
    )
    world.http.set(delta_case.delta_path, at(12, [entry(cert.serial, R.certificate_hold)]))
    authz.check("rest", cert).expect(False, "revoked", cert, "crl")
    world.http.set(delta_case.delta_path, at(11, []))  # replayed, older
    clock.advance(601)
    authz.check("rest", cert).expect(False, "revoked", cert, "crl")
    world.http.set(delta_case.delta_path, at(13, []))  # the hold is lifted
    clock.advance(601)
    authz.check("rest", cert).expect(True, "good", cert, "crl")


# ------------------------------------------------------------------------- deltas from the CRL set (S3)
@pytest.mark.parametrize("listed", [False, True])
def test_rfc5280_5_2_4_delta_from_the_crl_set_is_combined(
    configure: Configure, s3: MotoS3, bucket: str, ca: Ca, listed: bool
) -> None:
    cert = leaf(ca)  # no CDP: the set's complete CRL covers it
    put(s3, bucket, "crl/base.crl", make_crl(ca.ica.cert.subject, ca.ica.key, number=10))
    entries = [entry(cert.serial, R.key_compromise)] if listed else []
    put(
        s3,
        bucket,
        "crl/delta.crl",
        make_crl(ca.ica.cert.subject, ca.ica.key, entries, number=11, delta_base=10),
    )
    authz = configure(truststore=ca.trusted, REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    expected = (False, "revoked") if listed else (True, "good")
    authz.check("rest", cert).expect(*expected, cert, "crl")


@pytest.mark.parametrize("with_base", [False, True])
def test_pkits_4_15_1_crl_set_with_only_a_delta_is_unavailable(
    configure: Configure, s3: MotoS3, bucket: str, ca: Ca, with_base: bool
) -> None:
    cert = leaf(ca)
    if with_base:
        put(s3, bucket, "crl/base.crl", make_crl(ca.ica.cert.subject, ca.ica.key, number=10))
    put(s3, bucket, "crl/delta.crl", make_crl(ca.ica.cert.subject, ca.ica.key, number=11, delta_base=10))
    authz = configure(truststore=ca.trusted, REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    expected = (True, "good") if with_base else (False, "revocation_unavailable")
    authz.check("rest", cert).expect(*expected, cert, "crl")


def test_rfc5280_5_2_6_base_in_the_set_declaring_a_missing_delta_is_unavailable(
    configure: Configure, s3: MotoS3, bucket: str, ca: Ca
) -> None:
    cert = leaf(ca)
    put(
        s3,
        bucket,
        "crl/base.crl",
        make_crl(ca.ica.cert.subject, ca.ica.key, number=10, freshest=["ldap:///CN=delta"]),
    )
    authz = configure(truststore=ca.trusted, REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", cert).expect(False, "revocation_unavailable", cert, "crl")


# ============================================================ §4.4.19-21, §4.5.6-8: separate CRL-signing keys
@pytest.fixture(scope="module")
def signers(ca: Ca) -> dict[str, Credential]:
    """Certificates named like the issuing CA, issued by the root, for its CRLs (§6.3.3 (f))."""
    subject = ca.ica.cert.subject
    crl_only = key_usage(crl_sign=True)
    other_root = ca.pki.root("Other Conformance Root", key_type="ec")
    return {
        "valid": ca.pki.issue(subject, issuer=ca.root, ca=False, key_type="ec", usage=crl_only),
        "no_crl_sign": ca.pki.issue(
            subject, issuer=ca.root, ca=False, key_type="ec", usage=key_usage(digital_signature=True)
        ),
        "other_anchor": ca.pki.issue(subject, issuer=other_root, ca=False, key_type="ec", usage=crl_only),
        # PKITS 4.5.6: a self-issued CRL-signing certificate, signed by the CA's own key
        "self_issued": ca.pki.issue(subject, issuer=ca.ica, ca=False, key_type="ec", usage=crl_only),
    }


@pytest.mark.parametrize(
    "signer, trusted, key, expected",
    [
        ("valid", True, "own", None),  # PKITS 4.4.19 Valid Separate Certificate and CRL Keys
        ("self_issued", True, "own", None),  # PKITS 4.5.6 Valid Basic Self-Issued CRL Signing Key
        ("valid", False, "own", (False, "revocation_unavailable")),  # the signer is nowhere in reach
        ("valid", True, "wrong", (False, "revocation_unavailable")),  # signed by yet another key
        ("no_crl_sign", True, "own", (False, "revocation_unavailable")),  # keyUsage without cRLSign
        ("other_anchor", True, "own", (False, "revocation_unavailable")),  # no path to the same anchor
    ],
)
@pytest.mark.parametrize("listed", [False, True])
def test_pkits_4_4_19_separate_certificate_and_crl_keys(
    configure: Configure,
    world: World,
    ca: Ca,
    signers: dict[str, Credential],
    signer: str,
    trusted: bool,
    key: str,
    expected: tuple[bool, str] | None,
    listed: bool,
) -> None:
    chosen = signers[signer]
    path, url = world.crl_url()
    cert = leaf(ca, dp(url))
    signing_key = chosen.key if key == "own" else new_key("ec")
    entries = [entry(cert.serial, R.key_compromise)] if listed else []
    world.http.set(path, make_crl(ca.ica.cert.subject, signing_key, entries))
    truststore = [*ca.trusted, chosen] if trusted else ca.trusted
    if expected is None:
        expected = (False, "revoked") if listed else (True, "good")
    configure(truststore=truststore).check("rest", cert).expect(*expected, cert, "crl")


def test_rfc5280_6_3_3_f_crl_signer_provided_by_the_crl_set(
    configure: Configure, s3: MotoS3, bucket: str, ca: Ca, signers: dict[str, Credential]
) -> None:
    """The CRL-signing certificate is not in the truststore but in the CRL set beside the CRL."""
    cert = leaf(ca)
    put(s3, bucket, "crl/ca.crl", make_crl(ca.ica.cert.subject, signers["valid"].key, [entry(cert.serial)]))
    authz = configure(truststore=ca.trusted, REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", cert).expect(False, "revocation_unavailable", cert, "crl")  # signer unknown yet
    put(s3, bucket, "crl/signer.pem", signers["valid"].pem.encode())
    authz = configure(truststore=ca.trusted, REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", cert).expect(False, "revoked", cert, "crl")


@pytest.mark.parametrize(
    "signer_crl, listed, expected, detail",
    [
        # PKITS 4.4.20 / 4.4.21 (separate keys): the CRL-signing certificate is revoked by the anchor's
        # CRL, so its CRL is not used, whether or not it lists the leaf (never "good", never believed).
        ("lists_signer", False, (False, "revocation_unavailable"), "CRL signer certificate is revoked"),
        ("lists_signer", True, (False, "revocation_unavailable"), "CRL signer certificate is revoked"),
        ("good", False, (True, "good"), ""),  # as PKITS 4.4.19, the signer checked and good
        ("good", True, (False, "revoked"), ""),
        (
            "broken",
            False,
            (False, "revocation_unavailable"),
            "CRL signer certificate's revocation is unavailable",
        ),
        (None, False, (True, "good"), ""),  # declares no CRL: trusted as issued (as 4.4.19)
        (None, True, (False, "revoked"), ""),
        # Its CDP names the very CRL it signed: that CRL cannot vouch for its own signer.
        ("itself", False, (False, "revocation_unavailable"), "rests on this very CRL"),
    ],
)
def test_pkits_4_4_20_21_revoked_crl_signing_certificate(
    configure: Configure,
    world: World,
    ca: Ca,
    caplog: pytest.LogCaptureFixture,
    signer_crl: str | None,
    listed: bool,
    expected: tuple[bool, str],
    detail: str,
) -> None:
    """RFC 5280 §6.3.3 (f): the CRL signer's own path, its revocation included, is validated before
    its CRL is used: through the CRL the signing certificate declares (the anchor's, here)."""
    caplog.set_level(logging.INFO)
    path, url = world.crl_url()
    signer_path, signer_url = world.crl_url()
    urls = {None: [], "itself": [url]}.get(signer_crl, [signer_url])
    signer = ca.pki.issue(
        ca.ica.cert.subject,
        issuer=ca.root,
        ca=False,
        key_type="ec",
        usage=key_usage(crl_sign=True),
        crl_urls=urls,
    )
    if signer_crl == "broken":
        world.http.set(signer_path, b"unavailable", status=503, content_type="text/plain")
    elif signer_crl in ("good", "lists_signer"):
        revoked = [entry(signer.serial, R.key_compromise)] if signer_crl == "lists_signer" else []
        world.http.set(signer_path, make_crl(ca.root.cert.subject, ca.root.key, revoked))
    cert = leaf(ca, dp(url))
    world.http.set(path, make_crl(ca.ica.cert.subject, signer.key, [entry(cert.serial)] if listed else []))
    configure(truststore=[*ca.trusted, signer]).check("rest", cert).expect(*expected, cert, "crl")
    assert detail in details(caplog)
    if signer_crl in ("good", "lists_signer", "broken"):
        assert world.http.requests(signer_path) >= 1


@pytest.mark.parametrize("listed", [False, True])
def test_rfc5280_6_3_3_f_ca_certificate_signer_covered_by_its_own_crl_is_trusted_by_inclusion(
    configure: Configure, world: World, ca: Ca, listed: bool
) -> None:
    """The other key of the CA (a CA certificate of the truststore, as after a rollover) whose CDP
    names the very CRL it signs: the truststore vouches for it, the CRL is used."""
    path, url = world.crl_url()
    other_key = ca.pki.issue(ca.ica.cert.subject, issuer=ca.root, ca=True, key_type="ec", crl_urls=[url])
    cert = leaf(ca, dp(url))
    world.http.set(path, make_crl(ca.ica.cert.subject, other_key.key, [entry(cert.serial)] if listed else []))
    expected = (False, "revoked") if listed else (True, "good")
    configure(truststore=[*ca.trusted, other_key]).check("rest", cert).expect(*expected, cert, "crl")


def test_rfc5280_6_3_3_f_crl_set_signer_revocation_is_checked(
    configure: Configure, world: World, s3: MotoS3, bucket: str, ca: Ca
) -> None:
    """A CRL from the S3 set signed by a separate CRL-signing certificate (in the set): that signer's
    revocation is checked through the CRL it declares too."""
    signer_path, signer_url = world.crl_url()
    signer = ca.pki.issue(
        ca.ica.cert.subject,
        issuer=ca.root,
        ca=False,
        key_type="ec",
        usage=key_usage(crl_sign=True),
        crl_urls=[signer_url],
    )
    cert = leaf(ca)
    put(s3, bucket, "crl/ca.crl", make_crl(ca.ica.cert.subject, signer.key))
    put(s3, bucket, "crl/signer.pem", signer.pem.encode())
    world.http.set(signer_path, make_crl(ca.root.cert.subject, ca.root.key, [entry(signer.serial)]))
    authz = configure(truststore=ca.trusted, REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", cert).expect(False, "revocation_unavailable", cert, "crl")
    world.http.set(signer_path, make_crl(ca.root.cert.subject, ca.root.key, [], number=2))
    authz = configure(truststore=ca.trusted, REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", cert).expect(True, "good", cert, "crl")


# ======================================================================= §4.5 key rollover (RFC 5280 §3.2)
@dataclass(frozen=True)
class Rollover:
    old: Credential  # "Rollover CA", old key, issued by the root
    new: Credential  # the same name, new key, issued by the root
    old_with_new: Credential  # self-issued: old key, signed by the new one
    new_with_old: Credential  # self-issued: new key, signed by the old one


@pytest.fixture(scope="module")
def rollover(ca: Ca) -> Rollover:
    subject = name("Rollover CA")
    old = ca.pki.issue(subject, issuer=ca.root, ca=True, key_type="ec", path_length=1)
    new = ca.pki.issue(subject, issuer=ca.root, ca=True, key_type="ec", path_length=1)
    old_with_new = ca.pki.issue(subject, issuer=new, ca=True, key=old.key, path_length=0)
    new_with_old = ca.pki.issue(subject, issuer=old, ca=True, key=new.key, path_length=0)
    return Rollover(old, new, old_with_new, new_with_old)


@pytest.mark.parametrize("crl_key", ["old", "new", "unrelated"])
@pytest.mark.parametrize("direction", ["old_with_new", "new_with_old"])
def test_pkits_4_5_self_issued_rollover_crl_signed_by_either_key(
    configure: Configure, world: World, ca: Ca, rollover: Rollover, direction: str, crl_key: str
) -> None:
    """PKITS 4.5.1 (old-with-new) and 4.5.3 (new-with-old): the leaf is signed by one key, the path
    runs through the self-issued certificate, and the CRL may be signed by either key; never by a
    key the path does not vouch for."""
    if direction == "old_with_new":  # the leaf under the old key; only the new CA certificate is trusted
        issuer, truststore = rollover.old_with_new, [ca.root, rollover.new, rollover.old_with_new]
        issuing_key = rollover.old.key
    else:  # the leaf under the new key; only the old CA certificate is trusted
        issuer, truststore = rollover.new_with_old, [ca.root, rollover.old, rollover.new_with_old]
        issuing_key = rollover.new.key
    path, url = world.crl_url()
    cert = ca.pki.leaf(
        f"rollover-{next(_names)}",
        Credential(issuer.cert, issuing_key, issuer.cert_path, issuer.key_path),
        key_type="ec",
        crl_urls=[url],
    )
    key = {"old": rollover.old.key, "new": rollover.new.key, "unrelated": new_key("ec")}[crl_key]
    world.http.set(path, make_crl(rollover.old.cert.subject, key, [entry(cert.serial)]))
    expected = (False, "revocation_unavailable") if crl_key == "unrelated" else (False, "revoked")
    configure(truststore=truststore).check("rest", cert).expect(*expected, cert, "crl")


# =================================================================== §4.14 distribution points (§6.3.3 (b))
CRL1 = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "CRL1")])
CRL2 = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "CRL2")])


def under(ca: Ca, rdn: x509.RelativeDistinguishedName) -> x509.DirectoryName:
    return x509.DirectoryName(x509.Name([*ca.ica.cert.subject.rdns, rdn]))


@pytest.mark.parametrize(
    "case, point, crl_idp, matches",
    [
        # PKITS 4.14.1 Valid distributionPoint Test1: a directoryName point, the IDP's full name
        ("4.14.1", lambda c: dp(names=[under(c, CRL1)]), lambda c: idp(names=[under(c, CRL1)]), True),
        # PKITS 4.14.3 Invalid distributionPoint Test3: the names differ
        ("4.14.3", lambda c: dp(names=[under(c, CRL1)]), lambda c: idp(names=[under(c, CRL2)]), False),
        # PKITS 4.14.4 Valid distributionPoint Test4: nameRelativeToCRLIssuer vs the IDP's full name
        ("4.14.4", lambda c: dp(relative=CRL1), lambda c: idp(names=[under(c, CRL1)]), True),
        # PKITS 4.14.5 Valid distributionPoint Test5: both relative
        ("4.14.5", lambda c: dp(relative=CRL1), lambda c: idp(relative=CRL1), True),
        # PKITS 4.14.8 Invalid distributionPoint Test8: relative names that differ
        ("4.14.8", lambda c: dp(relative=CRL1), lambda c: idp(relative=CRL2), False),
        # An ldap:// point matched by URI (Microsoft AD CS lists ldap:/// first)
        ("ldap", lambda c: dp("ldap:///CN=CRL1"), lambda c: idp("ldap:///CN=CRL1"), True),
    ],
)
@pytest.mark.parametrize("listed", [False, True])
def test_pkits_4_14_distribution_point_names_match_the_idp(
    configure: Configure,
    s3: MotoS3,
    bucket: str,
    ca: Ca,
    case: str,
    point: Callable[[Ca], x509.DistributionPoint],
    crl_idp: Callable[[Ca], x509.IssuingDistributionPoint],
    matches: bool,
    listed: bool,
) -> None:
    """No http URL in the point: the CRL comes from the CRL set, and serves the certificate only when
    its IDP names the certificate's point."""
    cert = leaf(ca, point(ca))
    entries = [entry(cert.serial, R.key_compromise)] if listed else []
    put(s3, bucket, "crl/partition.crl", make_crl(ca.ica.cert.subject, ca.ica.key, entries, idp=crl_idp(ca)))
    authz = configure(truststore=ca.trusted, REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    if not matches:
        expected = (False, "revocation_unavailable")
    else:
        expected = (False, "revoked") if listed else (True, "good")
    authz.check("rest", cert).expect(*expected, cert, "crl")


# ============================================================ §4.14.22-35 indirect CRLs (§5.2.5, §5.3.3)
@pytest.fixture(scope="module")
def crl_issuer(ca: Ca) -> Credential:
    """An entity other than the CA that issues its CRLs, with cRLSign, under the same root."""
    return ca.pki.issue(
        "Conformance CRL Issuer", issuer=ca.root, ca=False, key_type="ec", usage=key_usage(crl_sign=True)
    )


@pytest.mark.parametrize(
    "indirect, trusted, expected",
    [
        (True, True, None),  # PKITS 4.14.28/30 Valid cRLIssuer: certificateIssuer entries
        (
            False,
            True,
            (False, "revocation_unavailable"),
        ),  # PKITS 4.14.27 Invalid cRLIssuer Test27: not indirect
        (True, False, (False, "revocation_unavailable")),  # the CRL issuer has no path to the anchor
    ],
)
@pytest.mark.parametrize("listed", [False, True])
def test_pkits_4_14_indirect_crl_with_certificate_issuer(
    configure: Configure,
    world: World,
    ca: Ca,
    crl_issuer: Credential,
    indirect: bool,
    trusted: bool,
    expected: tuple[bool, str] | None,
    listed: bool,
) -> None:
    path, url = world.crl_url()
    cert = leaf(ca, dp(url, crl_issuer=crl_issuer.cert.subject))
    entries = [
        entry(cert.serial),  # before any certificateIssuer: the CRL issuer's own certificate, not this one
        entry(cert.serial + 1, issuer=ca.ica.cert.subject),
        *([entry(cert.serial)] if listed else []),  # inherits the certificateIssuer above (§5.3.3)
    ]
    world.http.set(
        path, make_crl(crl_issuer.cert.subject, crl_issuer.key, entries, idp=idp(url, indirect=indirect))
    )
    truststore = [*ca.trusted, crl_issuer] if trusted else ca.trusted
    if expected is None:
        expected = (False, "revoked") if listed else (True, "good")
    configure(truststore=truststore).check("rest", cert).expect(*expected, cert, "crl")
    if not trusted:
        assert world.http.requests(path) == 0  # an issuer out of reach: nothing is fetched


# ============================================================ §4.14.15-21 reason partitions (§6.3.3 (d))
SOME = (R.key_compromise, R.ca_compromise)
REST = tuple(r for r in R if r not in SOME and r not in (R.unspecified, R.remove_from_crl))


@pytest.mark.parametrize(
    "partitions, listed_in, expected",
    [
        ((SOME, REST), None, (True, "good")),  # PKITS 4.14.18 Valid onlySomeReasons Test18
        ((SOME, REST), 0, (False, "revoked")),  # PKITS 4.14.15 Invalid onlySomeReasons Test15
        ((SOME, REST), 1, (False, "revoked")),  # PKITS 4.14.16: on hold in the other partition
        ((SOME,), None, (False, "revocation_unavailable")),  # PKITS 4.14.17: some reasons only
    ],
)
def test_pkits_4_14_only_some_reasons_crls_in_the_crl_set(
    configure: Configure,
    s3: MotoS3,
    bucket: str,
    ca: Ca,
    partitions: tuple[tuple[x509.ReasonFlags, ...], ...],
    listed_in: int | None,
    expected: tuple[bool, str],
) -> None:
    cert = leaf(ca)
    for position, reasons in enumerate(partitions):
        reason = reasons[0] if reasons is SOME else R.certificate_hold
        entries = [entry(cert.serial, reason)] if listed_in == position else []
        put(
            s3,
            bucket,
            f"crl/reasons-{position}.crl",
            make_crl(ca.ica.cert.subject, ca.ica.key, entries, idp=idp(reasons=reasons)),
        )
    authz = configure(truststore=ca.trusted, REVOCATION_CRL_S3_URI=f"s3://{bucket}/crl/")
    authz.check("rest", cert).expect(*expected, cert, "crl")


@pytest.mark.parametrize("complete", [True, False])
@pytest.mark.parametrize("listed", [False, True])
def test_pkits_4_14_19_only_some_reasons_distribution_points(
    configure: Configure, world: World, ca: Ca, complete: bool, listed: bool
) -> None:
    """Two points of the certificate, each limited to some reasons (PKITS 4.14.19-21): good only with
    both CRLs; points that cannot cover every reason are not even fetched."""
    (path1, url1), (path2, url2) = world.crl_url(), world.crl_url()
    points = [dp(url1, reasons=SOME)] + ([dp(url2, reasons=REST)] if complete else [])
    cert = leaf(ca, *points)
    entries = [entry(cert.serial, R.key_compromise)] if listed else []
    world.http.set(path1, make_crl(ca.ica.cert.subject, ca.ica.key, entries, idp=idp(url1, reasons=SOME)))
    world.http.set(path2, make_crl(ca.ica.cert.subject, ca.ica.key, idp=idp(url2, reasons=REST)))
    if not complete:
        expected = (False, "revocation_unavailable")
    else:
        expected = (False, "revoked") if listed else (True, "good")
    configure(truststore=ca.trusted).check("rest", cert).expect(*expected, cert, "crl")
    assert world.http.requests(path1) == (1 if complete else 0)


# ============================================================================ refusals name the feature
def test_pkits_4_14_14_attribute_certificate_crl_is_refused_with_a_detail(
    configure: Configure, world: World, ca: Ca, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path, url = world.crl_url()
    cert = leaf(ca, dp(url))
    attribute_only = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        only_contains_user_certs=False,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=True,
    )
    world.http.set(path, make_crl(ca.ica.cert.subject, ca.ica.key, idp=attribute_only))
    configure(truststore=ca.trusted).check("rest", cert).expect(False, "revocation_unavailable", cert, "crl")
    assert "attribute certificates" in details(caplog)


def test_handler_never_raises_on_a_garbage_delta(
    configure: Configure, world: World, ca: Ca, delta_case: DeltaCase
) -> None:
    world.http.set(delta_case.base_path, make_crl(ca.ica.cert.subject, ca.ica.key, number=10))
    world.http.set(delta_case.delta_path, b"\x30\x82\xff\xff not a delta")
    cert = delta_case.leaf
    configure(truststore=ca.trusted).check("rest", cert).expect(False, "revocation_unavailable", cert, "crl")
