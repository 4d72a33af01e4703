"""CloudWatch metrics (Powertools EMF): what a dashboard and alarms are built on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import Configure, World


def emitted(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Metric values of each EMF document printed since the last call."""
    documents = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            names = {m["Name"] for block in document["_aws"]["CloudWatchMetrics"] for m in block["Metrics"]}
            # Powertools writes one value as a number and several as a list; read both as a sum.
            documents.append({name: _total(document[name]) for name in names})
    return documents


def _total(value: float | list[float]) -> float:
    return sum(value) if isinstance(value, list) else value


def test_decision_metrics_by_reason_source_and_cache(
    configure: Configure, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    authz = configure()
    leaf = world.leaf("metrics", crl=True)
    capsys.readouterr()
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    authz.check("rest", leaf).expect(True, "good", leaf, "crl")
    first, second = emitted(capsys)
    assert first["ColdStart"] == 1 and "ColdStart" not in second
    assert first["Allowed"] == 1 and first["Reason_good"] == 1 and first["Source_crl"] == 1
    assert (
        first["CacheMiss"] >= 1 and len(first["FetchLatency"]) >= 1
        if isinstance(first.get("FetchLatency"), list)
        else first["CacheMiss"] >= 1
    )
    assert second["CacheHit"] == 1 and "CacheMiss" not in second


def test_fetch_failures_are_counted_by_kind(
    configure: Configure, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    authz = configure()
    path = world.path("down")
    leaf = world.leaf("metrics-down", crl_urls=[world.http.set(path, b"down", status=503)])
    capsys.readouterr()
    authz.check("v2", leaf).expect(False, "revocation_unavailable", leaf, "crl")
    (document,) = emitted(capsys)
    assert document["Denied"] == 1 and document["Reason_revocation_unavailable"] == 1
    assert document["FetchFailure"] == 1 and document["FetchFailure_http_status"] == 1


def test_invalid_requests_are_counted(configure: Configure, capsys: pytest.CaptureFixture[str]) -> None:
    authz = configure()
    capsys.readouterr()
    authz.invoke({})
    (document,) = emitted(capsys)
    assert (
        document["Denied"] == 1 and document["Reason_invalid_request"] == 1 and document["Source_none"] == 1
    )


@pytest.mark.parametrize(
    ("env", "traced"),
    [({}, False), ({"AWS_LAMBDA_FUNCTION_NAME": "f", "POWERTOOLS_TRACE_DISABLED": "false"}, True)],
)
def test_tracing_only_when_switched_on(env: dict[str, str], traced: bool) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    probe = (
        "import sys; import authorizer.app as app; "
        "print(hasattr(app.decide, '__wrapped__'), 'aws_xray_sdk' in sys.modules)"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_LAMBDA", "POWERTOOLS_TRACE"))}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**base, "PYTHONPATH": str(root / "src"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == [str(traced), str(traced)], result.stderr
