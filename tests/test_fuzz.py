"""Property-based fuzzing of the handler and of every parser that sees outside bytes.

Properties (each a test below):
- the handler, given any JSON or any event shaped like REST / HTTP 1.0 / 2.0 with random field values,
  returns a well-formed response and never an Allow, whether the truststore loads or not;
- a truncated or bit-flipped PEM of a real, allowed client certificate is Denied whenever the DER it
  decodes to differs from the original (and Allowed only for the original DER);
- ``load_client_cert``, ``cert_from_der`` and ``parse_truststore`` let only their documented exceptions
  escape, and what they return is usable;
- a mutated OCSP response gives only OCSPError / StaleData, and GOOD only when the signed
  tbsResponseData is intact, with the very answer the original gives;
- a mutated CRL gives only CRLError (parse) / CRLError or StaleData (look-up), and is accepted only when
  the signed tbsCertList is intact, indexed exactly as the original;
- CRLs signed by the real issuer with random entries: the hand-written serial index agrees with
  cryptography's parse, and look-ups say REVOKED exactly for listed serials.

Seeds: the "ci" profile (default) is derandomized with modest example counts; ``HYPOTHESIS_PROFILE=long``
(``make fuzz``) runs many more random examples. Profiles are applied per test, not loaded globally, so other
test files keep Hypothesis' defaults.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ObjectIdentifier
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from authorizer import crl, ocsp
from authorizer.certs import MAX_PEM_CHARS, Cert, InvalidCertificate, cert_from_der, load_client_cert
from authorizer.freshness import StaleData
from authorizer.model import Answer, Status
from authorizer.settings import RevocationPolicy
from authorizer.truststore import Truststore, TruststoreError, parse_truststore
from conftest import REASONS, Configure, FakeLambdaContext, Format, World, make_event
from pki import Credential, pem_bundle, utcnow
from strategies import (
    Mutation,
    armor,
    armored_garbage,
    arn_strings,
    byte_mutations,
    json_values,
    pem_mutations,
    pem_text,
    versions,
)

# ============================================================================================ profiles
_SUPPRESSED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", derandomize=True, database=None, max_examples=60, deadline=None, suppress_health_check=_SUPPRESSED
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=_SUPPRESSED)
settings.register_profile("dev", max_examples=200, deadline=None, suppress_health_check=_SUPPRESSED)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def fuzz(scale: float = 1.0) -> settings:
    """The selected profile with its example count scaled for this test's cost."""
    return settings(PROFILE, max_examples=max(10, int(PROFILE.max_examples * scale)))


POLICY = RevocationPolicy()
MAX_RESOURCE = 512  # characters in a policy Resource (FIELD-NOTES)
CONTEXT = FakeLambdaContext()


# ============================================================================================ responses
def check_response(response: Any, event: Any, simple: bool) -> tuple[bool, dict[str, Any]]:
    """Assert the response is one API Gateway accepts for the event's format; return (allowed, context)."""
    assert isinstance(response, dict), response
    assert len(json.dumps(response).encode()) <= 8192
    context = response.get("context")
    assert isinstance(context, dict), response
    for key, value in context.items():
        assert isinstance(key, str)
        assert type(value) in (str, int, float, bool), (key, value)
    assert context.get("reason") in REASONS, context
    if isinstance(event, dict) and event.get("version") == "2.0" and simple:
        assert set(response) == {"isAuthorized", "context"}, response
        assert type(response["isAuthorized"]) is bool, response
        return response["isAuthorized"], context
    assert isinstance(response.get("principalId"), str) and response["principalId"], response
    document = response["policyDocument"]
    assert document["Version"] == "2012-10-17"
    (statement,) = document["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    assert statement["Effect"] in ("Allow", "Deny"), statement
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    assert resources and all(isinstance(r, str) for r in resources), statement
    for resource in resources:
        assert resource == "*" or resource.startswith("arn:"), resource
        assert len(resource) <= MAX_RESOURCE, f"policy Resource of {len(resource)} characters"
    return statement["Effect"] == "Allow", context


def invoke(app: Any, event: Any, simple: bool) -> tuple[bool, dict[str, Any]]:
    response = app.lambda_handler(event, CONTEXT)  # must not raise: the test fails if it does
    note(f"response: {response!r}")
    return check_response(response, event, simple)


# ============================================================================================ fixtures
@dataclass(frozen=True)
class Denied:
    """Certificates that parse but must be denied (nothing here chains to an anchor validly)."""

    pems: tuple[str, ...]


@pytest.fixture(scope="module")
def denied(world: World) -> Denied:
    now = utcnow()
    return Denied(
        (
            world.leaf("unknown hierarchy", issuer=world.unknown_ica).pem,
            world.leaf("impostor-issued", issuer=world.impostor_ica).pem,
            world.pki.leaf(
                "expired",
                world.ica,
                not_before=now - dt.timedelta(days=30),
                not_after=now - dt.timedelta(days=2),
            ).pem,
        )
    )


@pytest.fixture(scope="module")
def crl_leaf(world: World) -> Credential:
    """A client certificate under the trusted issuing CA whose CDP serves a fresh CRL (not listing it)."""
    return world.leaf("fuzz client", crl=True)


STORES = ["real", "missing", "garbage"]


@pytest.fixture
def handler(configure: Configure, store: str, simple: bool) -> Any:
    """``authorizer.app`` configured once per test (not per example) with the parametrized truststore:
    the real one, a key that does not exist in the bucket, or an object with no usable certificate."""
    simple_value = "true" if simple else "false"
    if store == "real":
        return configure(HTTP_API_SIMPLE_RESPONSES=simple_value).app
    if store == "missing":
        return configure(upload=False, HTTP_API_SIMPLE_RESPONSES=simple_value).app
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" + bytes(range(256))
    return configure(garbage, HTTP_API_SIMPLE_RESPONSES=simple_value).app


@pytest.fixture
def real_handler(configure: Configure) -> Any:
    return configure().app


# ===================================================================================== handler: events
@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("simple", [True, False], ids=["simple", "policy"])
@fuzz(1.0)
@given(event=json_values | st.builds(dict, version=versions, methodArn=arn_strings, routeArn=arn_strings))
def test_handler_arbitrary_json_is_never_allowed(handler: Any, simple: bool, event: Any) -> None:
    allowed, context = invoke(handler, event, simple)
    assert not allowed, context


def _set(event: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = event
    for key in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(key, {})
    if isinstance(node, dict):
        node[path[-1]] = value


_CERT_PATHS: dict[Format, tuple[str, ...]] = {
    "rest": ("requestContext", "identity", "clientCert"),
    "v1": ("requestContext", "identity", "clientCert"),
    "v2": ("requestContext", "authentication", "clientCert"),
}
_CERT_FIELDS = ("clientCertPem", "subjectDN", "issuerDN", "serialNumber", "validity")


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("simple", [True, False], ids=["simple", "policy"])
@fuzz(2.0)
@given(data=st.data())
def test_handler_shaped_events_are_never_allowed(
    handler: Any, denied: Denied, simple: bool, data: st.DataObject
) -> None:
    fmt: Format = data.draw(st.sampled_from(["rest", "v1", "v2"]), label="format")
    pem = data.draw(pem_text | st.sampled_from(denied.pems), label="pem")
    event = make_event(fmt, pem)
    cert_path = _CERT_PATHS[fmt]
    overrides = data.draw(
        st.lists(
            st.one_of(
                st.tuples(st.just(("version",)), versions),
                st.tuples(st.just(("methodArn",)), arn_strings),
                st.tuples(st.just(("routeArn",)), arn_strings),
                st.tuples(st.sampled_from([("requestContext",), cert_path[:2], cert_path]), json_values),
                st.tuples(
                    st.sampled_from([(*cert_path, field) for field in _CERT_FIELDS]), json_values | pem_text
                ),
                st.tuples(st.sampled_from([("headers",), ("identitySource",), ("type",)]), json_values),
            ),
            max_size=4,
        ),
        label="overrides",
    )
    for path, value in overrides:
        _set(event, path, value)
    allowed, context = invoke(handler, event, simple)
    assert not allowed, context


def test_overlong_method_arn_gives_a_valid_policy(real_handler: Any) -> None:
    """Regression, found by this fuzzing: a methodArn under API Gateway's 1600 bytes whose stage policy
    would exceed IAM's 512-character Resource limit came back as an over-long (invalid) Resource
    (fixed in 5fa1252)."""
    event = {"methodArn": f"arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/{'s' * 455}/GET/x"}
    allowed, context = check_response(real_handler.lambda_handler(event, CONTEXT), event, True)
    assert (allowed, context["reason"]) == (False, "invalid_request"), context


# ===================================================================== handler: mutated client PEM
@fuzz(3.0)
@given(data=st.data())
def test_handler_mutated_client_pem_is_denied_unless_same_der(
    real_handler: Any, crl_leaf: Credential, data: st.DataObject
) -> None:
    app = real_handler
    fmt: Format = data.draw(st.sampled_from(["rest", "v1", "v2"]), label="format")
    original = invoke(app, make_event(fmt, crl_leaf.pem, crl_leaf), True)
    assert original[0] and original[1]["reason"] == "good", original  # the unmodified certificate passes

    mutation = data.draw(pem_mutations(crl_leaf.pem), label="mutation")
    note(mutation.describe)
    text = mutation.data.decode("latin-1")
    try:
        der: bytes | None = load_client_cert(text).der
    except InvalidCertificate:
        der = None
    allowed, context = invoke(app, make_event(fmt, text, crl_leaf), True)
    hypothesis.event(f"{mutation.kind}: {context['reason']}")
    if der is None:
        assert (allowed, context["reason"]) == (False, "invalid_request"), context
    elif der != crl_leaf.der:
        assert (allowed, context["reason"]) == (False, "untrusted"), context
    else:  # the change left the DER alone (a line ending, trailing text): same certificate, same answer
        assert (allowed, context["reason"]) == (True, "good"), context
    if "certFingerprintSha256" in context:
        assert der is not None and context["certFingerprintSha256"] == hashlib.sha256(der).hexdigest()


# ======================================================================================== certificates
def _usable(cert: Cert) -> None:
    """Everything the decision path reads from a certificate, read once: none of it may raise."""
    assert cert.fingerprint == hashlib.sha256(cert.der).hexdigest()
    _ = cert.subject, cert.issuer, cert.serial_hex, cert.is_ca, cert.is_self_signed
    crl.distribution_points(cert)
    ocsp.responder_urls(cert)


@fuzz(3.0)
@given(data=st.data())
def test_load_client_cert_raises_only_invalid_certificate(crl_leaf: Credential, data: st.DataObject) -> None:
    text = data.draw(
        st.one_of(
            pem_text,
            st.text(),
            pem_mutations(crl_leaf.pem).map(lambda m: m.data.decode("latin-1")),
            st.integers(MAX_PEM_CHARS - 10, MAX_PEM_CHARS + 10).map(lambda n: (crl_leaf.pem * 60)[:n]),
        ),
        label="text",
    )
    try:
        cert = load_client_cert(text)
    except InvalidCertificate:
        return
    assert len(text) <= MAX_PEM_CHARS
    _usable(cert)


@fuzz(3.0)
@given(data=st.data())
def test_cert_from_der_raises_only_invalid_certificate(crl_leaf: Credential, data: st.DataObject) -> None:
    der = data.draw(
        st.binary(max_size=2000) | byte_mutations(crl_leaf.der, der=True).map(lambda m: m.data), label="der"
    )
    try:
        cert = cert_from_der(der)
    except InvalidCertificate:
        return
    assert cert.der == der
    _usable(cert)


@fuzz(2.0)
@given(data=st.data())
def test_parse_truststore_raises_only_truststore_error(world: World, data: st.DataObject) -> None:
    real = [c.pem for c in world.trusted]
    block = st.one_of(
        st.sampled_from(real),
        st.sampled_from(real).flatmap(pem_mutations).map(lambda m: m.data.decode("latin-1")),
        armored_garbage,
        pem_text,
    )
    separator = st.sampled_from(["", "\n", "\r\n", "\n\n# comment\n", "\x00"])
    body = data.draw(
        st.binary(max_size=3000)
        | st.lists(st.tuples(block, separator), max_size=6).map(
            lambda parts: "".join(b + s for b, s in parts).encode("utf-8", "surrogatepass")
        )
        | byte_mutations(pem_bundle(world.trusted[:3])).map(lambda m: m.data),
        label="truststore",
    )
    try:
        store = parse_truststore(body, "v1")
    except TruststoreError:
        return
    _check_truststore(store)


def _check_truststore(store: Truststore) -> None:
    assert store.anchors, store
    assert all(anchor.is_self_signed for anchor in store.anchors)
    assert not any(cert.is_self_signed for cert in store.intermediates)
    fingerprints = [c.fingerprint for c in (*store.anchors, *store.intermediates)]
    assert len(fingerprints) == len(set(fingerprints))
    for cert in (*store.anchors, *store.intermediates):
        _usable(cert)


# ================================================================================================ OCSP
class SignedSample:
    """A valid signed object, the bytes its signature covers, and the answer it gives.

    A plain class with a short repr: Hypothesis prints dataclass fixtures field by field.
    """

    def __init__(
        self, der: bytes, signed: bytes, cert: Cert, issuer: Cert, nonce: bytes | None, answer: Answer | None
    ) -> None:
        assert der.count(signed) == 1  # the to-be-signed bytes, as they occur in ``der``
        self.der, self.signed, self.cert, self.issuer, self.nonce, self.answer = (
            der,
            signed,
            cert,
            issuer,
            nonce,
            answer,
        )

    def __repr__(self) -> str:
        return f"SignedSample({len(self.der)} bytes, {self.answer})"


@pytest.fixture(scope="module")
def ocsp_samples(world: World, crl_leaf: Credential) -> dict[str, SignedSample]:
    responder = world.pki.ocsp_responder("Fuzz OCSP Responder", world.ica)
    cert, issuer = cert_from_der(crl_leaf.der), cert_from_der(world.ica.der)
    request, nonce = ocsp.build_request(cert, issuer)
    variants: dict[str, tuple[bytes, bytes | None]] = {
        "issuer": (world.pki.ocsp_response(crl_leaf, world.ica), None),
        "delegated": (world.pki.ocsp_response(crl_leaf, world.ica, responder=responder), None),
        "nonce": (world.pki.ocsp_response(crl_leaf, world.ica, request_der=request), nonce),
        "revoked": (world.pki.ocsp_response(crl_leaf, world.ica, status="revoked"), None),
    }
    samples = {}
    for label, (der, expected_nonce) in variants.items():
        basic = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
        answer, _ = ocsp.verify_response(der, cert, issuer, utcnow(), POLICY, expected_nonce)
        assert answer.status is (Status.REVOKED if label == "revoked" else Status.GOOD)
        samples[label] = SignedSample(
            der, basic["tbs_response_data"].dump(), cert, issuer, expected_nonce, answer
        )
    return samples


@pytest.mark.parametrize("corruption", ["point-off-curve", "unknown-curve"])
def test_bad_responder_key_in_certs_is_an_ocsp_error(
    world: World, crl_leaf: Credential, corruption: str
) -> None:
    """Regression, found by this fuzzing: a responder certificate with a broken key in the response's unsigned
    certs field made ValueError / UnsupportedAlgorithm escape verify_response (fixed in 5b1d4fb)."""
    responder = world.pki.ocsp_responder("Fuzz reproducer responder", world.ica)  # EC P-256
    der = world.pki.ocsp_response(crl_leaf, world.ica, responder=responder)
    point = responder.cert.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    prime256v1 = bytes.fromhex("06082a8648ce3d030107")
    old, new = {
        "point-off-curve": (point, point[:-1] + bytes([point[-1] ^ 1])),
        "unknown-curve": (prime256v1, prime256v1[:-1] + b"\x06"),
    }[corruption]
    assert der.count(old) == 1
    with pytest.raises((ocsp.OCSPError, StaleData)):
        ocsp.verify_response(
            der.replace(old, new), cert_from_der(crl_leaf.der), cert_from_der(world.ica.der), utcnow(), POLICY
        )


@fuzz(4.0)
@given(data=st.data())
def test_mutated_ocsp_response_is_never_good(
    ocsp_samples: dict[str, SignedSample], data: st.DataObject
) -> None:
    label = data.draw(st.sampled_from(sorted(ocsp_samples)), label="sample")
    sample = ocsp_samples[label]
    mutation: Mutation = data.draw(byte_mutations(sample.der, der=True), label="mutation")
    note(mutation.describe)
    # The same moment as the original's verification is not needed: the samples are fresh for an hour.
    try:
        answer, _ = ocsp.verify_response(
            mutation.data, sample.cert, sample.issuer, utcnow(), POLICY, sample.nonce
        )
    except (ocsp.OCSPError, StaleData) as exc:
        hypothesis.event(f"{mutation.kind}: {exc}")
        return
    hypothesis.event(f"{mutation.kind}: answered {answer.status.value}")
    # Anything answered must rest on the signed bytes, unchanged; then it is the original's answer.
    assert mutation.kind not in ("truncate", "random"), answer  # a strict prefix of DER is never DER
    assert sample.signed in mutation.data, (mutation.describe, answer)
    assert sample.answer is not None
    assert (answer.status, answer.fresh_until, answer.stale) == (
        sample.answer.status,
        sample.answer.fresh_until,
        sample.answer.stale,
    ), (mutation.describe, answer)


# ================================================================================================ CRLs
@pytest.fixture(scope="module")
def crl_samples(world: World, crl_leaf: Credential) -> dict[str, SignedSample]:
    ica = cert_from_der(world.ica.der)
    leaf = cert_from_der(crl_leaf.der)
    listed = world.pki.leaf("listed", world.ica)
    variants = {
        "empty": world.pki.crl(world.ica),
        "entries": world.pki.crl(world.ica, [1, 2**64, 2**158 + 12345, listed]),
        "listing-leaf": world.pki.crl(world.ica, [3, crl_leaf]),
        "idp": world.pki.crl(world.ica, [7], idp=world.pki.idp("http://127.0.0.1/crl/x.crl")),
    }
    samples = {}
    for label, der in variants.items():
        index = crl.parse_and_verify(der, ica)
        assert index.entries == len(x509.load_der_x509_crl(der))
        tbs = asn1_crl.CertificateList.load(der)["tbs_cert_list"].dump()
        samples[label] = SignedSample(der, tbs, leaf, ica, None, None)
    return samples


@pytest.mark.parametrize("version", [0, 2, 0x7F])
def test_crl_with_bad_version_is_a_crl_error(world: World, version: int) -> None:
    """Regression, found by this fuzzing: an explicit version other than v2 made cryptography raise
    InvalidVersion (not a ValueError), which escaped parse_and_verify (fixed in 5b1d4fb)."""
    der = world.pki.crl(world.ica)
    tbs = asn1_crl.CertificateList.load(der)["tbs_cert_list"].dump()
    at = der.index(tbs) + tbs.index(b"\x02\x01\x01") + 2  # tbsCertList's first field: version INTEGER 1
    with pytest.raises(crl.CRLError):
        crl.parse_and_verify(der[:at] + bytes([version]) + der[at + 1 :], cert_from_der(world.ica.der))


def _index_view(index: crl.CrlIndex) -> tuple[Any, ...]:
    return (
        index.issuer,
        index.this_update,
        index.next_update,
        index.idp_urls,
        index.only_user_certs,
        index.only_ca_certs,
        frozenset(index.revoked),
        index.entries,
    )


@fuzz(4.0)
@given(data=st.data())
def test_mutated_crl_is_never_accepted(crl_samples: dict[str, SignedSample], data: st.DataObject) -> None:
    label = data.draw(st.sampled_from(sorted(crl_samples)), label="sample")
    sample = crl_samples[label]
    as_pem = data.draw(st.booleans(), label="pem")
    original = armor("X509 CRL", sample.der).encode() if as_pem else sample.der
    mutation: Mutation = data.draw(byte_mutations(original, der=not as_pem), label="mutation")
    note(mutation.describe)
    try:
        index = crl.parse_and_verify(mutation.data, sample.issuer)
    except crl.CRLError as exc:
        hypothesis.event(f"{mutation.kind}: {exc}")
        return
    hypothesis.event(f"{mutation.kind}: accepted")
    # Accepted: the signed bytes must be intact (for PEM: in what the armour decodes to), and the index
    # and the look-up's answer must be the original's.
    der = pem.unarmor(mutation.data)[2] if pem.detect(mutation.data) else mutation.data
    assert sample.signed in der, mutation.describe
    original_index = crl.parse_and_verify(sample.der, sample.issuer)
    assert _index_view(index) == _index_view(original_index), mutation.describe
    point = crl.DistributionPoint(tuple(index.idp_urls or ()) or ("http://127.0.0.1/any.crl",))
    now = utcnow()
    try:
        answer: Answer | BaseException = crl.lookup(index, sample.cert, point, now, POLICY)
    except (crl.CRLError, StaleData) as exc:
        answer = exc
    try:
        expected: Answer | BaseException = crl.lookup(original_index, sample.cert, point, now, POLICY)
    except (crl.CRLError, StaleData) as exc:
        expected = exc
    assert repr(answer) == repr(expected), mutation.describe


_PRIVATE_EXTENSION = ObjectIdentifier("1.3.6.1.4.1.55555.1")


@st.composite
def revoked_entries(draw: st.DrawFn) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(draw(st.integers(1, 2**159 - 1) | st.sampled_from([1, 127, 128, 255, 256, 2**63])))
        .revocation_date(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    )
    if draw(st.booleans()):
        builder = builder.add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
    padding = draw(st.sampled_from([0, 0, 1, 90, 120, 200, 300]))
    if padding:  # long entries: the index walk must handle long-form lengths
        octets = b"\x04" + (bytes([padding]) if padding < 128 else b"\x82" + padding.to_bytes(2, "big"))
        extension = x509.UnrecognizedExtension(_PRIVATE_EXTENSION, octets + b"x" * padding)
        builder = builder.add_extension(extension, critical=False)
    return builder.build()


@fuzz(1.0)
@given(entries=st.lists(revoked_entries(), max_size=40), probe=st.integers(1, 2**159 - 1))
def test_signed_crl_index_agrees_with_cryptography(
    world: World, crl_leaf: Credential, entries: list[x509.RevokedCertificate], probe: int
) -> None:
    now = utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(world.ica.cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=1))
    )
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    der = builder.sign(world.ica.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    issuer = cert_from_der(world.ica.der)
    index = crl.parse_and_verify(der, issuer)
    parsed = x509.load_der_x509_crl(der)
    expected = {crl.serial_key(r.serial_number) for r in parsed}
    assert set(index.revoked) == expected
    assert index.entries == len(expected)

    leaf = cert_from_der(crl_leaf.der)
    point = crl.DistributionPoint(("http://127.0.0.1/any.crl",))
    answer = crl.lookup(index, leaf, point, now, POLICY)
    listed = parsed.get_revoked_certificate_by_serial_number(leaf.crypto.serial_number) is not None
    assert answer.status is (Status.REVOKED if listed else Status.GOOD)
    assert (crl.serial_key(probe) in index.revoked) == (
        parsed.get_revoked_certificate_by_serial_number(probe) is not None
    )
