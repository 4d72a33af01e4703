"""The Lambda entry point: event in, decision, response out. It never raises.

    event ──events.parse_event──▶ certificate ──trust.validate_path──▶ path
          ──revocation.RevocationChecker──▶ reason ──policy.allows──▶ responses.build_response

State that outlives an invocation (settings, truststore, revocation caches) lives in one
`Runtime`, built on first use; `reset()` drops it. Its caches are bounded by bytes, sized from the
function's memory (settings.CacheBudget): a client seen before costs a ~1 KB summary here plus its
decision in the checker, never the two parsed views of its certificate (~40 KB).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .cache import Budgets, ExpiringCache
from .certs import MAX_PEM_CHARS, Cert, InvalidCertificate, load_client_cert
from .events import AuthorizerRequest, EventFormat, parse_event
from .fetch import Fetcher
from .health import HealthMonitor
from .model import CertVerdict, Reason, Source
from .observability import emit_metrics, logger, traced
from .policy import allows
from .responses import ContextValue, build_response
from .revocation import PathResult, RevocationChecker, Stats
from .settings import Settings
from .trust import CertPath, Untrusted, validate_path
from .truststore import S3TruststoreLoader, Truststore, TruststoreError

_LAMBDA_MARGIN_SECONDS = 0.5  # leave time to answer before Lambda's own timeout
_TRUSTSTORE_RETRY_SECONDS = 10.0
MAX_CACHED_CLIENTS = 1_000_000  # a sanity bound only: the byte budget is what limits the cache


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TruststoreProvider(Protocol):
    def get(self, deadline: float | None = None) -> Truststore: ...


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """What the warm path needs of a client certificate: the response's context and the decision's
    key. Held instead of the parsed certificate, which is ~40 KB once path validation has walked it."""

    fingerprint: str  # SHA-256 of the DER, lowercase hex
    serial_hex: str
    subject: str
    issuer: str
    truststore_version: str | None = None  # the truststore its path was validated against, if any

    @classmethod
    def of(cls, cert: Cert) -> ClientSummary:
        return cls(cert.fingerprint, cert.serial_hex, cert.subject, cert.issuer)


@dataclass
class Runtime:
    settings: Settings
    truststore: TruststoreProvider
    checker: RevocationChecker
    now: Callable[[], datetime]
    # Sized from the function's memory; `clients` is shared with the checker's per-client caches.
    budgets: Budgets
    cold: bool = True
    health: HealthMonitor = field(default_factory=HealthMonitor)  # truststore and revocation health
    # The warm path: SHA-256 of the client PEM -> its summary, once its path has validated; kept no
    # longer than the certificates on that path are valid.
    clients: ExpiringCache[bytes, ClientSummary] = field(init=False)

    def __post_init__(self) -> None:
        self.clients = ExpiringCache(MAX_CACHED_CLIENTS, budget=self.budgets.clients)


@dataclass(frozen=True)
class Decision:
    reason: Reason
    allow: bool
    client: ClientSummary | None = None
    source: Source = Source.NONE
    detail: str = ""
    stats: Stats | None = None
    path: CertPath | None = None  # only when the path was validated for this request (the CLI's report)
    verdicts: tuple[CertVerdict, ...] = ()


_runtime: Runtime | None = None
_building = threading.Lock()
_s3: Any = None
_s3_lock = threading.Lock()


def _s3_client() -> Any:
    """The process's S3 client, made once: each new session reloads the service model (~120 ms,
    ~10 MB), and clients are thread-safe while making them from one session concurrently is not."""
    global _s3
    with _s3_lock:
        if _s3 is None:
            import boto3  # imported on first use: keeps the cold start's import cost down
            from botocore.config import Config

            config = Config(
                connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"}
            )
            _s3 = boto3.session.Session().client("s3", config=config)
        return _s3


def reset(clock: Callable[[], datetime] | None = None) -> None:
    """Forget everything held across invocations and re-read the settings on next use."""
    global _runtime, _s3
    _runtime = None
    with _s3_lock:
        _s3 = None  # the environment (endpoint, credentials) may have changed
    if clock is not None:
        _runtime = _build_runtime(clock)


def use_runtime(runtime: Runtime | None) -> None:
    """Install `runtime` as the container's (the local gateway's, built from a file truststore);
    None: build one from the environment on next use."""
    global _runtime
    _runtime = runtime


def build_runtime(
    settings: Settings,
    truststore: TruststoreProvider,
    clock: Callable[[], datetime] = _utcnow,
    fetcher: Fetcher | None = None,
    s3_client: Callable[[], Any] | None = None,
) -> Runtime:
    """Everything a decision needs; the Lambda builds one per container, the CLI one per run.
    `s3_client` makes the S3 client for the revocation sources that read S3 (None: no S3)."""
    budgets = Budgets.of(settings.cache.client_bytes, settings.cache.crl_bytes)
    checker = RevocationChecker(
        settings.revocation,
        settings.fetch,
        settings.failure_backoff_seconds,
        clock,
        fetcher,
        sources=settings.sources,
        s3_client=s3_client,
        log=lambda problem: logger.warning("revocation source problem", extra={"problem": problem}),
        budgets=budgets,
    )
    return Runtime(settings, truststore, checker, clock, budgets)


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
    return build_runtime(settings, loader, clock, s3_client=_s3_client)


def _log_truststore(truststore: Truststore) -> None:
    if _runtime is not None:
        _runtime.health.truststore_loaded(truststore)
    log_truststore(truststore)


def log_truststore(truststore: Truststore) -> None:
    """What is logged when a truststore loads: its version, counts, and every block skipped."""
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
        with _building:  # one runtime per container, also when a gateway or a library calls at once
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
    """The decision for one request: every failure ends as a Deny with a reason.

    Warm path: a client whose path validated against this truststore, with a decision the checker
    still holds, needs neither parsing nor validation. Anything else (first sight, an evicted or
    expired entry, a new truststore, data no longer fresh) takes the full path and is recomputed.
    """
    pem = request.cert_pem
    if pem is None:
        return Decision(Reason.INVALID_REQUEST, False, detail="no client certificate in the event")
    key = _pem_key(pem)
    client = runtime.clients.get(key, runtime.now()) if key else None
    cert: Cert | None = None
    if client is None:
        try:
            cert = load_client_cert(pem)
        except InvalidCertificate as exc:
            return Decision(Reason.INVALID_REQUEST, False, detail=str(exc))
        client = ClientSummary.of(cert)
    try:
        truststore = runtime.truststore.get(deadline)
    except TruststoreError as exc:
        return Decision(Reason.UNTRUSTED, False, client, detail=str(exc))
    if client.truststore_version == truststore.version:
        held = runtime.checker.cached_result(client.fingerprint, truststore.version)
        if held is not None:
            return _decision(held, client, runtime)
    if cert is None:
        cert = load_client_cert(pem)  # parsed when it was first seen: it parses again
    now = runtime.now()
    skew = runtime.settings.revocation.clock_skew_seconds
    try:
        path = validate_path(cert, truststore, now, skew)
    except Untrusted as exc:
        return Decision(Reason.UNTRUSTED, False, client, detail=str(exc))
    client = dataclasses.replace(client, truststore_version=truststore.version)
    if key:
        expiry = min(c.crypto.not_valid_after_utc for c in path.certs) + timedelta(seconds=skew)
        runtime.clients.put(key, client, expiry)
    try:
        result = runtime.checker.check(path, truststore.version, deadline, truststore=truststore)
    except Exception:
        logger.exception("revocation check failed; treating revocation as unavailable")
        verdict = CertVerdict(client.subject, Reason.REVOCATION_UNAVAILABLE, Source.NONE, "internal error")
        allow = allows(verdict.reason, runtime.settings.revocation)
        return Decision(verdict.reason, allow, client, verdict.source, verdict.detail, path=path)
    return _decision(result, client, runtime, path)


def _pem_key(pem: str) -> bytes:
    """The clients cache's key: a digest, not the ~1.3 KB PEM itself (b"" for a PEM too large to parse)."""
    if len(pem) > MAX_PEM_CHARS:
        return b""
    return hashlib.sha256(pem.encode("utf-8", "surrogatepass")).digest()


def _decision(
    result: PathResult, client: ClientSummary, runtime: Runtime, path: CertPath | None = None
) -> Decision:
    for use in result.stats.stale_uses:
        logger.warning("using revocation data past nextUpdate within the stale grace", extra={"use": use})
    reason = result.verdict.reason
    return Decision(
        reason,
        allows(reason, runtime.settings.revocation),
        client,
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


def decision_context(decision: Decision) -> dict[str, ContextValue]:
    """The response's `context`: the reason and, when the certificate parsed, what it is."""
    answer: dict[str, ContextValue] = {"reason": decision.reason.value}
    client = decision.client
    if client is not None:
        answer.update(
            certSerial=client.serial_hex,
            certFingerprintSha256=client.fingerprint,
            certSubject=client.subject,
            certIssuer=client.issuer,
            revocationSource=decision.source.value,
        )
    return answer


def _respond(
    request: AuthorizerRequest, decision: Decision, simple: bool, started: float, context: Any
) -> dict[str, Any]:
    answer = decision_context(decision)
    client = decision.client
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
    runtime, health = _runtime, None
    if runtime is not None:  # never raises: health metrics cannot change a decision
        health = runtime.health.observe(
            runtime.now(), runtime.checker, decision.path, decision.verdicts, decision.stats
        )
    cold = _take_cold_start()
    emit_metrics(decision.allow, decision.reason, decision.source, decision.stats, duration_ms, cold, health)
    return build_response(request, decision.allow, client.subject if client else "", answer, simple)
