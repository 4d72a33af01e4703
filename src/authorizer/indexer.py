"""The indexer: verifies each CRL once and writes the shared revocation index every container reads.

    EventBridge schedule / S3 ObjectCreated ──▶ indexer.lambda_handler ──▶ s3://…/index/crl/<sha>.idx

It indexes every CRL it knows of: the S3 CRL sources (REVOCATION_CRL_S3_URI), the distribution
points of the truststore's CAs, REVOCATION_INDEX_URLS, and the sources containers asked for (objects
under the index's write-only `requests/` prefix, remembered in `sources.json`). Each CRL is verified
with the authorizer's own code (crl.parse_and_verify: issuer name, signature by a truststore CA or
its separate CRL-signing certificate, extensions, scope) and its freshness; an index is never
replaced by an older CRL (RFC 5280 §5.2.3). Each CRL set also gets a manifest of what is indexed in
it (crl_index.set_key). `mtls-authorizer index` runs the same thing once, locally.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from . import crl, crl_index
from .certs import Cert
from .crl_index import source_name

__all__ = ["Indexer", "Outcome", "Report", "lambda_handler", "source_name"]
from .fetch import Fetcher, FetchError, Request
from .freshness import StaleData, usable_until
from .s3 import S3Error, S3Location, S3Reader
from .settings import Settings
from .truststore import Truststore

MAX_SOURCES = 10_000
_HEADER_RANGE = f"bytes=0-{crl_index.MAX_HEADER_BYTES + 11}"


@dataclass(frozen=True, slots=True)
class Outcome:
    source: str
    status: str  # indexed, unchanged, skipped, failed
    detail: str = ""
    entries: int = 0
    age_seconds: float = 0.0  # since the indexed CRL's thisUpdate


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "indexed": self.count("indexed"),
            "unchanged": self.count("unchanged"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "sources": [_outcome(o) for o in self.outcomes],
        }


def _outcome(o: Outcome) -> dict[str, Any]:
    return {
        "source": o.source,
        "status": o.status,
        "detail": o.detail,
        "entries": o.entries,
        "ageSeconds": round(o.age_seconds),
    }


class Indexer:
    def __init__(
        self,
        settings: Settings,
        truststore: Truststore,
        reader: S3Reader,
        fetcher: Fetcher | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        if not settings.sources.index_uri:
            raise ValueError("REVOCATION_INDEX_S3_URI is not set")
        self._settings = settings
        self._location = S3Location.parse(settings.sources.index_uri)
        self._truststore = truststore
        # The index headers this run read or wrote, by source: the CRL sets' manifests reuse them.
        self._headers: dict[str, crl_index.IndexHeader] = {}
        self._cas = (*truststore.anchors, *truststore.intermediates)
        self._reader = reader
        self._fetcher = fetcher or Fetcher(settings.fetch)
        self._now = now
        self._log = log

    # --- what to index ---------------------------------------------------------------------------

    def sources(self, only: Iterable[str] = ()) -> list[str]:
        """Every source to index (or just `only`), each once, S3 URLs by their s3:// name."""
        if only:
            return list(dict.fromkeys(only))
        found: list[str] = []
        for uri in self._settings.sources.crl_s3_uris:
            location = S3Location.parse(uri)
            found += [
                f"s3://{location.bucket}/{item.key}" for item in self._reader.list(location, MAX_SOURCES)
            ]
        for ca in self._cas:
            points, _ = crl.distribution_points(ca)
            found += [source_name(url) for point in points for url in point.urls]
        found += [source_name(url) for url in self._settings.sources.index_urls]
        found += self._requested()
        return list(dict.fromkeys(found))[:MAX_SOURCES]

    def _requested(self) -> list[str]:
        """Sources containers asked for: moved from `requests/` into `sources.json`, kept for good."""
        bucket, prefix = self._location.bucket, self._location.key
        try:
            known = [str(s) for s in json.loads(self._reader.get(bucket, f"{prefix}sources.json").body)]
        except S3Error as exc:
            if "NoSuchKey" not in str(exc):  # unreadable now: merge next run, never overwrite with less
                self._log(f"{prefix}sources.json not read ({exc}); requests left for the next run")
                return []
            known = []
        except (ValueError, TypeError):
            self._log(f"{prefix}sources.json does not parse; requests left for the next run")
            return []
        asked: list[str] = []
        keys: list[str] = []
        for item in self._reader.list(S3Location(bucket, f"{prefix}requests/"), MAX_SOURCES):
            try:
                request = json.loads(self._reader.get(bucket, item.key).body)
                asked.append(source_name(str(request["source"])))
            except (S3Error, ValueError, KeyError, TypeError):
                self._log(f"index request {item.key} ignored: not a request")
            keys.append(item.key)
        merged = list(dict.fromkeys([*known, *asked]))[:MAX_SOURCES]
        if asked:
            client = self._reader.client()
            client.put_object(Bucket=bucket, Key=f"{prefix}sources.json", Body=json.dumps(merged).encode())
        for key in keys:
            self._reader.client().delete_object(Bucket=bucket, Key=key)
        return merged

    def _forget_unindexable(self, report: Report) -> None:
        """Drop from sources.json what containers asked for but cannot be indexed and never was (not a
        CRL, a forged one, unreachable): it would fail every run and keep the failure alarm on. A
        source indexed once stays, so an outage of its server still shows as failures."""
        bucket, key = self._location.bucket, f"{self._location.key}sources.json"
        try:
            known = [str(s) for s in json.loads(self._reader.get(bucket, key).body)]
        except (S3Error, ValueError, TypeError):
            return
        hopeless = {
            o.source
            for o in report.outcomes
            if o.status in ("failed", "skipped") and o.source in known and self._existing(o.source) is None
        }
        if hopeless:
            kept = [s for s in known if s not in hopeless]
            self._reader.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(kept).encode())
            self._log(f"sources.json: forgot {len(hopeless)} requested sources that cannot be indexed")

    # --- indexing ---------------------------------------------------------------------------------

    def run(self, only: Iterable[str] = ()) -> Report:
        only = list(only)
        report = Report()
        for source in self.sources(only):
            try:
                report.outcomes.append(self.index(source))
            except Exception as exc:  # one bad source never stops the others
                report.outcomes.append(Outcome(source, "failed", f"{type(exc).__name__}: {exc}"))
        if not only:
            self._forget_unindexable(report)
        self._write_set_manifests(only)
        for outcome in report.outcomes:
            if outcome.status in ("failed", "skipped"):
                self._log(f"{outcome.source}: {outcome.status}: {outcome.detail}")
        return report

    def index(self, source: str) -> Outcome:
        data, etag = self._read(source)
        digest = hashlib.sha256(data).hexdigest()
        existing = self._existing(source)
        if existing is not None and existing.crl_sha256 == digest:
            self._headers[source] = existing
            return Outcome(
                source, "unchanged", entries=existing.entries, age_seconds=self._age(existing.this_update)
            )
        try:
            issuer_name = _crl_issuer(data)
        except ValueError:
            return Outcome(source, "skipped", "not a CRL")
        index, issuer = self._verify(data, issuer_name)
        try:
            usable_until(index.this_update, index.next_update, self._now(), self._settings.revocation)
        except StaleData as exc:
            return Outcome(source, "failed", f"not indexed: {exc}")
        if existing is not None and _older(index, existing):
            return Outcome(source, "failed", "refused: older than the CRL already indexed (RFC 5280 §5.2.3)")
        blob = crl_index.encode(
            index,
            source=source,
            issuer_fingerprint=issuer.fingerprint,
            issuer_name_der=issuer.crypto.subject.public_bytes(),
            crl_sha256=digest,
            source_etag=etag,
            skeleton=crl_index.skeleton_of(_der(data)),
        )
        header, restored = crl_index.decode(blob, issuer.crypto.subject)
        unindexable = _unindexable(index, restored)
        if unindexable:  # the containers fetch such a CRL themselves
            return Outcome(source, "skipped", f"not indexed: {unindexable} (the index holds plain CRLs)")
        self._reader.client().put_object(
            Bucket=self._location.bucket,
            Key=crl_index.object_key(self._location.key, source),
            Body=blob,
            ContentType="application/octet-stream",
        )
        self._headers[source] = header
        return Outcome(source, "indexed", entries=index.entries, age_seconds=self._age(index.this_update))

    def _write_set_manifests(self, only: list[str]) -> None:
        """Each CRL set's manifest (crl_index.set_key): its objects' ETags and index skeletons, so a
        container lists the set with one read. Rewritten after a run that could have changed it."""
        for uri in self._settings.sources.crl_s3_uris:
            location = S3Location.parse(uri)
            under = str(location)
            if only and not any(source.startswith(under) for source in only):
                continue
            try:
                self._write_set_manifest(location)
            except Exception as exc:  # meanwhile containers read the set's index headers one by one
                self._log(f"manifest of {under} not written: {type(exc).__name__}: {exc}")

    def _write_set_manifest(self, location: S3Location) -> None:
        bucket, key = self._location.bucket, crl_index.set_key(self._location.key, str(location))
        try:
            previous = crl_index.decode_set(self._reader.get(bucket, key).body, str(location))
        except (S3Error, crl_index.CorruptIndex):
            previous = {}
        entries: dict[str, tuple[str, bytes]] = {}
        for item in self._reader.list(location, MAX_SOURCES):
            where = f"s3://{location.bucket}/{item.key}"
            kept = previous.get(where)
            if kept is not None and kept[0] == item.etag:
                entries[where] = kept
                continue
            header = self._headers.get(where) or self._existing(where)
            if header is not None and item.etag and header.source_etag == item.etag and header.skeleton:
                entries[where] = (item.etag, header.skeleton)
        if entries != previous:
            body = crl_index.encode_set(str(location), entries)
            self._reader.client().put_object(
                Bucket=bucket, Key=key, Body=body, ContentType="application/json"
            )

    def _read(self, source: str) -> tuple[bytes, str]:
        if source.startswith("s3://"):
            location = S3Location.parse(source)
            obj = self._reader.get(location.bucket, location.key)
            return obj.body, obj.etag
        deadline = time.monotonic() + max(self._settings.budget_seconds, 30.0)
        try:
            response = self._fetcher.fetch(
                Request(source, max_bytes=self._settings.fetch.max_crl_bytes), deadline
            )
        except FetchError as exc:  # reported like an S3 read failure: the source could not be read
            raise S3Error(f"{source}: fetch failed ({exc.kind})") from exc
        return response.body, response.headers.get("etag", "")

    def _existing(self, source: str) -> crl_index.IndexHeader | None:
        key = crl_index.object_key(self._location.key, source)
        try:
            head = self._reader.client().get_object(
                Bucket=self._location.bucket, Key=key, Range=_HEADER_RANGE
            )
            header, _ = crl_index.read_header(head["Body"].read())
            return header
        except Exception:  # none yet, or unreadable: this run writes a new one
            return None

    def _verify(self, data: bytes, issuer_name: x509.Name) -> tuple[crl.CrlIndex, Cert]:
        """The CRL verified against the truststore CA that issued it: signed by its key, or by a
        separate CRL-signing certificate of the truststore (§6.3.3 (f), the containers' own rules:
        same name, cRLSign, a path to the CA's anchor). That signer's own revocation is the
        containers' to check, when they use the index, as they would for the CRL."""
        errors: list[str] = []
        for ca in self._cas:
            if ca.crypto.subject != issuer_name:
                continue
            try:
                return crl.parse_and_verify(data, ca, signers=self._signers_for(ca)), ca
            except crl.CRLError as exc:
                errors.append(str(exc))
        raise crl.CRLError("; ".join(errors) or "no truststore CA issued this CRL")

    def _signers_for(self, ca: Cert) -> crl.SignerFinder:
        """The CA's separate CRL-signing certificates, looked for only when its own key did not sign
        (the CA's path to its anchor is validated then, not for every CRL)."""
        from .crl_issuer import find_signers
        from .sources import Link
        from .trust import Untrusted, validate_path

        def find(name: x509.Name) -> list[Cert]:
            now, skew = self._now(), self._settings.revocation.clock_skew_seconds
            anchor = ca
            if not any(ca is a for a in self._truststore.anchors):
                try:
                    anchor = validate_path(ca, self._truststore, now, skew).certs[-1]
                except Untrusted:
                    return []  # the CA itself is not valid now: only its own key can have signed
            return find_signers(Link(ca, ca, anchor, self._truststore), name, now, skew)

        return find

    def _age(self, this_update: datetime) -> float:
        return max(0.0, (self._now() - this_update).total_seconds())


def _crl_issuer(data: bytes) -> x509.Name:
    from .sources.crl_set import candidate

    parsed = candidate("", "", data)
    if parsed is None or parsed.delta:
        raise ValueError("not a complete CRL")
    return parsed.issuer


def _der(data: bytes) -> bytes:
    from .sources.crl_set import candidate

    parsed = candidate("", "", data)
    assert parsed is not None  # _crl_issuer accepted it
    return parsed.der


def _unindexable(index: crl.CrlIndex, restored: crl.CrlIndex) -> str:
    """What the index format would lose of this CRL (a delta, reason partitions, an indirect CRL, a
    FreshestCRL pointer, a relative-name IDP): such CRLs are left to the containers."""
    for name in ("reasons", "indirect", "delta_base", "freshest_declared", "foreign", "removed"):
        if getattr(index, name) != getattr(restored, name):
            return name
    return "" if index.idp_keys() == restored.idp_keys() else "IDP names other than URLs"


def _older(index: crl.CrlIndex, existing: crl_index.IndexHeader) -> bool:
    if index.crl_number is not None and existing.crl_number is not None:
        return index.crl_number < existing.crl_number
    return index.this_update < existing.this_update


# --- the Lambda function ------------------------------------------------------------------------


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Scheduled (index everything) or S3 ObjectCreated (index the objects named); never raises."""
    from .app import _s3_client
    from .observability import logger
    from .truststore import S3TruststoreLoader, TruststoreError

    settings = Settings.from_env()
    try:
        loader = S3TruststoreLoader(
            settings.truststore_bucket,
            settings.truststore_key,
            settings.truststore_version,
            settings.truststore_refresh_seconds,
            10.0,
            _s3_client,
        )
        truststore = loader.get()
        indexer = Indexer(
            settings,
            truststore,
            S3Reader(_s3_client, settings.fetch.max_crl_bytes),
            log=lambda message: logger.warning("indexer", extra={"problem": message}),
        )
        report = indexer.run(_objects_named(event))
    except (TruststoreError, ValueError, S3Error) as exc:
        logger.error("indexer run failed", extra={"error": str(exc)})
        _emit_metrics(Report([Outcome("", "failed", str(exc))]))
        return {"failed": 1}
    summary = {k: v for k, v in report.as_dict().items() if k != "sources"}
    logger.info("indexer run", extra={**summary, "sources": [_outcome(o) for o in report.outcomes]})
    _emit_metrics(report)
    return summary


def _emit_metrics(report: Report) -> None:
    """One EMF document per run: runs, CRLs indexed, failures, and the oldest index's age (an alarm
    compares it with the CRLs' update interval)."""
    from aws_lambda_powertools.metrics import MetricUnit

    from .observability import logger, metrics

    try:
        metrics.add_metric(name="IndexerRuns", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="CrlsIndexed", unit=MetricUnit.Count, value=report.count("indexed"))
        metrics.add_metric(name="IndexFailures", unit=MetricUnit.Count, value=report.count("failed"))
        ages = [o.age_seconds for o in report.outcomes if o.status in ("indexed", "unchanged")]
        if ages:
            metrics.add_metric(name="IndexMaxAgeSeconds", unit=MetricUnit.Seconds, value=max(ages))
        metrics.flush_metrics()
    except Exception:  # metrics never fail a run
        logger.exception("could not emit indexer metrics")


def _objects_named(event: Any) -> list[str]:
    """The s3:// objects an S3 notification (`Records[].s3`) or an EventBridge "Object Created" event
    (`detail.bucket.name`, `detail.object.key`) names; empty for a scheduled run (everything)."""
    from urllib.parse import unquote_plus

    if not isinstance(event, dict):
        return []
    names: list[str] = []
    detail = event.get("detail")
    if event.get("detail-type") == "Object Created" and isinstance(detail, dict):
        with contextlib.suppress(KeyError, TypeError):
            names.append(f"s3://{detail['bucket']['name']}/{detail['object']['key']}")
    records = event.get("Records", [])
    for record in records if isinstance(records, list) else []:
        try:
            bucket, key = record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"])
        except (KeyError, TypeError):
            continue
        names.append(f"s3://{bucket}/{key}")
    return names
