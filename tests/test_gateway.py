"""The local mutual-TLS gateway (authorizer.gateway, `mtls-authorizer gateway`): real TLS clients on loopback.

Python's ssl / http.client with a client certificate, and curl when it is installed. What API Gateway's
mTLS custom domain does: certificates that do not verify fail the handshake and never reach the
authorizer; the authorizer's Deny is 403 {"message":"Forbidden"}; an Allow reaches the backend, which
echoes the authorizer's context.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509

from authorizer import app, gateway
from authorizer.cli import main as cli_main
from authorizer.events import EventFormat, parse_event
from authorizer.gateway import ApiIds, HttpRequest, MtlsGateway, iam_match, judge, policy_allows
from conftest import SECRET_HEADER_VALUE, SETTING_NAMES, rest_event, v2_event
from pki import PKI, Credential, pem_bundle, utcnow

ROOT = Path(__file__).resolve().parent.parent
CURL = shutil.which("curl")
IDS = ApiIds("us-east-1", "123456789012", "a1b2c3d4e5", "prod")
ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/pets/42"
STAGE_RESOURCE = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*"
GATEWAY_DATE = re.compile(
    r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{2} \d{2}:\d{2}:\d{2} \d{4} GMT$"
)
COLON_HEX = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2})*$")


# ============================================================================================ fixtures
@dataclass(frozen=True)
class Certs:
    folder: Path
    truststore: Path
    crl: Path  # the issuing CA's CRL, listing `revoked`
    root: Credential
    ica: Credential
    good: Credential
    revoked: Credential
    expired: Credential
    stranger: Credential  # under a root the truststore does not hold


@pytest.fixture(scope="module")
def certs(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("gateway")
    root = pki.root("Gateway Test Root CA")
    ica = pki.intermediate("Gateway Test Issuing CA", root)
    good = pki.leaf("gateway-good", ica)
    revoked = pki.leaf("gateway-revoked", ica, key_type="ec")
    now = utcnow()
    expired = pki.leaf(
        "gateway-expired", ica, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    stranger_root = pki.root("Gateway Stranger Root CA")
    stranger = pki.leaf("gateway-stranger", pki.intermediate("Gateway Stranger Issuing CA", stranger_root))
    truststore = folder / "truststore.pem"
    truststore.write_bytes(pem_bundle([root, ica]))
    crl = folder / "issuing.crl"
    crl.write_bytes(pki.crl(ica, [revoked]))
    return Certs(folder, truststore, crl, root, ica, good, revoked, expired, stranger)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The Lambda's settings at their defaults; whatever runtime a test installs is dropped afterwards."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    yield monkeypatch
    app.reset()


class Recorder:
    """lambda_handler, keeping every event and result (what the gateway sent and got)."""

    def __init__(self, inner: Callable[[Any, Any], Any] | None = None) -> None:
        self.inner = inner or app.lambda_handler
        self.calls: list[tuple[dict[str, Any], Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        assert context.get_remaining_time_in_millis() > 5000
        result = self.inner(event, context)
        self.calls.append((event, result))
        return result


@dataclass
class Running:
    gateway: MtlsGateway
    recorder: Recorder
    log: list[str]

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line with {text!r}: {self.log}")


Start = Callable[..., Running]


@pytest.fixture
def start(certs: Certs, environment: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Start]:
    """start(fmt, handler=None, **settings): the app's runtime from the local truststore (and the CRL file),
    a gateway on a free loopback port in front of it."""
    started: list[MtlsGateway] = []

    def _start(
        fmt: gateway.GatewayFormat = "rest", inner: Callable[[Any, Any], Any] | None = None, **settings: str
    ) -> Running:
        for name, value in settings.items():
            environment.setenv(name, value)
        runtime, _ = gateway.local_runtime(certs.truststore, crls=[certs.crl])
        gateway.install_runtime(runtime)
        recorder = Recorder(inner)
        log: list[str] = []
        server = MtlsGateway(
            certs.truststore,
            fmt=fmt,
            port=0,
            cert_dir=tmp_path / f"server-{len(started)}",
            ids=IDS,
            handler=recorder,
            log=log.append,
        )
        server.start()
        started.append(server)
        return Running(server, recorder, log)

    yield _start
    for server in started:
        server.stop()


def client_context(
    running: Running, cert: Credential | None, tls: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ca = running.gateway.server_certificate.ca
    assert ca is not None
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert.cert_path, cert.key_path)
    if tls is not None:
        context.minimum_version = context.maximum_version = tls
    return context


def get(
    running: Running,
    cert: Credential | None,
    path: str = "/pets/42?verbose=1",
    headers: dict[str, str] | None = None,
    tls: ssl.TLSVersion | None = None,
    method: str = "GET",
) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    connection = http.client.HTTPSConnection(
        "localhost", running.gateway.port, context=client_context(running, cert, tls), timeout=10
    )
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else {}, response
    finally:
        connection.close()


# ============================================================================================ through TLS
@pytest.mark.parametrize("fmt", ["rest", "http"])
def test_allowed_client_reaches_the_backend_which_echoes_the_context(
    start: Start, certs: Certs, fmt: str
) -> None:
    running = start(fmt)
    status, body, response = get(running, certs.good)
    assert status == 200, body
    assert response.getheader("Content-Type") == "application/json"
    assert (body["message"], body["method"], body["path"]) == ("hello", "GET", "/pets/42")
    ((_, result),) = running.recorder.calls
    context = result["context"]
    assert context["reason"] == "good" and context["revocationSource"] == "crl"
    assert context["certSubject"] == certs.good.subject
    if fmt == "rest":
        # As a REST integration sees requestContext.authorizer: principalId, the context as strings.
        authorizer = body["authorizer"]
        assert authorizer["principalId"] == result["principalId"] == certs.good.subject
        assert {k: authorizer[k] for k in context} == {k: str(v) for k, v in context.items()}
        assert isinstance(authorizer["integrationLatency"], int)
        assert result["policyDocument"]["Statement"][0]["Resource"] == [STAGE_RESOURCE]
    else:
        assert body["authorizer"] == {"lambda": context}
        assert result == {"isAuthorized": True, "context": context}
    assert running.wait_for_log("GET /pets/42 -> 200 (reason good")


@pytest.mark.parametrize("fmt", ["rest", "http"])
def test_revoked_client_gets_403_forbidden(start: Start, certs: Certs, fmt: str) -> None:
    running = start(fmt)
    status, body, response = get(running, certs.revoked)
    assert (status, body) == (403, {"message": "Forbidden"})
    if fmt == "rest":
        assert response.getheader("x-amzn-ErrorType") == "AccessDeniedException"
    ((_, result),) = running.recorder.calls
    assert (result["context"]["reason"], result["context"]["revocationSource"]) == ("revoked", "crl")
    # The same client's good neighbour still gets through the same gateway.
    assert get(running, certs.good)[0] == 200


@pytest.mark.parametrize("tls", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize(
    ("client", "problem"),
    [
        ("stranger", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
        (None, "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
    ],
    ids=["not-under-the-truststore", "expired", "no-certificate"],
)
def test_a_certificate_that_does_not_verify_fails_the_handshake(
    start: Start, certs: Certs, client: str | None, problem: str, tls: ssl.TLSVersion
) -> None:
    running = start("rest")
    cert = getattr(certs, client) if client else None
    # TLS 1.2 fails in the handshake itself; with TLS 1.3 the client has finished its part when the
    # server's alert comes, so it sees the failure on its first read.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(running, cert, tls=tls)
    line = running.wait_for_log("TLS handshake failed")
    assert problem in line, line
    assert running.recorder.calls == [], "the authorizer must never hear of a failed handshake"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1")
def test_tls_below_1_2_is_refused(start: Start, certs: Certs) -> None:
    running = start("rest")
    context = client_context(running, certs.good)
    try:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 offers TLS 1.1 only at level 0
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1 at all")
    with (
        pytest.raises((ssl.SSLError, ConnectionError)),
        socket.create_connection(("127.0.0.1", running.gateway.port)) as raw,
    ):
        context.wrap_socket(raw, server_hostname="localhost")
    assert "unsupported_protocol" in running.wait_for_log("TLS handshake failed").lower()
    assert running.recorder.calls == []


# ============================================================================================ the event
def _gateway_date(value: dt.datetime) -> str:
    return value.strftime("%b %d %H:%M:%S %Y GMT")


def check_client_cert(block: dict[str, Any], cert: Credential) -> None:
    assert block["clientCertPem"] == ssl.DER_cert_to_PEM_cert(cert.der)
    assert block["subjectDN"] == cert.subject
    assert block["issuerDN"] == cert.issuer
    assert COLON_HEX.match(block["serialNumber"]) and block["serialNumber"] == cert.colon_serial
    validity = block["validity"]
    assert set(validity) == {"notBefore", "notAfter"}
    for key, when in (
        ("notBefore", cert.cert.not_valid_before_utc),
        ("notAfter", cert.cert.not_valid_after_utc),
    ):
        assert GATEWAY_DATE.match(validity[key]), validity
        assert validity[key] == _gateway_date(when)
        assert ssl.cert_time_to_seconds(validity[key]) == int(when.timestamp())


def test_rest_event_has_api_gateways_shape(start: Start, certs: Certs) -> None:
    running = start("rest")
    headers = {"Authorization": SECRET_HEADER_VALUE, "X-Custom": "one", "X-Forwarded-For": "198.51.100.1"}
    assert get(running, certs.good, "/pets/42?verbose=1&tag=a&tag=b", headers)[0] == 200
    ((event, _),) = running.recorder.calls
    shape = rest_event("pem")  # tests/conftest.py: the shape API Gateway sends
    assert set(event) == set(shape)
    assert set(shape["requestContext"]) <= set(event["requestContext"])
    assert set(shape["requestContext"]["identity"]) <= set(event["requestContext"]["identity"])
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == ARN
    assert (event["httpMethod"], event["path"], event["resource"]) == ("GET", "/pets/42", "/{proxy+}")
    assert event["pathParameters"] == {"proxy": "pets/42"}
    assert event["queryStringParameters"] == {"verbose": "1", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"verbose": ["1"], "tag": ["a", "b"]}
    assert event["headers"]["X-Custom"] == "one"
    assert event["headers"]["Host"] == f"localhost:{running.gateway.port}"
    assert event["headers"]["X-Forwarded-For"] == "198.51.100.1, 127.0.0.1"
    assert event["headers"]["X-Forwarded-Proto"] == "https"
    assert event["multiValueHeaders"]["X-Custom"] == ["one"]
    context = event["requestContext"]
    assert (context["accountId"], context["apiId"], context["stage"]) == (IDS.account_id, IDS.api_id, "prod")
    assert (context["domainName"], context["httpMethod"], context["path"]) == ("localhost", "GET", "/pets/42")
    assert context["resourcePath"] == "/{proxy+}"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", context["requestTime"])
    assert abs(context["requestTimeEpoch"] / 1000 - time.time()) < 60
    check_client_cert(context["identity"]["clientCert"], certs.good)
    request = parse_event(event)
    assert request.format is EventFormat.REST and request.cert_pem == ssl.DER_cert_to_PEM_cert(certs.good.der)
    assert request.arn is not None and (request.arn.http_method, request.arn.resource) == ("GET", "pets/42")


def test_http_event_has_api_gateways_shape(start: Start, certs: Certs) -> None:
    running = start("http")
    headers = {"Cookie": "session=abc123; theme=dark", "X-Custom": "one"}
    assert get(running, certs.good, "/pets/42?verbose=1&tag=a&tag=b", headers, method="POST")[0] == 200
    ((event, _),) = running.recorder.calls
    shape = v2_event("pem")
    assert set(event) == set(shape)
    assert set(shape["requestContext"]) <= set(event["requestContext"])
    assert event["version"] == "2.0" and event["type"] == "REQUEST"
    assert event["routeArn"] == ARN.replace("/GET/", "/POST/")
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "ANY /{proxy+}"
    assert (event["rawPath"], event["rawQueryString"]) == ("/pets/42", "verbose=1&tag=a&tag=b")
    assert event["queryStringParameters"] == {"verbose": "1", "tag": "a,b"}
    assert event["cookies"] == ["session=abc123", "theme=dark"]
    assert "cookie" not in event["headers"] and event["headers"]["x-custom"] == "one"
    assert all(name == name.lower() for name in event["headers"])
    assert event["identitySource"] == [ssl.DER_cert_to_PEM_cert(certs.good.der)]
    http_context = event["requestContext"]["http"]
    assert (http_context["method"], http_context["path"], http_context["sourceIp"]) == (
        "POST",
        "/pets/42",
        "127.0.0.1",
    )
    check_client_cert(event["requestContext"]["authentication"]["clientCert"], certs.good)
    request = parse_event(event)
    assert request.format is EventFormat.HTTP_V2 and request.arn is not None


def _request(
    der: bytes, path: str = "/", query: str = "", headers: tuple[tuple[str, str], ...] = ()
) -> HttpRequest:
    return HttpRequest("GET", path, query, (("Host", "api.example.com"), *headers), "203.0.113.7", der)


def test_event_builder_without_a_network(certs: Certs) -> None:
    """The root path, repeated headers and an absent query, straight from the builder."""
    der = certs.good.der
    repeated = (("Accept", "a/b"), ("accept", "c/d"), ("X-Amzn-Trace-Id", "Root=1-abc"))
    rest = gateway.build_event("rest", _request(der, headers=repeated), IDS)
    assert rest["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/"
    assert (rest["resource"], rest["pathParameters"], rest["queryStringParameters"]) == ("/", None, None)
    assert rest["multiValueHeaders"]["Accept"] == ["a/b"] and rest["multiValueHeaders"]["accept"] == ["c/d"]
    assert rest["headers"]["X-Amzn-Trace-Id"] == "Root=1-abc"  # the client's trace id is kept
    assert rest["requestContext"]["domainName"] == "api.example.com"
    assert rest["requestContext"]["domainPrefix"] == "api"
    v2 = gateway.build_event("http", _request(der, headers=repeated), IDS)
    assert v2["headers"]["accept"] == "a/b,c/d"
    assert v2["routeKey"] == "ANY /" and "pathParameters" not in v2 and "queryStringParameters" not in v2
    assert v2["headers"]["x-forwarded-for"] == "203.0.113.7"
    check_client_cert(v2["requestContext"]["authentication"]["clientCert"], certs.good)
    # The sample events the CLI prints use the same certificate block.
    from authorizer.sample_events import client_cert_block

    assert client_cert_block(certs.good.pem) == gateway.client_cert(der)


# ============================================================================================ the answer
def test_iam_wildcards() -> None:
    assert iam_match(STAGE_RESOURCE, ARN)
    assert iam_match("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*/*", ARN)
    assert iam_match("arn:aws:execute-api:*:*:a1b2c3d4e5/prod/GET/pets/4?", ARN)
    assert iam_match("*", ARN)
    assert not iam_match("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/test/*", ARN)
    assert not iam_match("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/POST/*", ARN)
    assert not iam_match("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/pets", ARN)
    assert not iam_match("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/get/*", ARN)  # case
    assert not iam_match("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/pets/4[2]", ARN)
    assert iam_match("execute-api:*", "execute-api:Invoke", ignore_case=True)
    assert iam_match("Execute-API:invoke", "execute-api:Invoke", ignore_case=True)


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _statement(effect: str, resource: Any, action: Any = "execute-api:Invoke") -> dict[str, Any]:
    return {"Action": action, "Effect": effect, "Resource": resource}


def test_policy_evaluation() -> None:
    assert policy_allows(_policy(_statement("Allow", [STAGE_RESOURCE])), ARN)
    assert policy_allows({"Statement": _statement("Allow", STAGE_RESOURCE)}, ARN)  # one statement, no list
    assert not policy_allows(_policy(_statement("Deny", [STAGE_RESOURCE])), ARN)
    assert not policy_allows(_policy(_statement("Allow", "*"), _statement("Deny", ARN)), ARN)  # Deny wins
    assert not policy_allows(_policy(_statement("Allow", ARN.replace("/prod/", "/test/"))), ARN)
    assert not policy_allows(_policy(_statement("Allow", "*", action="s3:GetObject")), ARN)
    assert policy_allows(_policy(_statement("Allow", "*", action=["s3:GetObject", "execute-api:*"])), ARN)
    for broken in (
        None,
        {},
        {"Statement": []},
        _policy({"Effect": "Maybe"}),
        _policy(_statement("Allow", 7)),
    ):
        with pytest.raises(ValueError):
            policy_allows(broken, ARN)


def _allow(context: dict[str, Any] | None = None, principal: Any = "CN=client") -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": _policy(_statement("Allow", [STAGE_RESOURCE])),
        "context": context or {},
    }


def test_judge_reads_results_as_api_gateway_does() -> None:
    assert judge(_allow({"reason": "good"}), "rest", ARN, True).status == 200
    assert judge({"isAuthorized": True, "context": {"a": [1]}}, "http", ARN, True).status == 200
    assert judge({"isAuthorized": False}, "http", ARN, True).status == 403
    assert judge({"isAuthorized": "true"}, "http", ARN, True).status == 500  # the proof of concept's strings
    assert judge({"isAuthorized": True}, "http", ARN, False).status == 500  # simple responses are off
    assert judge(_allow(), "http", ARN, False).status == 200
    assert judge(_allow(principal=None), "rest", ARN, True).status == 500
    assert judge(_allow({"nested": {"a": 1}}), "rest", ARN, True).status == 500
    assert judge(_allow({"big": "x" * 9000}), "rest", ARN, True).status == 500  # over 8 KB
    assert judge("Allow", "rest", ARN, True).status == 500
    other_api = _allow()
    other_api["policyDocument"]["Statement"][0]["Resource"] = [
        "arn:aws:execute-api:us-east-1:123456789012:zzz/prod/*"
    ]
    assert judge(other_api, "rest", ARN, True).status == 403


@pytest.mark.parametrize(
    ("fmt", "raised", "status", "body"),
    [
        ("rest", Exception("Unauthorized"), 401, {"message": "Unauthorized"}),
        ("http", Exception("Unauthorized"), 401, {"message": "Unauthorized"}),
        ("rest", RuntimeError("bug"), 500, {"message": None}),
        ("http", RuntimeError("bug"), 500, {"message": "Internal Server Error"}),
    ],
)
def test_authorizer_failures_become_401_and_500(
    start: Start, certs: Certs, fmt: str, raised: Exception, status: int, body: dict[str, Any]
) -> None:
    def failing(event: Any, context: Any) -> Any:
        raise raised

    running = start(fmt, inner=failing)
    assert get(running, certs.good)[:2] == (status, body)


def test_http_api_with_iam_policy_responses(start: Start, certs: Certs) -> None:
    """HTTP_API_SIMPLE_RESPONSES=false: the function answers with a policy, and the gateway reads one."""
    running = start("http", HTTP_API_SIMPLE_RESPONSES="false")
    assert not running.gateway.simple_responses
    status, body, _ = get(running, certs.good)
    assert status == 200 and body["authorizer"]["lambda"]["reason"] == "good"
    ((_, result),) = running.recorder.calls
    assert result["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert get(running, certs.revoked)[:2] == (403, {"message": "Forbidden"})


def test_nothing_secret_is_logged(
    start: Start, certs: Certs, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    running = start("rest")
    headers = {"Authorization": SECRET_HEADER_VALUE, "Cookie": f"token={SECRET_HEADER_VALUE}"}
    assert get(running, certs.good, f"/pets/42?key={quote(SECRET_HEADER_VALUE)}", headers)[0] == 200
    assert get(running, certs.revoked, "/pets/42", headers)[0] == 403
    running.wait_for_log("-> 403")
    captured = capsys.readouterr()
    records = [json.dumps(vars(record), default=str) for record in caplog.records]
    logged = "\n".join([*running.log, *records, captured.out, captured.err])
    assert [r.getMessage() for r in caplog.records].count("decision") == 2  # the function's own lines
    assert SECRET_HEADER_VALUE not in logged
    assert "BEGIN CERTIFICATE" not in logged
    assert "sk_live" not in logged


# ============================================================================================ the server
def test_connections_are_bounded_and_stop_is_prompt(
    certs: Certs, environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log: list[str] = []
    threads_before = threading.active_count()  # other tests' background refreshes may still run
    server = MtlsGateway(
        certs.truststore,
        port=0,
        cert_dir=tmp_path,
        handler=lambda e, c: {"isAuthorized": True},
        log=log.append,
        max_connections=1,
    )
    server.start()
    try:
        running = Running(server, Recorder(), log)
        # One idle keep-alive connection holds the only slot ...
        held = http.client.HTTPSConnection(
            "localhost", server.port, context=client_context(running, certs.good), timeout=10
        )
        held.request("GET", "/hello")
        assert held.getresponse().read()
        # ... so the next connection is closed on arrival.
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            get(running, certs.good)
        assert running.wait_for_log("refused: 1 connections already open")
        began = time.monotonic()
    finally:
        server.stop()
    assert time.monotonic() - began < 3, "stop() must not wait for idle keep-alive connections to time out"
    server.stop()  # twice is harmless
    assert threading.active_count() <= threads_before + 2  # no connection threads left behind


def test_throwaway_server_certificate_is_for_localhost(certs: Certs, environment: pytest.MonkeyPatch) -> None:
    server = MtlsGateway(certs.truststore, port=0, handler=lambda e, c: {}, log=None)
    folder = server.server_certificate.cert.parent
    try:
        cert = x509.load_pem_x509_certificate(server.server_certificate.cert.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in names.get_values_for_type(x509.DNSName)
        assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
        assert oct(server.server_certificate.key.stat().st_mode & 0o777) == "0o600"
        assert server.url == f"https://localhost:{server.port}"
    finally:
        server.stop()
    assert not folder.exists(), "the temporary folder of a throwaway certificate is removed on stop"


# ============================================================================================ curl
def curl(running: Running, cert: Credential | None, path: str = "/hello") -> tuple[int, str, str]:
    assert CURL is not None
    ca = running.gateway.server_certificate.ca
    command = [CURL, "-sS", "--noproxy", "*", "--max-time", "20", "--cacert", str(ca), "-w", "\n%{http_code}"]
    if cert is not None:
        command += ["--cert", str(cert.cert_path), "--key", str(cert.key_path)]
    done = subprocess.run(
        [*command, f"{running.gateway.url}{path}"], capture_output=True, text=True, timeout=30, check=False
    )
    body, _, code = done.stdout.rpartition("\n")
    return done.returncode, code, body


@pytest.mark.skipif(CURL is None, reason="curl is not installed: the Python client tests cover the gateway")
@pytest.mark.parametrize("fmt", ["rest", "http"])
def test_curl_sees_200_403_and_handshake_failures(start: Start, certs: Certs, fmt: str) -> None:
    running = start(fmt)
    exit_code, code, body = curl(running, certs.good)
    assert (exit_code, code) == (0, "200"), body
    echoed = json.loads(body)["authorizer"]
    assert (echoed if fmt == "rest" else echoed["lambda"])["reason"] == "good"
    exit_code, code, body = curl(running, certs.revoked)
    assert (exit_code, code, json.loads(body)) == (0, "403", {"message": "Forbidden"})
    for cert in (None, certs.stranger, certs.expired):
        exit_code, code, _ = curl(running, cert)
        assert exit_code != 0 and code == "000", (cert, exit_code, code)
    assert len(running.recorder.calls) == 2


# ============================================================================================ the command
def test_gateway_command_serves_until_sigterm(certs: Certs, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(PYTHONPATH=str(ROOT / "src"), POWERTOOLS_METRICS_DISABLED="true", LOG_LEVEL="WARNING")
    command = [
        sys.executable,
        "-m",
        "authorizer",
        "gateway",
        "--truststore",
        str(certs.truststore),
        "--port",
        "0",
    ]
    command += ["--crl", str(certs.crl), "--format", "http", "--stage", "dev"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        banner: list[str] = []
        for line in process.stdout:
            banner.append(line)
            if "Ctrl-C stops" in line:
                break
        text = "".join(banner)
        url = re.search(r"on (https://localhost:(\d+))/", text)
        ca = re.search(r"--cacert (\S+server-ca\.pem)", text)
        assert url and ca, text
        assert "HTTP API, payload 2.0, simple responses" in text and "stage dev" in text
        context = ssl.create_default_context(cafile=ca.group(1))
        context.load_cert_chain(certs.good.cert_path, certs.good.key_path)
        connection = http.client.HTTPSConnection("localhost", int(url.group(2)), context=context, timeout=10)
        connection.request("GET", "/hello")
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["authorizer"]["lambda"]["reason"] == "good"
        connection.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, out + err
    assert "gateway stopped" in out
    assert "GET /hello -> 200 (reason good" in err
    assert not Path(ca.group(1)).exists(), "the throwaway server certificate is removed on exit"


def test_gateway_command_usage_errors(certs: Certs, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli_main(["gateway", "--truststore", str(certs.truststore), "--cert", str(certs.good.cert_path)]) == 2
    )
    assert "--cert and --key go together" in capsys.readouterr().err
    assert cli_main(["gateway", "--truststore", str(certs.folder / "missing.pem")]) == 2
    assert (
        cli_main(
            ["gateway", "--truststore", str(certs.truststore), "--denylist", str(certs.folder / "none.txt")]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("use_curl", [True, False], ids=["curl", "http.client"])
def test_the_demos_client_with_and_without_curl(start: Start, certs: Certs, use_curl: bool) -> None:
    """demo/client.py: curl --cert --key, or Python's http.client where curl is missing."""
    from demo.client import TLS_FAIL, GatewayClient

    if use_curl and CURL is None:
        pytest.skip("curl is not installed")
    running = start("rest")
    ca = running.gateway.server_certificate.ca
    assert ca is not None
    client = GatewayClient(ca, curl=CURL if use_curl else "")
    assert client.name == ("curl" if use_curl else "http.client")
    url = f"{running.gateway.url}/accounts"
    good = client.get(url, certs.good.cert_path, certs.good.key_path, {"X-Demo-Request": "1"})
    assert good.status == "200" and json.loads(good.body)["authorizer"]["reason"] == "good"
    assert client.get(url, certs.revoked.cert_path, certs.revoked.key_path).status == "403"
    assert client.get(url, None, None).status == TLS_FAIL
    assert client.get(url, certs.stranger.cert_path, certs.stranger.key_path).status == TLS_FAIL
    ((event, _), *_) = running.recorder.calls
    assert event["headers"]["X-Demo-Request"] == "1"


def test_serve_with_its_own_server_certificate(
    certs: Certs, environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """serve() (the command's body) with --cert/--key: no throwaway certificate, the given one is used."""
    own = gateway.throwaway_server_certificate(tmp_path / "own")
    assert own.ca is not None
    options = gateway.GatewayOptions(certs.truststore, port=0, cert=own.cert, key=own.key, crls=(certs.crl,))
    lines: list[str] = []
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(gateway.serve(options, lines.append, stop)))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not any("Ctrl-C stops" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.02)
        text = "\n".join(lines)
        assert f"server certificate: {own.cert}" in text and "throwaway" not in text, text
        port = int(re.search(r"https://localhost:(\d+)/", text).group(1))  # type: ignore[union-attr]
        context = ssl.create_default_context(cafile=str(own.ca))
        context.load_cert_chain(certs.good.cert_path, certs.good.key_path)
        connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
        connection.request("GET", "/hello")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        stop.set()
        thread.join(timeout=15)
    assert result == [0] and lines[-1] == "gateway stopped"
    assert own.cert.exists(), "a certificate the user gave is never removed"
