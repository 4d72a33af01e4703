"""The Lambda entry point: event in, decision, response out. It never raises.

    event ──events.parse_event──▶ certificate ──trust.validate_path──▶ path
          ──revocation.RevocationChecker──▶ reason ──policy.allows──▶ responses.build_response

State that outlives an invocation (settings, truststore, revocation caches) lives in one
`Runtime`, built on first use; `reset()` drops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .cache import ExpiringCache
from .certs import Cert, InvalidCertificate, load_client_cert
from .events import AuthorizerRequest, EventFormat, parse_event
from .fetch import Fetcher
from .model import CertVerdict, Reason, Source
from .observability import emit_metrics, logger, traced
from .policy import allows
from .responses import ContextValue, build_response
from .revocation import RevocationChecker, Stats
from .settings import Settings
from .trust import CertPath, Untrusted, validate_path
from .truststore import S3TruststoreLoader, Truststore, TruststoreError

_LAMBDA_MARGIN_SECONDS = 0.5  # leave time to answer before Lambda's own timeout
_TRUSTSTORE_RETRY_SECONDS = 10.0
MAX_CACHED_PATHS = 20_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TruststoreProvider(Protocol):
    def get(self, deadline: float | None = None) -> Truststore: ...


@dataclass
class Runtime:
    settings: Settings
    truststore: TruststoreProvider
    checker: RevocationChecker
    now: Callable[[], datetime]
    cold: bool = True
    # Warm-path shortcuts: parsed certificates by PEM, validated paths by (fingerprint, truststore
    # version), each kept no longer than the certificates on it are valid.
    certs: ExpiringCache[str, Cert] = field(default_factory=lambda: ExpiringCache(MAX_CACHED_PATHS))
    paths: ExpiringCache[tuple[str, str], CertPath] = field(
        default_factory=lambda: ExpiringCache(MAX_CACHED_PATHS)
    )

    def client_cert(self, pem: str) -> Cert:
        now = self.now()
        cert = self.certs.get(pem, now)
        if cert is None:
            cert = load_client_cert(pem)
            self.certs.put(pem, cert, cert.crypto.not_valid_after_utc)
        return cert

    def validated_path(self, cert: Cert, truststore: Truststore) -> CertPath:
        now = self.now()
        key = (cert.fingerprint, truststore.version)
        path = self.paths.get(key, now)
        if path is None:
            skew = self.settings.revocation.clock_skew_seconds
            path = validate_path(cert, truststore, now, skew)
            expiry = min(c.crypto.not_valid_after_utc for c in path.certs) + timedelta(seconds=skew)
            self.paths.put(key, path, expiry)
        return path


@dataclass(frozen=True)
class Decision:
    reason: Reason
    allow: bool
    cert: Cert | None = None
    source: Source = Source.NONE
    detail: str = ""
    stats: Stats | None = None
    path: CertPath | None = None
    verdicts: tuple[CertVerdict, ...] = ()


_runtime: Runtime | None = None


def _s3_client() -> Any:
    import boto3  # imported on first use: keeps the cold start's import cost down
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client("s3", config=config)


def reset(clock: Callable[[], datetime] | None = None) -> None:
    """Forget everything held across invocations and re-read the settings on next use."""
    global _runtime
    _runtime = None
    if clock is not None:
        _runtime = _build_runtime(clock)


def build_runtime(
    settings: Settings,
    truststore: TruststoreProvider,
    clock: Callable[[], datetime] = _utcnow,
    fetcher: Fetcher | None = None,
) -> Runtime:
    """Everything a decision needs; the Lambda builds one per container, the CLI one per run."""
    checker = RevocationChecker(
        settings.revocation, settings.fetch, settings.failure_backoff_seconds, clock, fetcher
    )
    return Runtime(settings, truststore, checker, clock)


def _build_runtime(clock: Callable[[], datetime] = _utcnow) -> Runtime:
    settings = Settings.from_env()
    for problem in settings.problems:
        logger.warning("setting ignored", extra={"problem": problem})
    loader = S3TruststoreLoader(
        settings.truststore_bucket,
        settings.truststore_key,
        settings.truststore_version,
        settings.truststore_refresh_seconds,
        _TRUSTSTORE_RETRY_SECONDS,
        _s3_client,
        on_load=_log_truststore,
        on_error=lambda error: logger.error("truststore could not be read", extra={"error": error}),
    )
    return build_runtime(settings, loader, clock)


def _log_truststore(truststore: Truststore) -> None:
    for skipped in truststore.skipped:
        logger.warning("truststore block skipped", extra={"block": skipped})
    logger.info(
        "truststore loaded",
        extra={
            "truststoreVersion": truststore.version,
            "anchors": len(truststore.anchors),
            "intermediates": len(truststore.intermediates),
        },
    )


def _runtime_now() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = _build_runtime()
    return _runtime


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    started = time.monotonic()
    request = AuthorizerRequest(EventFormat.REST, None, None)
    decision = Decision(Reason.INVALID_REQUEST, False, detail="internal error")
    simple = True
    try:
        runtime = _runtime_now()
        simple = runtime.settings.http_api_simple_responses
        request = parse_event(event)
        if request.arn is None and not (request.format is EventFormat.HTTP_V2 and simple):
            # An IAM policy must name the API it covers: without an ARN only a Deny can be shaped.
            decision = Decision(Reason.INVALID_REQUEST, False, detail="no usable method or route ARN")
        else:
            decision = decide(request, runtime, _deadline(started, runtime.settings, context))
    except Exception:  # the last line of fail-closed: a bug is a Deny, never a 500
        logger.exception("unexpected error; denying")
    try:
        return _respond(request, decision, simple, started, context)
    except Exception:
        logger.exception("could not shape the response; denying")
        return build_response(request, False, "", {"reason": decision.reason.value}, simple)


def decide(request: AuthorizerRequest, runtime: Runtime, deadline: float) -> Decision:
    """The decision for one request: every failure ends as a Deny with a reason."""
    if request.cert_pem is None:
        return Decision(Reason.INVALID_REQUEST, False, detail="no client certificate in the event")
    try:
        cert = runtime.client_cert(request.cert_pem)
    except InvalidCertificate as exc:
        return Decision(Reason.INVALID_REQUEST, False, detail=str(exc))
    try:
        truststore = runtime.truststore.get(deadline)
    except TruststoreError as exc:
        return Decision(Reason.UNTRUSTED, False, cert, detail=str(exc))
    try:
        path = runtime.validated_path(cert, truststore)
    except Untrusted as exc:
        return Decision(Reason.UNTRUSTED, False, cert, detail=str(exc))
    try:
        result = runtime.checker.check(path, truststore.version, deadline)
    except Exception:
        logger.exception("revocation check failed; treating revocation as unavailable")
        verdict = CertVerdict(cert.subject, Reason.REVOCATION_UNAVAILABLE, Source.NONE, "internal error")
        allow = allows(verdict.reason, runtime.settings.revocation)
        return Decision(verdict.reason, allow, cert, verdict.source, verdict.detail, path=path)
    for use in result.stats.stale_uses:
        logger.warning("using revocation data past nextUpdate within the stale grace", extra={"use": use})
    reason = result.verdict.reason
    return Decision(
        reason,
        allows(reason, runtime.settings.revocation),
        cert,
        result.verdict.source,
        result.verdict.detail,
        result.stats,
        path,
        result.verdicts,
    )


decide = traced(decide)


def _deadline(started: float, settings: Settings, context: Any) -> float:
    budget = settings.budget_seconds
    try:
        remaining = float(context.get_remaining_time_in_millis()) / 1000 - _LAMBDA_MARGIN_SECONDS
        budget = min(budget, max(remaining, 0.0))
    except (AttributeError, TypeError, ValueError):
        pass
    return started + budget


def _take_cold_start() -> bool:
    """True once per runtime (container): for the first decision it makes."""
    runtime = _runtime
    if runtime is None or not runtime.cold:
        return False
    runtime.cold = False
    return True


def _respond(
    request: AuthorizerRequest, decision: Decision, simple: bool, started: float, context: Any
) -> dict[str, Any]:
    answer: dict[str, ContextValue] = {"reason": decision.reason.value}
    cert = decision.cert
    if cert is not None:
        answer.update(
            certSerial=cert.serial_hex,
            certFingerprintSha256=cert.fingerprint,
            certSubject=cert.subject,
            certIssuer=cert.issuer,
            revocationSource=decision.source.value,
        )
    duration_ms = round((time.monotonic() - started) * 1000, 3)
    fields: dict[str, Any] = {
        "decision": "Allow" if decision.allow else "Deny",
        **{k: v for k, v in answer.items() if k != "certSubject"},
        "format": request.format.value,
        "durationMs": duration_ms,
        "requestId": getattr(context, "aws_request_id", None),
    }
    if decision.detail:
        fields["detail"] = decision.detail
    if decision.stats is not None:
        fields.update(
            cacheHits=decision.stats.cache_hits,
            fetches=decision.stats.fetches,
            fetchFailures=decision.stats.fetch_failures,
        )
    logger.info("decision", extra=fields)
    emit_metrics(
        decision.allow, decision.reason, decision.source, decision.stats, duration_ms, _take_cold_start()
    )
    return build_response(request, decision.allow, cert.subject if cert else "", answer, simple)
