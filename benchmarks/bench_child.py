"""One benchmark scenario group, run in its own process so its peak RSS is its own.

    python benchmarks/bench_child.py SPEC.json

SPEC names the kind (baseline, authorizer, memory, profile), the certificates (PEM strings), the sample
counts and where to write the result (JSON). The parent sets the environment (truststore, fetch limits,
Powertools, the memory size) and sends this process's stdout to /dev/null, so Powertools' EMF lines cost
what they cost in Lambda without flooding a terminal. Progress goes to stderr.
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
        (app, "validate_path", "trust.validate_path (pyhanko-certvalidator; on a miss)"),
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
        (crl, "_check_issuer_may_sign_crls", "_check_issuer_may_sign_crls"),
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
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    with open(spec["out"], "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
