"""Command line: the Lambda's decision for a certificate, locally; the denylist; sample events.

    mtls-authorizer check --cert client.pem --truststore truststore.pem
                          [--crl ca.crl ...] [--denylist FILE|s3://bucket/key] [--json]
    mtls-authorizer revoke --cert client.pem [--issuer issuer.pem] [--reason keyCompromise]
                           --denylist FILE|s3://bucket/key
    mtls-authorizer unrevoke --cert client.pem [--issuer issuer.pem] --denylist FILE|s3://bucket/key
    mtls-authorizer list --denylist FILE|s3://bucket/key [--json]
    mtls-authorizer event --cert client.pem [--format rest|http]
    mtls-authorizer index --truststore truststore.pem [--index s3://bucket/prefix/] [--source URL ...]
                          [--json]
    mtls-authorizer gateway --truststore truststore.pem [--port 8443] [--host 127.0.0.1] [--format rest|http]
                            [--cert server.pem --key server.key] [--crl FILE ...] [--denylist FILE|s3://bucket/key]

(`python -m authorizer ...` is the same program.)

`gateway` is a local HTTPS endpoint that does what an API Gateway custom domain with mutual TLS does: it
requires a client certificate that verifies against the truststore (or fails the handshake), builds the
authorizer event from the handshake, calls the Lambda handler with the Lambda's settings and answers 403
or a sample backend's 200 (see gateway.py). Try it with `curl --cert --key`.

`check` decides as the Lambda would: settings come from the same environment variables (see the
README). `--crl FILE` (repeatable) hands over CRLs the way `openssl verify -CRLfile` does: each
applies to every certificate its CA issued, whether or not the certificate names a distribution
point, and is verified against that CA like a fetched one. `--denylist` stands in for
REVOCATION_DENYLIST_S3_URI. The report names the source of each certificate's answer (ocsp, crl,
denylist).

`revoke`, `unrevoke` and `list` work on the denylist the Lambda reads (REVOCATION_DENYLIST_S3_URI;
see denylist.py for the format), in S3 with your AWS credentials or in a local file. `revoke` lists
a certificate by its SHA-256 fingerprint, or with `--issuer` by serial and issuer fingerprint (the
form for a CA's records, which keep serials rather than certificates); reasons are RFC 5280 names.
Edits never lose a concurrent one: S3 writes are conditional on the ETag and retried, local files
are locked; with bucket versioning every edit stays as a version.

Exit status: 0 Allow (`check`) or done; 1 Deny (`check`) or not listed (`unrevoke`); 2 usage error,
unreadable input (a denylist that does not parse: the line is named) or failed write.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from . import app, sample_events
from .app import Decision, Runtime, build_runtime, decide
from .certs import Cert, InvalidCertificate, cert_from_der, load_client_cert
from .denylist import REASONS, Denylist, Entry, NotListed, entry_for
from .denylist_store import DenylistStore
from .events import AuthorizerRequest, EventFormat
from .fetch import Fetcher
from .s3 import S3Error
from .sample_events import http_event, rest_event
from .settings import Settings
from .sources.crl_set import candidate
from .truststore import Truststore, TruststoreError, parse_truststore

EXIT_ALLOW, EXIT_DENY, EXIT_USAGE = 0, 1, 2
EXIT_DONE, EXIT_NOT_LISTED = 0, 1


@dataclass(frozen=True)
class StaticTruststore:
    truststore: Truststore

    def get(self, deadline: float | None = None) -> Truststore:
        return self.truststore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtls-authorizer",
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 Allow or done, 1 Deny or not listed, 2 usage or input error.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    where = "FILE|s3://bucket/key"

    check = commands.add_parser(
        "check",
        help="decide for a client certificate as the Lambda would",
        description="Decide for a client certificate as the Lambda would, with the Lambda's "
        "settings from the environment. Exit 0 Allow, 1 Deny, 2 usage error.",
    )
    check.add_argument("--cert", required=True, type=Path, help="client certificate (PEM)")
    check.add_argument("--truststore", required=True, type=Path, help="truststore.pem (PEM bundle)")
    check.add_argument(
        "--crl",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a CRL file (DER or PEM), repeatable; covers every certificate its CA issued, "
        "like openssl verify -CRLfile",
    )
    check.add_argument(
        "--denylist", metavar=where, help="the denylist to apply (instead of REVOCATION_DENYLIST_S3_URI)"
    )
    check.add_argument("--json", action="store_true", help="print the decision as JSON")

    reasons = ", ".join(REASONS)
    revoke = commands.add_parser(
        "revoke",
        help="add a certificate to the denylist",
        description="Add a certificate to the denylist (or change its reason). Exit 0 done, 2 error.",
    )
    revoke.add_argument("--cert", required=True, type=Path, help="the certificate to revoke (PEM or DER)")
    revoke.add_argument(
        "--issuer",
        type=Path,
        help="its issuer's certificate: list it by serial and issuer fingerprint instead of by fingerprint",
    )
    revoke.add_argument(
        "--reason",
        default="unspecified",
        choices=REASONS,
        metavar="REASON",
        help=f"RFC 5280 reason, one of: {reasons} (default unspecified)",
    )
    revoke.add_argument("--denylist", required=True, metavar=where, help="the denylist to edit")

    unrevoke = commands.add_parser(
        "unrevoke",
        help="remove a certificate from the denylist",
        description="Remove a certificate's entries from the denylist. "
        "Exit 0 done, 1 it was not listed, 2 error.",
    )
    unrevoke.add_argument("--cert", required=True, type=Path, help="the certificate (PEM or DER)")
    unrevoke.add_argument(
        "--issuer", type=Path, help="its issuer's certificate: also remove an entry by serial and issuer"
    )
    unrevoke.add_argument("--denylist", required=True, metavar=where, help="the denylist to edit")

    listing = commands.add_parser(
        "list", help="print the denylist's entries", description="Print the denylist's entries."
    )
    listing.add_argument("--denylist", required=True, metavar=where, help="the denylist to read")
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")

    event = commands.add_parser("event", help="print an authorizer event for `sam local invoke -e`")
    event.add_argument("--cert", required=True, type=Path, help="client certificate (PEM)")
    event.add_argument("--format", choices=("rest", "http"), default="rest")

    index = commands.add_parser(
        "index",
        help="run the indexer once: verify CRLs and write the shared revocation index",
        description="Run the indexer the IndexerFunction runs, once, with these settings (a dry run of "
        "the schedule, or a way to index now). Sources: REVOCATION_CRL_S3_URI, the truststore CAs' "
        "distribution points, REVOCATION_INDEX_URLS, the containers' requests, or just --source. "
        "Exit 0 when nothing failed, 1 when some source failed, 2 on a usage error.",
    )
    index.add_argument("--truststore", required=True, type=Path, help="truststore.pem (PEM bundle)")
    index.add_argument("--index", metavar="s3://bucket/prefix/", help="instead of REVOCATION_INDEX_S3_URI")
    index.add_argument(
        "--source", action="append", default=[], metavar="URL", help="index only this CRL (repeatable)"
    )
    index.add_argument("--json", action="store_true", help="print the run's report as JSON")

    gateway = commands.add_parser(
        "gateway",
        help="a local mutual-TLS endpoint in front of the authorizer, for curl --cert --key",
        description="A local HTTPS endpoint that does what an API Gateway custom domain with mutual TLS "
        "does: client certificates verified against the truststore in the TLS handshake, the authorizer "
        "event built from it, the Lambda handler called with the Lambda's settings from the environment, "
        "403 or a sample backend's 200. Runs until Ctrl-C; exit 0 once stopped, 2 on a usage error.",
    )
    gateway.add_argument("--truststore", required=True, type=Path, help="truststore.pem (PEM bundle)")
    gateway.add_argument("--port", type=int, default=8443, help="port to listen on (default 8443; 0: any)")
    gateway.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    gateway.add_argument(
        "--format",
        choices=("rest", "http"),
        default="rest",
        help="REST API events (default) or HTTP API payload 2.0",
    )
    gateway.add_argument("--cert", type=Path, help="server certificate (PEM; default: a throwaway one)")
    gateway.add_argument("--key", type=Path, help="its private key (PEM)")
    gateway.add_argument(
        "--crl", action="append", default=[], type=Path, metavar="FILE", help="a CRL file, as for check"
    )
    gateway.add_argument(
        "--denylist", metavar=where, help="the denylist to apply (instead of REVOCATION_DENYLIST_S3_URI)"
    )
    gateway.add_argument("--region", default=sample_events.REGION, help="region in the method ARN")
    gateway.add_argument("--account-id", default=sample_events.ACCOUNT, help="account in the method ARN")
    gateway.add_argument("--api-id", default=sample_events.API_ID, help="API id in the method ARN")
    gateway.add_argument("--stage", default=sample_events.STAGE, help="stage in the method ARN")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_ALLOW
    try:
        if args.command == "event":
            pem = args.cert.read_text()
            load_client_cert(pem)
            print(json.dumps(rest_event(pem) if args.format == "rest" else http_event(pem), indent=2))
            return EXIT_ALLOW
        if args.command == "check":
            return _check(args.cert, args.truststore, args.crl, args.denylist, args.json)
        if args.command == "list":
            return _list(args.denylist, args.json)
        if args.command == "gateway":
            return _gateway(args)
        if args.command == "index":
            return _index(args.truststore, args.index, args.source, args.json)
        return _edit(args.command, args.cert, args.issuer, getattr(args, "reason", ""), args.denylist)
    except NotListed as exc:
        print(f"mtls-authorizer: {exc}", file=sys.stderr)
        return EXIT_NOT_LISTED
    except (OSError, UnicodeDecodeError, InvalidCertificate, TruststoreError, S3Error, ValueError) as exc:
        # ValueError covers DenylistError (a line that does not parse) and a malformed s3:// URI.
        print(f"mtls-authorizer: {exc}", file=sys.stderr)
        return EXIT_USAGE


# --- check ---------------------------------------------------------------------------------------


def local_runtime(
    truststore_path: Path,
    crls: Sequence[Path] = (),
    denylist: str | None = None,
    fetcher: Fetcher | None = None,
) -> tuple[Runtime, Truststore]:
    """The runtime of a local run (`check`, `gateway`): the Lambda's settings from the environment,
    the truststore from a file, `--crl` files and a `--denylist` (file or s3://)."""
    truststore = parse_truststore(truststore_path.read_bytes(), version=str(truststore_path))
    for crl_path in crls:
        # A file that is not a CRL at all is a typo, not a revocation source that is down.
        if candidate(str(crl_path), "", crl_path.read_bytes()) is None:
            raise ValueError(f"{crl_path} is not a CRL (DER or PEM)")
    if denylist and not denylist.startswith("s3://") and not Path(denylist).is_file():
        raise FileNotFoundError(f"denylist {denylist} does not exist (create it, even empty)")
    settings = Settings.from_env()
    sources = settings.sources
    if crls or denylist:
        sources = dataclasses.replace(
            sources,
            crl_files=tuple(str(p) for p in crls),
            denylist_uri=denylist if denylist is not None else sources.denylist_uri,
        )
        settings = dataclasses.replace(settings, sources=sources)
    # S3 only when something lives there: a purely local run needs no AWS credentials.
    uses_s3 = bool(sources.s3_buckets) or sources.denylist_uri.startswith("s3://")
    runtime = build_runtime(
        settings,
        StaticTruststore(truststore),
        fetcher=fetcher or Fetcher(settings.fetch),
        s3_client=app._s3_client if uses_s3 else None,
    )
    return runtime, truststore


def _check(
    cert_path: Path, truststore_path: Path, crls: list[Path], denylist: str | None, as_json: bool
) -> int:
    pem = cert_path.read_text()
    load_client_cert(pem)  # a usage error, not a Deny, when the file is not a certificate
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    fetch_policy = Settings.from_env().fetch
    runtime, _ = local_runtime(truststore_path, crls, denylist, Fetcher(fetch_policy, progress))
    settings = runtime.settings
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
    if report["revocationSource"] != "none":
        lines.append(f"Source:   {report['revocationSource']}")
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


# --- gateway ---------------------------------------------------------------------------------------


def _gateway(args: argparse.Namespace) -> int:
    from . import gateway  # imported on use: the other commands need neither ssl servers nor their setup

    options = gateway.GatewayOptions(
        truststore=args.truststore,
        host=args.host,
        port=args.port,
        fmt=args.format,
        cert=args.cert,
        key=args.key,
        crls=tuple(args.crl),
        denylist=args.denylist,
        ids=gateway.ApiIds(args.region, args.account_id, args.api_id, args.stage),
    )
    return gateway.serve(options, out=lambda line: print(line, flush=True))


# --- index ------------------------------------------------------------------------------------------


def _index(truststore_path: Path, index_uri: str | None, only: list[str], as_json: bool) -> int:
    from .app import _s3_client
    from .indexer import Indexer, source_name
    from .s3 import S3Reader

    settings = Settings.from_env()
    if index_uri:
        settings = dataclasses.replace(
            settings, sources=dataclasses.replace(settings.sources, index_uri=index_uri)
        )
    truststore = parse_truststore(truststore_path.read_bytes(), version=str(truststore_path))
    indexer = Indexer(settings, truststore, S3Reader(_s3_client, settings.fetch.max_crl_bytes))
    report = indexer.run([source_name(s) for s in only])
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for o in report.outcomes:
            print(
                f"{o.status:9} {o.source}"
                + (f"  ({o.entries} entries)" if o.entries else "")
                + (f"  {o.detail}" if o.detail else "")
            )
    return EXIT_DENY if report.count("failed") else EXIT_ALLOW


# --- the denylist: revoke, unrevoke, list ----------------------------------------------------------


def _admin_s3_client() -> Any:
    """An S3 client for editing: its own boto3 session (a session is not thread-safe, so each edit
    gets one) and more patient than the Lambda's, since a person is waiting, not a request."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 4, "mode": "standard"})
    return boto3.session.Session().client("s3", config=config)  # honours AWS_ENDPOINT_URL_S3


def _store(where: str) -> DenylistStore:
    return DenylistStore(where, _admin_s3_client if where.startswith("s3://") else None)


def _load_cert(path: Path) -> Cert:
    data = path.read_bytes()
    if data[:1] == b"\x30":  # DER: a SEQUENCE
        return cert_from_der(data)
    return load_client_cert(data.decode("ascii"))


def _edit(command: str, cert_path: Path, issuer_path: Path | None, reason: str, where: str) -> int:
    cert = _load_cert(cert_path)
    issuer = _load_cert(issuer_path) if issuer_path is not None else None
    if issuer is not None:
        _check_issued_by(cert, issuer)
    store = _store(where)
    if command == "revoke":
        entry = entry_for(cert, reason, issuer)
        before: list[Entry | None] = [None]

        def add(current: Denylist) -> Denylist:
            # Called again on every retry: record what the written version replaced.
            before[0] = next((e for e in current.entries if e.key == entry.key), None)
            return current.with_entry(entry)

        store.edit(add)
        previous = before[0]
        if previous is None:
            print(f"revoked {_name(cert, entry)} in {where}: {reason}")
        elif previous.reason != reason:
            print(f"{_name(cert, entry)} was already listed in {where}; reason {previous.reason} -> {reason}")
        else:
            print(f"{_name(cert, entry)} was already listed in {where}: {reason}")
        return EXIT_DONE
    removed: list[tuple[Entry, ...]] = [()]

    def remove(current: Denylist) -> Denylist:
        edited = current.without(cert, issuer)  # raises NotListed: nothing is written
        removed[0] = tuple(e for e in current.entries if e not in edited.entries)
        return edited

    try:
        store.edit(remove)
    except NotListed:
        hint = "" if issuer is not None else " (an entry by serial needs --issuer)"
        raise NotListed(f"{cert.subject} is not in the denylist {where}{hint}") from None
    for entry in removed[0]:
        print(f"unrevoked {_name(cert, entry)} in {where} (was {entry.reason})")
    return EXIT_DONE


def _check_issued_by(cert: Cert, issuer: Cert) -> None:
    """An entry by serial under the wrong issuer would silently match nothing: refuse it."""
    try:
        cert.crypto.verify_directly_issued_by(issuer.crypto)
    except Exception as exc:  # ValueError (names), InvalidSignature, TypeError (key type)
        raise ValueError(
            f"{cert.subject} is not issued by {issuer.subject}: {str(exc) or type(exc).__name__}"
        ) from None


def _name(cert: Cert, entry: Entry) -> str:
    if entry.fingerprint:
        return f"{cert.subject} (sha256 {entry.fingerprint})"
    return f"{cert.subject} (serial {format(entry.serial, 'x')}, issuer sha256 {entry.issuer_fingerprint})"


def _list(where: str, as_json: bool) -> int:
    entries = _store(where).read().denylist.entries
    if as_json:
        print(json.dumps({"denylist": where, "entries": [_entry_json(e) for e in entries]}, indent=2))
    else:
        for entry in entries:
            print(entry.line())
        # On stderr: stdout stays one entry a line, for scripts.
        print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} in {where}", file=sys.stderr)
    return EXIT_DONE


def _entry_json(entry: Entry) -> dict[str, str]:
    if entry.fingerprint:
        return {"fingerprintSha256": entry.fingerprint, "reason": entry.reason}
    return {
        "serial": format(entry.serial, "x"),
        "issuerFingerprintSha256": entry.issuer_fingerprint,
        "reason": entry.reason,
    }
