"""The revocation check of a validated path: caches, concurrent fetches, then the pure policy.

This is the imperative shell around ocsp.py, crl.py and policy.py. Everything fetched is fully
verified once and kept, per container, until the data's own nextUpdate or the configured maximum
age (whichever is sooner); failures are kept only for a short back-off. All the fetches a path
needs run concurrently and the whole check ends by the deadline it is given.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import crl, ocsp
from .cache import ExpiringCache
from .certs import Cert
from .fetch import Fetcher, FetchError, Request
from .freshness import StaleData, usable_until
from .model import Answer, CertVerdict, Source, Status
from .policy import cert_verdict, path_verdict
from .settings import Depth, FetchPolicy, RevocationPolicy
from .trust import CertPath

MAX_CRLS = 64
SourceKey = tuple[str, ...]  # ("ocsp", issuer fingerprint, serial) or ("crl", issuer fingerprint, *urls)
MAX_OCSP_ANSWERS = 20_000
MAX_DECISIONS = 20_000
_WORKERS = 8


@dataclass(frozen=True, eq=False)
class CrlEntry:
    index: crl.CrlIndex
    url: str  # the distribution point URL that served it (its validators belong to that URL)
    fetched_at: datetime
    etag: str = ""
    last_modified: str = ""


@dataclass
class Stats:
    """What one check cost: for the decision log and metrics."""

    cache_hits: int = 0
    cache_misses: int = 0
    fetches: int = 0
    fetch_failures: list[str] = field(default_factory=list)
    fetch_ms: list[float] = field(default_factory=list)
    stale_uses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PathResult:
    verdict: CertVerdict  # the path's: the worst of `verdicts`
    verdicts: tuple[CertVerdict, ...]  # one per checked certificate, leaf first
    fresh_until: datetime
    stats: Stats


class RevocationChecker:
    def __init__(
        self,
        policy: RevocationPolicy,
        fetch_policy: FetchPolicy,
        backoff_seconds: float,
        now: Callable[[], datetime],
        fetcher: Fetcher | None = None,
    ) -> None:
        self._policy = policy
        self._fetch_policy = fetch_policy
        self._fetcher = fetcher or Fetcher(fetch_policy)
        self._backoff = timedelta(seconds=backoff_seconds)
        self._max_age = timedelta(seconds=policy.max_age_seconds)
        self._now = now
        # All keyed by a source's key (see _LinkPlan): what was fetched, from where, for which issuer.
        self._crls: ExpiringCache[SourceKey, CrlEntry] = ExpiringCache(MAX_CRLS)
        self._ocsp: ExpiringCache[SourceKey, Answer] = ExpiringCache(MAX_OCSP_ANSWERS)
        self._failures: ExpiringCache[SourceKey, Answer] = ExpiringCache(MAX_OCSP_ANSWERS)
        self._decisions: ExpiringCache[tuple[str, str], tuple[CertVerdict, ...]] = ExpiringCache(
            MAX_DECISIONS
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(_WORKERS, thread_name_prefix="revocation")

    def check(self, path: CertPath, truststore_version: str, deadline: float) -> PathResult:
        now = self._now()
        decision_key = (path.leaf.fingerprint, truststore_version)
        cached = self._decisions.peek(decision_key)
        if cached is not None and cached[0] > now:
            held = cached[1]
            return PathResult(path_verdict(held), held, cached[0], Stats(cache_hits=1))

        stats = Stats()
        links = path.links()
        if self._policy.depth is Depth.LEAF:
            links = links[:1]
        plans = [_LinkPlan.of(cert, issuer) for cert, issuer in links]
        jobs: dict[SourceKey, concurrent.futures.Future[tuple[object, float]]] = {}
        for plan in plans:
            for key, job in self._jobs_for(plan, now, stats, deadline):
                if key not in jobs:
                    jobs[key] = self._pool.submit(_timed, job)
        finished = _wait(jobs, deadline, stats)

        verdicts: list[CertVerdict] = []
        fresh_until = now + self._max_age
        for plan in plans:
            answers = [
                self._answer(plan, source_key, finished, now, stats) for source_key in plan.source_keys()
            ]
            verdicts.append(cert_verdict(plan.cert.subject, plan.declared(), answers))
            for answer in answers:
                fresh_until = min(fresh_until, answer.fresh_until)
                if answer.stale:
                    stats.stale_uses.append(f"{plan.cert.subject}: {answer.detail}")
        self._decisions.put(decision_key, tuple(verdicts), fresh_until)
        return PathResult(path_verdict(verdicts), tuple(verdicts), fresh_until, stats)

    # --- planning: what each certificate needs, served from cache where fresh -------------------

    def _jobs_for(
        self, plan: _LinkPlan, now: datetime, stats: Stats, deadline: float
    ) -> list[tuple[SourceKey, Callable[[], object]]]:
        jobs: list[tuple[SourceKey, Callable[[], object]]] = []
        if plan.ocsp_urls:
            key = plan.ocsp_key
            if self._ocsp.get(key, now) or self._failures.get(key, now):
                stats.cache_hits += 1
            else:
                stats.cache_misses += 1
                jobs.append((key, functools.partial(self._fetch_ocsp, plan, deadline)))
        for point in plan.crl_points:
            key = plan.crl_key(point)
            if self._crls.get(key, now) or self._failures.get(key, now):
                stats.cache_hits += 1
            else:
                stats.cache_misses += 1
                jobs.append((key, functools.partial(self._fetch_crl, plan, point, deadline)))
        return jobs

    # --- workers (threads): fetch and verify, no shared state touched ---------------------------

    def _fetch_ocsp(self, plan: _LinkPlan, deadline: float) -> Answer | _Failure:
        failure = _Failure("ocsp", "no responder")
        for url in plan.ocsp_urls:
            try:
                request, nonce = ocsp.build_request(plan.cert, plan.issuer)
                response = self._fetcher.fetch(
                    Request(
                        url,
                        body=request,
                        content_type="application/ocsp-request",
                        accept="application/ocsp-response",
                        max_bytes=self._fetch_policy.max_ocsp_bytes,
                    ),
                    deadline,
                )
                return ocsp.verify_response(
                    response.body, plan.cert, plan.issuer, self._now(), self._policy, nonce
                )
            except FetchError as exc:
                failure = _Failure(exc.kind, f"ocsp {url}: {exc}")
            except (ocsp.OCSPError, StaleData) as exc:
                failure = _Failure("invalid", f"ocsp {url}: {exc}")
        return failure

    def _fetch_crl(
        self, plan: _LinkPlan, point: crl.DistributionPoint, deadline: float
    ) -> CrlEntry | _Failure:
        failure = _Failure("crl", "no distribution point")
        previous = self._crls.peek(plan.crl_key(point))
        for url in point.urls:
            headers: dict[str, str] = {}
            old = previous[1] if previous and previous[1].url == url else None
            if old and old.etag:
                headers["If-None-Match"] = old.etag
            if old and old.last_modified:
                headers["If-Modified-Since"] = old.last_modified
            try:
                response = self._fetcher.fetch(
                    Request(url, max_bytes=self._fetch_policy.max_crl_bytes, headers=headers), deadline
                )
                if response.status == 304 and old is not None:
                    return CrlEntry(old.index, url, self._now(), old.etag, old.last_modified)
                index = crl.parse_and_verify(response.body, plan.issuer)
                return CrlEntry(
                    index,
                    url,
                    self._now(),
                    response.headers.get("etag", ""),
                    response.headers.get("last-modified", ""),
                )
            except FetchError as exc:
                failure = _Failure(exc.kind, f"crl {url}: {exc}")
            except crl.CRLError as exc:
                failure = _Failure("invalid", f"crl {url}: {exc}")
        return failure

    # --- turning finished work and caches into answers (main thread) ----------------------------

    def _answer(
        self,
        plan: _LinkPlan,
        source_key: SourceKey,
        finished: dict[SourceKey, object],
        now: datetime,
        stats: Stats,
    ) -> Answer:
        if source_key[0] == "unusable":
            return Answer(
                Status.UNAVAILABLE, Source.CRL, now + self._max_age, "crl: unsupported distribution point"
            )
        result = finished.get(source_key, _NOT_RUN)
        if isinstance(result, _Failure):
            stats.fetches += 1
            stats.fetch_failures.append(result.kind)
            answer = Answer(Status.UNAVAILABLE, _source(source_key), now + self._backoff, result.detail)
            self._failures.put(source_key, answer, now + self._backoff)
            return self._held_fallback(plan, source_key, now) or answer
        if source_key[0] == "ocsp":
            return self._ocsp_answer(plan, source_key, result, now, stats)
        return self._crl_answer(plan, source_key, result, now, stats)

    def _ocsp_answer(
        self, plan: _LinkPlan, key: SourceKey, result: object, now: datetime, stats: Stats
    ) -> Answer:
        if isinstance(result, Answer):
            stats.fetches += 1
            if result.status is Status.UNKNOWN:
                answer = Answer(Status.UNKNOWN, Source.OCSP, now + self._backoff, result.detail)
                self._failures.put(key, answer, answer.fresh_until)
                return answer
            answer = _capped(result, now + self._max_age)
            self._ocsp.put(key, answer, answer.fresh_until)
            return answer
        return (
            self._ocsp.get(key, now)
            or self._held_fallback(plan, key, now)
            or self._failures.get(key, now)
            or _timed_out(Source.OCSP, now, stats)
        )

    def _crl_answer(
        self, plan: _LinkPlan, key: SourceKey, result: object, now: datetime, stats: Stats
    ) -> Answer:
        point = plan.point_for(key)
        if isinstance(result, CrlEntry):
            stats.fetches += 1
            self._crls.put(key, result, self._crl_expiry(result))
            entry: CrlEntry | None = result
        else:
            entry = self._crls.get(key, now)
            if entry is None:
                return (
                    self._held_fallback(plan, key, now)
                    or self._failures.get(key, now)
                    or _timed_out(Source.CRL, now, stats)
                )
        assert entry is not None
        try:
            answer = crl.lookup(entry.index, plan.cert, point, now, self._policy)
        except (crl.CRLError, StaleData) as exc:
            return Answer(Status.UNAVAILABLE, Source.CRL, now + self._backoff, f"crl {point.urls[0]}: {exc}")
        return _capped(answer, entry.fetched_at + self._max_age)

    def _held_fallback(self, plan: _LinkPlan, key: SourceKey, now: datetime) -> Answer | None:
        """When a refresh failed, data already held serves while it is still valid: until its
        nextUpdate, or past it within REVOCATION_STALE_GRACE_SECONDS (such uses are flagged stale)."""
        try:
            if key[0] == "ocsp":
                held_answer = self._ocsp.peek(key)
                if held_answer is None or held_answer[1].this_update is None:
                    return None
                old = held_answer[1]
                until, stale = usable_until(old.this_update, old.next_update, now, self._policy)  # type: ignore[arg-type]
                return Answer(
                    old.status, old.source, until, old.detail, stale, old.this_update, old.next_update
                )
            held_crl = self._crls.peek(key)
            if held_crl is None:
                return None
            return crl.lookup(held_crl[1].index, plan.cert, plan.point_for(key), now, self._policy)
        except (crl.CRLError, StaleData):
            return None

    def _crl_expiry(self, entry: CrlEntry) -> datetime:
        next_update = entry.index.next_update or entry.index.this_update
        return min(next_update, entry.fetched_at + self._max_age)


@dataclass(frozen=True)
class _Failure:
    kind: str
    detail: str


_NOT_RUN = object()


@dataclass(frozen=True, eq=False)
class _LinkPlan:
    cert: Cert
    issuer: Cert
    ocsp_urls: SourceKey
    crl_points: tuple[crl.DistributionPoint, ...]
    crl_unusable: bool

    @classmethod
    def of(cls, cert: Cert, issuer: Cert) -> _LinkPlan:
        points, unusable = crl.distribution_points(cert)
        return cls(cert, issuer, ocsp.responder_urls(cert), points, unusable)

    @property
    def ocsp_key(self) -> SourceKey:
        return ("ocsp", self.issuer.fingerprint, str(self.cert.crypto.serial_number))

    def crl_key(self, point: crl.DistributionPoint) -> SourceKey:
        return ("crl", self.issuer.fingerprint, *point.urls)

    def point_for(self, key: SourceKey) -> crl.DistributionPoint:
        return next(p for p in self.crl_points if self.crl_key(p) == key)

    def source_keys(self) -> list[SourceKey]:
        keys = [self.ocsp_key] if self.ocsp_urls else []
        return (
            keys + [self.crl_key(p) for p in self.crl_points] + ([("unusable",)] if self.crl_unusable else [])
        )

    def declared(self) -> list[Source]:
        sources = [Source.OCSP] if self.ocsp_urls else []
        return sources + ([Source.CRL] if self.crl_points or self.crl_unusable else [])


def _source(key: SourceKey) -> Source:
    return Source.OCSP if key[0] == "ocsp" else Source.CRL


def _capped(answer: Answer, limit: datetime) -> Answer:
    if answer.fresh_until <= limit:
        return answer
    return Answer(answer.status, answer.source, limit, answer.detail, answer.stale)


def _timed_out(source: Source, now: datetime, stats: Stats) -> Answer:
    stats.fetch_failures.append("timeout")
    return Answer(Status.UNAVAILABLE, source, now, f"{source.value}: no answer within the time budget")


def _wait(
    jobs: dict[SourceKey, concurrent.futures.Future[tuple[object, float]]],
    deadline: float,
    stats: Stats,
) -> dict[SourceKey, object]:
    """Results of the jobs that finished by the deadline; the rest are abandoned, never awaited."""
    if jobs:
        concurrent.futures.wait(jobs.values(), timeout=max(0.0, deadline - time.monotonic()))
    finished: dict[SourceKey, object] = {}
    for key, future in jobs.items():
        if future.done() and not future.cancelled():
            error = future.exception()
            if error is not None:
                finished[key] = _Failure("bug", f"{type(error).__name__}")
            else:
                result, seconds = future.result()
                finished[key] = result
                stats.fetch_ms.append(seconds * 1000)
    return finished


def _timed(job: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    result = job()
    return result, time.monotonic() - started
