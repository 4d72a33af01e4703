"""Logs, metrics and tracing: Powertools, configured once, never able to change a decision."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from .health import HealthReport
from .model import Reason, Source
from .revocation import Stats

SERVICE = "mtls-authorizer"
F = TypeVar("F", bound=Callable[..., object])

# Powertools' own variables (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE) override these defaults.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE)
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "MtlsAuthorizer",
    service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE,
)
# Health gauges (health.py) and their units; anything else in a HealthReport's gauges is a count.
_GAUGE_UNITS = {
    "TruststoreDaysToExpiry": MetricUnit.NoUnit,
    "RevocationDataUnrefreshed": MetricUnit.Count,
    "RevocationDataOverdueSeconds": MetricUnit.Seconds,
    "RevocationDataAgeSeconds": MetricUnit.Seconds,
}
CA_DIMENSION = "ca"


def emit_metrics(
    allow: bool,
    reason: Reason,
    source: Source,
    stats: Stats | None,
    duration_ms: float,
    cold_start: bool,
    health: HealthReport | None = None,
) -> None:
    """One EMF document per decision: the counts a dashboard and alarms are built on.

    The health report's gauges join it (service dimension); its per-CA failures (`SourceFailureByCa`,
    dimensions service and ca) join it as a second metric directive of the same document, for the first
    CA; a request that affects several CAs writes one more small document per further CA (EMF gives a
    dimension one value per document)."""
    try:
        if cold_start:
            metrics.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="Allowed" if allow else "Denied", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=f"Reason_{reason.value}", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=f"Source_{source.value}", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="DecisionLatency", unit=MetricUnit.Milliseconds, value=duration_ms)
        if stats is not None:
            # Zero counts are left out: each metric costs time on the warm path, and a missing
            # data point reads as zero in CloudWatch's sum statistics.
            if stats.cache_hits:
                metrics.add_metric(name="CacheHit", unit=MetricUnit.Count, value=stats.cache_hits)
            if stats.cache_misses:
                metrics.add_metric(name="CacheMiss", unit=MetricUnit.Count, value=stats.cache_misses)
            if stats.fetch_failures:
                metrics.add_metric(
                    name="FetchFailure", unit=MetricUnit.Count, value=len(stats.fetch_failures)
                )
            for kind in stats.fetch_failures:
                metrics.add_metric(name=f"FetchFailure_{kind}", unit=MetricUnit.Count, value=1)
            for ms in stats.fetch_ms:
                metrics.add_metric(name="FetchLatency", unit=MetricUnit.Milliseconds, value=ms)
            if stats.stale_uses:
                metrics.add_metric(
                    name="StaleRevocationUse", unit=MetricUnit.Count, value=len(stats.stale_uses)
                )
        per_ca: list[tuple[str, int]] = []
        if health is not None:
            if health.error:
                logger.error("could not compute health metrics", extra={"error": health.error})
            _log_health(health)
            for name, value in health.gauges.items():
                metrics.add_metric(name=name, unit=_GAUGE_UNITS.get(name, MetricUnit.Count), value=value)
            per_ca = sorted(health.per_ca.items())
        if not per_ca:
            metrics.flush_metrics()
            return
        document: dict[str, Any] = dict(metrics.serialize_metric_set())
        metrics.clear_metrics()
        extra = [_ca_document(label, count) for label, count in per_ca]
        first = extra.pop(0)
        document["_aws"]["CloudWatchMetrics"].extend(first["_aws"]["CloudWatchMetrics"])
        document.update({k: v for k, v in first.items() if k != "_aws"})
        if not is_metrics_disabled():
            for each in (document, *extra):
                print(json.dumps(each, separators=(",", ":")))
    except Exception:  # metrics must never change a decision
        metrics.clear_metrics()
        logger.exception("could not emit metrics")


def _log_health(health: HealthReport) -> None:
    """A line for what the gauges show, when they are emitted: which CA expires first, which data is late."""
    if health.truststore is not None:
        expiry = health.truststore
        logger.info(
            "truststore expiry",
            extra={
                "daysToExpiry": round(expiry.days, 1),
                "earliestCa": expiry.subject,
                "notAfter": expiry.not_after.isoformat(),
            },
        )
    revocation = health.revocation
    if revocation is not None and revocation.worst is not None:
        worst = revocation.worst
        logger.warning(
            "revocation data past or near nextUpdate could not be refreshed",
            extra={
                "unrefreshed": revocation.unrefreshed,
                "source": worst.source,
                "issuer": worst.issuer,
                "overdueSeconds": revocation.overdue_seconds,
                "ageSeconds": revocation.age_seconds,
                "failureKind": worst.failure_kind,
            },
        )


def _ca_document(label: str, count: int) -> dict[str, Any]:
    """The EMF document of one CA's SourceFailureByCa (dimensions service and ca)."""
    single = EphemeralMetrics(namespace=metrics.namespace, service=metrics.service)
    single.add_dimension(name=CA_DIMENSION, value=label)
    single.add_metric(name="SourceFailureByCa", unit=MetricUnit.Count, value=count)
    return dict(single.serialize_metric_set())


def traced(function: F) -> F:
    """X-Ray tracing of `function`, only where it is switched on (POWERTOOLS_TRACE_DISABLED=false in
    Lambda). The X-Ray SDK costs ~350 ms of imports, so it is not even imported otherwise."""
    enabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").lower() in ("false", "0")
    if not enabled or "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:
        return function
    from aws_lambda_powertools import Tracer

    tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE)
    return tracer.capture_method(capture_response=False)(function)
