"""One JSON log line per decision, without the event's secrets.

The handler runs in a fresh Python process (a cold container) so that everything it writes to stdout and
stderr is captured, whatever stream its logger bound at import time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import SECRET_HEADER_VALUE, Configure, Format, World, cert_event, make_event, parse_response

ROOT = Path(__file__).resolve().parent.parent

RUNNER = """
import json, sys
sys.path[:0] = [sys.argv[3], sys.argv[4]]
from conftest import FakeLambdaContext
from authorizer import app
events = json.loads(open(sys.argv[1]).read())
responses = [app.lambda_handler(event, FakeLambdaContext()) for event in events]
open(sys.argv[2], "w").write(json.dumps(responses))
"""


def run_cold(events: list[Any], tmp_path: Path) -> tuple[list[Any], str, str]:
    """Invoke the handler once per event in a new process; return the responses, stdout and stderr."""
    events_file = tmp_path / "events.json"
    responses_file = tmp_path / "responses.json"
    events_file.write_text(json.dumps(events))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RUNNER,
            str(events_file),
            str(responses_file),
            str(ROOT / "src"),
            str(ROOT / "tests"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(responses_file.read_text()), result.stdout, result.stderr


def decision_lines(stdout: str) -> list[dict[str, Any]]:
    lines = []
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "reason" in record:
            lines.append(record)
    return lines


@pytest.fixture
def cold_run(configure: Configure, world: World, tmp_path: Path) -> tuple[list[Any], str, str, list[Any]]:
    configure()  # the environment the subprocess inherits
    good = world.leaf("logged good", ocsp="issuer")
    revoked = world.leaf("logged revoked", crl=True, crl_revoked=True)
    stranger = world.leaf("logged stranger", issuer=world.unknown_ica)
    garbage = make_event("rest", "garbage, not a certificate")
    events = [
        cert_event("rest", good),
        cert_event("v2", revoked),
        cert_event("v1", stranger),
        garbage,
        {"headers": {"authorization": SECRET_HEADER_VALUE}},
    ]
    responses, stdout, stderr = run_cold(events, tmp_path)
    return responses, stdout, stderr, [good, revoked, stranger]


def test_one_json_line_per_decision(cold_run: tuple[list[Any], str, str, list[Any]]) -> None:
    responses, stdout, _stderr, (good, revoked, stranger) = cold_run
    formats: list[Format] = ["rest", "v2", "v1", "rest", "rest"]
    decisions = [parse_response(r, f) for r, f in zip(responses, formats, strict=True)]
    assert [d.reason for d in decisions] == [
        "good",
        "revoked",
        "untrusted",
        "invalid_request",
        "invalid_request",
    ]
    lines = decision_lines(stdout)
    assert [line["reason"] for line in lines] == [d.reason for d in decisions]
    for line, cert in zip(lines, (good, revoked, stranger), strict=False):
        assert int(str(line["certSerial"]).replace(":", ""), 16) == cert.serial
        assert str(line["certFingerprintSha256"]).replace(":", "").lower() == cert.fingerprint_sha256
        assert line["certIssuer"] == cert.issuer
        assert line["revocationSource"] in {"ocsp", "crl", "none"}
    assert [line["revocationSource"] for line in lines[:2]] == ["ocsp", "crl"]
    for line in lines:
        assert isinstance(line["durationMs"], int | float) and not isinstance(line["durationMs"], bool)
        assert 0 <= line["durationMs"] < 60_000


def test_no_secret_or_event_in_logs(cold_run: tuple[list[Any], str, str, list[Any]]) -> None:
    _responses, stdout, stderr, certs = cold_run
    captured = stdout + stderr
    assert SECRET_HEADER_VALUE not in captured
    assert "sk_live_" not in captured
    assert "Root=1-6748a0f2" not in captured  # another header value
    assert "multiValueHeaders" not in captured
    assert "clientCertPem" not in captured
    body = "".join(certs[0].pem.splitlines()[1:-1])
    assert body[:64] not in captured.replace("\\n", "").replace("\n", "")
