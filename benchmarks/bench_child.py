"""One benchmark scenario group, run in its own process so its peak RSS is its own.

    python benchmarks/bench_child.py SPEC.json

SPEC names the kind (baseline, authorizer, memory, profile, indexer, index-first), the certificates (PEM
strings), the sample counts and where to write the result (JSON). The parent sets the environment
(truststore, fetch limits, Powertools, the memory size, the revocation sources) and sends this process's
stdout to /dev/null, so Powertools' EMF lines cost what they cost in Lambda without flooding a terminal.
Progress goes to stderr.
"""

from __future__ import annotations

import asyncio
import cProfile
import datetime as dt
import gc
import io
import json
import logging
import math
import os
import pstats
import resource
import statistics
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

Json = dict[str, Any]


def log(message: str) -> None:
    print(f"  [{os.getpid()}] {message}", file=sys.stderr, flush=True)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return math.nan


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, the high-water mark of its own address space.

    Not ru_maxrss: Linux carries the parent's high-water mark over fork+exec into the child's
    ru_maxrss, so every child would report at least the parent's RSS at spawn time.
    """
    peak = _status_mb("VmHWM")
    return peak if not math.isnan(peak) else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mb() -> float:
    return _status_mb("VmRSS")


class Counts:
    """Requests the loopback HTTP server has answered, read with a POST to its stats path (never counted)."""

    def __init__(self, url: str) -> None:
        self._url = url

    def snapshot(self) -> dict[str, int]:
        with urllib.request.urlopen(self._url, data=b"", timeout=10) as response:
            data: dict[str, int] = json.loads(response.read())
            return data

    @staticmethod
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        keys = set(before) | set(after)
        return {
            k: after.get(k, 0) - before.get(k, 0) for k in sorted(keys) if after.get(k, 0) != before.get(k, 0)
        }


class OffsetClock:
    """The authorizer's clock (`app.reset(clock)`): real UTC time plus an offset we can move forward."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


def timed(samples: list[float], call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = call()
    samples.append((time.perf_counter() - started) * 1000)
    return result


# ------------------------------------------------------------------------------------------------ baseline
def run_baseline(spec: Json) -> Json:
    """The proof of concept: a fresh pyhanko-certvalidator context per request, fetching in hard-fail mode."""
    logging.getLogger("asyncio").setLevel(
        logging.CRITICAL
    )  # aiohttp's "Unclosed client session", per request
    from asn1crypto import pem as asn1_pem
    from asn1crypto import x509 as asn1_x509
    from pyhanko_certvalidator import CertificateValidator, ValidationContext

    def load(text: str) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(asn1_pem.unarmor(text.encode())[2])

    root, issuing = load(spec["root_pem"]), load(spec["ca_pem"])
    good, revoked = load(spec["good_pem"]), load(spec["revoked_pem"])

    def validate(leaf: asn1_x509.Certificate) -> str:
        context = ValidationContext(
            trust_roots=[root], other_certs=[issuing], allow_fetching=True, revocation_mode="hard-fail"
        )
        validator = CertificateValidator(leaf, validation_context=context)
        try:
            asyncio.run(validator.async_validate_usage(set()))  # type: ignore[no-untyped-call]
        except Exception as exc:
            return type(exc).__name__
        return "valid"

    counts = Counts(spec["stats_url"])
    samples: list[float] = []
    outcomes: list[str] = []
    before = counts.snapshot()
    for i in range(spec["baseline_samples"]):
        outcomes.append(timed(samples, lambda: validate(good)))
        log(f"baseline {spec['label']} sample {i + 1}: {samples[-1]:.0f} ms ({outcomes[-1]})")
    requests = Counts.delta(before, counts.snapshot())
    result: Json = {"baseline": {"ms": samples, "requests": requests, "outcomes": outcomes}}
    if spec.get("baseline_revoked", True):
        revoked_ms: list[float] = []
        result["baseline_revoked"] = {
            "outcome": timed(revoked_ms, lambda: validate(revoked)),
            "ms": revoked_ms,
        }
    result["peak_rss_mb"] = peak_rss_mb()
    result["ru_maxrss_mb"] = ru_maxrss_mb()
    return result


# ---------------------------------------------------------------------------------------------- authorizer
class Handler:
    def __init__(self) -> None:
        from authorizer import app
        from authorizer.sample_events import rest_event

        self.app = app
        self.event = rest_event
        self.clock = OffsetClock()

    def reset(self) -> None:
        self.app.reset(self.clock)

    def __call__(self, event: Json) -> Json:
        result: Json = self.app.lambda_handler(event, None)
        return result


def verdict(response: Json) -> str:
    effect = response["policyDocument"]["Statement"][0]["Effect"]
    return f"{effect}/{response.get('context', {}).get('reason', '?')}"


@contextmanager
def breakdown(totals: dict[str, float]) -> Iterator[None]:
    """Time the stages of a first request by wrapping module attributes (src/ stays untouched)."""
    from authorizer import app, crl, fetch, truststore

    targets = [
        (truststore.S3TruststoreLoader, "get", "truststore (S3)"),
        (app, "validate_path", "path validation"),
        (fetch.Fetcher, "fetch", "HTTP fetch"),
        (crl, "parse_and_verify", "CRL parse+verify+index"),
    ]
    with wrapped(targets, totals):
        yield


def run_authorizer(spec: Json) -> Json:
    started_import = time.perf_counter()
    handler = Handler()
    import_ms = (time.perf_counter() - started_import) * 1000
    counts = Counts(spec["stats_url"])
    label = spec["label"]
    good = handler.event(spec["good_pem"])
    revoked = handler.event(spec["revoked_pem"])
    fresh = [handler.event(p) for p in spec["new_pems"]]
    result: Json = {"import_ms_in_child": import_ms}

    import boto3  # noqa: F401 - the authorizer imports it on first use; count it in the idle RSS

    result["idle_rss_mb"] = current_rss_mb()
    # Warm-up, untimed: the container's first invocation (boto3 client, first fetches) happens once.
    handler.reset()
    result["warmup_verdict"] = verdict(handler(good))

    # First request: cold caches (a new runtime: settings, truststore from S3, revocation caches).
    samples: list[float] = []
    verdicts: list[str] = []
    stages: dict[str, float] = {}
    before = counts.snapshot()
    with breakdown(stages):
        for i in range(spec["first_samples"]):
            handler.reset()
            verdicts.append(verdict(timed(samples, lambda: handler(good))))
            log(f"authorizer {label} first request {i + 1}: {samples[-1]:.1f} ms ({verdicts[-1]})")
    n = max(1, spec["first_samples"])
    result["first"] = {
        "ms": samples,
        "verdicts": sorted(set(verdicts)),
        "requests": Counts.delta(before, counts.snapshot()),
        "stages_ms": {k: v / n for k, v in stages.items()},
        "rss_after_mb": current_rss_mb(),
    }

    # Correctness on a warm runtime: the revoked certificate of the same CA.
    result["revoked_verdict"] = verdict(handler(revoked))

    # Warm, the same certificate again.
    samples, verdicts = [], []
    before = counts.snapshot()
    for _ in range(spec["seen_samples"]):
        verdicts.append(verdict(timed(samples, lambda: handler(good))))
    result["seen"] = {
        "ms": samples,
        "verdicts": sorted(set(verdicts)),
        "requests": Counts.delta(before, counts.snapshot()),
    }
    log(f"authorizer {label} warm seen: {len(samples)} samples")

    # Warm, a certificate of the same CA never seen before (the CRL already indexed / OCSP to ask).
    samples, verdicts = [], []
    before = counts.snapshot()
    for event in fresh:
        verdicts.append(verdict(timed(samples, lambda e=event: handler(e))))  # type: ignore[misc]
    result["new"] = {
        "ms": samples,
        "verdicts": sorted(set(verdicts)),
        "requests": Counts.delta(before, counts.snapshot()),
    }
    log(f"authorizer {label} warm new certificate: {len(samples)} samples")

    before = counts.snapshot()
    for event in fresh:
        handler(event)
    result["new_again_requests"] = Counts.delta(before, counts.snapshot())

    if spec["source"] == "crl":
        result["revalidate"] = revalidate(handler, counts, good)
    else:
        result["windows"] = ocsp_windows(handler, counts, fresh, good)
    result["peak_rss_mb"] = peak_rss_mb()
    result["ru_maxrss_mb"] = ru_maxrss_mb()
    return result


def revalidate(handler: Handler, counts: Counts, good: Json) -> Json:
    """Past the cache's maximum age: a conditional GET (If-None-Match) that the server answers 304."""
    handler.clock.offset += dt.timedelta(seconds=3601)
    samples: list[float] = []
    before = counts.snapshot()
    outcome = verdict(timed(samples, lambda: handler(good)))
    return {"ms": samples, "verdict": outcome, "requests": Counts.delta(before, counts.snapshot())}


def ocsp_windows(handler: Handler, counts: Counts, fresh: list[Json], good: Json) -> Json:
    """How many responder requests each certificate costs per freshness window."""
    windows: Json = {}
    # Later inside the same window (nextUpdate = +60 min, max age 60 min): still no request.
    handler.clock.offset += dt.timedelta(minutes=55)
    before = counts.snapshot()
    for event in [good, *fresh]:
        handler(event)
    windows["same_window_plus_55min"] = {
        "certs": len(fresh) + 1,
        "requests": Counts.delta(before, counts.snapshot()),
    }

    # A short window (REVOCATION_CACHE_MAX_AGE_SECONDS=300): one request per certificate per window.
    certs = fresh[:50]
    os.environ["REVOCATION_CACHE_MAX_AGE_SECONDS"] = "300"
    handler.clock.offset = dt.timedelta(0)
    handler.reset()
    rounds: list[Json] = []
    for step, advance in enumerate((0, 0, 301, 0, 150)):
        handler.clock.offset += dt.timedelta(seconds=advance)
        before = counts.snapshot()
        verdicts = sorted({verdict(handler(event)) for event in certs})
        rounds.append(
            {
                "round": step + 1,
                "clock_offset_s": handler.clock.offset.total_seconds(),
                "certs": len(certs),
                "requests": Counts.delta(before, counts.snapshot()),
                "verdicts": verdicts,
            }
        )
    windows["max_age_300s"] = rounds
    del os.environ["REVOCATION_CACHE_MAX_AGE_SECONDS"]
    return windows


# ------------------------------------------------------------------------------------------------ memory
def with_pem(template: Json, pem: str) -> Json:
    """`template` (a REST event) for another client certificate; only clientCertPem is read."""
    context = template["requestContext"]
    identity = context["identity"]
    client = {**identity["clientCert"], "clientCertPem": pem}
    return {**template, "requestContext": {**context, "identity": {**identity, "clientCert": client}}}


@contextmanager
def old_caches(current_pem: list[str]) -> Iterator[Any]:
    """Re-create the per-client caches the handler kept before byte budgets: the parsed Cert by its PEM
    and the validated CertPath by (fingerprint, truststore version), 20,000 entries each, filled where
    the handler used to fill them (on every path validation)."""
    from authorizer import app
    from authorizer.cache import ExpiringCache

    certs: ExpiringCache[str, Any] = ExpiringCache(20_000)
    paths: ExpiringCache[tuple[str, str], Any] = ExpiringCache(20_000)
    original = app.validate_path

    def keeping(cert: Any, truststore: Any, moment: dt.datetime, skew: float) -> Any:
        path = original(cert, truststore, moment, skew)
        certs.put(current_pem[0], cert, cert.crypto.not_valid_after_utc)
        expiry = min(c.crypto.not_valid_after_utc for c in path.certs) + dt.timedelta(seconds=skew)
        paths.put((cert.fingerprint, truststore.version), path, expiry)
        return path

    app.validate_path = keeping  # type: ignore[assignment]
    try:
        yield paths
    finally:
        app.validate_path = original


def read_clients(path: str) -> Iterator[str]:
    """The client PEMs one at a time: the whole file in memory would be counted as the handler's."""
    with open(path) as lines:
        for line in lines:
            yield json.loads(line)


def run_memory(spec: Json) -> Json:
    """RSS against distinct clients seen: each client once, RSS at each checkpoint."""
    handler = Handler()
    import boto3  # noqa: F401 - as in run_authorizer: part of the baseline, not of the clients

    template = handler.event(spec["good_pem"])
    revoked = handler.event(spec["revoked_pem"])
    handler.reset()
    result: Json = {"warmup_verdict": verdict(handler(template))}
    result["revoked_before"] = verdict(handler(revoked))
    runtime = handler.app._runtime
    budgets = runtime.budgets
    result["budgets"] = {"clients": budgets.clients.max_bytes, "crls": budgets.crls.max_bytes}
    checkpoints = set(spec["checkpoints"])
    current = [""]
    verdicts: Counter[str] = Counter()
    rows: list[Json] = []
    first = ""
    with old_caches(current) if spec["entry_bound"] else nullcontext() as old:
        gc.collect()
        base = current_rss_mb()
        result["base_rss_mb"] = base
        for seen, pem in enumerate(read_clients(spec["clients_file"]), 1):
            first = first or pem
            current[0] = pem
            verdicts[verdict(handler(with_pem(template, pem)))] += 1
            if seen in checkpoints:
                gc.collect()
                rss = current_rss_mb()
                rows.append(
                    {
                        "clients": seen,
                        "held": len(runtime.clients),
                        "old_held": len(old) if old is not None else 0,
                        "rss_mb": rss,
                        "delta_mb": rss - base,
                        "accounted_mb": budgets.clients.used / 1024 / 1024,
                        "evictions": budgets.clients.evictions,
                        "hwm_mb": peak_rss_mb(),
                    }
                )
                log(f"memory {spec['label']}: {seen:,} clients, RSS {rss:.0f} MB")
            if seen >= max(checkpoints):
                break
        result["revoked_after"] = verdict(handler(revoked))
        result["first_again"] = verdict(handler(with_pem(template, first)))
    result["rows"] = rows
    result["verdicts"] = dict(verdicts)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


# ------------------------------------------------------------------------------------------------ profile
@contextmanager
def wrapped(targets: Sequence[tuple[Any, str, str]], totals: dict[str, float]) -> Iterator[None]:
    """Add the wall time of each (owner, attribute) call to totals[label]; restore the originals after."""
    originals: list[tuple[Any, str, Any]] = []
    for owner, name, label in targets:
        original = getattr(owner, name, None)
        if owner is None or original is None:  # src is refactored often: measure what exists
            continue

        def wrapper(*args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                totals[_label] = totals.get(_label, 0.0) + (time.perf_counter() - started) * 1000

        originals.append((owner, name, original))
        setattr(owner, name, wrapper)
    try:
        yield
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def _warm_stages(handler: Handler, events: list[Json]) -> Json:
    """Mean ms per call of each stage of `decide` and of the response, over `events`."""
    from authorizer import app, revocation

    totals: dict[str, float] = {}
    targets = [
        (app, "parse_event", "events.parse_event"),
        (app, "_pem_key", "_pem_key (SHA-256 of the PEM: the clients cache's key)"),
        (
            revocation.RevocationChecker,
            "cached_result",
            "RevocationChecker.cached_result (the warm path's held decision)",
        ),
        (app, "load_client_cert", "load_client_cert (PEM → cryptography + asn1crypto; on a miss)"),
        (
            app,
            "validate_path",
            "trust.validate_path (pyhanko; a known CA's new client: cryptography; on a miss)",
        ),
        (
            revocation.RevocationChecker,
            "check",
            "RevocationChecker.check (CRL look-up / OCSP; on a miss)",
        ),
        (app, "_log_decision", "_log_decision (Powertools Logger, level ERROR)"),
        (app, "_emit_metrics", "_emit_metrics (Powertools EMF: add_metric x n, serialise, print)"),
        (app, "build_response", "build_response (IAM policy)"),
    ]
    samples: list[float] = []
    with wrapped(targets, totals):
        for event in events:
            timed(samples, lambda e=event: handler(e))  # type: ignore[misc]
    stages = {k: v / len(events) for k, v in totals.items()}
    stages["whole handler, wrapped (p50)"] = statistics.median(samples)
    stages["whole handler, wrapped (mean)"] = statistics.fmean(samples)
    return stages


def _crl_stages(spec: Json) -> tuple[Json, cProfile.Profile]:
    """crl.parse_and_verify on the family's CRL in the main thread (a first request runs it in a worker
    thread, which cProfile does not see): its sub-steps timed, then once more under cProfile."""
    from cryptography import x509

    from authorizer import crl
    from authorizer.certs import load_client_cert

    with urllib.request.urlopen(spec["crl_url"], timeout=60) as response:
        body = response.read()
    issuer = load_client_cert(spec["ca_pem"])
    totals: dict[str, float] = {}
    targets = [
        (crl, "_to_der", "_to_der"),
        (x509, "load_der_x509_crl", "cryptography load_der_x509_crl"),
        (crl, "_check_signature", "_check_signature (asn1crypto load + tbs dump + verify)"),
        (crl, "_check_extensions", "_check_extensions"),
        (crl, "_serial_index", "_serial_index (DER walk into a set)"),
    ]
    started = time.perf_counter()
    with wrapped(targets, totals):
        index = crl.parse_and_verify(body, issuer)
    whole = (time.perf_counter() - started) * 1000
    stages: Json = dict(totals)
    stages["rest of parse_and_verify (len(crl), names, CrlIndex, ...)"] = whole - sum(totals.values())
    stages["parse_and_verify total"] = whole
    stages["entries"] = index.entries
    del index
    profiler = cProfile.Profile()
    profiler.enable()
    crl.parse_and_verify(body, issuer)
    profiler.disable()
    return stages, profiler


def run_profile(spec: Json) -> Json:
    """Where a missed target's time goes: a stage breakdown and cProfile's top functions."""
    handler = Handler()
    good = handler.event(spec["good_pem"])
    fresh = [handler.event(p) for p in spec["new_pems"]]
    handler.reset()
    handler(good)
    scenario = spec["scenario"]
    report: Json = {"scenario": scenario}
    profiler = cProfile.Profile()
    if scenario == "first":
        report["stages"], profiler = _crl_stages(spec)
        calls = 1
    elif scenario == "seen":
        report["stages"] = _warm_stages(handler, [good] * 1000)
        calls = 500
        profiler.enable()
        for _ in range(calls):
            handler(good)
        profiler.disable()
    else:
        report["stages"] = _warm_stages(handler, fresh)
        handler.reset()  # the same certificates are new again to a new runtime
        handler(good)
        calls = len(fresh)
        profiler.enable()
        for event in fresh:
            handler(event)
        profiler.disable()
    report["calls"] = calls
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats(key).print_stats(18)
        report[key] = _trim(text.getvalue())
    return report


def _trim(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return "\n".join(line.replace(root + "/", "").rstrip() for line in lines[start:] if line.strip())


# ------------------------------------------------------------------------------------------------ index
class S3Meter:
    """What this process reads from S3: every `S3Reader.get` (bucket, key, body bytes, ms), the listings,
    and every object body botocore hands over (the truststore's included). Installed once, read in deltas."""

    def __init__(self) -> None:
        import threading

        from botocore.response import StreamingBody

        from authorizer import s3

        self._lock = threading.Lock()
        self.gets: list[tuple[str, str, int, float, str]] = []  # bucket, key, bytes, ms, error code
        self.lists = 0
        self.listed = 0
        self.body_bytes = 0
        real_get, real_list, real_read = s3.S3Reader.get, s3.S3Reader.list, StreamingBody.read
        meter = self

        def get(reader: Any, bucket: str, key: str, etag: str = "") -> Any:
            started = time.perf_counter()
            try:
                obj = real_get(reader, bucket, key, etag)
            except s3.S3Error as exc:
                meter._get(bucket, key, 0, started, str(exc).rsplit(": ", 1)[-1])
                raise
            meter._get(bucket, key, len(obj.body), started, "" if obj.changed else "304")
            return obj

        def listing(reader: Any, location: Any, limit: int) -> Iterator[Any]:
            with meter._lock:
                meter.lists += 1
            for item in real_list(reader, location, limit):
                with meter._lock:
                    meter.listed += 1
                yield item

        def read(body: Any, amt: int | None = None) -> bytes:
            data: bytes = real_read(body, amt)
            with meter._lock:
                meter.body_bytes += len(data)
            return data

        setattr(s3.S3Reader, "get", get)  # noqa: B010 - a patch, for this process's life
        setattr(s3.S3Reader, "list", listing)  # noqa: B010
        setattr(StreamingBody, "read", read)  # noqa: B010

    def _get(self, bucket: str, key: str, size: int, started: float, error: str) -> None:
        with self._lock:
            self.gets.append((bucket, key, size, (time.perf_counter() - started) * 1000, error))

    def mark(self) -> tuple[int, int, int, int]:
        with self._lock:
            return len(self.gets), self.lists, self.listed, self.body_bytes

    def since(self, mark: tuple[int, int, int, int], index_bucket: str) -> Json:
        """What was read since `mark`: bytes and GETs of index objects and of everything else."""
        with self._lock:
            gets = self.gets[mark[0] :]
            lists, listed, body = self.lists - mark[1], self.listed - mark[2], self.body_bytes - mark[3]
        index = [g for g in gets if g[0] == index_bucket]
        other = [g for g in gets if g[0] != index_bucket]
        return {
            "index_bytes": sum(g[2] for g in index),
            "index_gets": len(index),
            "index_missing": sum(1 for g in index if g[4] == "NoSuchKey"),
            "crl_bytes": sum(g[2] for g in other),
            "crl_gets": len(other),
            "get_ms": sum(g[3] for g in gets),
            "lists": lists,
            "listed": listed,
            "body_bytes": body,  # every S3 object body read, the truststore's included
            "largest": sorted(((g[2], f"s3://{g[0]}/{g[1]}") for g in gets), reverse=True)[:3],
        }


@contextmanager
def per_call(owner: Any, name: str, samples: list[float]) -> Iterator[None]:
    """Append the wall time (ms) of every call of owner.name to `samples`."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            samples.append((time.perf_counter() - started) * 1000)

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _first_request_stages() -> list[tuple[Any, str, str]]:
    from authorizer import app, crl, crl_index, truststore
    from authorizer.sources import crl_set

    return [
        (app, "_s3_client", "boto3 S3 clients (created on first use)"),
        (truststore.S3TruststoreLoader, "get", "truststore (S3)"),
        (app, "validate_path", "path validation"),
        (crl_set, "candidate", "CRL set: parse each listed object"),
        (crl, "parse_and_verify", "CRL parse+verify+index"),
        (crl_index, "tables", "index: SHA-256 of the tables"),
    ]


def run_index_first(spec: Json) -> Json:
    """A new container (this fresh process): its very first request, then warm requests.

    Nothing is warmed up first: the first `lambda_handler` call builds the runtime, creates the boto3
    clients, reads the truststore, lists the CRL set (when configured) and reads the index or the CRLs."""
    started_import = time.perf_counter()
    handler = Handler()
    import boto3  # noqa: F401 - the authorizer imports it on first use; counted in the idle RSS

    from authorizer import app
    from authorizer.revocation import RevocationChecker

    result: Json = {
        "import_ms": (time.perf_counter() - started_import) * 1000,
        "idle_rss_mb": current_rss_mb(),
    }
    meter = S3Meter()
    bucket = spec["index_bucket"]
    good = handler.event(spec["good_pem"])
    revoked = handler.event(spec["revoked_pem"])
    fresh = [handler.event(p) for p in spec["new_pems"]]
    others = [handler.event(p) for p in spec["other_pems"]]
    gc.collect()

    stages: dict[str, float] = {}
    mark = meter.mark()
    with wrapped(_first_request_stages(), stages):
        started = time.perf_counter()
        response = handler(good)
        result["first_ms"] = (time.perf_counter() - started) * 1000
    result["first_verdict"] = verdict(response)
    result["first_io"] = meter.since(mark, bucket)
    result["first_stages_ms"] = {**stages, "S3 GETs (sum)": result["first_io"]["get_ms"]}
    result["first_hwm_mb"] = peak_rss_mb()
    result["first_rss_mb"] = current_rss_mb()
    log(f"index {spec['label']}: first request {result['first_ms']:.0f} ms ({result['first_verdict']})")

    result["revoked_verdict"] = verdict(handler(revoked))
    samples: list[float] = []
    verdicts: set[str] = set()
    for _ in range(spec["seen_samples"]):
        verdicts.add(verdict(timed(samples, lambda: handler(good))))
    result["seen"] = {"ms": samples, "verdicts": sorted(verdicts)}

    samples = []
    checks: list[float] = []
    paths: list[float] = []
    verdicts = set()
    mark = meter.mark()
    with per_call(RevocationChecker, "check", checks), per_call(app, "validate_path", paths):
        for event in fresh:
            verdicts.add(verdict(timed(samples, lambda e=event: handler(e))))  # type: ignore[misc]
    result["new"] = {
        "ms": samples,
        "check_ms": checks,
        "path_ms": paths,
        "verdicts": sorted(verdicts),
        "io": meter.since(mark, bucket),
    }

    samples, verdicts = [], set()
    mark = meter.mark()
    for event in others:
        verdicts.add(verdict(timed(samples, lambda e=event: handler(e))))  # type: ignore[misc]
    result["other"] = {"ms": samples, "verdicts": sorted(verdicts), "io": meter.since(mark, bucket)}
    result["peak_rss_mb"] = peak_rss_mb()

    # The first request as the families measure it ("cold caches"): the runtime dropped, boto3 and its
    # service models already loaded in the process.
    app.reset()
    gc.collect()
    mark = meter.mark()
    started = time.perf_counter()
    response = handler(good)
    result["cold_ms"] = (time.perf_counter() - started) * 1000
    result["cold_verdict"] = verdict(response)
    result["cold_io"] = meter.since(mark, bucket)
    return result


def run_indexer(spec: Json) -> Json:
    """`Indexer(settings, truststore, S3Reader(...)).run()` once over every configured source, as the
    indexer function runs it: the time of each source, and the size of each index object written."""
    import boto3

    from authorizer import crl_index
    from authorizer.app import _s3_client
    from authorizer.indexer import Indexer, Outcome
    from authorizer.s3 import S3Location, S3Reader
    from authorizer.settings import Settings
    from authorizer.truststore import parse_truststore

    result: Json = {"idle_rss_mb": current_rss_mb()}
    settings = Settings.from_env()
    truststore = parse_truststore(spec["truststore_pem"].encode())
    seconds: dict[str, float] = {}

    class TimedIndexer(Indexer):
        def index(self, source: str) -> Outcome:
            started = time.perf_counter()
            try:
                return super().index(source)
            finally:
                seconds[source] = time.perf_counter() - started

    indexer = TimedIndexer(settings, truststore, S3Reader(_s3_client, settings.fetch.max_crl_bytes), log=log)
    started = time.perf_counter()
    report = indexer.run()
    result["run_s"] = time.perf_counter() - started
    result["peak_rss_mb"] = peak_rss_mb()
    location = S3Location.parse(settings.sources.index_uri)
    sizes: dict[str, int] = {}
    pages = (
        boto3.client("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=location.bucket, Prefix=location.key)
    )
    for page in pages:
        sizes.update({item["Key"]: int(item["Size"]) for item in page.get("Contents", [])})
    result["sources"] = [
        {
            "source": o.source,
            "status": o.status,
            "detail": o.detail,
            "entries": o.entries,
            "seconds": seconds.get(o.source, 0.0),
            "index_bytes": sizes.get(crl_index.object_key(location.key, o.source), 0),
        }
        for o in report.outcomes
    ]
    return result


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec: Json = json.load(handle)
    kind = spec["kind"]
    if kind == "baseline":
        result = run_baseline(spec)
    elif kind == "authorizer":
        result = run_authorizer(spec)
    elif kind == "memory":
        result = run_memory(spec)
    elif kind == "profile":
        result = run_profile(spec)
    elif kind == "index-first":
        result = run_index_first(spec)
    elif kind == "indexer":
        result = run_indexer(spec)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    with open(spec["out"], "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
