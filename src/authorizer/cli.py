"""Command line: the Lambda's decision for a certificate, locally, and sample events.

    python -m authorizer check --cert client.pem --truststore truststore.pem [--json]
    python -m authorizer event --cert client.pem [--format rest|http]

Exit status of `check`: 0 Allow, 1 Deny, 2 usage error. Settings come from the same environment
variables as the Lambda's (see the README), so the decision is the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .app import Decision, build_runtime, decide
from .certs import InvalidCertificate, load_client_cert
from .events import AuthorizerRequest, EventFormat
from .fetch import Fetcher
from .sample_events import http_event, rest_event
from .settings import Settings
from .truststore import Truststore, TruststoreError, parse_truststore

EXIT_ALLOW, EXIT_DENY, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class StaticTruststore:
    truststore: Truststore

    def get(self, deadline: float | None = None) -> Truststore:
        return self.truststore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="authorizer", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="decide for a client certificate as the Lambda would")
    check.add_argument("--cert", required=True, type=Path, help="client certificate (PEM)")
    check.add_argument("--truststore", required=True, type=Path, help="truststore.pem (PEM bundle)")
    check.add_argument("--json", action="store_true", help="print the decision as JSON")
    event = commands.add_parser("event", help="print an authorizer event for `sam local invoke -e`")
    event.add_argument("--cert", required=True, type=Path, help="client certificate (PEM)")
    event.add_argument("--format", choices=("rest", "http"), default="rest")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_ALLOW
    try:
        if args.command == "event":
            pem = args.cert.read_text()
            load_client_cert(pem)
            print(json.dumps(rest_event(pem) if args.format == "rest" else http_event(pem), indent=2))
            return EXIT_ALLOW
        return _check(args.cert, args.truststore, args.json)
    except (OSError, UnicodeDecodeError, InvalidCertificate, TruststoreError) as exc:
        print(f"authorizer: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _check(cert_path: Path, truststore_path: Path, as_json: bool) -> int:
    pem = cert_path.read_text()
    load_client_cert(pem)  # a usage error, not a Deny, when the file is not a certificate
    truststore = parse_truststore(truststore_path.read_bytes(), version=str(truststore_path))
    settings = Settings.from_env()
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    runtime = build_runtime(settings, StaticTruststore(truststore), fetcher=Fetcher(settings.fetch, progress))
    started = time.monotonic()
    decision = decide(
        AuthorizerRequest(EventFormat.HTTP_V2, None, pem), runtime, started + settings.budget_seconds
    )
    if progress is not None:
        progress.done()
    report = _report(decision, round((time.monotonic() - started) * 1000, 1))
    print(json.dumps(report, indent=2) if as_json else _text(report))
    return EXIT_ALLOW if decision.allow else EXIT_DENY


def _report(decision: Decision, ms: float) -> dict[str, Any]:
    path: list[dict[str, Any]] = []
    if decision.path is not None:
        verdicts = list(decision.verdicts)
        for position, cert in enumerate(decision.path.certs):
            is_anchor = position == len(decision.path.certs) - 1
            entry: dict[str, Any] = {
                "role": "anchor" if is_anchor else ("leaf" if position == 0 else "intermediate"),
                "subject": cert.subject,
                "serial": cert.serial_hex,
                "fingerprintSha256": cert.fingerprint,
            }
            if not is_anchor:
                verdict = verdicts[position] if position < len(verdicts) else None
                entry["revocationSource"] = verdict.source.value if verdict else "not checked"
                entry["revocation"] = verdict.reason.value if verdict else "not checked"
                if verdict and verdict.detail:
                    entry["detail"] = verdict.detail
            path.append(entry)
    return {
        "decision": "Allow" if decision.allow else "Deny",
        "reason": decision.reason.value,
        "revocationSource": decision.source.value,
        "detail": decision.detail,
        "path": path,
        "durationMs": ms,
    }


def _text(report: dict[str, Any]) -> str:
    lines = [f"Decision: {report['decision']}", f"Reason:   {report['reason']}"]
    if report["detail"]:
        lines.append(f"Detail:   {report['detail']}")
    lines.append("Path:")
    for entry in report["path"]:
        revocation = (
            f"{entry['revocationSource']}: {entry['revocation']}" if "revocation" in entry else "trust anchor"
        )
        lines.append(f"  {entry['role']:<12} {entry['subject']}  (serial {entry['serial']})  {revocation}")
    if not report["path"]:
        lines.append("  (no validated path)")
    lines.append(f"Time:     {report['durationMs']} ms")
    return "\n".join(lines)


class _Progress:
    """One self-rewriting line on a terminal while large CRLs download."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._shown = False

    def __call__(self, url: str, size: int, total: int | None) -> None:
        if size < 1024 * 1024 and not self._shown:
            return  # small fetches finish before a progress line would help
        share = f" / {total / 1e6:.1f} MB" if total else ""
        self._stream.write(f"\rdownloading {url}: {size / 1e6:.1f} MB{share}")
        self._stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self._stream.write("\n")
