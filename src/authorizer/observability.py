"""Logs, metrics and tracing: Powertools, configured once, never able to change a decision."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

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


def emit_metrics(
    allow: bool, reason: Reason, source: Source, stats: Stats | None, duration_ms: float, cold_start: bool
) -> None:
    """One EMF document per decision: the counts a dashboard and alarms are built on."""
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
        metrics.flush_metrics()
    except Exception:  # metrics must never change a decision
        logger.exception("could not emit metrics")


def traced(function: F) -> F:
    """X-Ray tracing of `function`, only where it is switched on (POWERTOOLS_TRACE_DISABLED=false in
    Lambda). The X-Ray SDK costs ~350 ms of imports, so it is not even imported otherwise."""
    enabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").lower() in ("false", "0")
    if not enabled or "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:
        return function
    from aws_lambda_powertools import Tracer

    tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE)
    return tracer.capture_method(capture_response=False)(function)
