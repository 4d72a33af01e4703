"""Event formats and response shapes (REST, HTTP API 1.0, 2.0); malformed input gives invalid_request."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from conftest import (
    STAGE_RESOURCE,
    Authorizer,
    Configure,
    Format,
    World,
    cert_event,
    make_event,
    parse_response,
    policy_resources,
)


def deny_invalid(authorizer: Authorizer, fmt: Format, event: Any) -> None:
    decision = authorizer.decide(fmt, event)
    assert (decision.allowed, decision.reason) == (False, "invalid_request"), decision.context
    assert "certSerial" not in decision.context


# ============================================================================ response shapes
def test_policy_response_shape(authorizer: Authorizer, world: World) -> None:
    """REST and payload 1.0: an IAM policy for the whole stage, principal = certificate subject."""
    leaf = world.leaf("shape client", ocsp="issuer")
    for fmt in ("rest", "v1"):
        response = authorizer.invoke(cert_event(fmt, leaf))
        assert set(response) == {"principalId", "policyDocument", "context"}
        assert response["principalId"] == leaf.subject
        statement = response["policyDocument"]["Statement"][0]
        assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
        assert policy_resources(response) == [STAGE_RESOURCE]
        parse_response(response, fmt).expect(True, "good", cert=leaf, source="ocsp")


def test_simple_response_shape_v2(authorizer: Authorizer, world: World) -> None:
    leaf = world.leaf("simple client", ocsp="issuer")
    response = authorizer.invoke(cert_event("v2", leaf))
    assert response["isAuthorized"] is True
    assert set(response) == {"isAuthorized", "context"}
    parse_response(response, "v2").expect(True, "good", cert=leaf, source="ocsp")
    revoked = world.leaf("simple revoked client", ocsp="issuer", ocsp_status="revoked")
    response = authorizer.invoke(cert_event("v2", revoked))
    assert response["isAuthorized"] is False
    assert json.loads(json.dumps(response))["isAuthorized"] is False


@pytest.mark.parametrize("revoked", [False, True])
def test_v2_policy_responses_when_simple_disabled(configure: Configure, world: World, revoked: bool) -> None:
    authorizer = configure(HTTP_API_SIMPLE_RESPONSES="false")
    leaf = world.leaf("v2 policy client", ocsp="issuer", ocsp_status="revoked" if revoked else "good")
    response = authorizer.invoke(cert_event("v2", leaf))
    assert "isAuthorized" not in response
    assert response["principalId"] == leaf.subject
    decision = parse_response(response, "v2", simple=False)
    decision.expect(not revoked, "revoked" if revoked else "good", cert=leaf, source="ocsp")


def test_deny_policy_is_for_the_stage(authorizer: Authorizer, world: World, any_fmt: Format) -> None:
    leaf = world.leaf("revoked", crl=True, crl_revoked=True)
    decision = authorizer.check(any_fmt, leaf)
    decision.expect(False, "revoked", cert=leaf, source="crl")
    if decision.policy_form:
        assert decision.response["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_payload_v1_decides_like_rest(authorizer: Authorizer, world: World) -> None:
    good = world.leaf("v1 good", ocsp="delegated")
    revoked = world.leaf("v1 revoked", ocsp="delegated", ocsp_status="revoked")
    stranger = world.leaf("v1 stranger", issuer=world.unknown_ica)
    authorizer.check("v1", good).expect(True, "good", cert=good, source="ocsp")
    authorizer.check("v1", revoked).expect(False, "revoked", cert=revoked, source="ocsp")
    authorizer.check("v1", stranger).expect(False, "untrusted", cert=stranger)


def test_informational_fields_are_not_trusted(authorizer: Authorizer, world: World, fmt: Format) -> None:
    """The subjectDN/serialNumber fields are informational: the decision comes from clientCertPem alone."""
    revoked = world.leaf("revoked", ocsp="issuer", ocsp_status="revoked")
    good = world.leaf("good", ocsp="issuer")
    event = make_event(fmt, revoked.pem, good)  # fields describe the good certificate
    authorizer.decide(fmt, event).expect(False, "revoked", cert=revoked)


def test_unicode_subject(authorizer: Authorizer, world: World, fmt: Format) -> None:
    leaf = world.leaf('Zoë Łukasz, "quoted" + plus', ocsp="issuer")
    decision = authorizer.check(fmt, leaf)
    decision.expect(True, "good", cert=leaf)


# ============================================================================ invalid requests
ODD_EVENTS: dict[str, Any] = {
    "empty_dict": {},
    "none": None,
    "list": [],
    "list_of_event": [{"type": "REQUEST"}],
    "string": "REQUEST",
    "number": 42,
    "bool": True,
    "only_type": {
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/x",
    },
    "request_context_is_string": {"type": "REQUEST", "requestContext": "nope"},
    "version_2_without_context": {"version": "2.0", "routeArn": "arn:aws:execute-api:us-east-1:1:a/b/GET/c"},
    "unknown_version": {"version": "3.0", "requestContext": {}},
}


@pytest.mark.parametrize("label", sorted(ODD_EVENTS))
def test_odd_events_are_invalid(authorizer: Authorizer, label: str) -> None:
    event = copy.deepcopy(ODD_EVENTS[label])
    response = authorizer.invoke(event)
    # Without a recognisable format, either response shape may come back; both must deny.
    fmt: Format = "v2" if isinstance(response, dict) and "isAuthorized" in response else "rest"
    deny_invalid(authorizer, fmt, event)


def _drop(event: dict[str, Any], *path: str) -> dict[str, Any]:
    node = event
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return event


def _cert_holder(event: dict[str, Any], fmt: Format) -> dict[str, Any]:
    context = event["requestContext"]
    holder: dict[str, Any] = context["authentication"] if fmt == "v2" else context["identity"]
    return holder


@pytest.mark.parametrize("missing", ["requestContext", "holder", "clientCert", "clientCertPem"])
def test_missing_certificate_is_invalid(
    authorizer: Authorizer, world: World, any_fmt: Format, missing: str
) -> None:
    leaf = world.leaf("client", ocsp="issuer")
    event = cert_event(any_fmt, leaf)
    holder_key = "authentication" if any_fmt == "v2" else "identity"
    if missing == "requestContext":
        _drop(event, "requestContext")
    elif missing == "holder":
        _drop(event, "requestContext", holder_key)
    elif missing == "clientCert":
        _drop(event, "requestContext", holder_key, "clientCert")
    else:
        _drop(event, "requestContext", holder_key, "clientCert", "clientCertPem")
    deny_invalid(authorizer, any_fmt, event)
    assert world.http.total_requests() == 0


def _csr_pem(world: World) -> str:
    key = world.pki.leaf_key("ec")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _bad_pems(world: World) -> dict[str, Any]:
    pem = world.leaf("source of bad pems", ocsp="issuer").pem
    lines = pem.splitlines()
    body = "".join(lines[1:-1])
    return {
        "empty": "",
        "whitespace": "   \n",
        "garbage": "this is not a certificate",
        "binary_garbage": "\x00\x01\x02\xff",
        "csr": _csr_pem(world),
        "private_key": world.pki.leaf_key("ec")
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode(),
        "truncated": "\n".join(lines[: len(lines) // 2]),
        "no_footer": "\n".join(lines[:-1]),
        "corrupt_base64": pem.replace(body[40:60], "!" * 20),
        "der_bytes_as_text": "".join(chr(b) for b in world.leaf("der", ocsp="issuer").der),
        "not_a_string": 12345,
        "a_list": [pem],
        "a_dict": {"pem": pem},
        "none": None,
    }


@pytest.mark.parametrize(
    "kind",
    [
        "empty",
        "whitespace",
        "garbage",
        "binary_garbage",
        "csr",
        "private_key",
        "truncated",
        "no_footer",
        "corrupt_base64",
        "der_bytes_as_text",
        "not_a_string",
        "a_list",
        "a_dict",
        "none",
    ],
)
def test_bad_client_cert_pem_is_invalid(
    authorizer: Authorizer, world: World, any_fmt: Format, kind: str
) -> None:
    event = make_event(any_fmt, "placeholder")
    _cert_holder(event, any_fmt)["clientCert"]["clientCertPem"] = _bad_pems(world)[kind]
    deny_invalid(authorizer, any_fmt, event)
    assert world.http.total_requests() == 0


@pytest.mark.parametrize("arn", ["", "not-an-arn", "arn:aws:execute-api:us-east-1", None])
def test_policy_without_usable_arn_still_denies(authorizer: Authorizer, world: World, arn: Any) -> None:
    """No ARN to scope an Allow to: the answer is a Deny (for any resource), whatever the certificate."""
    leaf = world.leaf("client", ocsp="issuer")
    event = cert_event("rest", leaf)
    event["methodArn"] = arn
    decision = authorizer.decide("rest", event)
    assert decision.allowed is False
    assert decision.response["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_pem_with_surrounding_whitespace_and_crlf_is_accepted(
    authorizer: Authorizer, world: World, fmt: Format
) -> None:
    leaf = world.leaf("crlf client", ocsp="issuer")
    event = cert_event(fmt, leaf)
    _cert_holder(event, fmt)["clientCert"]["clientCertPem"] = "\r\n" + leaf.pem.replace("\n", "\r\n") + "\r\n"
    authorizer.decide(fmt, event).expect(True, "good", cert=leaf)


def test_second_certificate_in_pem_does_not_help(authorizer: Authorizer, world: World, fmt: Format) -> None:
    """Only the first certificate is the client's: appending a trusted one can't rescue an untrusted leaf."""
    stranger = world.leaf("stranger", issuer=world.unknown_ica)
    good = world.leaf("good", ocsp="issuer")
    event = cert_event(fmt, stranger)
    _cert_holder(event, fmt)["clientCert"]["clientCertPem"] = stranger.pem + good.pem
    decision = authorizer.decide(fmt, event)
    assert decision.allowed is False
