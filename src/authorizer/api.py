"""The check as a library: the Lambda's whole decision, for an event or a certificate, in your own code.

    from authorizer import Checker, check_request

    checker = Checker(truststore="truststore.pem")   # once: it holds the truststore and the caches
    result = checker.check(event)                    # an authorizer event (REST, HTTP 1.0/2.0) or a PEM
    result.allow, result.reason, result.context      # True, Reason.GOOD, {"reason": "good", ...}
    return result.response()                         # API Gateway's answer for that event

    check_request(event)                             # the same in one call, set up as the Lambda is

Both are the Lambda's code path: `app.build_runtime` makes the runtime, `app.decide` the decision,
`responses.build_response` the answer. Settings come from the Lambda's environment variables unless
given. `Checker.check` and `check_request` never raise: every failure is a Deny with a reason, as in
the Lambda. Importing this module costs a few milliseconds; the decision's dependencies
(cryptography, pyhanko-certvalidator, Powertools) load when the first Checker is built.

API Gateway allows one authorizer per method: to combine this check with another (a JWT, an API
key), call `check` in your authorizer and shape the answer with `CheckResult.response(allow=...)`,
which can deny what this check allowed but never allow what it denied. See examples/jwt_authorizer.py.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from .model import Reason, Source
from .settings import Settings

if TYPE_CHECKING:
    from .app import ClientSummary, Decision, Runtime, TruststoreProvider
    from .events import AuthorizerRequest
    from .truststore import Truststore

__all__ = ["CheckResult", "Checker", "ContextValue", "Reason", "Source", "TruststoreSource", "check_request"]

ContextValue = str | int | float | bool  # what API Gateway accepts as an authorizer context value

# What `truststore=` takes:
# - None: the Lambda's truststore, TRUSTSTORE_BUCKET / TRUSTSTORE_KEY / TRUSTSTORE_VERSION in S3, re-read
#   as the Lambda does (every TRUSTSTORE_REFRESH_SECONDS when unpinned);
# - a path (str or os.PathLike) to a truststore.pem, read once;
# - the PEM itself, as bytes (or a str that holds "-----BEGIN");
# - a parsed authorizer.truststore.Truststore, or any object with get(deadline) -> Truststore.
TruststoreSource: TypeAlias = "str | os.PathLike[str] | bytes | Truststore | TruststoreProvider | None"

_INTERNAL_ERROR = "internal error"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The decision for one request, as the Lambda makes it.

    `allow`: the decision. `reason`: why (the Lambda's `context.reason`). `context`: the context the
    Lambda returns to API Gateway (`reason`, and once the certificate parsed: `certSerial`,
    `certFingerprintSha256`, `certSubject`, `certIssuer`, `revocationSource`). `detail`: a readable
    why, for logs (never for clients). `source`: the kind of revocation source the answer rests on.
    `client`: the certificate's subject, issuer, serial and SHA-256 fingerprint, once it parsed.
    `elapsed_ms`: time spent deciding.
    """

    allow: bool
    reason: Reason
    context: dict[str, ContextValue] = field(default_factory=dict, hash=False)
    detail: str = ""
    source: Source = Source.NONE
    client: ClientSummary | None = None
    elapsed_ms: float = 0.0
    _request: AuthorizerRequest | None = field(default=None, repr=False, compare=False, hash=False)
    _simple_responses: bool = field(default=True, repr=False, compare=False)

    @property
    def principal(self) -> str:
        """The certificate's subject (the Lambda's `principalId`), or "" when none parsed."""
        return self.client.subject if self.client is not None else ""

    def response(
        self,
        *,
        allow: bool = True,
        context: Mapping[str, ContextValue] | None = None,
        principal: str | None = None,
    ) -> dict[str, Any]:
        """API Gateway's answer for the event this result was made for, shaped as the Lambda shapes it:
        an IAM policy for the whole stage (REST, HTTP API 1.0, 2.0 without simple responses) or a
        simple response (`HTTP_API_SIMPLE_RESPONSES`, payload 2.0).

        It allows only when this check allowed **and** `allow` is true: another check (a JWT) can
        deny what this one allowed, never allow what it denied. `context` adds to (and may replace
        keys of) this result's context; `principal` replaces the certificate subject as principalId.
        For a result of a bare certificate (no event) the policy denies everything. Never raises.
        """
        from .events import AuthorizerRequest, EventFormat
        from .responses import build_response

        request = self._request or AuthorizerRequest(EventFormat.REST, None, None)
        decision = self.allow and allow is True
        merged = {**self.context, **(context or {})}
        try:
            return build_response(
                request,
                decision,
                self.principal if principal is None else principal,
                merged,
                self._simple_responses,
            )
        except Exception:  # a context value of the wrong type, say: still an answer, a Deny
            return build_response(request, False, "", {"reason": self.reason.value}, self._simple_responses)


class Checker:
    """The Lambda's decision, built once and reused: it holds the truststore and the revocation caches
    (bounded by bytes, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` or 1024 MB), so build one per process.

    `settings`: an `authorizer.settings.Settings`; None reads the Lambda's environment variables (or
    `env`, a mapping used instead of `os.environ`). `truststore`: see `TruststoreSource`.
    `crls`: CRL files (DER or PEM) that apply to every certificate their CA issued, and `denylist`: a
    denylist file or `s3://bucket/key`; both as `mtls-authorizer check --crl/--denylist`.
    `clock`: the time decisions are made at (UTC; tests).

    The constructor raises for a setup that cannot work (`ValueError`: no truststore at all;
    `OSError`, `authorizer.truststore.TruststoreError`: a local truststore that cannot be read or holds
    no root), so a mistake shows at start-up. `check` never raises.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        truststore: TruststoreSource = None,
        env: Mapping[str, str] | None = None,
        crls: Sequence[str | os.PathLike[str]] = (),
        denylist: str | os.PathLike[str] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        from . import app

        if settings is None:
            settings = Settings.from_env(env)
        if crls or denylist is not None:
            sources = dataclasses.replace(
                settings.sources,
                crl_files=(*settings.sources.crl_files, *(os.fspath(p) for p in crls)),
                denylist_uri=os.fspath(denylist) if denylist is not None else settings.sources.denylist_uri,
            )
            settings = dataclasses.replace(settings, sources=sources)
        from .observability import logger

        for problem in settings.problems:
            logger.warning("setting ignored", extra={"problem": problem})
        built: list[Runtime] = []  # the S3 loader reports loads to this Checker's runtime, not the Lambda's
        provider = _provider(truststore, settings, built)
        sources = settings.sources
        # S3 only when something lives there: a purely local check needs no AWS credentials.
        uses_s3 = bool(sources.s3_buckets) or sources.denylist_uri.startswith("s3://")
        self.settings = settings
        self._runtime: Runtime = app.build_runtime(
            settings,
            provider,
            clock or app._utcnow,
            s3_client=app._s3_client if uses_s3 else None,
        )
        built.append(self._runtime)

    def check(
        self,
        request: Mapping[str, Any] | str | bytes,
        *,
        deadline: float | None = None,
        lambda_context: Any = None,
    ) -> CheckResult:
        """The decision for `request`: an API Gateway authorizer event (REST, HTTP API 1.0 or 2.0), or a
        client certificate (PEM `str`, PEM or DER `bytes`). Never raises.

        `deadline` (a `time.monotonic()` value) bounds the time spent, fetches included; by default
        `AUTHORIZER_BUDGET_SECONDS` from now, and no later than `lambda_context`'s remaining time
        less half a second when you pass your handler's Lambda context.
        """
        return _check(self._runtime, request, deadline, lambda_context)


def check_request(
    request: Mapping[str, Any] | str | bytes,
    *,
    truststore: TruststoreSource = None,
    settings: Settings | None = None,
    deadline: float | None = None,
    lambda_context: Any = None,
) -> CheckResult:
    """The Lambda's decision for one event or certificate, in one call. Never raises.

    With neither `truststore` nor `settings` it uses the Lambda's own runtime (settings from the
    environment, the truststore from S3, the caches `authorizer.app.lambda_handler` uses, kept for
    the process's life; `authorizer.app.reset()` drops them). Otherwise it builds a `Checker` for
    this call alone, caches included: to check many requests against a local truststore, build
    one `Checker` and reuse it. A setup that cannot work (a truststore file that cannot be read)
    is a Deny `untrusted` here, with the problem in `detail`.
    """
    started = time.monotonic()
    try:
        from . import app

        if truststore is None and settings is None:
            runtime = app._runtime_now()
        else:
            runtime = Checker(settings, truststore=truststore)._runtime
    except Exception as exc:
        return CheckResult(
            False,
            Reason.UNTRUSTED,
            {"reason": Reason.UNTRUSTED.value},
            detail=f"no usable truststore: {exc}",
            elapsed_ms=_ms(started),
        )
    return _check(runtime, request, deadline, lambda_context)


# --- one implementation: the Lambda's ---------------------------------------------------------------


def _check(runtime: Runtime, request: Any, deadline: float | None, lambda_context: Any) -> CheckResult:
    started = time.monotonic()
    parsed: AuthorizerRequest | None = None
    simple = True
    try:
        from . import app

        simple = runtime.settings.http_api_simple_responses
        parsed = _request(request)
        if parsed is None:
            decision = app.Decision(Reason.INVALID_REQUEST, False, detail=_not_a_request(request))
        elif isinstance(request, Mapping) and not _can_answer(parsed, simple):
            # As the Lambda: an IAM policy must name the API it covers, so only a Deny can be shaped.
            decision = app.Decision(Reason.INVALID_REQUEST, False, detail="no usable method or route ARN")
        else:
            if deadline is None:
                deadline = app._deadline(started, runtime.settings, lambda_context)
            decision = app.decide(parsed, runtime, deadline)
        return _result(decision, parsed, simple, started)
    except Exception as exc:  # fail closed, as the Lambda does
        try:
            from .observability import logger

            logger.exception("unexpected error in the library check; denying")
        except Exception:
            pass
        return CheckResult(
            False,
            Reason.INVALID_REQUEST,
            {"reason": Reason.INVALID_REQUEST.value},
            detail=f"{_INTERNAL_ERROR} ({type(exc).__name__})",
            elapsed_ms=_ms(started),
            _request=parsed,
            _simple_responses=simple,
        )


def _result(
    decision: Decision, request: AuthorizerRequest | None, simple: bool, started: float
) -> CheckResult:
    from . import app

    return CheckResult(
        decision.allow,
        decision.reason,
        app.decision_context(decision),
        decision.detail,
        decision.source,
        decision.client,
        _ms(started),
        request,
        simple,
    )


def _request(request: Any) -> AuthorizerRequest | None:
    from .events import AuthorizerRequest, EventFormat, parse_event

    if isinstance(request, Mapping):
        return parse_event(request if isinstance(request, dict) else dict(request))
    if isinstance(request, bytes | bytearray | memoryview):
        data = bytes(request)
        if data[:1] == b"\x30":  # DER: a SEQUENCE
            body = base64.encodebytes(data).decode("ascii")
            request = f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"
        else:
            request = data.decode("ascii", "replace")
    if isinstance(request, str):
        # A bare certificate, decided as `mtls-authorizer check` decides it. No API to answer for: its
        # response() is a policy that denies everything.
        return AuthorizerRequest(EventFormat.REST, None, request if request.strip() else None)
    return None


def _can_answer(request: AuthorizerRequest, simple: bool) -> bool:
    from .events import EventFormat

    return request.arn is not None or (request.format is EventFormat.HTTP_V2 and simple)


def _not_a_request(request: Any) -> str:
    return f"not an authorizer event or a certificate: {type(request).__name__}"


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


# --- truststores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StaticTruststore:
    truststore: Truststore

    def get(self, deadline: float | None = None) -> Truststore:
        return self.truststore


def _provider(truststore: TruststoreSource, settings: Settings, built: list[Runtime]) -> TruststoreProvider:
    from . import app
    from .observability import logger
    from .truststore import (
        MAX_TRUSTSTORE_BYTES,
        S3TruststoreLoader,
        Truststore,
        TruststoreError,
        parse_truststore,
    )

    if truststore is None:
        if not settings.truststore_bucket:
            raise ValueError("no truststore: pass truststore= (a file, PEM bytes) or set TRUSTSTORE_BUCKET")
        return S3TruststoreLoader(
            settings.truststore_bucket,
            settings.truststore_key,
            settings.truststore_version,
            settings.truststore_refresh_seconds,
            app._TRUSTSTORE_RETRY_SECONDS,
            app._s3_client,
            on_load=lambda loaded: _truststore_loaded(loaded, built),
            on_error=lambda error: logger.error("truststore could not be read", extra={"error": error}),
        )
    if isinstance(truststore, Truststore):
        return _StaticTruststore(truststore)
    if isinstance(truststore, str) and "-----BEGIN" in truststore:
        truststore = truststore.encode("ascii", "replace")
    if isinstance(truststore, bytes | bytearray):
        data = bytes(truststore)
        return _StaticTruststore(parse_truststore(data, version=f"sha256:{_digest(data)}"))
    if isinstance(truststore, str | os.PathLike):
        path = os.fspath(truststore)
        with open(path, "rb") as handle:
            data = handle.read(MAX_TRUSTSTORE_BYTES + 1)
        if len(data) > MAX_TRUSTSTORE_BYTES:
            raise TruststoreError(f"truststore {path} is larger than {MAX_TRUSTSTORE_BYTES} bytes")
        return _StaticTruststore(parse_truststore(data, version=f"{path}@sha256:{_digest(data)}"))
    if callable(getattr(truststore, "get", None)):
        return truststore
    kind = type(truststore).__name__
    raise TypeError(f"truststore= takes a path, PEM bytes, a Truststore or a provider, not {kind}")


def _truststore_loaded(truststore: Truststore, built: list[Runtime]) -> None:
    """What the Lambda does when its truststore loads (app._log_truststore), for this Checker's runtime."""
    from . import app

    for runtime in built:
        health = getattr(runtime, "health", None)
        if health is not None and hasattr(health, "truststore_loaded"):
            health.truststore_loaded(truststore)
    app.log_truststore(truststore)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
