"""One Lambda authorizer that checks both the client certificate (revocation included) and a JWT.

API Gateway runs one authorizer per method, so a team that also checks a bearer token has to do both in
one function. This one allows a request only when both pass:

1. the client certificate, with `authorizer.check_request` (the mTLS authorizer's whole decision:
   path to the truststore, revocation over OCSP/CRL/denylist, the same settings and caches);
2. an HS256 JWT from `Authorization: Bearer ...`, verified with the standard library only (`hmac`):
   signature, `exp`/`nbf` (with leeway), `iss` and `aud` when configured, and, when the token carries
   one, its RFC 8705 certificate binding `cnf.x5t#S256`, which must be the client certificate's SHA-256.

Deploy it as the function's handler (`Handler: jwt_authorizer.lambda_handler`, with this file next to the
`authorizer` package, or the `make layer` layer attached) and set, besides the authorizer's variables:
JWT_SECRET (the HMAC key; in production read it from Secrets Manager or SSM at cold start), and optionally
JWT_ISSUER, JWT_AUDIENCE, JWT_REQUIRE_BINDING=true (refuse tokens without a certificate binding).
Only HS256 is accepted: a token naming any other `alg` (`none`, `RS256`, ...) is refused, so an attacker
cannot choose the algorithm. For RS256/ES256 tokens from an identity provider, replace `verify_hs256` with
a JWKS-based check (e.g. PyJWT) and keep the composition as it is.

Try it locally: python examples/jwt_authorizer.py --cert client.pem --truststore truststore.pem
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from authorizer import Checker, CheckResult, check_request

Check = Callable[..., CheckResult]  # check_request, or a Checker's check method
Handler = Callable[[Any, Any], dict[str, Any]]

LEEWAY_SECONDS = 60.0
MAX_TOKEN_CHARS = 8192
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class JwtError(Exception):
    """Why a token was refused: a short code, safe to return in the authorizer context."""


# --- the JWT check (HS256, standard library only) ---------------------------------------------------


def _b64url_decode(part: str) -> bytes:
    if not _B64URL.match(part):
        raise JwtError("malformed")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise JwtError("malformed") from None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_object(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url_decode(part))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise JwtError("malformed") from None
    if not isinstance(value, dict):
        raise JwtError("malformed")
    return value


def sign_hs256(claims: Mapping[str, Any], secret: bytes) -> str:
    """A compact HS256 JWS of `claims` (for tests and trying the example)."""
    header = _b64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url_encode(signature)}"


def verify_hs256(
    token: str,
    secret: bytes,
    *,
    now: float,
    issuer: str | None = None,
    audience: str | None = None,
    leeway: float = LEEWAY_SECONDS,
) -> dict[str, Any]:
    """The claims of a valid HS256 token; raises JwtError otherwise. `exp` is required."""
    if not secret:
        raise JwtError("not_configured")  # an empty key would let anyone sign
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise JwtError("malformed")
    header_part, payload_part, signature_part = token.split(".")
    header = _json_object(header_part)
    if header.get("alg") != "HS256":
        raise JwtError("algorithm")
    if "crit" in header:  # extensions we do not understand must not be ignored (RFC 7515 §4.1.11)
        raise JwtError("unsupported")
    expected = hmac.new(secret, f"{header_part}.{payload_part}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _b64url_decode(signature_part)):
        raise JwtError("signature")
    claims = _json_object(payload_part)
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise JwtError("no_expiry")
    if now > exp + leeway:
        raise JwtError("expired")
    if nbf is not None and (not isinstance(nbf, int | float) or now + leeway < nbf):
        raise JwtError("not_yet_valid")
    if issuer is not None and claims.get("iss") != issuer:
        raise JwtError("issuer")
    if audience is not None:
        aud = claims.get("aud")
        if not (aud == audience or (isinstance(aud, list) and audience in aud)):
            raise JwtError("audience")
    return claims


def bearer_token(event: Mapping[str, Any]) -> str:
    """The token of `Authorization: Bearer <token>` (header names are case-insensitive)."""
    headers = event.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise JwtError("missing")
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    raise JwtError("missing")


def certificate_thumbprint(fingerprint_hex: str) -> str:
    """RFC 8705 `x5t#S256`: base64url of the SHA-256 of the certificate's DER (we hold it as hex)."""
    return _b64url_encode(bytes.fromhex(fingerprint_hex))


# --- the composition ------------------------------------------------------------------------------


def build_handler(
    check: Check,
    secret: bytes,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    require_binding: bool = False,
    clock: Callable[[], float] = time.time,
) -> Handler:
    """A Lambda handler that allows a request only when `check` (the certificate) and the JWT pass."""

    def handler(event: Any, context: Any) -> dict[str, Any]:
        certificate = check(event, lambda_context=context)  # never raises: a failure is a Deny
        if not certificate.allow:
            return certificate.response(context={"jwt": "not_checked"})
        try:
            claims = verify_hs256(bearer_token(event), secret, now=clock(), issuer=issuer, audience=audience)
            # A token bound to a key (RFC 7800 `cnf`) is bound to this certificate or refused; a `cnf`
            # with only other methods (DPoP's `jkt`, say) cannot be checked here, so it is refused too.
            cnf = claims.get("cnf")
            if cnf is not None or require_binding:
                binding = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
                client = certificate.client
                if client is None or not isinstance(binding, str):
                    raise JwtError("binding")
                if not hmac.compare_digest(binding, certificate_thumbprint(client.fingerprint)):
                    raise JwtError("binding")  # a token issued to another client's certificate
        except JwtError as exc:
            return certificate.response(allow=False, context={"jwt": str(exc)})
        except Exception:  # fail closed, as the certificate check does
            return certificate.response(allow=False, context={"jwt": "error"})
        subject = claims.get("sub")
        return certificate.response(
            context={"jwt": "valid", "jwtSubject": str(subject) if subject is not None else ""},
            principal=str(subject) if isinstance(subject, str) and subject else None,
        )

    return handler


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The deployed entry point: the Lambda's certificate check (settings and truststore from its
    environment, caches kept across invocations) and the JWT settings from JWT_* variables."""
    handler = build_handler(
        check_request,
        os.environ.get("JWT_SECRET", "").encode(),
        issuer=os.environ.get("JWT_ISSUER") or None,
        audience=os.environ.get("JWT_AUDIENCE") or None,
        require_binding=os.environ.get("JWT_REQUIRE_BINDING", "").lower() == "true",
    )
    return handler(event, context)


def main(argv: list[str] | None = None) -> int:
    """Sign a token for a certificate, build a REST event, print the combined answer."""
    from authorizer.sample_events import rest_event

    parser = argparse.ArgumentParser(description="Try the certificate + JWT authorizer locally.")
    parser.add_argument("--cert", required=True, help="client certificate (PEM)")
    parser.add_argument("--truststore", required=True, help="truststore.pem")
    parser.add_argument("--secret", default="example-secret", help="HMAC key (default: example-secret)")
    parser.add_argument("--bind", action="store_true", help="bind the token to the certificate (cnf)")
    args = parser.parse_args(argv)
    with open(args.cert) as handle:
        pem = handle.read()
    checker = Checker(truststore=args.truststore)
    claims: dict[str, Any] = {"sub": "example-user", "exp": int(time.time()) + 300}
    if args.bind:
        probe = checker.check(pem)
        if probe.client is not None:
            claims["cnf"] = {"x5t#S256": certificate_thumbprint(probe.client.fingerprint)}
    event = rest_event(pem)
    event["headers"]["Authorization"] = f"Bearer {sign_hs256(claims, args.secret.encode())}"
    answer = build_handler(checker.check, args.secret.encode(), require_binding=args.bind)(event, None)
    print(json.dumps(answer, indent=2))
    effect = answer["policyDocument"]["Statement"][0]["Effect"]
    return 0 if effect == "Allow" else 1


if __name__ == "__main__":
    sys.exit(main())
