"""Shared fixtures: the test PKI, the loopback servers, the environment, events and response checks.

Fixture API (short):
- ``pki``: ``PKI`` builder (session). ``http``: ``FixtureHTTPServer``
  (session; request counts reset per test).
- ``s3``: ``MotoS3`` with a versioned bucket (session; AWS_ENDPOINT_URL_S3 points at it).
- ``world``: ``World``, the standard hierarchy, OCSP responders and helpers to mint leaves (session).
- ``configure(truststore=..., key=..., version=..., **settings) -> Authorizer``: uploads the truststore,
  sets the environment (FETCH_BLOCKED_NETWORKS="" unless given; a value of None unsets a variable),
  calls ``app.reset()``.
- ``fmt`` (rest, v2) and ``any_fmt`` (rest, v1, v2): parametrized event formats.
- ``make_event(fmt, pem)``, ``FakeLambdaContext``, ``parse_response``, ``Decision.expect``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pytest

from pki import PKI, Credential, pem_bundle, utcnow
from servers import FixtureHTTPServer, MotoS3, OpenSSLOCSPResponder

Format = Literal["rest", "v1", "v2"]
REASONS = {"good", "no_revocation_info", "revoked", "revocation_unavailable", "untrusted", "invalid_request"}
SOURCES = {"ocsp", "crl", "denylist", "none"}

REGION = "us-east-1"
ACCOUNT = "123456789012"
API_ID = "a1b2c3d4e5"
STAGE = "prod"
# Every route of the stage, HTTP API's `$default` route included (responses.stage_resource).
STAGE_RESOURCE = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/*"
METHOD_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/GET/pets/42"
ROUTE_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/GET/pets/42"
# Must never show up in any log line.
SECRET_HEADER_VALUE = "Bearer sk_live_51Hx9TOPSECRETdoNotLog7f3a9c2e"

SETTING_NAMES = (
    "TRUSTSTORE_BUCKET", "TRUSTSTORE_KEY", "TRUSTSTORE_VERSION", "TRUSTSTORE_REFRESH_SECONDS",
    "REVOCATION_NO_INFO", "REVOCATION_UNAVAILABLE", "REVOCATION_CHECK", "REVOCATION_CACHE_MAX_AGE_SECONDS",
    "REVOCATION_STALE_GRACE_SECONDS", "REVOCATION_FAILURE_BACKOFF_SECONDS", "FETCH_TIMEOUT_SECONDS",
    "FETCH_BLOCKED_NETWORKS", "MAX_CRL_BYTES", "MAX_OCSP_BYTES", "AUTHORIZER_BUDGET_SECONDS",
    "HTTP_API_SIMPLE_RESPONSES", "CLOCK_SKEW_SECONDS",
    "REVOCATION_CRL_S3_URI", "CRL_S3_BUCKETS", "REVOCATION_DENYLIST_S3_URI", "REVOCATION_S3_REFRESH_SECONDS",
    "REVOCATION_INDEX_S3_URI", "REVOCATION_INDEX_URLS",
    "REVOCATION_DELTA_CRL",
)


# ============================================================================================ Lambda bits
@dataclass
class FakeLambdaContext:
    function_name: str = "mtls-revocation-authorizer"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:mtls-revocation-authorizer"
    aws_request_id: str = "8f5a3c1e-6b2d-4e0f-9a7b-1c2d3e4f5a6b"
    log_group_name: str = "/aws/lambda/mtls-revocation-authorizer"
    log_stream_name: str = "2026/11/28/[$LATEST]0123456789abcdef"
    remaining_ms: int = 30000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _gateway_date(value: dt.datetime) -> str:
    return value.strftime("%b %d %H:%M:%S %Y GMT")


def client_cert_block(pem: str, cert: Credential | None = None) -> dict[str, Any]:
    """``clientCert`` as API Gateway sends it; informational fields from ``cert`` when known."""
    if cert is None:
        now = utcnow()
        return {
            "clientCertPem": pem,
            "subjectDN": "CN=unknown",
            "issuerDN": "CN=unknown",
            "serialNumber": "01",
            "validity": {"notBefore": _gateway_date(now), "notAfter": _gateway_date(now)},
        }
    return {
        "clientCertPem": pem,
        "subjectDN": cert.subject,
        "issuerDN": cert.issuer,
        "serialNumber": cert.colon_serial,
        "validity": {
            "notBefore": _gateway_date(cert.cert.not_valid_before_utc),
            "notAfter": _gateway_date(cert.cert.not_valid_after_utc),
        },
    }


def _headers() -> dict[str, str]:
    return {
        "accept": "application/json",
        "authorization": SECRET_HEADER_VALUE,
        "host": "api.example.com",
        "user-agent": "curl/8.5.0",
        "x-amzn-trace-id": "Root=1-6748a0f2-5f1b2c3d4e5f6a7b8c9d0e1f",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }


def rest_event(
    pem: str | None, cert: Credential | None = None, *, version: str | None = None
) -> dict[str, Any]:
    """REST API REQUEST authorizer event (HTTP API payload 1.0 when ``version="1.0"``)."""
    headers = _headers()
    identity: dict[str, Any] = {
        "accountId": None,
        "apiKey": None,
        "caller": None,
        "sourceIp": "203.0.113.7",
        "user": None,
        "userAgent": headers["user-agent"],
    }
    if pem is not None:
        identity["clientCert"] = client_cert_block(pem, cert)
    event: dict[str, Any] = {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "resource": "/pets/{id}",
        "path": "/pets/42",
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {"verbose": "1"},
        "multiValueQueryStringParameters": {"verbose": ["1"]},
        "pathParameters": {"id": "42"},
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": "api.example.com",
            "httpMethod": "GET",
            "identity": identity,
            "path": "/pets/42",
            "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTimeEpoch": 1732800000000,
            "resourceId": "abc123",
            "resourcePath": "/pets/{id}",
            "stage": STAGE,
        },
    }
    if version is not None:
        event["version"] = version
        event["identitySource"] = "api.example.com"
        event["authorizationToken"] = None
    return event


def v2_event(pem: str | None, cert: Credential | None = None) -> dict[str, Any]:
    """HTTP API payload 2.0 authorizer event."""
    headers = _headers()
    authentication: dict[str, Any] = {}
    if pem is not None:
        authentication["clientCert"] = client_cert_block(pem, cert)
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": ROUTE_ARN,
        "identitySource": [headers["host"]],
        "routeKey": "GET /pets/{id}",
        "rawPath": "/pets/42",
        "rawQueryString": "verbose=1",
        "cookies": ["session=abc123"],
        "headers": headers,
        "queryStringParameters": {"verbose": "1"},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "authentication": authentication,
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {
                "method": "GET",
                "path": "/pets/42",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": headers["user-agent"],
            },
            "requestId": "Abc123dEfGhIjKl=",
            "routeKey": "GET /pets/{id}",
            "stage": STAGE,
            "time": "28/Nov/2026:15:00:00 +0000",
            "timeEpoch": 1732800000000,
        },
        "pathParameters": {"id": "42"},
        "stageVariables": {},
    }


def make_event(fmt: Format, pem: str | None, cert: Credential | None = None) -> dict[str, Any]:
    if fmt == "v2":
        return v2_event(pem, cert)
    return rest_event(pem, cert, version="1.0" if fmt == "v1" else None)


def cert_event(fmt: Format, cert: Credential) -> dict[str, Any]:
    return make_event(fmt, cert.pem, cert)


# ============================================================================================ responses
@dataclass
class Decision:
    allowed: bool
    reason: str
    context: dict[str, Any]
    response: dict[str, Any]
    policy_form: bool

    def expect(
        self, allowed: bool, reason: str, cert: Credential | None = None, source: str | None = None
    ) -> None:
        assert (self.allowed, self.reason) == (allowed, reason), self.context
        if cert is not None:
            check_cert_context(self.context, cert)
            if self.policy_form:
                assert self.response["principalId"] == cert.subject
        if source is not None:
            assert self.context.get("revocationSource") == source, self.context
        if self.policy_form and reason != "invalid_request":
            assert policy_resources(self.response) == [STAGE_RESOURCE]


def _norm_hex(value: Any) -> str:
    assert isinstance(value, str), value
    return value.replace(":", "").lower()


def check_cert_context(context: dict[str, Any], cert: Credential) -> None:
    assert int(_norm_hex(context["certSerial"]), 16) == cert.serial
    assert _norm_hex(context["certFingerprintSha256"]) == cert.fingerprint_sha256
    assert context["certSubject"] == cert.subject
    assert context["certIssuer"] == cert.issuer
    assert context["revocationSource"] in SOURCES


def policy_resources(response: dict[str, Any]) -> list[str]:
    """The statement's Resource as a list (IAM accepts a string or a list of strings)."""
    resource = response["policyDocument"]["Statement"][0]["Resource"]
    resources = [resource] if isinstance(resource, str) else resource
    assert isinstance(resources, list) and resources, resource
    assert all(isinstance(r, str) for r in resources), resource
    return resources


def parse_response(response: Any, fmt: Format, *, simple: bool = True) -> Decision:
    """Check the response's shape for its event format and return the decision it carries."""
    assert isinstance(response, dict), response
    serialized = json.dumps(response)
    assert len(serialized.encode()) <= 8192
    context = response.get("context")
    assert isinstance(context, dict), response
    for key, value in context.items():
        assert isinstance(key, str)
        assert isinstance(value, str | int | float | bool) and value is not None, (key, value)
    reason = context.get("reason")
    assert reason in REASONS, context
    policy_form = not (fmt == "v2" and simple)
    if policy_form:
        assert isinstance(response.get("principalId"), str) and response["principalId"], response
        document = response["policyDocument"]
        assert document["Version"] == "2012-10-17"
        (statement,) = document["Statement"]
        assert statement["Action"] == "execute-api:Invoke"
        assert statement["Effect"] in ("Allow", "Deny")
        resources = policy_resources(response)
        for resource in resources:
            assert len(resource) <= 512
            assert resource == "*" or resource.startswith("arn:aws:execute-api:"), resource
        allowed = statement["Effect"] == "Allow"
        if allowed:
            assert resources == [STAGE_RESOURCE], resources
    else:
        assert set(response) == {"isAuthorized", "context"}, response
        assert type(response["isAuthorized"]) is bool, response
        allowed = response["isAuthorized"]
    if "certSerial" in context:
        check_types = ("certFingerprintSha256", "certSubject", "certIssuer", "revocationSource")
        assert all(isinstance(context.get(k), str) for k in check_types), context
    return Decision(
        allowed=allowed, reason=reason, context=context, response=response, policy_form=policy_form
    )


@dataclass
class Authorizer:
    """The configured ``authorizer.app`` plus helpers to call it."""

    app: ModuleType
    simple: bool = True
    context: FakeLambdaContext = field(default_factory=FakeLambdaContext)

    def invoke(self, event: Any) -> Any:
        return self.app.lambda_handler(event, self.context)

    def decide(self, fmt: Format, event: Any) -> Decision:
        return parse_response(self.invoke(event), fmt, simple=self.simple)

    def check(self, fmt: Format, cert: Credential) -> Decision:
        return self.decide(fmt, cert_event(fmt, cert))

    def reset(self) -> None:
        self.app.reset()


# ============================================================================================ the world
@dataclass
class World:
    """The standard hierarchy and its servers. Mint per-test leaves with ``leaf``."""

    pki: PKI
    http: FixtureHTTPServer
    root: Credential
    ica: Credential  # issuing CA; CDP -> root CRL
    revoked_ica: Credential  # revoked in the root CRL
    ica_ocsp_good: Credential  # AIA -> root's OCSP responder, good
    ica_ocsp_revoked: Credential  # AIA -> root's OCSP responder, revoked
    ica_crl_down: Credential  # CDP -> a path answering 503
    private_root: Credential  # no revocation info anywhere below
    private_ica: Credential
    impostor_ica: Credential  # self-signed, same subject as ica, other key; not trusted
    unknown_root: Credential  # not trusted
    unknown_ica: Credential
    responders: dict[str, OpenSSLOCSPResponder]
    _paths: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def trusted(self) -> list[Credential]:
        return [
            self.root,
            self.ica,
            self.revoked_ica,
            self.ica_ocsp_good,
            self.ica_ocsp_revoked,
            self.ica_crl_down,
            self.private_root,
            self.private_ica,
        ]

    def path(self, prefix: str) -> str:
        return f"/{prefix}/{next(self._paths)}"

    def ocsp_url(self, responder: str) -> str:
        """The counted (proxied) URL of one of the OpenSSL responders."""
        return self.http.url(f"/ocsp/{responder}")

    def crl_url(self) -> tuple[str, str]:
        """A fresh CRL path and its URL (nothing served there yet)."""
        path = self.path("crl") + ".crl"
        return path, self.http.url(path)

    def leaf(
        self,
        common_name: str = "client",
        *,
        issuer: Credential | None = None,
        ocsp: str | None = None,
        ocsp_status: str = "good",
        ocsp_url: str | None = None,
        crl: bool = False,
        crl_revoked: bool = False,
        crl_urls: Sequence[str] = (),
        key_type: Literal["rsa", "ec"] = "rsa",
        **kwargs: Any,
    ) -> Credential:
        """A client certificate under ``issuer`` (default: ica).

        ``ocsp``: name of an OpenSSL responder to declare (and register ``ocsp_status`` with);
        ``crl=True``: declare a fresh CRL URL and publish there a fresh CRL by the
        issuer, listing the leaf when
        ``crl_revoked``. ``ocsp_url``/``crl_urls`` declare arbitrary URLs instead.
        """
        issuer = issuer or self.ica
        urls = list(crl_urls)
        crl_path = None
        if crl:
            crl_path, url = self.crl_url()
            urls.append(url)
        if ocsp is not None:
            ocsp_url = self.ocsp_url(ocsp)
        cert = self.pki.leaf(
            common_name, issuer, key_type=key_type, ocsp_url=ocsp_url, crl_urls=urls, **kwargs
        )
        if ocsp is not None:
            self.responders[ocsp].set_status(cert, ocsp_status)
        if crl_path is not None:
            self.http.set(crl_path, self.pki.crl(issuer, [cert] if crl_revoked else []))
        return cert

    def close(self) -> None:
        for responder in self.responders.values():
            responder.close()


def build_world(pki: PKI, http: FixtureHTTPServer, workdir: Path) -> World:
    root = pki.root("Revocation Test Root CA")
    root_crl_url = http.url("/crl/root.crl")
    root_ocsp_url = http.url("/ocsp/root")
    ica = pki.intermediate("Revocation Test Issuing CA", root, crl_urls=[root_crl_url])
    revoked_ica = pki.intermediate("Revoked Issuing CA", root, crl_urls=[root_crl_url])
    ica_ocsp_good = pki.intermediate("OCSP-checked Issuing CA", root, ocsp_url=root_ocsp_url)
    ica_ocsp_revoked = pki.intermediate("OCSP-revoked Issuing CA", root, ocsp_url=root_ocsp_url)
    ica_crl_down = pki.intermediate("Unreachable-CRL Issuing CA", root, crl_urls=[http.url("/crl/down.crl")])
    http.set("/crl/root.crl", pki.crl(root, [revoked_ica]))
    http.set("/crl/down.crl", b"service unavailable", status=503, content_type="text/plain")

    private_root = pki.root("Private Root CA")
    private_ica = pki.intermediate("Private Issuing CA", private_root)
    impostor_ica = pki.root("impostor", subject=ica.cert.subject)
    unknown_root = pki.root("Unknown Root CA")
    unknown_ica = pki.intermediate(
        "Unknown Issuing CA", unknown_root, crl_urls=[http.url("/crl/unknown.crl")]
    )

    delegated = pki.ocsp_responder("Issuing CA OCSP Responder", ica)
    no_eku = pki.ocsp_responder("Issuing CA responder without OCSPSigning", ica, ocsp_signing_eku=False)
    impostor_responder = pki.ocsp_responder("Impostor OCSP Responder", impostor_ica)
    signers = {
        "issuer": (ica, ica),
        "delegated": (ica, delegated),
        "noeku": (ica, no_eku),
        "impostor": (ica, impostor_responder),
        "root": (root, root),
    }
    responders: dict[str, OpenSSLOCSPResponder] = {}
    try:
        for label, (ca, signer) in signers.items():
            responders[label] = OpenSSLOCSPResponder(workdir, label, ca, signer)
            http.proxy(f"/ocsp/{label}", responders[label].url)
    except Exception:
        for responder in responders.values():
            responder.close()
        raise
    responders["root"].set_status(ica_ocsp_good, "good")
    responders["root"].set_status(ica_ocsp_revoked, "revoked")
    return World(
        pki=pki,
        http=http,
        root=root,
        ica=ica,
        revoked_ica=revoked_ica,
        ica_ocsp_good=ica_ocsp_good,
        ica_ocsp_revoked=ica_ocsp_revoked,
        ica_crl_down=ica_crl_down,
        private_root=private_root,
        private_ica=private_ica,
        impostor_ica=impostor_ica,
        unknown_root=unknown_root,
        unknown_ica=unknown_ica,
        responders=responders,
    )


# ============================================================================================ fixtures
@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def http() -> Iterator[FixtureHTTPServer]:
    server = FixtureHTTPServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh_request_counts(request: pytest.FixtureRequest) -> None:
    if "http" in request.fixturenames:
        request.getfixturevalue("http").reset_counts()


@pytest.fixture(scope="session")
def aws_environment() -> Iterator[None]:
    """Fake credentials, no profile files, no proxies: nothing can reach real AWS or the internet."""
    with pytest.MonkeyPatch.context() as mp:
        for variable in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ENDPOINT_URL",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            *SETTING_NAMES,
        ):
            mp.delenv(variable, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_REGION", REGION)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("POWERTOOLS_SERVICE_NAME", "mtls-revocation-authorizer")
        mp.setenv("POWERTOOLS_METRICS_NAMESPACE", "MtlsRevocationAuthorizerTests")
        mp.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        yield


@pytest.fixture(scope="session")
def s3(aws_environment: None) -> Iterator[MotoS3]:
    server = MotoS3()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        yield server
    server.close()


@pytest.fixture(scope="session")
def world(pki: PKI, http: FixtureHTTPServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(pki, http, tmp_path_factory.mktemp("ocsp"))
    yield built
    built.close()


_UNSET = object()
_keys = itertools.count(1)

Configure = Callable[..., Authorizer]


@pytest.fixture
def configure(s3: MotoS3, world: World, monkeypatch: pytest.MonkeyPatch) -> Configure:
    """Upload a truststore, set the environment, ``app.reset()``; returns an ``Authorizer``.

    ``truststore``: credentials (default ``world.trusted``) or raw bytes; ``key``: object key
    (default: a fresh one;
    None leaves TRUSTSTORE_KEY unset, i.e. the default ``truststore.pem``); ``upload=False`` skips the upload.
    Other keyword arguments are settings (str values; None unsets).
    """
    from authorizer import app

    def _configure(
        truststore: Sequence[Credential] | bytes | None = None,
        *,
        key: Any = _UNSET,
        upload: bool = True,
        **settings: str | None,
    ) -> Authorizer:
        object_key = f"truststores/{next(_keys)}/truststore.pem" if key is _UNSET else key
        body = truststore if isinstance(truststore, bytes) else pem_bundle(truststore or world.trusted)
        if upload:
            s3.put(object_key or "truststore.pem", body)
        for variable in SETTING_NAMES:
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv("TRUSTSTORE_BUCKET", s3.bucket)
        if object_key is not None:
            monkeypatch.setenv("TRUSTSTORE_KEY", str(object_key))
        values: dict[str, str | None] = {"FETCH_BLOCKED_NETWORKS": ""}
        values.update(settings)
        for variable, value in values.items():
            assert variable in SETTING_NAMES, variable
            if value is None:
                monkeypatch.delenv(variable, raising=False)
            else:
                monkeypatch.setenv(variable, value)
        app.reset()
        simple = values.get("HTTP_API_SIMPLE_RESPONSES", "true") != "false"
        return Authorizer(app=app, simple=simple)

    return _configure


@pytest.fixture
def authorizer(configure: Configure) -> Authorizer:
    """The authorizer with the standard truststore and default settings (loopback fetches allowed)."""
    return configure()


@pytest.fixture(params=["rest", "v2"])
def fmt(request: pytest.FixtureRequest) -> Format:
    value: Format = request.param
    return value


@pytest.fixture(params=["rest", "v1", "v2"])
def any_fmt(request: pytest.FixtureRequest) -> Format:
    value: Format = request.param
    return value
