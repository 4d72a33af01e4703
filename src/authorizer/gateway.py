"""A local mutual-TLS gateway: what an API Gateway custom domain with mutual TLS does, on this machine.

    mtls-authorizer gateway --truststore truststore.pem [--port 8443] [--host 127.0.0.1] [--format rest|http]
                            [--cert server.pem --key server.key] [--crl FILE ...] [--denylist FILE|s3://b/k]

For every connection, as API Gateway does:

1. TLS 1.2 or newer with a **required** client certificate, verified by the ssl module (OpenSSL) against the
   truststore file: a chain to a self-signed root in it, every certificate within its dates. A client
   certificate that does not verify, or none at all, fails the TLS handshake; the authorizer never hears
   of it.
2. The REQUEST authorizer event built from the handshake and the HTTP request: a REST API event, or with
   `--format http` an HTTP API payload 2.0 event, the client certificate block (clientCertPem of the peer
   certificate, subjectDN, issuerDN, serialNumber, validity) included. The API is a catch-all
   (`ANY /{proxy+}` and `ANY /`); its ARN uses fake ids (ApiIds).
3. `authorizer.app.lambda_handler(event, context)`: the function itself, with the settings it would have in
   Lambda (the same environment variables), its truststore read from the local file instead of S3. One
   invocation at a time, as in one Lambda container.
4. The answer: 403 `{"message":"Forbidden"}` when the policy does not allow the request's ARN (IAM policy
   responses, evaluated with IAM's wildcards, Deny first) or `isAuthorized` is false (simple responses); on
   an Allow, a sample backend's 200 echoing `requestContext.authorizer` as the integration would see it.
   An authorizer that raises `Exception("Unauthorized")` gives 401, any other failure or malformed result
   500.

Logged (one line a request or failed handshake): the client address, method, path without its query,
status, decision reason and time. Never headers, events or certificates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import re
import secrets
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import app, sample_events
from .app import Runtime
from .certs import InvalidCertificate
from .observability import logger
from .settings import Settings
from .truststore import Truststore

GatewayFormat = Literal["rest", "http"]
Handler = Callable[[dict[str, Any], Any], Any]
Log = Callable[[str], None]

DEFAULT_PORT = 8443
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_CONNECTIONS = 32  # at once; more are closed on arrival
CONNECTION_TIMEOUT_SECONDS = 15.0  # handshake, each read of a request, an idle keep-alive connection
MAX_BODY_BYTES = 1024 * 1024  # read and dropped: REQUEST authorizers never see the body
MAX_AUTHORIZER_RESULT_BYTES = 8192  # API Gateway's limit on the whole authorizer result
FUNCTION_TIMEOUT_SECONDS = 10.0  # template.yaml's Timeout: what get_remaining_time_in_millis counts down
FORBIDDEN = {"message": "Forbidden"}
UNAUTHORIZED = {"message": "Unauthorized"}


@dataclass(frozen=True)
class ApiIds:
    """The fake API the gateway stands for: the ids in methodArn / routeArn and the request context."""

    region: str = sample_events.REGION
    account_id: str = sample_events.ACCOUNT
    api_id: str = sample_events.API_ID
    stage: str = sample_events.STAGE

    def arn(self, method: str, path: str) -> str:
        """arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{VERB}/{path}, the path without its /."""
        prefix = f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/{self.stage}"
        return f"{prefix}/{method.upper()}/{path.removeprefix('/')}"


@dataclass(frozen=True)
class HttpRequest:
    """What the gateway knows of one request once the handshake is done."""

    method: str
    raw_path: str  # as sent, percent-encoding kept, without the query
    raw_query: str
    headers: tuple[tuple[str, str], ...]  # in the order sent, repeats kept
    source_ip: str
    peer_der: bytes  # the client certificate the handshake verified
    protocol: str = "HTTP/1.1"
    received: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def path(self) -> str:
        return unquote(self.raw_path) or "/"

    @property
    def peer_pem(self) -> str:
        return ssl.DER_cert_to_PEM_cert(self.peer_der)

    def header(self, name: str) -> str | None:
        found = [value for key, value in self.headers if key.lower() == name.lower()]
        return found[-1] if found else None


# ============================================================================================ the event
def client_cert(der: bytes) -> dict[str, Any]:
    """The event's `clientCert` for the peer certificate: its PEM as `ssl.DER_cert_to_PEM_cert` gives it,
    and the informational fields as API Gateway writes them (sample_events.client_cert_block)."""
    pem = ssl.DER_cert_to_PEM_cert(der)
    try:
        return sample_events.client_cert_block(pem)
    except InvalidCertificate:  # OpenSSL took it, our parser does not: the authorizer will say so
        return {"clientCertPem": pem, "subjectDN": "", "issuerDN": "", "serialNumber": "", "validity": {}}


def _forwarded_headers(request: HttpRequest) -> list[tuple[str, str]]:
    """The request's headers as API Gateway passes them on: X-Forwarded-* and a trace id added."""
    headers = [
        (k, v) for k, v in request.headers if k.lower() not in ("x-forwarded-port", "x-forwarded-proto")
    ]
    forwarded = request.header("X-Forwarded-For")
    headers = [(k, v) for k, v in headers if k.lower() != "x-forwarded-for"]
    epoch = int(request.received.timestamp())
    trace = request.header("X-Amzn-Trace-Id") or f"Root=1-{epoch:08x}-{secrets.token_hex(12)}"
    headers = [(k, v) for k, v in headers if k.lower() != "x-amzn-trace-id"]
    headers += [
        ("X-Amzn-Trace-Id", trace),
        ("X-Forwarded-For", f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
    ]
    return headers


def _route(request: HttpRequest) -> tuple[str, dict[str, str] | None]:
    """The catch-all API's resource for the path: `/` or `/{proxy+}`, and its path parameters."""
    if request.path == "/":
        return "/", None
    return "/{proxy+}", {"proxy": request.path.removeprefix("/")}


def _domain(request: HttpRequest) -> str:
    host = request.header("Host") or "localhost"
    if host.startswith("["):  # [::1]:8443
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _query(raw_query: str) -> list[tuple[str, str]]:
    return parse_qsl(raw_query, keep_blank_values=True)


def build_event(fmt: GatewayFormat, request: HttpRequest, ids: ApiIds = ApiIds()) -> dict[str, Any]:
    """The REQUEST authorizer event API Gateway would send for ``request`` (see tests/conftest.py's
    rest_event / v2_event for the shapes, and the field notes)."""
    return rest_event(request, ids) if fmt == "rest" else http_event(request, ids)


def rest_event(request: HttpRequest, ids: ApiIds = ApiIds()) -> dict[str, Any]:
    """A REST API REQUEST authorizer event: single-value maps keep the last value of a repeated name."""
    headers = _forwarded_headers(request)
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    query = _query(request.raw_query)
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        multi_query.setdefault(name, []).append(value)
    resource, path_parameters = _route(request)
    domain = _domain(request)
    identity: dict[str, Any] = {
        "accessKey": None,
        "accountId": None,
        "apiKey": None,
        "apiKeyId": None,
        "caller": None,
        "clientCert": client_cert(request.peer_der),
        "cognitoAuthenticationProvider": None,
        "cognitoAuthenticationType": None,
        "cognitoIdentityId": None,
        "cognitoIdentityPoolId": None,
        "principalOrgId": None,
        "sourceIp": request.source_ip,
        "user": None,
        "userAgent": request.header("User-Agent"),
        "userArn": None,
    }
    return {
        "type": "REQUEST",
        "methodArn": ids.arn(request.method, request.path),
        "resource": resource,
        "path": request.path,
        "httpMethod": request.method,
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": ids.account_id,
            "apiId": ids.api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "extendedRequestId": secrets.token_urlsafe(12),
            "httpMethod": request.method,
            "identity": identity,
            "path": request.path,
            "protocol": request.protocol,
            "requestId": request.request_id,
            "requestTime": request.received.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(request.received.timestamp() * 1000),
            "resourceId": "gw0001",
            "resourcePath": resource,
            "stage": ids.stage,
        },
    }


def http_event(request: HttpRequest, ids: ApiIds = ApiIds()) -> dict[str, Any]:
    """An HTTP API payload 2.0 event: header names lowercased, repeats joined with commas, cookies apart."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in _forwarded_headers(request):
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for name, value in _query(request.raw_query):
        query[name] = f"{query[name]},{value}" if name in query else value
    resource, path_parameters = _route(request)
    route_key = f"ANY {resource}"
    domain = _domain(request)
    pem = request.peer_pem
    event: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": ids.arn(request.method, request.path),
        # The template's identity source: $context.identity.clientCert.clientCertPem.
        "identitySource": [pem],
        "routeKey": route_key,
        "rawPath": request.raw_path or "/",
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ids.account_id,
            "apiId": ids.api_id,
            "authentication": {"clientCert": client_cert(request.peer_der)},
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": request.header("User-Agent") or "",
            },
            "requestId": request.request_id,
            "routeKey": route_key,
            "stage": ids.stage,
            "time": request.received.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(request.received.timestamp() * 1000),
        },
        "stageVariables": {},
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    return event


# ============================================================================================ the answer
def iam_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcards: `*` any run of characters (`/` and `:` included), `?` any one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_allows(document: Any, arn: str) -> bool:
    """Whether an authorizer's policy document allows `execute-api:Invoke` on ``arn``: an explicit Deny
    wins, then any Allow; nothing that matches is a Deny. Raises ValueError for a malformed document."""
    if not isinstance(document, dict):
        raise ValueError("policyDocument is not an object")
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise ValueError("policyDocument has no Statement")
    allowed = False
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
            raise ValueError("a statement without Effect Allow or Deny")
        actions, resources = _as_list(statement.get("Action")), _as_list(statement.get("Resource"))
        if not all(isinstance(a, str) for a in actions) or not all(isinstance(r, str) for r in resources):
            raise ValueError("a statement whose Action or Resource is not a string or a list of strings")
        if not any(iam_match(a, "execute-api:Invoke", ignore_case=True) for a in actions):
            continue
        if not any(iam_match(r, arn) for r in resources):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


@dataclass(frozen=True)
class Verdict:
    """What API Gateway makes of the authorizer's result."""

    status: int  # 200 (allowed), 401, 403 or 500
    context: dict[str, Any] = field(default_factory=dict)
    principal: str | None = None
    problem: str = ""  # why a 500

    @property
    def allowed(self) -> bool:
        return self.status == 200


def judge(result: Any, fmt: GatewayFormat, arn: str, simple_responses: bool) -> Verdict:
    """API Gateway's reading of an authorizer result: a simple response (HTTP API with simple responses on)
    or an IAM policy (REST; HTTP API with them off). Anything else is a 500, as there."""
    try:
        size = len(json.dumps(result).encode())
    except (TypeError, ValueError):
        return Verdict(500, problem="the result is not JSON")
    if size > MAX_AUTHORIZER_RESULT_BYTES:
        return Verdict(500, problem=f"the result is {size} bytes, over {MAX_AUTHORIZER_RESULT_BYTES}")
    if not isinstance(result, dict):
        return Verdict(500, problem="the result is not an object")
    context = result.get("context") or {}
    if not isinstance(context, dict):
        return Verdict(500, problem="context is not an object")
    if fmt == "http" and simple_responses:
        authorized = result.get("isAuthorized")
        if type(authorized) is not bool:
            return Verdict(500, problem="isAuthorized is not a JSON boolean")
        return Verdict(200 if authorized else 403, context)
    if fmt == "rest" and not all(isinstance(v, str | int | float | bool) for v in context.values()):
        return Verdict(500, problem="a REST context value is not a string, number or boolean")
    principal = result.get("principalId")
    if not isinstance(principal, str) or not principal:
        return Verdict(500, problem="no principalId")
    try:
        allowed = policy_allows(result.get("policyDocument"), arn)
    except ValueError as exc:
        return Verdict(500, problem=str(exc))
    return Verdict(200 if allowed else 403, context, principal)


def _stringified(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def authorizer_view(fmt: GatewayFormat, verdict: Verdict, latency_ms: int) -> dict[str, Any]:
    """`requestContext.authorizer` as the integration receives it: on REST the context's values as
    strings, with principalId and integrationLatency; on HTTP APIs the context under `lambda`."""
    if fmt == "http":
        return {"lambda": dict(verdict.context)}
    view = {key: _stringified(value) for key, value in verdict.context.items()}
    return {"principalId": verdict.principal, **view, "integrationLatency": latency_ms}


def _error_body(fmt: GatewayFormat, status: int) -> dict[str, Any]:
    if status == 401:
        return UNAUTHORIZED
    if status == 403:
        return FORBIDDEN
    return {"message": None} if fmt == "rest" else {"message": "Internal Server Error"}


# ============================================================================================ TLS
@dataclass(frozen=True)
class ServerCertificate:
    cert: Path
    key: Path
    ca: Path | None = None  # the throwaway CA that issued it (for curl --cacert), when generated


def throwaway_server_certificate(folder: Path, hosts: Sequence[str] = LOOPBACK_NAMES) -> ServerCertificate:
    """A server certificate for ``hosts`` from a throwaway CA, both ECDSA P-256, valid for 30 days.
    Writes server-ca.pem, server.pem and server.key (0600) to ``folder``; the CA's key is never written."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mtls-authorizer gateway throwaway CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = ServerCertificate(folder / "server.pem", folder / "server.key", folder / "server-ca.pem")
    assert paths.ca is not None
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.touch(mode=0o600)
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def server_context(truststore: Path, server: ServerCertificate) -> ssl.SSLContext:
    """TLS 1.2+, a client certificate required and verified against ``truststore`` (a chain up to a
    self-signed root in it, as API Gateway requires: no partial chains), dates included."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags &= ~ssl.VERIFY_X509_PARTIAL_CHAIN  # Python 3.13 sets it in some defaults
    context.load_verify_locations(cafile=str(truststore))
    context.load_cert_chain(str(server.cert), str(server.key))
    return context


def _handshake_problem(exc: BaseException) -> str:
    text = (
        getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    )
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(text))


# ============================================================================================ the server
class LambdaContext:
    """What Lambda passes as `context`: a request id and the time left of a 10 s function timeout."""

    function_name = "mtls-revocation-authorizer"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024

    def __init__(self, ids: ApiIds, timeout_seconds: float = FUNCTION_TIMEOUT_SECONDS) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = (
            f"arn:aws:lambda:{ids.region}:{ids.account_id}:function:{self.function_name}"
        )
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local-gateway"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class MtlsGateway:
    """The mutual-TLS endpoint in front of ``handler`` (default: the app's lambda_handler, looked up at
    each call so that app.reset() takes effect). ``start()`` / ``stop()``; stop is safe to call twice.

    ``server``: the server certificate; None generates a throwaway one in ``cert_dir`` (None: a temporary
    folder, removed on stop). ``log``: one line a request or failed handshake (None: silent).
    """

    def __init__(
        self,
        truststore: Path,
        *,
        fmt: GatewayFormat = "rest",
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        server: ServerCertificate | None = None,
        cert_dir: Path | None = None,
        ids: ApiIds = ApiIds(),
        handler: Handler | None = None,
        simple_responses: bool | None = None,
        log: Log | None = _stderr,
        max_connections: int = MAX_CONNECTIONS,
        timeout_seconds: float = CONNECTION_TIMEOUT_SECONDS,
    ) -> None:
        self.truststore = truststore
        self.fmt: GatewayFormat = fmt
        self.host = host
        self.ids = ids
        self._handler = handler
        # API Gateway's EnableSimpleResponses; the template ties it to the function's setting.
        self.simple_responses = (
            Settings.from_env().http_api_simple_responses if simple_responses is None else simple_responses
        )
        self._log = log
        self._temp: Path | None = None
        self._invoke_lock = threading.Lock()  # one invocation at a time, as in one Lambda container
        try:
            if server is None:
                folder = cert_dir
                if folder is None:
                    folder = self._temp = Path(tempfile.mkdtemp(prefix="mtls-gateway-"))
                    # Removed by stop(); this covers a gateway dropped without it (at exit at the latest).
                    weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
                hosts = ["localhost", *LOOPBACK_NAMES] + ([] if host in LOOPBACK_NAMES else [host])
                server = throwaway_server_certificate(folder, hosts)
            self.server_certificate = server
            context = server_context(truststore, server)
            self._server = _TLSServer(
                (host, port), _handler_class(self), context, max_connections, timeout_seconds, self._note
            )
        except BaseException:
            self._remove_temp()
            raise
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- control
    @property
    def url(self) -> str:
        host = "localhost" if self.host in LOOPBACK_NAMES else self.host
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="mtls-gateway", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, cut open connections (idle keep-alives included), wait for their threads."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.close_connections()
        self._server.server_close()  # joins the request threads
        self._remove_temp()

    def __enter__(self) -> MtlsGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _remove_temp(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def _note(self, line: str) -> None:
        if self._log is not None:
            self._log(f"gateway: {line}")

    # ---------------------------------------------------------------------------------------- requests
    def invoke(self, event: dict[str, Any]) -> Any:
        handler = self._handler or app.lambda_handler
        with self._invoke_lock:
            return handler(event, LambdaContext(self.ids))

    def respond(self, request: HttpRequest) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Status, headers and JSON body for a request whose handshake verified."""
        event = build_event(self.fmt, request, self.ids)
        arn = event["methodArn"] if self.fmt == "rest" else event["routeArn"]
        began = time.monotonic()
        try:
            result = self.invoke(event)
        except Exception as exc:  # what Lambda would report as a function error
            unauthorized = type(exc) is Exception and exc.args == ("Unauthorized",)
            verdict = Verdict(
                401 if unauthorized else 500, problem=f"the authorizer raised {type(exc).__name__}"
            )
        else:
            verdict = judge(result, self.fmt, arn, self.simple_responses)
        latency = round((time.monotonic() - began) * 1000)
        headers = {"Content-Type": "application/json"}
        headers["x-amzn-RequestId" if self.fmt == "rest" else "apigw-requestid"] = request.request_id
        if verdict.allowed:
            body: dict[str, Any] = {
                "message": "hello",
                "method": request.method,
                "path": request.path,
                "authorizer": authorizer_view(self.fmt, verdict, latency),
            }
        else:
            body = _error_body(self.fmt, verdict.status)
            if self.fmt == "rest" and verdict.status == 403:
                headers["x-amzn-ErrorType"] = "AccessDeniedException"
            elif self.fmt == "rest" and verdict.status == 500:
                headers["x-amzn-ErrorType"] = "AuthorizerConfigurationException"
        reason = str(verdict.context.get("reason", "-"))[:64]
        note = f"; {verdict.problem}" if verdict.problem else ""
        self._note(
            f"{request.source_ip} {request.method} {request.path[:200]} -> {verdict.status} "
            f"(reason {reason}, authorizer {latency} ms{note})"
        )
        return verdict.status, headers, body


def _handler_class(gateway: MtlsGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "mtls-authorizer-gateway"
        sys_version = ""

        def version_string(self) -> str:
            return self.server_version

        def _serve(self) -> None:
            connection = self.connection
            assert isinstance(connection, ssl.SSLSocket)
            der = connection.getpeercert(binary_form=True)
            if der is None:  # cannot happen with CERT_REQUIRED
                self.close_connection = True
                return
            if not self._drain_body():
                return
            raw_path, _, raw_query = self.path.partition("?")
            if not raw_path.startswith("/"):  # an absolute-form target
                raw_path = "/" + raw_path.split("://", 1)[-1].partition("/")[2]
            request = HttpRequest(
                method=self.command,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=tuple((k, v) for k, v in self.headers.items()),
                source_ip=str(self.client_address[0]),
                peer_der=der,
                protocol=self.request_version,
            )
            status, headers, body = gateway.respond(request)
            self._send(status, headers, body)

        def _drain_body(self) -> bool:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                self._send(411, {"Content-Type": "application/json"}, {"message": "Length Required"})
                self.close_connection = True
                return False
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self._send(413, {"Content-Type": "application/json"}, {"message": "Request Too Long"})
                self.close_connection = True
                return False
            while length > 0:
                chunk = self.rfile.read(min(length, 65536))
                if not chunk:
                    self.close_connection = True
                    return False
                length -= len(chunk)
            return True

        def _send(self, status: int, headers: Mapping[str, str], body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            # http.server's own lines (malformed requests, timeouts): short, no headers in them.
            gateway._note(f"{self.client_address[0]} {format % args}"[:300])

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass  # Gateway.respond logs each request

    return Handler


class _TLSServer(ThreadingHTTPServer):
    """Accepts plain TCP and does each TLS handshake in the connection's own thread, so one slow client
    cannot hold up the others; at most ``max_connections`` at once, each read bounded by ``timeout``."""

    daemon_threads = False
    block_on_close = True  # server_close() joins the connection threads

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        max_connections: int,
        timeout: float,
        note: Log,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.context = context
        self.connection_timeout = timeout
        self.note = note
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._closing = False
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._closing or not self._slots.acquire(blocking=False):
            self.note(f"{client_address[0]} refused: {self.max_connections} connections already open")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(self.connection_timeout)
            self._track(request, True)
            if self._closing:  # accepted just before stop(): close_connections() may have missed it
                self._track(request, False)
                self.shutdown_request(request)
                return
            try:
                tls = self.context.wrap_socket(request, server_side=True)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                self._track(request, False)
                self.note(f"{client_address[0]} TLS handshake failed: {_handshake_problem(exc)}")
                self.shutdown_request(request)
                return
            self._track(request, False)
            self._track(tls, True)
            try:
                self.finish_request(tls, client_address)
            except Exception:
                self.handle_error(tls, client_address)
            finally:
                self._track(tls, False)
                self.shutdown_request(tls)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):  # a dropped connection is not worth a traceback
            logger.exception("gateway: error while serving a request")

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._open_lock:
            if add:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def close_connections(self) -> None:
        """Wake every connection thread (a read in progress returns EOF) so that they end now."""
        self._closing = True
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # the plain socket's shutdown: no TLS state touched
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


# ============================================================================================ the CLI
def local_runtime(
    truststore_path: Path, crls: Sequence[Path] = (), denylist: str | None = None
) -> tuple[Runtime, Truststore]:
    """The runtime `check` would use (cli.local_runtime), its settings' problems logged as the Lambda does."""
    from .cli import local_runtime as cli_local_runtime  # cli imports this module lazily: no cycle

    runtime, truststore = cli_local_runtime(truststore_path, crls, denylist)
    for problem in runtime.settings.problems:
        logger.warning("setting ignored", extra={"problem": problem})
    return runtime, truststore


def install_runtime(runtime: Runtime) -> None:
    """Make ``runtime`` the one lambda_handler uses, as if this process were its Lambda container."""
    app.use_runtime(runtime)


@dataclass(frozen=True)
class GatewayOptions:
    truststore: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    fmt: GatewayFormat = "rest"
    cert: Path | None = None
    key: Path | None = None
    crls: tuple[Path, ...] = ()
    denylist: str | None = None
    ids: ApiIds = ApiIds()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the gateway the way Ctrl-C does


def serve(options: GatewayOptions, out: Log = print, until: threading.Event | None = None) -> int:
    """Run the gateway until Ctrl-C, SIGTERM or ``until`` is set; 0 once it has stopped cleanly."""
    if (options.cert is None) != (options.key is None):
        raise ValueError("--cert and --key go together (the server certificate and its key)")
    runtime, truststore = local_runtime(options.truststore, options.crls, options.denylist)
    server = ServerCertificate(options.cert, options.key) if options.cert and options.key else None
    gateway = MtlsGateway(
        options.truststore,
        fmt=options.fmt,
        host=options.host,
        port=options.port,
        server=server,
        ids=options.ids,
        simple_responses=runtime.settings.http_api_simple_responses,
    )
    install_runtime(runtime)
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        gateway.start()
        for line in _banner(gateway, options, truststore):
            out(line)
        stop = until or threading.Event()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    out("gateway stopped")
    return 0


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _banner(gateway: MtlsGateway, options: GatewayOptions, truststore: Truststore) -> Iterator[str]:
    kind = "REST API" if gateway.fmt == "rest" else "HTTP API, payload 2.0"
    if gateway.fmt == "http":
        kind += ", simple responses" if gateway.simple_responses else ", IAM policy responses"
    yield f"mutual-TLS gateway ({kind}, stage {gateway.ids.stage}) on {gateway.url}/"
    if options.host not in LOOPBACK_NAMES:
        yield f"  listening on {options.host}: other machines may reach it (the default is 127.0.0.1)"
    yield (
        f"  client certificates: required (TLS 1.2+), verified against {options.truststore} "
        f"({len(truststore.anchors)} root(s), {len(truststore.intermediates)} intermediate(s))"
    )
    extras = [f"--crl {p}" for p in options.crls] + (
        [f"--denylist {options.denylist}"] if options.denylist else []
    )
    yield "  authorizer: authorizer.app.lambda_handler, settings from the environment,"
    yield "    its truststore read from that file"
    if extras:
        yield f"    and {' '.join(extras)}"
    server = gateway.server_certificate
    cacert = server.ca or server.cert
    if server.ca is not None:
        yield f"  server certificate: throwaway, for localhost / 127.0.0.1 / ::1, in {server.cert.parent}"
        yield f"    (removed on exit); give curl its CA: --cacert {server.ca}"
    else:
        yield f"  server certificate: {server.cert}"
    yield f"  try: curl --cert client.pem --key client.key --cacert {cacert} {gateway.url}/hello"
    yield "  Ctrl-C stops."
