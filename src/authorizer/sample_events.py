"""Realistic API Gateway authorizer events for a client certificate (CLI, demo and events/)."""

from __future__ import annotations

from typing import Any

from .certs import load_client_cert

REGION, ACCOUNT, API_ID, STAGE = "eu-west-1", "123456789012", "a1b2c3d4e5", "prod"
METHOD_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/GET/accounts"


def _client_cert(pem: str | None) -> dict[str, Any] | None:
    if pem is None:
        return None
    cert = load_client_cert(pem).crypto
    serial = format(cert.serial_number, "x")
    serial = serial.zfill(len(serial) + len(serial) % 2)
    return {
        "clientCertPem": pem,
        "subjectDN": cert.subject.rfc4514_string(),
        "issuerDN": cert.issuer.rfc4514_string(),
        "serialNumber": ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)),
        "validity": {
            "notBefore": cert.not_valid_before_utc.strftime("%b %d %H:%M:%S %Y GMT"),
            "notAfter": cert.not_valid_after_utc.strftime("%b %d %H:%M:%S %Y GMT"),
        },
    }


def client_cert_block(pem: str) -> dict[str, Any]:
    """`clientCert` as API Gateway puts it in the event for the certificate `pem` (the local gateway's too):
    the PEM, subject and issuer DNs, the serial as colon-separated lowercase hex, validity dates."""
    block = _client_cert(pem)
    assert block is not None
    return block


def rest_event(pem: str | None) -> dict[str, Any]:
    """A REST API REQUEST authorizer event."""
    identity: dict[str, Any] = {"sourceIp": "198.51.100.7", "userAgent": "curl/8.5.0"}
    client_cert = _client_cert(pem)
    if client_cert is not None:
        identity["clientCert"] = client_cert
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "resource": "/accounts",
        "path": "/accounts",
        "httpMethod": "GET",
        "headers": {"Host": "api.example.com", "User-Agent": "curl/8.5.0"},
        "queryStringParameters": {},
        "pathParameters": {},
        "stageVariables": {},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "stage": STAGE,
            "httpMethod": "GET",
            "path": f"/{STAGE}/accounts",
            "resourcePath": "/accounts",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": identity,
        },
    }


def http_event(pem: str | None) -> dict[str, Any]:
    """An HTTP API payload 2.0 authorizer event."""
    context: dict[str, Any] = {
        "accountId": ACCOUNT,
        "apiId": API_ID,
        "domainName": "api.example.com",
        "http": {"method": "GET", "path": "/accounts", "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7"},
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "routeKey": "GET /accounts",
        "stage": STAGE,
    }
    client_cert = _client_cert(pem)
    if client_cert is not None:
        context["authentication"] = {"clientCert": client_cert}
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": METHOD_ARN,
        "identitySource": [],
        "routeKey": "GET /accounts",
        "rawPath": "/accounts",
        "rawQueryString": "",
        "headers": {"host": "api.example.com", "user-agent": "curl/8.5.0"},
        "requestContext": context,
    }
